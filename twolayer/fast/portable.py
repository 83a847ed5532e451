"""The portable path: wider layers on any BLAS. NumPy issues the five products (so they
run on the BLAS NumPy was built with, MKL, Accelerate, BLIS or another, on that BLAS's
own threads: one thread pool in the process), and compiled kernels fuse the elementwise
stages between them (kernels/portable.py), in place, in reused per-thread scratch.

The batch goes in tiles of portable_tile_rows rows, a number fixed by the batch; each
tile's gradient is added to the total in tile order. The result is bitwise the same for
any twolayer thread count; like NumPy's own results, it may change in the last bits with
the BLAS's thread count (OpenBLAS's products do), which the BLAS path does not.
"""

import numpy as np

from ..kernels.wide import COLUMNS_MAX_DY, bias_tile_rows
from ..layout import param_offsets
from .paths import portable_tile_rows
from .workspace import scratch


def entry_kernels(dims):
    """The entry kernels the portable path runs for ``dims``."""
    output = "output_forward_tail_columns" if dims[2] <= COLUMNS_MAX_DY else "output_forward_tail_rows"
    return ["hidden_forward_tail", output, "hidden_backward_head", "add_into"]


def forward_backward(kernel, data, labels, params, dims, grad):
    """Cost of data (N, Dx), labels (N, Dy) (C-contiguous) under params (P,); the gradient
    goes to grad (P,). ``kernel(name, dtype)`` gives the compiled entry kernels."""
    Dx, H, Dy = dims
    dt = grad.dtype
    n_all = data.shape[0]
    if n_all == 0:
        grad[:] = 0
        return 0.0
    o_W1, o_b1, o_W2, o_b2, P = param_offsets(Dx, H, Dy)
    W1, b1 = params[o_W1:o_b1].reshape(Dx, H), params[o_b1:o_W2]
    W2, b2 = params[o_W2:o_b2].reshape(H, Dy), params[o_b2:P]
    hidden, output, backward, add = (kernel(name, dt) for name in entry_kernels(dims))
    columns = Dy <= COLUMNS_MAX_DY

    R = portable_tile_rows(n_all, Dx, H, Dy, dt.itemsize)
    tiles = -(-n_all // R)
    pair = 2 * H * Dy if columns else 0  # W2^T and gW2^T, C-contiguous
    ws = scratch(R * (2 * H + 2 * Dy + 4) + bias_tile_rows(H) * H + pair + (P if tiles > 1 else 0), dt)
    h_ws, d_ws = ws[: R * H], ws[R * H : 2 * R * H]
    o = 2 * R * H
    z_ws, yT_ws, rows_ws = (
        ws[o : o + R * Dy],
        ws[o + R * Dy : o + 2 * R * Dy],
        ws[o + 2 * R * Dy : o + 2 * R * Dy + 4 * R],
    )
    o += 2 * R * Dy + 4 * R
    bias_tile = ws[o : o + bias_tile_rows(H) * H]
    o += bias_tile_rows(H) * H
    if columns:
        # Products with the narrow output kept transposed, in layouts no BLAS does badly:
        # with both operands transposed, MKL took 10x as long for gW2 ((784,128,10) float32,
        # 4096 rows: 1.45 ms, against 0.13 ms for gW2^T = d1^T h and a copy).
        W2T, gW2T = ws[o : o + H * Dy].reshape(Dy, H), ws[o + H * Dy : o + pair].reshape(Dy, H)
        W2T[...] = W2.T
    part = ws[o + pair :]  # the gradient of a tile after the first
    cost = 0.0
    for t, r0 in enumerate(range(0, n_all, R)):
        n = min(R, n_all - r0)
        g = grad if t == 0 else part
        gW1, gb1 = g[o_W1:o_b1].reshape(Dx, H), g[o_b1:o_W2]
        gW2, gb2 = g[o_W2:o_b2].reshape(H, Dy), g[o_b2:P]
        x = data[r0 : r0 + n]
        h, d = h_ws[: n * H].reshape(n, H), d_ws[: n * H].reshape(n, H)
        # hidden_forward: h = sigmoid(x W1 + b1)
        np.matmul(x, W1, out=h)
        hidden(h_ws[: n * H], b1, bias_tile)
        # output_forward: d1 = yhat * rowsum(y) - y, kept transposed for narrow outputs
        if columns:
            zT = z_ws[: Dy * n].reshape(Dy, n)
            np.matmul(W2T, h.T, out=zT)
            cost += output(zT, b2, labels, r0, yT_ws[: Dy * n].reshape(Dy, n), rows_ws[: 4 * n].reshape(4, n), gb2)
            # output_backward: gW2 = h^T d1, d2 = d1 W2^T
            np.matmul(zT, h, out=gW2T)
            gW2[...] = gW2T.T
            np.matmul(zT.T, W2T, out=d)
        else:
            d1 = z_ws[: n * Dy].reshape(n, Dy)
            np.matmul(h, W2, out=d1)
            cost += output(d1, b2, labels, r0, gb2)
            # output_backward: gW2 = h^T d1, d2 = d1 W2^T
            np.matmul(h.T, d1, out=gW2)
            np.matmul(d1, W2.T, out=d)
        # hidden_backward: d3 = d2 * h * (1 - h), gb1 = sum_rows(d3), gW1 = x^T d3
        backward(d, h, gb1)
        np.matmul(x.T, d, out=gW1)
        if t > 0:
            add(grad, part)
    return cost
