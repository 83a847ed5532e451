"""Tiny batches: one row at a time, no packing.

Below a few hundred rows a parallel launch (2-6 us) and tile packing cost more than
the arithmetic; here the time goes to the call itself and H + Dy exps per row. Where
W1 is beyond the cache, the call is the weights' trip through memory (32 MB for one row
of (1024, 1024, 1024) float64), so rows_split shares it out over the pool's threads in
blocks of rows of W1 and W2: each thread streams only its blocks of the weights and of
their gradients.
(Indexing the flat params by offsets instead of 2-D views saved 0.05 us at N = 1 but
made wide layers 3x slower: Numba cannot prove a computed index non-negative, so
every access pays a wraparound check, and the loops stop vectorizing.)
"""

import numpy as np
from numba import njit, types
from numba.extending import register_jitable

from .common import ENTRY, INLINE, JIT, array_types, copy_into, hidden_units, matrix, param_views, softmax_xent_row
from .mathfn import vexp
from .pool import COUNTER_STRIDE, fetch_add, next_task, run_job, stash, unstash_as, wait_until, zero_of


@njit(**JIT)
def row_forward_backward(x, y, W1, b1, W2, b2, h, z, d, gW1, gb1, gW2, gb2, first):
    # x (Dx,), y (Dy,) one example; h, d (H,) and z (Dy,) scratch. Returns the row's cost.
    # The grads (shaped as params) are set by the first row and added to by the others:
    # no zeroing pass, and the first row writes gW1 and gW2 without reading them, which
    # for weights outside the cache is most of a one-row call's memory traffic.
    one = h.dtype.type(1.0)
    H, Dy = W2.shape
    # hidden_forward: h = sigmoid(x W1 + b1)
    copy_into(h, b1)
    for i in range(x.shape[0]):
        xi = x[i]
        for j in range(H):
            h[j] += xi * W1[i, j]
    for j in range(H):
        h[j] = one / (one + vexp(-h[j]))
    # output_forward: z = h W2 + b2, then z becomes d1 = yhat * rowsum(y) - y
    copy_into(z, b2)
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


@njit(**INLINE)
def add_or_set(g, v, first):
    # g (n,) = v on the first row, g += v after
    if first:
        copy_into(g, v)
    else:
        for k in range(g.shape[0]):
            g[k] += v[k]


@njit(**INLINE)
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


# rows_split: rows of W1 (inputs) and of W2 (hidden units) per task: each task streams
# a contiguous block of a weight matrix, or of its gradient. Rows per group bound the
# scratch. Five stages per group (_split_stage).
SPLIT_BLOCK = 64
SPLIT_ROWS = 16
STAGES = 5


@register_jitable
def split_scratch_size(n, Dx, H, Dy):
    """Elements of scratch of rows_split for n rows, G = min(n, SPLIT_ROWS): each input
    block's share of h (Dx blocks * G, H), h and d (G, H), each hidden block's share of
    z (H blocks * G, Dy), z (G, Dy)."""
    G = min(n, SPLIT_ROWS)
    return G * ((-(-Dx // SPLIT_BLOCK) + 2) * H + (-(-H // SPLIT_BLOCK) + 1) * Dy)


@njit(**JIT)
def _block(b, total):
    return b * SPLIT_BLOCK, min(total, (b + 1) * SPLIT_BLOCK)


@njit(**JIT)
def hidden_forward_part(ib, x, W1, hpart):
    # inputs i0..i1's share of the hidden layer: hpart (G, H) = x[:, i0:i1] W1[i0:i1]
    i0, i1 = _block(ib, x.shape[1])
    hpart[:] = 0
    for i in range(i0, i1):
        w = W1[i]
        for r in range(x.shape[0]):
            xi, hr = x[r, i], hpart[r]
            for j in range(hr.shape[0]):
                hr[j] += xi * w[j]


@njit(**JIT)
def hidden_forward_block(jb, hparts, b1, W2, h, zpart):
    # hidden units j0..j1: h (G, H) = sigmoid(b1 + the input blocks' shares in block
    # order); and their share of the logits, zpart (G, Dy) = h[:, j0:j1] W2[j0:j1]
    j0, j1 = _block(jb, h.shape[1])
    G = h.shape[0]
    one = h.dtype.type(1.0)
    for r in range(G):
        hr, zr = h[r], zpart[r]
        copy_into(hr[j0:j1], b1[j0:j1])
        for ib in range(hparts.shape[0] // G):
            part = hparts[ib * G + r]
            for j in range(j0, j1):
                hr[j] += part[j]
        for j in range(j0, j1):
            hr[j] = one / (one + vexp(-hr[j]))
        zr[:] = 0
        for j in range(j0, j1):
            hj, w = hr[j], W2[j]
            for k in range(zr.shape[0]):
                zr[k] += hj * w[k]


@njit(**JIT)
def output_forward_row(r, zparts, b2, y, z):
    # row r of z (G, Dy) = b2 + the hidden blocks' shares (zparts (blocks * G, Dy)) in
    # block order, then d1; returns the row's cost
    zr, G = z[r], z.shape[0]
    copy_into(zr, b2)
    for jb in range(zparts.shape[0] // G):
        part = zparts[jb * G + r]
        for k in range(zr.shape[0]):
            zr[k] += part[k]
    return softmax_xent_row(zr, y)


@njit(**JIT)
def hidden_backward_block(jb, h, z, W2, d, gb1, gW2, first):
    # z (G, Dy) holds d1. Hidden units j0..j1: gW2[j] (+)= sum_r h[r, j] d1[r];
    # d (G, H) = d3 = (d1 W2^T) * h * (1 - h); gb1[j] (+)= sum_r d3[r, j]. Set by the
    # first group of rows, added to after.
    j0, j1 = _block(jb, h.shape[1])
    one = h.dtype.type(1.0)
    for j in range(j0, j1):
        w = W2[j]
        s = gb1.dtype.type(0.0) if first else gb1[j]
        for r in range(h.shape[0]):
            hj, zr = h[r, j], z[r]
            add_scaled_or_set(gW2[j], hj, zr, first and r == 0)
            d2 = zr.dtype.type(0.0)
            for k in range(zr.shape[0]):
                d2 += w[k] * zr[k]
            d[r, j] = d2 * hj * (one - hj)
            s += d[r, j]
        gb1[j] = s


@njit(**JIT)
def input_backward_block(ib, x, d, gW1, first):
    # inputs i0..i1: gW1[i0:i1] (+)= x[:, i0:i1]^T d3
    i0, i1 = _block(ib, x.shape[1])
    for i in range(i0, i1):
        for r in range(x.shape[0]):
            add_scaled_or_set(gW1[i], x[r, i], d[r], first and r == 0)


@njit(**JIT)
def _split_stage(stage, counters, at, x, y, W1, b1, W2, b2, ws, costs, gW1, gb1, gW2, gb2, first):
    # The tasks of one stage of a group of rows, taken from counters[at] until none is
    # left, each counted done in counters[at + COUNTER_STRIDE]: 0 input blocks forward,
    # 1 hidden blocks forward, 2 rows of the softmax, 3 hidden blocks backward and, last,
    # gb2, 4 input blocks backward.
    G, Dx, H, Dy = x.shape[0], x.shape[1], W2.shape[0], W2.shape[1]
    hparts, h, d, zparts, z = _split_views(ws, G, Dx, H, Dy)
    nI, nJ = -(-Dx // SPLIT_BLOCK), -(-H // SPLIT_BLOCK)
    tasks = (nI, nJ, G, nJ + 1, nI)[stage]
    i = next_task(counters, at)
    while i < tasks:
        if stage == 0:
            hidden_forward_part(i, x, W1, hparts[i * G : (i + 1) * G])
        elif stage == 1:
            hidden_forward_block(i, hparts, b1, W2, h, zparts[i * G : (i + 1) * G])
        elif stage == 2:
            costs[i] = output_forward_row(i, zparts, b2, y[i], z)
        elif stage == 3 and i < nJ:
            hidden_backward_block(i, h, z, W2, d, gb1, gW2, first)
        elif stage == 3:
            for r in range(G):
                add_or_set(gb2, z[r], first and r == 0)
        else:
            input_backward_block(i, x, d, gW1, first)
        fetch_add(counters, at + COUNTER_STRIDE, 1)
        i = next_task(counters, at)
    wait_until(counters, at + COUNTER_STRIDE, tasks)  # each stage needs all of the one before


@njit(**JIT)
def _split_views(ws, G, Dx, H, Dy):
    # hparts (Dx blocks * G, H), h, d (G, H), zparts (H blocks * G, Dy), z (G, Dy)
    nI, nJ = -(-Dx // SPLIT_BLOCK), -(-H // SPLIT_BLOCK)
    h_at = nI * G * H
    d_at = h_at + G * H
    zparts_at = d_at + G * H
    z_at = zparts_at + nJ * G * Dy
    return (
        matrix(ws[:h_at], nI * G, H),
        matrix(ws[h_at:d_at], G, H),
        matrix(ws[d_at:zparts_at], G, H),
        matrix(ws[zparts_at:z_at], nJ * G, Dy),
        matrix(ws[z_at : z_at + G * Dy], G, Dy),
    )


def split_signature(dt):
    """The arguments of rows_split before the pool's: data, labels, params, ws, grad."""
    ro2, ro1, rw1 = array_types(dt)
    return (ro2, ro2, ro1, rw1, rw1)


# then: counters (five stages of two per group), row costs (N,)
_unstash_split = unstash_as(
    lambda zero: types.Tuple(
        (*split_signature(zero), types.Array(types.int64, 1, "C"), types.Array(types.float64, 1, "C"))
    )
)


@njit(**ENTRY)
def rows_split_job(tid, address, zero):
    """Thread tid's share of a rows_split call: groups of SPLIT_ROWS rows one after
    another; within a group, five stages over the threads."""
    data, labels, params, ws, grad, counters, costs = _unstash_split(address, zero)
    Dx, Dy = data.shape[1], labels.shape[1]
    H = hidden_units(Dx, Dy, params.shape[0])
    W1, b1, W2, b2 = param_views(params, Dx, H, Dy)
    gW1, gb1, gW2, gb2 = param_views(grad, Dx, H, Dy)
    G = min(data.shape[0], SPLIT_ROWS)
    for g0 in range(0, data.shape[0], G):
        n = min(G, data.shape[0] - g0)
        x, y = data[g0 : g0 + n], labels[g0 : g0 + n]
        for stage in range(STAGES):
            at = (g0 // G * STAGES + stage) * 2 * COUNTER_STRIDE
            _split_stage(stage, counters, at, x, y, W1, b1, W2, b2, ws, costs[g0 : g0 + n], gW1, gb1, gW2, gb2, g0 == 0)


@njit(**ENTRY)
def rows_split(data, labels, params, ws, grad, pool, helpers, job, threads):
    """data (N, Dx), labels (N, Dy), params (P,) -> grad (P,); returns the cost. Row by
    row as rows_forward_backward, with each stage shared out in blocks of SPLIT_BLOCK rows
    of W1 or W2 over the pool's helpers below tid ``threads`` (if ``helpers``): the job
    rows_split_job at address ``job``. The blocks' shares of h and of the logits are
    summed in block order, so the result does not depend on the thread count. ws holds
    split_scratch_size(N, Dx, H, Dy)."""
    if data.shape[0] == 0:
        grad[:] = 0
        return 0.0
    groups = -(-data.shape[0] // SPLIT_ROWS)
    counters = np.zeros(groups * STAGES * 2 * COUNTER_STRIDE, np.int64)
    costs = np.empty(data.shape[0])
    args = (data, labels, params, ws, grad, counters, costs)
    run_job(pool, helpers, job, stash(args), zero_of(grad), threads)
    cost = 0.0
    for r in range(data.shape[0]):
        cost += costs[r]
    return cost
