"""Tiny batches: one row at a time, no packing, no threads.

Below a few hundred rows a parallel launch (2-6 us) and tile packing cost more than
the arithmetic; here the time goes to the call itself and H + Dy exps per row.
(Indexing the flat params by offsets instead of 2-D views saved 0.05 us at N = 1 but
made wide layers 3x slower: Numba cannot prove a computed index non-negative, so
every access pays a wraparound check, and the loops stop vectorizing.)
"""

import numpy as np
from numba import njit

from .common import ENTRY, JIT, hidden_units, param_views, softmax_xent_row
from .mathfn import vexp


@njit(**JIT)
def row_forward_backward(x, y, W1, b1, W2, b2, h, z, d, gW1, gb1, gW2, gb2, first):
    # x (Dx,), y (Dy,) one example; h, d (H,) and z (Dy,) scratch. Returns the row's cost.
    # The grads (shaped as params) are set by the first row and added to by the others:
    # no zeroing pass, and the first row writes gW1 and gW2 without reading them, which
    # for weights outside the cache is most of a one-row call's memory traffic.
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
    # output_forward: z = h W2 + b2, then z becomes d1 = yhat * rowsum(y) - y
    z[:] = b2
    for j in range(H):
        hj = h[j]
        for k in range(Dy):
            z[k] += hj * W2[j, k]
    cost = softmax_xent_row(z, y)
    # output_backward: gb2 += d1; gW2 += h d1^T; d2 = W2 d1
    add_or_set(gb2, z, first)
    for j in range(H):
        add_scaled_or_set(gW2[j], h[j], z, first)
        d2 = z.dtype.type(0.0)
        for k in range(Dy):
            d2 += W2[j, k] * z[k]
        # hidden_backward: d3 = d2 * h * (1 - h); gb1 += d3; gW1 += x d3^T
        d[j] = d2 * h[j] * (one - h[j])
    add_or_set(gb1, d, first)
    for i in range(x.shape[0]):
        add_scaled_or_set(gW1[i], x[i], d, first)
    return cost


@njit(inline="always", **JIT)
def add_or_set(g, v, first):
    # g (n,) = v on the first row, g += v after
    if first:
        g[:] = v
    else:
        for k in range(g.shape[0]):
            g[k] += v[k]


@njit(inline="always", **JIT)
def add_scaled_or_set(g, a, v, first):
    # g (n,) = a v on the first row, g += a v after
    if first:
        for k in range(g.shape[0]):
            g[k] = a * v[k]
    else:
        for k in range(g.shape[0]):
            g[k] += a * v[k]


@njit(**ENTRY)
def rows_forward_backward(data, labels, params, grad):
    """data (N, Dx), labels (N, Dy), params (P,) -> grad (P,); returns the cost.

    The dimensions come from the shapes: as three more arguments they cost 0.08 us of
    a 1.9 us call at N = 1 (Numba unboxes every argument)."""
    Dx, Dy = data.shape[1], labels.shape[1]
    H = hidden_units(Dx, Dy, params.shape[0])
    W1, b1, W2, b2 = param_views(params, Dx, H, Dy)
    gW1, gb1, gW2, gb2 = param_views(grad, Dx, H, Dy)
    if data.shape[0] == 0:
        grad[:] = 0
    ws = np.empty(2 * H + Dy, data.dtype)  # small enough to come from malloc's free lists
    h, d, z = ws[:H], ws[H : 2 * H], ws[2 * H :]
    cost = 0.0
    for r in range(data.shape[0]):
        cost += row_forward_backward(data[r], labels[r], W1, b1, W2, b2, h, z, d, gW1, gb1, gW2, gb2, r == 0)
    return cost
