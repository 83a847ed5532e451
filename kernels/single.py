"""Tiny batches: one row at a time, no packing, no threads.

Below a few hundred rows a parallel launch (2-6 us) and tile packing cost more than
the arithmetic; here the time goes to the call itself and H + Dy exps per row. At
N = 1 a whole call is about 2 us, so the weights are indexed in the flat params by
their offsets (llm.c style) rather than through reshaped views, which cost ~0.1 us.
"""
import numpy as np
from numba import njit

from .common import ENTRY, JIT, param_offsets, softmax_xent_row
from .mathfn import vexp


@njit(**JIT)
def row_forward_backward(x, y, params, grad, offsets, h, z, d):
    # x (Dx,), y (Dy,) one example; params, grad (P,) with W1 (Dx, H), b1, W2 (H, Dy), b2
    # at offsets; h, d (H,) and z (Dy,) scratch. grad += this row's gradient; returns its cost.
    o_W1, o_b1, o_W2, o_b2 = offsets
    one = h.dtype.type(1.0)
    Dx, H, Dy = x.shape[0], h.shape[0], z.shape[0]
    # hidden_forward: h = sigmoid(x W1 + b1)
    h[:] = params[o_b1:o_W2]
    for i in range(Dx):
        xi = x[i]
        w = o_W1 + i * H
        for j in range(H):
            h[j] += xi * params[w + j]
    for j in range(H):
        h[j] = one / (one + vexp(-h[j]))
    # output_forward: z = h W2 + b2, then z becomes d1 = yhat * rowsum(y) - y
    z[:] = params[o_b2 : o_b2 + Dy]
    for j in range(H):
        hj = h[j]
        w = o_W2 + j * Dy
        for k in range(Dy):
            z[k] += hj * params[w + k]
    cost = softmax_xent_row(z, y)
    # output_backward: gb2 += d1; gW2 += h d1^T; d2 = W2 d1
    for k in range(Dy):
        grad[o_b2 + k] += z[k]
    for j in range(H):
        hj = h[j]
        w = o_W2 + j * Dy
        d2 = z.dtype.type(0.0)
        for k in range(Dy):
            grad[w + k] += hj * z[k]
            d2 += params[w + k] * z[k]
        # hidden_backward: d3 = d2 * h * (1 - h); gb1 += d3; gW1 += x d3^T
        d[j] = d2 * hj * (one - hj)
        grad[o_b1 + j] += d[j]
    for i in range(Dx):
        xi = x[i]
        w = o_W1 + i * H
        for j in range(H):
            grad[w + j] += xi * d[j]
    return cost


@njit(**ENTRY)
def rows_forward_backward(data, labels, params, Dx, H, Dy, grad):
    """data (N, Dx), labels (N, Dy), params (P,) -> grad (P,); returns the cost."""
    o_W1, o_b1, o_W2, o_b2, _ = param_offsets(Dx, H, Dy)
    grad[:] = 0
    ws = np.empty(2 * H + Dy, data.dtype)  # small enough to come from malloc's free lists
    h, d, z = ws[:H], ws[H : 2 * H], ws[2 * H :]
    cost = 0.0
    for r in range(data.shape[0]):
        cost += row_forward_backward(data[r], labels[r], params, grad, (o_W1, o_b1, o_W2, o_b2), h, z, d)
    return cost
