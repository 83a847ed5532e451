"""Wider layers: BLAS for the five products, fused elementwise passes between them,
R rows at a time.

Where the time goes: the GEMMs x W1 and x^T d3, at the BLAS's speed; then the sigmoid
(one exp per hidden unit). Even for Dy = 5, BLAS does h W2, h^T d1 and d1 W2^T faster
than a fused per-row loop (measured: 93 against 180 ns per row for (50, 100, 5)). A narrow
output layer is kept transposed, zT = (h W2)^T (Dy, R), which BLAS writes as cheaply,
so that the softmax loops run over the R rows (softmax_xent_columns) and vectorize
however small Dy is: row by row it cost 58 ns per row for Dy = 5.

Rows are split into one block per thread, each running whole chunks with
single-threaded BLAS, so that one thread pool works at a time and the elementwise
passes run in parallel too. Chunks bound the workspace whatever N is; the weight
gradients accumulate inside the GEMM (beta = 1 after a block's first chunk).
"""
import math

from numba import njit, prange
from numba.extending import register_jitable

from .blas import gemm
from .common import (ENTRY, JIT, block_scratch, chunk_accumulator, matrix, pack_tile, param_views, reduce_chunks,
                     softmax_xent_columns, softmax_xent_row)
from .mathfn import vexp


# Widest output layer that is kept transposed (output_columns). Measured at N = 4096:
# (50, 100, 5) 1.35 -> 1.26 ms and (784, 128, 10) 84 -> 87 GFLOP/s transposed, but
# (1024, 1024, 1024) 97 -> 93 GFLOP/s, its GEMMs then both transposed.
COLUMNS_MAX_DY = 64


@register_jitable  # a plain function in Python, callable from jitted code too
def bias_tile_rows(H):
    """Rows of b1 repeated in the bias tile: the fewest with a multiple of 64 elements, so
    that whole vector steps (up to 4 x 16 lanes) cover them (see hidden_activation)."""
    return 64 // math.gcd(H, 64)


@register_jitable
def scratch_size(Dx, H, Dy, R):
    """Elements of chunk scratch: h and d (R, H), zT and yT (Dy, R), four rows of R, the
    bias tile."""
    return R * (2 * H + 2 * Dy + 4) + bias_tile_rows(H) * H


@njit(**JIT)
def hidden_activation(Z, bias_tile):
    # Z (n * H,) = x W1, flattened -> h = sigmoid(Z + b1), in place. bias_tile is b1
    # repeated bias_tile_rows(H) times, so the loop runs over that many rows at once with
    # no scalar remainder per row: row by row, H = 100 left 4 of every 100 exps scalar,
    # and (50, 100, 5) spent 450 instead of 370 us per 4096 rows here (one thread).
    one = Z.dtype.type(1.0)
    L = bias_tile.shape[0]
    whole = Z.shape[0] // L * L
    for r0 in range(0, whole, L):
        z = Z[r0 : r0 + L]
        for m in range(L):
            z[m] = one / (one + vexp(-(z[m] + bias_tile[m])))
    z = Z[whole:]  # the last rows, fewer than a tile
    for m in range(z.shape[0]):
        z[m] = one / (one + vexp(-(z[m] + bias_tile[m])))


@njit(**JIT)
def output_rows(h, W2, b2, y, z, beta, gW2, gb2, d):
    # The output layer, row by row, for wide outputs (Dy > COLUMNS_MAX_DY):
    # h (n, H), W2 (H, Dy), b2 (Dy,), y (n, Dy) -> returns the cost;
    # gW2 (H, Dy) = beta gW2 + h^T d1, gb2 += sum_rows(d1), d (n, H) = d2 = d1 W2^T. z (n, Dy) scratch.
    gemm(h, False, W2, False, z, 0.0)  # z = h W2
    cost = 0.0
    for r in range(z.shape[0]):
        zr = z[r]
        for k in range(zr.shape[0]):
            zr[k] += b2[k]
        cost += softmax_xent_row(zr, y[r])  # zr = d1
        for k in range(zr.shape[0]):
            gb2[k] += zr[k]
    gemm(h, True, z, False, gW2, beta)  # gW2 += h^T d1
    gemm(z, False, W2, True, d, 0.0)  # d = d2 = d1 W2^T
    return cost


@njit(**JIT)
def output_columns(h, W2, b2, yT, zT, rows, beta, gW2, gb2, d):
    # The same for narrow outputs, transposed: zT = (h W2)^T (Dy, n), which BLAS writes
    # as cheaply, so that the softmax loops run over the n rows and vectorize.
    # yT (Dy, n) labels; rows (4, n) scratch.
    gemm(W2, True, h, True, zT, 0.0)  # zT = W2^T h^T
    for k in range(zT.shape[0]):
        z = zT[k]
        bk = b2[k]
        for t in range(z.shape[0]):
            z[t] += bk
    cost = softmax_xent_columns(zT, yT, rows)  # zT = d1^T
    for k in range(zT.shape[0]):
        z = zT[k]
        s = zT.dtype.type(0.0)
        for t in range(z.shape[0]):
            s += z[t]
        gb2[k] += s
    gemm(h, True, zT, True, gW2, beta)  # gW2 += h^T d1
    gemm(zT, True, W2, True, d, 0.0)  # d = d2 = d1 W2^T
    return cost


@njit(**JIT)
def hidden_delta(D, Hh, gb1):
    # D (R, H) = d2 -> d3 = d2 * h * (1 - h) in place, and gb1 (H,) += sum_rows(d3)
    one = D.dtype.type(1.0)
    for r in range(D.shape[0]):
        d = D[r]
        h = Hh[r]
        for j in range(D.shape[1]):
            d[j] = d[j] * h[j] * (one - h[j])
            gb1[j] += d[j]


@njit(**JIT)
def chunks_forward_backward(data, labels, params, Dx, H, Dy, r0, r1, R, scratch, grad):
    """Rows r0..r1 of data (N, Dx) and labels (N, Dy) in chunks of R rows; writes their
    gradient to grad (P,) and returns the cost. scratch holds scratch_size(Dx, H, Dy, R)."""
    W1, b1, W2, b2 = param_views(params, Dx, H, Dy)
    gW1, gb1, gW2, gb2 = param_views(grad, Dx, H, Dy)
    # The first chunk's GEMMs overwrite the weight gradients (beta = 0): no separate
    # zeroing pass over them, which for wide layers costs as much as a small batch.
    gb1[:] = 0
    gb2[:] = 0
    if r1 <= r0:
        gW1[:] = 0
        gW2[:] = 0
    h_ws = matrix(scratch[: R * H], R, H)
    d_ws = matrix(scratch[R * H : 2 * R * H], R, H)
    o = 2 * R * H
    z_ws, yT_ws, rows_ws = scratch[o : o + R * Dy], scratch[o + R * Dy : o + 2 * R * Dy], scratch[o + 2 * R * Dy :]
    o += 2 * R * Dy + 4 * R
    bias_tile = scratch[o : o + bias_tile_rows(H) * H]
    for r in range(0, bias_tile.shape[0], H):
        bias_tile[r : r + H] = b1
    columns = Dy <= COLUMNS_MAX_DY
    cost = 0.0
    for c0 in range(r0, r1, R):
        c1 = min(c0 + R, r1)
        n = c1 - c0
        x = data[c0:c1]
        h, d = h_ws[:n], d_ws[:n]
        beta = 0.0 if c0 == r0 else 1.0
        gemm(x, False, W1, False, h, 0.0)  # h = x W1
        hidden_activation(scratch[: n * H], bias_tile)  # h (the same memory) = sigmoid(x W1 + b1)
        if columns:
            yT = matrix(yT_ws[: Dy * n], Dy, n)
            pack_tile(labels, c0, n, yT)
            cost += output_columns(h, W2, b2, yT, matrix(z_ws[: Dy * n], Dy, n), matrix(rows_ws[: 4 * n], 4, n),
                                   beta, gW2, gb2, d)
        else:
            cost += output_rows(h, W2, b2, labels[c0:c1], matrix(z_ws[: Dy * n], n, Dy), beta, gW2, gb2, d)
        hidden_delta(d, h, gb1)  # d = d3; gb1 += sum_rows(d3)
        gemm(x, True, d, False, gW1, beta)  # gW1 += x^T d3
    return cost


@njit(**JIT)
def _block(b, data, labels, params, Dx, H, Dy, R, rows_per_block, ws, costs, grad):
    blocks = costs.shape[0]
    acc = chunk_accumulator(b, ws, grad)
    scratch = block_scratch(b, ws, blocks, grad.shape[0], scratch_size(Dx, H, Dy, R))
    r0 = b * rows_per_block
    r1 = min(data.shape[0], r0 + rows_per_block)
    costs[b] = chunks_forward_backward(data, labels, params, Dx, H, Dy, r0, r1, R, scratch, acc)


@njit(**ENTRY)
def wide_serial(data, labels, params, Dx, H, Dy, R, rows_per_block, blocks, ws, costs, grad):
    """data (N, Dx), labels (N, Dy), params (P,) -> grad (P,); returns the cost.

    Block b covers rows b * rows_per_block .., in chunks of R rows; each block is one
    chunk of kernels/common.py's workspace (blocks == len(costs)). One block after
    another on this thread; BLAS may use its own threads.
    """
    for b in range(blocks):
        _block(b, data, labels, params, Dx, H, Dy, R, rows_per_block, ws, costs, grad)
    return reduce_chunks(ws, costs, grad)


@njit(parallel=True, **ENTRY)
def wide_parallel(data, labels, params, Dx, H, Dy, R, rows_per_block, blocks, ws, costs, grad):
    """The blocks of wide_serial, one per Numba thread (the caller limits BLAS to one thread)."""
    for b in prange(blocks):
        _block(b, data, labels, params, Dx, H, Dy, R, rows_per_block, ws, costs, grad)
    return reduce_chunks(ws, costs, grad)
