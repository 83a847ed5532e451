"""Running a chunked path: its blocks one after another or over Numba's threads, each
block's chunks through the path's tile loop, then the chunks' accumulators added in
chunk order (tile, chunk and block: kernels/common.py).

A path's tile loop is an entry kernel of its own (narrow.narrow_tiles, wide.wide_tiles),
compiled and cached once; the runners here, one pair for every chunked path, call it
through its address. So the serial and the parallel runner execute the very same
machine code (bitwise the same results), and a runner compiles in a second or two: when
each path's parallel kernel inlined its tile loop, the narrow one took 13 s to compile
alone, and each path compiled its loop again for its serial kernel and its small batches.
"""

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .common import (
    ENTRY,
    JIT,
    block_scratch,
    chunk_accumulator,
    chunk_rows,
    next_task,
    reduce_chunks,
    reduce_slice,
    sum_costs,
)


def tiles_signature(dt):
    """The signature of every tile loop: cost = tiles(data, labels, params, Dx, H, Dy, r0,
    r1, tile rows, scratch, grad), arrays of float type ``dt``."""
    ro2 = types.Array(dt, 2, "C", readonly=True)
    ro1 = types.Array(dt, 1, "C", readonly=True)
    rw1 = types.Array(dt, 1, "C")
    return types.float64(ro2, ro2, ro1, *(types.intp,) * 6, rw1, rw1)


@intrinsic
def tiles_at(typingctx, address, grad):
    """The tile loop whose compiled code is at ``address``, as a function to call (its
    float type is grad's). Unchecked: the address must be such a kernel's."""
    if not (isinstance(address, types.Integer) and isinstance(grad, types.Array)):
        return None
    fnty = types.FunctionType(tiles_signature(grad.dtype))

    def codegen(context, builder, sig, args):
        fn = cgutils.create_struct_proxy(fnty)(context, builder)
        fn.c_addr = fn.py_addr = cgutils.get_null_value(cgutils.voidptr_t)
        fn.jit_addr = builder.inttoptr(args[0], cgutils.voidptr_t)  # called with Numba's convention
        return fn._getvalue()

    return fnty(address, grad), codegen


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
    ws,
    costs,
    grad,
    tiles,
    scratch_size,
    zero_accumulators,
    queue,
):
    # Block b: chunks taken from ``queue`` until none is left, in one scratch region of
    # scratch_size, each through the tile loop at address ``tiles`` into its own
    # accumulator (zeroed first unless the loop's first tile overwrites it), its cost
    # into costs[c].
    fn = tiles_at(tiles, grad)
    scratch = block_scratch(b, ws, costs.shape[0], grad.shape[0], scratch_size)
    c = next_task(queue, 0)
    while c < costs.shape[0]:
        r0, r1 = chunk_rows(c, rows_per_chunk, data.shape[0])
        acc = chunk_accumulator(c, ws, grad)
        if zero_accumulators:
            acc[:] = 0
        costs[c] = fn(data, labels, params, Dx, H, Dy, r0, r1, T, scratch, acc)
        c = next_task(queue, 0)


# Gradients from this many elements are added up in slices over the threads: (784, 128, 10)
# N = 64 spent 30 of 290 us in a serial reduction; a second parallel launch costs 2-5 us.
PARALLEL_REDUCTION_MIN_P = 1 << 14


@njit(**ENTRY)
def blocks_serial(
    data, labels, params, Dx, H, Dy, T, rows_per_chunk, blocks, ws, costs, grad, tiles, scratch_size, zero_accumulators
):
    """data (N, Dx), labels (N, Dy), params (P,) -> grad (P,); returns the cost.

    The len(costs) chunks of rows_per_chunk rows, in tiles of T rows, through the tile
    loop at address ``tiles``; ws holds the chunks' accumulators, then one scratch region
    of scratch_size per block (kernels/common.py), of which one thread uses the first.
    """
    queue = np.zeros(1, np.int64)
    run_block(
        0,
        data,
        labels,
        params,
        Dx,
        H,
        Dy,
        T,
        rows_per_chunk,
        ws,
        costs,
        grad,
        tiles,
        scratch_size,
        zero_accumulators,
        queue,
    )
    return reduce_chunks(ws, costs, grad)


@njit(parallel={"fusion": False}, **ENTRY)  # the reduction needs every block done
def blocks_parallel(
    data, labels, params, Dx, H, Dy, T, rows_per_chunk, blocks, ws, costs, grad, tiles, scratch_size, zero_accumulators
):
    """blocks_serial with one block per Numba thread, and a big gradient's reduction in
    slices over them: each element is still summed in chunk order, so the result is
    bitwise the same."""
    queue = np.zeros(1, np.int64)
    for b in prange(blocks):
        run_block(
            np.int64(b),
            data,
            labels,
            params,
            Dx,
            H,
            Dy,
            T,
            rows_per_chunk,
            ws,
            costs,
            grad,
            tiles,
            scratch_size,
            zero_accumulators,
            queue,
        )
    if grad.shape[0] < PARALLEL_REDUCTION_MIN_P:
        return reduce_chunks(ws, costs, grad)
    for s in prange(blocks):
        reduce_slice(s, blocks, ws, costs.shape[0], grad)
    return sum_costs(costs)
