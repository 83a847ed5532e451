"""Wider layers: BLAS for the five products, fused elementwise passes between them,
a tile of R rows at a time.

Where the time goes: the GEMMs x W1 and x^T d3, at the BLAS's speed; then the sigmoid
(one exp per hidden unit). Even for Dy = 5, BLAS does h W2, h^T d1 and d1 W2^T faster
than a fused per-row loop (measured: 93 against 180 ns per row for (50, 100, 5)). A narrow
output layer is kept transposed, zT = (h W2)^T (Dy, R), which BLAS writes as cheaply,
so that the softmax loops run over the R rows (softmax_xent_columns) and vectorize
however small Dy is: row by row it cost 58 ns per row for Dy = 5.

The batch is cut into chunks fixed by the batch (each with its own gradient accumulator,
summed in chunk order: the result does not depend on the thread count); each thread runs
a block of whole chunks with single-threaded BLAS, so that one thread pool works at a
time and the elementwise passes run in parallel too. Within a chunk the weight
gradients accumulate inside the GEMMs (beta = 1 after its first tile).

The elementwise stages are also the portable path's (kernels/portable.py), which issues
the products through NumPy instead.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import register_jitable

from .common import (
    ENTRY,
    JIT,
    array_types,
    copy_into,
    matrix,
    pack_tile,
    param_views,
    softmax_xent_columns,
    softmax_xent_row,
)
from .gemm import gemm
from .mathfn import vexp
from .pool import COUNTER_STRIDE, fetch_add, next_task, run_job, stash, unstash_as, wait_until, zero_of

# Widest output layer that is kept transposed: (50, 100, 5) and (784, 128, 10) gained 4-7%
# transposed, (1024, 1024, 1024) lost 4% (its GEMMs then both transposed).
COLUMNS_MAX_DY = 64


@register_jitable  # a plain function in Python, callable from jitted code too
def bias_tile_rows(H):
    """Rows of b1 repeated in the bias tile: the fewest with a multiple of 64 elements, so
    that whole vector steps (up to 4 x 16 lanes) cover them (see sigmoid_of_biased)."""
    return 64 // math.gcd(H, 64)


@register_jitable
def scratch_size(Dx, H, Dy, R):
    """Elements of tile scratch: h and d (R, H), zT and yT (Dy, R), four rows of R, the
    bias tile."""
    return R * (2 * H + 2 * Dy + 4) + bias_tile_rows(H) * H


@njit(**JIT)
def fill_bias_tile(b1, bias_tile):
    # bias_tile (bias_tile_rows(H) * H,) = b1 (H,) repeated
    H = b1.shape[0]
    for r in range(0, bias_tile.shape[0], H):
        copy_into(bias_tile[r : r + H], b1)


@njit(**JIT)
def sigmoid_of_biased(Z, bias_tile):
    # Z (n * H,) = x W1, flattened -> h = sigmoid(Z + b1), in place. The loop runs over
    # the bias tile's rows at once with no scalar remainder per row: row by row, H = 100
    # left 4 of every 100 exps scalar, and (50, 100, 5) spent 450 instead of 370 us per
    # 4096 rows here (one thread).
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
def softmax_xent_columns_biased(zT, b2, yT, rows, gb2):
    # zT (Dy, n) = (h W2)^T, b2 (Dy,), yT (Dy, n) -> returns the cost; zT becomes
    # d1^T = (yhat * rowsum(y) - y)^T and gb2 (Dy,) += sum_rows(d1). rows (4, n) scratch.
    for k in range(zT.shape[0]):
        z = zT[k]
        bk = b2[k]
        for t in range(z.shape[0]):
            z[t] += bk
    cost = softmax_xent_columns(zT, yT, rows)
    for k in range(zT.shape[0]):
        z = zT[k]
        s = zT.dtype.type(0.0)
        for t in range(z.shape[0]):
            s += z[t]
        gb2[k] += s
    return cost


@njit(**JIT)
def softmax_xent_rows_biased(z, b2, y, gb2):
    # The same, row by row, for wide outputs: z (n, Dy) = h W2 becomes d1, y (n, Dy).
    cost = 0.0
    for r in range(z.shape[0]):
        zr = z[r]
        for k in range(zr.shape[0]):
            zr[k] += b2[k]
        cost += softmax_xent_row(zr, y[r])
        for k in range(zr.shape[0]):
            gb2[k] += zr[k]
    return cost


@njit(**JIT)
def sigmoid_backward(D, Hh, gb1):
    # D (n, H) = d2 -> d3 = d2 * h * (1 - h) in place, with Hh (n, H) = h; gb1 (H,) += sum_rows(d3)
    one = D.dtype.type(1.0)
    for r in range(D.shape[0]):
        d = D[r]
        h = Hh[r]
        for j in range(D.shape[1]):
            d[j] = d[j] * h[j] * (one - h[j])
            gb1[j] += d[j]


# The four stages of one tile: x (n, Dx) rows of data, y (n, Dy) rows of labels.


@njit(**JIT)
def hidden_forward(x, W1, bias_tile, h_flat):
    # x (n, Dx), W1 (Dx, H) -> h (n, H) = sigmoid(x W1 + b1), written to h_flat (n * H,)
    n, H = x.shape[0], W1.shape[1]
    gemm(x, False, W1, False, matrix(h_flat, n, H), 0.0)
    sigmoid_of_biased(h_flat, bias_tile)


@njit(**JIT)
def output_forward(h, W2, b2, labels, r0, yT, z_flat, rows_flat, gb2):
    # h (n, H), W2 (H, Dy), labels rows r0..r0+n -> returns the cost; leaves d1 in z_flat,
    # as zT (Dy, n) when Dy <= COLUMNS_MAX_DY (yT (Dy, n) then holds the packed labels),
    # else as z (n, Dy); gb2 (Dy,) += sum_rows(d1). rows_flat (4 n,) scratch.
    n, Dy = h.shape[0], W2.shape[1]
    if Dy <= COLUMNS_MAX_DY:
        zT = matrix(z_flat, Dy, n)
        gemm(W2, True, h, True, zT, 0.0)  # zT = W2^T h^T
        pack_tile(labels, r0, n, yT)
        return softmax_xent_columns_biased(zT, b2, yT, matrix(rows_flat, 4, n), gb2)
    z = matrix(z_flat, n, Dy)
    gemm(h, False, W2, False, z, 0.0)  # z = h W2
    return softmax_xent_rows_biased(z, b2, labels[r0 : r0 + n], gb2)


@njit(**JIT)
def output_backward(h, W2, z_flat, beta, gW2, d):
    # h (n, H), W2 (H, Dy), d1 in z_flat (as output_forward left it) ->
    # gW2 (H, Dy) = beta gW2 + h^T d1, d (n, H) = d2 = d1 W2^T
    n, Dy = h.shape[0], W2.shape[1]
    if Dy <= COLUMNS_MAX_DY:
        d1T = matrix(z_flat, Dy, n)
        gemm(h, True, d1T, True, gW2, beta)
        gemm(d1T, True, W2, True, d, 0.0)
    else:
        d1 = matrix(z_flat, n, Dy)
        gemm(h, True, d1, False, gW2, beta)
        gemm(d1, False, W2, True, d, 0.0)


@njit(**JIT)
def hidden_backward(x, h, d, beta, gW1, gb1):
    # x (n, Dx), h (n, H), d (n, H) = d2 -> d becomes d3 = d2 * h * (1 - h);
    # gb1 (H,) += sum_rows(d3), gW1 (Dx, H) = beta gW1 + x^T d3
    sigmoid_backward(d, h, gb1)
    gemm(x, True, d, False, gW1, beta)


@njit(**JIT)
def tiles_forward_backward(data, labels, params, Dx, H, Dy, r0, r1, R, scratch, grad):
    """Rows r0..r1 of data (N, Dx) and labels (N, Dy) in tiles of R rows; writes their
    gradient to grad (P,) and returns the cost. scratch holds scratch_size(Dx, H, Dy, R)."""
    W1, b1, W2, b2 = param_views(params, Dx, H, Dy)
    gW1, gb1, gW2, gb2 = param_views(grad, Dx, H, Dy)
    # The first tile's GEMMs overwrite the weight gradients (beta = 0): no separate
    # zeroing pass over them, which for wide layers costs as much as a small batch.
    gb1[:] = 0
    gb2[:] = 0
    if r1 <= r0:
        gW1[:] = 0
        gW2[:] = 0
    h_ws, d_ws = scratch[: R * H], scratch[R * H : 2 * R * H]
    o = 2 * R * H
    z_ws, yT_ws, rows_ws = scratch[o : o + R * Dy], scratch[o + R * Dy : o + 2 * R * Dy], scratch[o + 2 * R * Dy :]
    o += 2 * R * Dy + 4 * R
    bias_tile = scratch[o : o + bias_tile_rows(H) * H]
    fill_bias_tile(b1, bias_tile)
    cost = 0.0
    for t0 in range(r0, r1, R):
        n = min(R, r1 - t0)
        x = data[t0 : t0 + n]
        beta = 0.0 if t0 == r0 else 1.0
        h, d = matrix(h_ws[: n * H], n, H), matrix(d_ws[: n * H], n, H)
        hidden_forward(x, W1, bias_tile, h_ws[: n * H])
        cost += output_forward(
            h, W2, b2, labels, t0, matrix(yT_ws[: Dy * n], Dy, n), z_ws[: Dy * n], rows_ws[: 4 * n], gb2
        )
        output_backward(h, W2, z_ws[: Dy * n], beta, gW2, d)
        hidden_backward(x, h, d, beta, gW1, gb1)
    return cost


@njit(**ENTRY)
def wide_tiles(data, labels, params, Dx, H, Dy, r0, r1, R, scratch, grad):
    # rows r0..r1 through the tile loop into grad (P,), which its first tile overwrites;
    # returns their cost. An entry kernel of its own: the chunked runners (blocks.py) call
    # it through its address, with BLAS held at one thread.
    return tiles_forward_backward(data, labels, params, Dx, H, Dy, r0, r1, R, scratch, grad)


# Small batches split by columns instead: each thread takes whole column blocks of the
# weights (a fixed width, so results do not depend on the thread count), streams only
# its share of W1, W2 and their gradients, and no chunk needs an accumulator. Four
# parallel stages per tile, each waiting for the one before; in each, a thread takes the
# next task as it finishes its last (next_task).


@register_jitable
def columns_scratch_size(H, Dy, R):
    """Elements of scratch of the column-split kernel: h and d (R, H), z (R, Dy)."""
    return R * (2 * H + Dy)


@njit(**JIT)
def _column_range(block, width, total):
    return block * width, min(total, (block + 1) * width)


@njit(**JIT)
def hidden_forward_columns(jb, JB, x, W1, b1, h):
    # hidden units j0..j1 of h (n, H) = sigmoid(x W1 + b1), x (n, Dx)
    j0, j1 = _column_range(jb, JB, h.shape[1])
    gemm(x, False, W1[:, j0:j1], False, h[:, j0:j1], 0.0)
    one = h.dtype.type(1.0)
    for r in range(h.shape[0]):
        hr = h[r]
        for j in range(j0, j1):
            hr[j] = one / (one + vexp(-(hr[j] + b1[j])))


@njit(**JIT)
def output_forward_columns(kb, KB, h, W2, b2, z):
    # outputs k0..k1 of z (n, Dy) = h W2 + b2, h (n, H)
    k0, k1 = _column_range(kb, KB, z.shape[1])
    gemm(h, False, W2[:, k0:k1], False, z[:, k0:k1], 0.0)
    for r in range(z.shape[0]):
        zr = z[r]
        for k in range(k0, k1):
            zr[k] += b2[k]


@njit(**JIT)
def output_forward_softmax(rb, RB, z, labels, r0, row_costs):
    # rows rb * RB .. of z (n, Dy) become d1 = yhat * rowsum(y) - y, with labels rows
    # r0 + those; row_costs (n,) gets each row's cost
    a, b = _column_range(rb, RB, z.shape[0])
    for r in range(a, b):
        row_costs[r] = softmax_xent_row(z[r], labels[r0 + r])


@njit(**JIT)
def output_backward_columns(kb, KB, h, d1, beta, gW2, gb2):
    # outputs k0..k1: gW2[:, k] = beta gW2[:, k] + h^T d1[:, k], gb2[k] += sum_rows(d1[:, k])
    k0, k1 = _column_range(kb, KB, d1.shape[1])
    gemm(h, True, d1[:, k0:k1], False, gW2[:, k0:k1], beta)
    for r in range(d1.shape[0]):
        dr = d1[r]
        for k in range(k0, k1):
            gb2[k] += dr[k]


@njit(**JIT)
def hidden_backward_columns(jb, JB, x, h, d1, W2, d, beta, gW1, gb1):
    # hidden units j0..j1: d = d2 = d1 W2^T, made d3 = d2 * h * (1 - h) in place;
    # gb1[j] += sum_rows(d3[:, j]), gW1[:, j] = beta gW1[:, j] + x^T d3[:, j]
    j0, j1 = _column_range(jb, JB, h.shape[1])
    gemm(d1, False, W2[j0:j1], True, d[:, j0:j1], 0.0)
    one = h.dtype.type(1.0)
    for r in range(h.shape[0]):
        hr, dr = h[r], d[r]
        for j in range(j0, j1):
            dr[j] = dr[j] * hr[j] * (one - hr[j])
            gb1[j] += dr[j]
    gemm(x, True, d[:, j0:j1], False, gW1[:, j0:j1], beta)


@njit(**JIT)
def _backward_task(i, nK, nJ):
    # Task i of the last stage: (hidden block, False) for the first nJ, then (output
    # block, True). Largest first: a hidden block is two GEMMs, an output block one, and
    # threads take tasks as they finish (next_task), so the short ones even out the end.
    if i < nJ:
        return i, False
    return i - nJ, True


@njit(**JIT)
def _zero_biases(data, grad, Dx, H, Dy):
    # the bias gradients are summed into; the weight gradients are overwritten by the
    # first tile, if there is one
    gW1, gb1, gW2, gb2 = param_views(grad, Dx, H, Dy)
    gb1[:] = 0
    gb2[:] = 0
    if data.shape[0] == 0:
        gW1[:] = 0
        gW2[:] = 0


@njit(**JIT)
def _tile_cost(row_costs, grad):
    # the tile's cost in grad's float type, added to the call's float64 sum once per tile
    s = grad.dtype.type(0.0)
    for r in range(row_costs.shape[0]):
        s += grad.dtype.type(row_costs[r])
    return s


@njit(**JIT)
def _tile_views(ws, n, H, Dy):
    return (
        matrix(ws[: n * H], n, H),
        matrix(ws[n * H : 2 * n * H], n, H),
        matrix(ws[2 * n * H : n * (2 * H + Dy)], n, Dy),
    )


# Rows of one softmax task (stage 2).
SOFTMAX_TASK_ROWS = 16


@njit(**JIT)
def stage_tasks(stage, n, H, Dy, JB, KB):
    # tasks of a stage for a tile of n rows: 0 hidden blocks forward, 1 output blocks
    # forward, 2 softmax rows, 3 every block backward
    nJ, nK = -(-H // JB), -(-Dy // KB)
    return (nJ, nK, -(-n // SOFTMAX_TASK_ROWS), nK + nJ)[stage]


@njit(**JIT)
def columns_stage(
    stage, counters, at, x, labels, t0, W1, b1, W2, b2, h, d, z, row_costs, beta, gW1, gb1, gW2, gb2, JB, KB
):
    # The tasks of one stage of a tile, taken from counters[at] until none is left, each
    # counted done in counters[at + COUNTER_STRIDE].
    nJ, nK = -(-h.shape[1] // JB), -(-z.shape[1] // KB)
    tasks = stage_tasks(stage, h.shape[0], h.shape[1], z.shape[1], JB, KB)
    i = next_task(counters, at)
    while i < tasks:
        if stage == 0:
            hidden_forward_columns(i, JB, x, W1, b1, h)
        elif stage == 1:
            output_forward_columns(i, KB, h, W2, b2, z)
        elif stage == 2:
            output_forward_softmax(i, SOFTMAX_TASK_ROWS, z, labels, t0, row_costs)
        else:
            b, is_output = _backward_task(i, nK, nJ)
            if is_output:
                output_backward_columns(b, KB, h, z, beta, gW2, gb2)
            else:
                hidden_backward_columns(b, JB, x, h, z, W2, d, beta, gW1, gb1)
        fetch_add(counters, at + COUNTER_STRIDE, 1)
        i = next_task(counters, at)
    wait_until(counters, at + COUNTER_STRIDE, tasks)  # each stage needs all of the one before


def columns_signature(dt):
    """The arguments of wide_columns before the pool's: data, labels, params, Dx, H, Dy,
    tile rows, hidden and output block widths, ws, grad."""
    ro2, ro1, rw1 = array_types(dt)
    return (ro2, ro2, ro1, *(types.intp,) * 6, rw1, rw1)


# counters: two per stage of each tile (tasks taken, done), then row_costs (N,)
_unstash_columns = unstash_as(
    lambda zero: types.Tuple(
        (*columns_signature(zero), types.Array(types.int64, 1, "C"), types.Array(types.float64, 1, "C"))
    )
)


@njit(**ENTRY)
def columns_job(tid, address, zero):
    """Thread tid's share of a wide_columns call: the tiles one after another; within a
    tile, four stages, each over the threads: hidden units in blocks of JB, outputs in
    blocks of KB, rows of the softmax in blocks of SOFTMAX_TASK_ROWS, then every block
    backward."""
    data, labels, params, Dx, H, Dy, R, JB, KB, ws, grad, counters, row_costs = _unstash_columns(address, zero)
    W1, b1, W2, b2 = param_views(params, Dx, H, Dy)
    gW1, gb1, gW2, gb2 = param_views(grad, Dx, H, Dy)
    for t0 in range(0, data.shape[0], R):
        n = min(R, data.shape[0] - t0)
        x = data[t0 : t0 + n]
        beta = 0.0 if t0 == 0 else 1.0
        h, d, z = _tile_views(ws, n, H, Dy)
        for stage in range(4):
            at = (t0 // R * 4 + stage) * 2 * COUNTER_STRIDE
            columns_stage(
                stage,
                counters,
                at,
                x,
                labels,
                t0,
                W1,
                b1,
                W2,
                b2,
                h,
                d,
                z,
                row_costs[t0 : t0 + n],
                beta,
                gW1,
                gb1,
                gW2,
                gb2,
                JB,
                KB,
            )


@njit(**ENTRY)
def wide_columns(data, labels, params, Dx, H, Dy, R, JB, KB, ws, grad, pool, helpers, job, threads):
    """data (N, Dx), labels (N, Dy), params (P,) -> grad (P,); returns the cost.

    The job columns_job at address ``job``, over the pool's helpers below tid ``threads``
    if ``helpers``. ws holds columns_scratch_size(H, Dy, R). The caller holds BLAS at one
    thread.
    """
    _zero_biases(data, grad, Dx, H, Dy)
    tiles = -(-data.shape[0] // R)
    counters = np.zeros(tiles * 4 * 2 * COUNTER_STRIDE, np.int64)
    row_costs = np.empty(data.shape[0])
    args = (data, labels, params, Dx, H, Dy, R, JB, KB, ws, grad, counters, row_costs)
    run_job(pool, helpers, job, stash(args), zero_of(grad), threads)
    cost = 0.0
    for t0 in range(0, data.shape[0], R):
        cost += _tile_cost(row_costs[t0 : min(t0 + R, data.shape[0])], grad)
    return cost
