"""Narrow layers: a tile of T rows at a time, stored transposed (features x T) so that
every innermost loop runs over the T rows and vectorizes, however small H and Dy are.

Where the time goes: exp (H + Dy per row, see mathfn.py) and the four small products;
all of it stays in L1/L2 because a tile is a few tens of KiB. The batch is cut into a
fixed number of chunks of whole tiles, each with its own gradient accumulator, summed in
chunk order: the result does not depend on the thread count.
"""

import numpy as np
from numba import njit
from numba.extending import register_jitable

from .blocks import tiles_at
from .common import (
    ENTRY,
    INLINE,
    JIT,
    hidden_units,
    matrix,
    pack_tile,
    param_views,
    prefetch_rows,
    softmax_xent_columns,
)
from .mathfn import vexp


@register_jitable  # a plain function in Python, callable from jitted code too
def scratch_size(Dx, H, Dy, T):
    """Elements of tile scratch: xT, yT, zT, hT, dT and four row vectors."""
    return (Dx + 2 * Dy + 2 * H + 4) * T


# Bytes of tile workspace up to which a tile may still double (tile_rows).
TILE_BYTES = 80 << 10


def tile_rows(Dx, H, Dy, itemsize):
    """Rows per tile of the narrow path: the largest power of two from 32 to 256 whose
    workspace (scratch_size, at the real itemsize) stays within TILE_BYTES: the best size
    measured for each of five shapes in both float types (CHANGELOG, 2026-11-29)."""
    per_row = scratch_size(Dx, H, Dy, 1) * itemsize
    t = 32
    while t < 256 and 2 * t * per_row <= TILE_BYTES:
        t *= 2
    return t


# A batch too small for the chunked kernels is one tile while its workspace stays within
# ONE_TILE_BYTES, else the fewest equal tiles that do: a tile costs a few hundred short
# loops whatever its rows, so it may grow past TILE_BYTES, but not far ((10, 5, 10)
# N = 511: one tile 23.6 us, two 18.5).
ONE_TILE_BYTES = 120 << 10


@register_jitable
def small_batch_tile_rows(n, Dx, H, Dy, itemsize):
    """Rows per tile for a batch of n rows run as a few tiles (a multiple of 8, >= 8)."""
    rows = max(8, (n + 7) // 8 * 8)
    tiles = -(-(rows * scratch_size(Dx, H, Dy, 1) * itemsize) // ONE_TILE_BYTES)
    return max(8, (-(-n // tiles) + 7) // 8 * 8)


# The per-tile stages are inlined into their caller by Numba itself: as separate functions
# LLVM kept them as calls passing each array as a 7-word struct on the stack (27% slower
# at N = 8, 5% at 4096; docs/design.md, "Compilation").
TILE_STAGE = INLINE


# x W1, h W2 and x^T d3 go four weights per pass over the tile, output_backward two
# outputs, x^T d3 two inputs: fewer passes, and fewer loads and stores of what they
# accumulate (CHANGELOG, 2026-11-28 and -29).


@njit(**TILE_STAGE)
def affine_forward(srcT, W, b, col, out):
    # srcT (K, T), W (K, M), b (M,) -> out (T,) = W[:, col]^T srcT + b[col]: one output
    # feature for the T rows of a tile
    K, T = srcT.shape
    K4 = K - K % 4
    bias = b[col]
    if K4 == 0:
        for t in range(T):
            out[t] = bias
    for i in range(0, K4, 4):
        w0, w1, w2, w3 = W[i, col], W[i + 1, col], W[i + 2, col], W[i + 3, col]
        s0, s1, s2, s3 = srcT[i], srcT[i + 1], srcT[i + 2], srcT[i + 3]
        if i == 0:
            for t in range(T):
                out[t] = bias + (w0 * s0[t] + w1 * s1[t] + w2 * s2[t] + w3 * s3[t])
        else:
            for t in range(T):
                out[t] += w0 * s0[t] + w1 * s1[t] + w2 * s2[t] + w3 * s3[t]
    for i in range(K4, K):
        w = W[i, col]
        src = srcT[i]
        for t in range(T):
            out[t] += w * src[t]


@njit(**TILE_STAGE)
def hidden_forward(xT, W1, b1, hT):
    # xT (Dx, T), W1 (Dx, H), b1 (H,) -> hT (H, T) = sigmoid(W1^T xT + b1)
    one = hT.dtype.type(1.0)
    for j in range(hT.shape[0]):
        h = hT[j]
        affine_forward(xT, W1, b1, j, h)
        for t in range(h.shape[0]):
            h[t] = one / (one + vexp(-h[t]))


@njit(**TILE_STAGE)
def output_forward(hT, W2, b2, yT, zT, rows):
    # hT (H, T), W2 (H, Dy), b2 (Dy,), yT (Dy, T) -> returns the tile's cost and leaves
    # d1 = yhat * rowsum(y) - y in zT (Dy, T). rows (4, T) is scratch.
    for k in range(zT.shape[0]):
        affine_forward(hT, W2, b2, k, zT[k])
    return softmax_xent_columns(zT, yT, rows)


@njit(**TILE_STAGE)
def output_backward(hT, W2, d1T, gW2, gb2, d2T):
    # hT (H, T), W2 (H, Dy), d1T (Dy, T) -> gW2 (H, Dy) +=, gb2 (Dy,) +=, d2T (H, T) = W2 d1T.
    # Two outputs per pass over the tile (four lost on tiles of 16-20 rows).
    T = d1T.shape[1]
    Dy = d1T.shape[0]
    zero = d1T.dtype.type(0.0)
    for k in range(Dy):
        d1 = d1T[k]
        s = zero
        for t in range(T):
            s += d1[t]
        gb2[k] += s
    Dy2 = Dy - Dy % 2
    for j in range(hT.shape[0]):
        h = hT[j]
        d2 = d2T[j]
        d2[:] = 0
        for k in range(0, Dy2, 2):
            a0, a1 = d1T[k], d1T[k + 1]
            w0, w1 = W2[j, k], W2[j, k + 1]
            s0 = s1 = zero
            for t in range(T):
                s0 += h[t] * a0[t]
                s1 += h[t] * a1[t]
                d2[t] += w0 * a0[t] + w1 * a1[t]
            gW2[j, k] += s0
            gW2[j, k + 1] += s1
        for k in range(Dy2, Dy):
            d1 = d1T[k]
            s = zero
            w = W2[j, k]
            for t in range(T):
                s += h[t] * d1[t]
                d2[t] += w * d1[t]
            gW2[j, k] += s


@njit(**TILE_STAGE)
def input_gradient_one(x, d3T, gW1, i):
    # x (T,) = row i of xT, d3T (H, T) -> gW1[i] (H,) += d3T x: four hidden units per pass
    H, T = d3T.shape
    H4 = H - H % 4
    zero = x.dtype.type(0.0)
    for j in range(0, H4, 4):
        a0, a1, a2, a3 = d3T[j], d3T[j + 1], d3T[j + 2], d3T[j + 3]
        s0 = s1 = s2 = s3 = zero
        for t in range(T):
            xt = x[t]
            s0 += xt * a0[t]
            s1 += xt * a1[t]
            s2 += xt * a2[t]
            s3 += xt * a3[t]
        gW1[i, j] += s0
        gW1[i, j + 1] += s1
        gW1[i, j + 2] += s2
        gW1[i, j + 3] += s3
    for j in range(H4, H):
        d3 = d3T[j]
        s = zero
        for t in range(T):
            s += x[t] * d3[t]
        gW1[i, j] += s


@njit(**TILE_STAGE)
def input_gradient_two(x, u, d3T, gW1, i):
    # The same for rows i and i + 1 of xT (x and u) at once: each d3 row loaded feeds two
    # sums.
    H, T = d3T.shape
    H4 = H - H % 4
    zero = x.dtype.type(0.0)
    for j in range(0, H4, 4):
        a0, a1, a2, a3 = d3T[j], d3T[j + 1], d3T[j + 2], d3T[j + 3]
        s0 = s1 = s2 = s3 = zero
        q0 = q1 = q2 = q3 = zero
        for t in range(T):
            xt = x[t]
            ut = u[t]
            s0 += xt * a0[t]
            s1 += xt * a1[t]
            s2 += xt * a2[t]
            s3 += xt * a3[t]
            q0 += ut * a0[t]
            q1 += ut * a1[t]
            q2 += ut * a2[t]
            q3 += ut * a3[t]
        gW1[i, j] += s0
        gW1[i, j + 1] += s1
        gW1[i, j + 2] += s2
        gW1[i, j + 3] += s3
        gW1[i + 1, j] += q0
        gW1[i + 1, j + 1] += q1
        gW1[i + 1, j + 2] += q2
        gW1[i + 1, j + 3] += q3
    for j in range(H4, H):
        d3 = d3T[j]
        s = q = zero
        for t in range(T):
            s += x[t] * d3[t]
            q += u[t] * d3[t]
        gW1[i, j] += s
        gW1[i + 1, j] += q


@njit(**TILE_STAGE)
def hidden_backward(xT, hT, d2T, gW1, gb1):
    # xT (Dx, T), hT (H, T), d2T (H, T) -> d2T becomes d3 = d2 * h * (1 - h);
    # gW1 (Dx, H) += xT d3^T, gb1 (H,) += rowsum(d3)
    one = hT.dtype.type(1.0)
    zero = hT.dtype.type(0.0)
    H, T = hT.shape
    for j in range(H):
        h = hT[j]
        d3 = d2T[j]
        s = zero
        for t in range(T):
            d3[t] = d3[t] * h[t] * (one - h[t])
            s += d3[t]
        gb1[j] += s
    Dx = xT.shape[0]
    for i in range(0, Dx - 1, 2):
        input_gradient_two(xT[i], xT[i + 1], d2T, gW1, i)
    if Dx % 2:
        input_gradient_one(xT[Dx - 1], d2T, gW1, Dx - 1)


# A batch that does not stay in cache between calls reaches each tile from memory only
# when pack_tile asks for it: the hardware prefetcher idles while a tile computes. So past
# HINT_FROM_BYTES the next tile's rows are hinted into L2, a quarter before each stage
# (N = 65536: 0.85-0.99 of the time). Batches that stay in L3 lose 2-5%, and even skipped
# at run time the hints cost 3% in L2: the hinted tile loop has entry kernels of its own.
HINT_FROM_BYTES = 8 << 20


@njit(**TILE_STAGE)
def prefetch_quarter(data, labels, r0, r1, q):
    # Quarter q of rows r0..r1 of data and labels, hinted into L2 (locality 2; hints into
    # L1, or non-temporal, gained nothing). The whole tile at once, 320 hints in a row for
    # (10, 5, 10), gained nothing either.
    m = (r1 - r0 + 3) // 4
    a, b = min(r1, r0 + q * m), min(r1, r0 + (q + 1) * m)
    prefetch_rows(data, a, b)
    prefetch_rows(labels, a, b)


def _tiles_kernel(hint_next_tile):
    # the tile loop, built with or without cache hints (a constant, so its branches fold)
    @njit(**JIT)
    def tiles_forward_backward(data, labels, params, Dx, H, Dy, r0, r1, T, scratch, grad):
        """Rows r0..r1 of data (N, Dx) and labels (N, Dy), in tiles of T rows; accumulates
        into grad (P,) and returns the cost. scratch holds scratch_size(Dx, H, Dy, T)."""
        W1, b1, W2, b2 = param_views(params, Dx, H, Dy)
        gW1, gb1, gW2, gb2 = param_views(grad, Dx, H, Dy)
        o = 0
        xT = matrix(scratch[o : o + Dx * T], Dx, T)
        o += Dx * T
        yT = matrix(scratch[o : o + Dy * T], Dy, T)
        o += Dy * T
        zT = matrix(scratch[o : o + Dy * T], Dy, T)
        o += Dy * T
        hT = matrix(scratch[o : o + H * T], H, T)
        o += H * T
        dT = matrix(scratch[o : o + H * T], H, T)
        o += H * T
        rows = matrix(scratch[o : o + 4 * T], 4, T)
        cost = 0.0
        for t0 in range(r0, r1, T):
            n = min(T, r1 - t0)
            pack_tile(data, t0, n, xT)
            pack_tile(labels, t0, n, yT)
            a, b = t0 + n, min(data.shape[0], t0 + n + T)  # the next tile's rows
            if hint_next_tile:
                prefetch_quarter(data, labels, a, b, 0)
            hidden_forward(xT, W1, b1, hT)
            if hint_next_tile:
                prefetch_quarter(data, labels, a, b, 1)
            cost += output_forward(hT, W2, b2, yT, zT, rows)
            if hint_next_tile:
                prefetch_quarter(data, labels, a, b, 2)
            output_backward(hT, W2, zT, gW2, gb2, dT)
            if hint_next_tile:
                prefetch_quarter(data, labels, a, b, 3)
            hidden_backward(xT, hT, dT, gW1, gb1)
        return cost

    return tiles_forward_backward


tiles_forward_backward = _tiles_kernel(hint_next_tile=False)
tiles_forward_backward_hinted = _tiles_kernel(hint_next_tile=True)


# The tile loop's two builds are entry kernels of their own, compiled and cached once:
# the small-batch kernel below and the chunked runners (kernels/blocks.py) call them
# through their address, so that no other kernel compiles them again.


@njit(**ENTRY)
def narrow_tiles(data, labels, params, Dx, H, Dy, r0, r1, T, scratch, grad):
    # rows r0..r1 through the tile loop, accumulated into grad (P,); returns their cost
    return tiles_forward_backward(data, labels, params, Dx, H, Dy, r0, r1, T, scratch, grad)


@njit(**ENTRY)
def narrow_tiles_hinted(data, labels, params, Dx, H, Dy, r0, r1, T, scratch, grad):
    # the same with the next tile's rows hinted into cache, for batches beyond HINT_FROM_BYTES
    return tiles_forward_backward_hinted(data, labels, params, Dx, H, Dy, r0, r1, T, scratch, grad)


@njit(**ENTRY)
def tile_forward_backward(data, labels, params, grad, tiles):
    """A small batch as one tile of N rows rounded up to 8, or a few equal tiles when that
    one would be too big (small_batch_tile_rows); no threads. ``tiles`` is the address of
    narrow_tiles.

    data (N, Dx), labels (N, Dy), params (P,) -> grad (P,); returns the cost. The
    dimensions come from the shapes, as in single.rows_forward_backward.
    """
    Dx, Dy = data.shape[1], labels.shape[1]
    H = hidden_units(Dx, Dy, params.shape[0])
    grad[:] = 0
    T = small_batch_tile_rows(data.shape[0], Dx, H, Dy, data.itemsize)
    ws = np.empty(scratch_size(Dx, H, Dy, T), data.dtype)
    return tiles_at(tiles, grad)(data, labels, params, Dx, H, Dy, 0, data.shape[0], T, ws, grad)
