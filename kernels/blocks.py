"""Running a chunked path: its blocks on the calling thread and the pool's helpers
(kernels/pool.py), each block's chunks through the path's tile loop, then the chunks'
accumulators added in chunk order (tile, chunk and block: kernels/common.py).

A path's tile loop is an entry kernel of its own (narrow.narrow_tiles, wide.wide_tiles),
compiled and cached once; the runner here, one for every chunked path, calls it through
its address. So one thread or several execute the very same machine code (bitwise the
same results), and the runner compiles in about a second: when each path's parallel
kernel inlined its tile loop, the narrow one took 13 s to compile alone.
"""

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from .common import (
    ENTRY,
    JIT,
    array_types,
    block_scratch,
    chunk_accumulator,
    chunk_rows,
    function_at,
    reduce_slice,
    sum_costs,
)
from .pool import COUNTER_STRIDE, fetch_add, next_task, run_job, stash, unstash_as, wait_until, zero_of


def tiles_signature(dt):
    """The signature of every tile loop: cost = tiles(data, labels, params, Dx, H, Dy, r0,
    r1, tile rows, scratch, grad), arrays of float type ``dt``."""
    ro2, ro1, rw1 = array_types(dt)
    return types.float64(ro2, ro2, ro1, *(types.intp,) * 6, rw1, rw1)


@intrinsic
def tiles_at(typingctx, address, grad):
    """The tile loop whose compiled code is at ``address``, as a function to call (its
    float type is grad's). Unchecked: the address must be such a kernel's."""
    if not (isinstance(address, types.Integer) and isinstance(grad, types.Array)):
        return None
    fnty = types.FunctionType(tiles_signature(grad.dtype))

    def codegen(context, builder, sig, args):
        return function_at(context, builder, fnty, args[0])

    return fnty(address, grad), codegen


def runner_signature(dt):
    """The arguments of run_chunks before the pool's: data, labels, params, Dx, H, Dy, tile
    rows, rows per chunk, blocks, ws, costs, grad, the address of the path's tile loop,
    its scratch per block, and whether to zero the accumulators first."""
    ro2, ro1, rw1 = array_types(dt)
    return (
        ro2,
        ro2,
        ro1,
        *(types.intp,) * 6,
        rw1,
        types.Array(types.float64, 1, "C"),
        rw1,
        types.int64,
        types.intp,
        types.boolean,
    )


def pool_signature():
    """The pool's arguments of every parallel entry kernel: the pool's slots, whether its
    helpers may join, the address of the job, the threads that may take part."""
    return (types.Array(types.int64, 1, "C"), types.boolean, types.int64, types.intp)


COUNTERS = types.Array(types.int64, 1, "C")
# A job's counters (each on a cache line of its own): chunks taken, chunks done, slices of
# the reduction taken.
CHUNKS_TAKEN, CHUNKS_DONE, SLICES_TAKEN = 0, COUNTER_STRIDE, 2 * COUNTER_STRIDE

_unstash_chunks = unstash_as(lambda zero: types.Tuple((*runner_signature(zero), COUNTERS)))


@njit(**JIT)
def run_block(
    b,
    data,
    labels,
    params,
    Dx,
    H,
    Dy,
    T,
    rows_per_chunk,
    blocks,
    ws,
    costs,
    grad,
    tiles,
    scratch_size,
    zero_accumulators,
    counters,
):
    # Block b (of ``blocks``): chunks taken until none is left, in one scratch region of
    # scratch_size, each through the tile loop at address ``tiles`` into its own
    # accumulator (zeroed first unless the loop's first tile overwrites it), its cost
    # into costs[c].
    fn = tiles_at(tiles, grad)
    scratch = block_scratch(b, ws, costs.shape[0], grad.shape[0], scratch_size)
    c = next_task(counters, CHUNKS_TAKEN)
    while c < costs.shape[0]:
        r0, r1 = chunk_rows(c, rows_per_chunk, data.shape[0])
        acc = chunk_accumulator(c, ws, grad)
        if zero_accumulators:
            acc[:] = 0
        costs[c] = fn(data, labels, params, Dx, H, Dy, r0, r1, T, scratch, acc)
        fetch_add(counters, CHUNKS_DONE, 1)
        c = next_task(counters, CHUNKS_TAKEN)


# Gradients from this many elements are added up in slices over the threads: (784, 128, 10)
# N = 64 spent 30 of 290 us in a serial reduction.
PARALLEL_REDUCTION_MIN_P = 1 << 14


@njit(**ENTRY)
def chunks_job(tid, address, zero):
    """Thread tid's share of a run_chunks call: block tid (if there is one), then slices
    of the reduction once every chunk is done. Each element is summed in chunk order
    whichever thread takes its slice, so the result is bitwise the same."""
    args = _unstash_chunks(address, zero)  # run_chunks' arguments, then the counters
    blocks, ws, costs, grad, counters = args[8], args[9], args[10], args[11], args[15]
    if tid >= blocks:
        return
    run_block(tid, *args)
    wait_until(counters, CHUNKS_DONE, costs.shape[0])
    slices = blocks if grad.shape[0] >= PARALLEL_REDUCTION_MIN_P else 1
    s = next_task(counters, SLICES_TAKEN)
    while s < slices:
        reduce_slice(s, slices, ws, costs.shape[0], grad)
        s = next_task(counters, SLICES_TAKEN)


@njit(**ENTRY)
def run_chunks(
    data,
    labels,
    params,
    Dx,
    H,
    Dy,
    T,
    rows_per_chunk,
    blocks,
    ws,
    costs,
    grad,
    tiles,
    scratch_size,
    zero_accumulators,
    pool,
    helpers,
    job,
    threads,
):
    """data (N, Dx), labels (N, Dy), params (P,) -> grad (P,); returns the cost.

    The len(costs) chunks of rows_per_chunk rows, in tiles of T rows, through the tile
    loop at address ``tiles``, taken by up to ``blocks`` threads (the job chunks_job at
    address ``job``, over the pool's helpers if ``helpers``); ws holds the chunks'
    accumulators, then one scratch region of scratch_size per block (kernels/common.py).
    """
    counters = np.zeros(3 * COUNTER_STRIDE, np.int64)
    args = (
        data,
        labels,
        params,
        Dx,
        H,
        Dy,
        T,
        rows_per_chunk,
        blocks,
        ws,
        costs,
        grad,
        tiles,
        scratch_size,
        zero_accumulators,
        counters,
    )
    run_job(pool, helpers, job, stash(args), zero_of(grad), threads)
    return sum_costs(costs)
