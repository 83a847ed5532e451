"""Tiny batches: one row at a time, no packing, no threads.

Below a few hundred rows a parallel launch (2-6 us) and tile packing cost more than
the arithmetic; here the time goes to the call itself and H + Dy exps per row.
"""
import numpy as np
from numba import njit

from .common import ENTRY, JIT, param_views
from .mathfn import vexp, vlog


@njit(**JIT)
def row_forward_backward(x, y, W1, b1, W2, b2, h, z, d, gW1, gb1, gW2, gb2):
    # x (Dx,), y (Dy,) one example; h, d (H,) and z (Dy,) scratch; grads (as params) +=.
    one = h.dtype.type(1.0)
    H, Dy = W2.shape
    # hidden_forward: h = sigmoid(x W1 + b1)
    h[:] = b1
    for i in range(x.shape[0]):
        xi = x[i]
        for j in range(H):
            h[j] += xi * W1[i, j]
    for j in range(H):
        h[j] = one / (one + vexp(-h[j]))
    # output_forward: z = h W2 + b2; cost = sum_k y_k (lse - z_k)
    z[:] = b2
    for j in range(H):
        hj = h[j]
        for k in range(Dy):
            z[k] += hj * W2[j, k]
    zmax = z[0]
    for k in range(1, Dy):
        zmax = max(zmax, z[k])
    s = z.dtype.type(0.0)
    for k in range(Dy):
        s += vexp(z[k] - zmax)
    lse = zmax + vlog(s)
    cost = z.dtype.type(0.0)
    ysum = z.dtype.type(0.0)
    for k in range(Dy):
        cost += y[k] * (lse - z[k])
        ysum += y[k]
    # output_backward: d1 = yhat * rowsum(y) - y (kept in z); gW2 += h d1^T; d2 = W2 d1
    for k in range(Dy):
        z[k] = vexp(z[k] - lse) * ysum - y[k]
        gb2[k] += z[k]
    for j in range(H):
        hj = h[j]
        acc = z.dtype.type(0.0)
        for k in range(Dy):
            gW2[j, k] += hj * z[k]
            acc += W2[j, k] * z[k]
        # hidden_backward: d3 = d2 * h * (1 - h)
        d[j] = acc * hj * (one - hj)
        gb1[j] += d[j]
    for i in range(x.shape[0]):
        xi = x[i]
        for j in range(H):
            gW1[i, j] += xi * d[j]
    return cost


@njit(**ENTRY)
def rows_forward_backward(data, labels, params, Dx, H, Dy, grad):
    """data (N, Dx), labels (N, Dy), params (P,) -> grad (P,); returns the cost."""
    W1, b1, W2, b2 = param_views(params, Dx, H, Dy)
    gW1, gb1, gW2, gb2 = param_views(grad, Dx, H, Dy)
    grad[:] = 0
    ws = np.empty(2 * H + Dy, data.dtype)  # small enough to come from malloc's free lists
    h, d, z = ws[:H], ws[H : 2 * H], ws[2 * H :]
    cost = 0.0
    for r in range(data.shape[0]):
        cost += row_forward_backward(data[r], labels[r], W1, b1, W2, b2, h, z, d, gW1, gb1, gW2, gb2)
    return cost
