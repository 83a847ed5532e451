"""NumPy's threaded products on twolayer's pool: OpenBLAS (0.3.27 and later) hands the
parallel pieces of each product to a callback instead of its own worker threads, and
ours runs them on the pool's helpers, so that one pool of threads serves the user's
products and our calls. OpenBLAS's workers, after each product, spin for their timeout
on a core without yielding it, and our helper waiting there missed the call after the
user's evaluation (docs/design.md, "One pool").

The pieces of a product wait on one another (GEMM's threads share packed panels), so all
must run at once: a product goes to the pool only when it can have a helper for each
piece beyond the caller's and no one else holds the pool; otherwise it runs on
OpenBLAS's own workers, as without the callback. Each piece takes OpenBLAS's per-thread
status slot and buffer numbered from the top of its MAX_THREADS, which its own workers,
numbered from 0, then never use (a product that runs on them meanwhile, from another
thread, uses the low numbers).
"""

import ctypes

import llvmlite.binding as ll
import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .common import ENTRY, INLINE
from .pool import (
    ALIVE,
    CALLBACK,
    CALLBACK_AT,
    COUNTER_STRIDE,
    EXEC_BLAS,
    HELD,
    HELPER_ROOM,
    HELPER_STRIDE,
    MAX_PIECES,
    PIECES_JOB,
    POOL_SLOTS,
    STOP,
    WORKERS_AT,
    load,
    next_task,
    run_held,
    stash,
    take,
    unstash_as,
)

# The address of the current pool's memory (a new one after a fork), read by the
# callback: OpenBLAS passes it nothing of ours. A symbol, so that the callback is cached.
POOL_CELL = ctypes.c_int64(0)
POOL_CELL_SYMBOL = "twolayer_pool_cell"
ll.add_symbol(POOL_CELL_SYMBOL, ctypes.addressof(POOL_CELL))


@intrinsic
def _pool_address(typingctx):
    def codegen(context, builder, sig, args):
        cell = builder.module.globals.get(POOL_CELL_SYMBOL)
        if cell is None:
            cell = ir.GlobalVariable(builder.module, ir.IntType(64), name=POOL_CELL_SYMBOL)
            cell.linkage = "external"
        return builder.load(cell)

    return types.int64(), codegen


@intrinsic
def _as_pointer(typingctx, address):
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@intrinsic
def _address(typingctx, pointer):
    if not isinstance(pointer, types.RawPointer):
        return None

    def codegen(context, builder, sig, args):
        return builder.ptrtoint(args[0], ir.IntType(64))

    return types.int64(pointer), codegen


@intrinsic
def _run_piece(typingctx, dojob, thread_slot, piece, dojob_data):
    """OpenBLAS's dojob(thread_slot, piece, dojob_data): void (int, void *, int), all int64 here."""

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i32, cgutils.voidptr_t, i32])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(
            fn, [builder.trunc(args[1], i32), builder.inttoptr(args[2], cgutils.voidptr_t), builder.trunc(args[3], i32)]
        )
        return context.get_dummy_value()

    return types.none(types.int64, types.int64, types.int64, types.int64), codegen


@intrinsic
def _exec_blas(typingctx, address, pieces, queue):
    """OpenBLAS's exec_blas(pieces, queue) at ``address``: int (BLASLONG, void *)."""

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(ir.IntType(32), [i64, cgutils.voidptr_t])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fn, [args[1], builder.inttoptr(args[2], cgutils.voidptr_t)])
        return context.get_dummy_value()

    return types.none(types.int64, types.int64, types.int64), codegen


@intrinsic
def _load_int(typingctx, address):
    """The C int at ``address``."""

    def codegen(context, builder, sig, args):
        at = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        return builder.sext(builder.load_atomic(at, "monotonic", 4), ir.IntType(64))

    return types.int64(types.int64), codegen


@intrinsic
def _store_pointer(typingctx, address, value):
    """*(void **)address = value (OpenBLAS's callback pointer)."""

    def codegen(context, builder, sig, args):
        at = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        builder.store_atomic(args[1], at, "seq_cst", 8)
        return context.get_dummy_value()

    return types.none(types.int64, types.int64), codegen


_unstash = unstash_as(lambda zero: types.Tuple((types.int64,) * 6 + (types.Array(types.int64, 1, "C"),)))


@njit(**ENTRY)
def pieces_job(tid, address, zero):
    """Thread tid's share of a product: the next piece not taken, until none is left."""
    dojob, pieces, size, queue, dojob_data, slots, counters = _unstash(address, zero)
    p = next_task(counters, 0)
    while p < pieces:
        _run_piece(dojob, slots - 1 - p, queue + p * size, dojob_data)
        p = next_task(counters, 0)


@njit(**INLINE)
def _on_openblas_workers(pool, pieces, queue):
    # as without the callback: its pointer cleared for this call's exec_blas, then back
    # (a product entering exec_blas meanwhile, from another thread, takes OpenBLAS's way)
    _store_pointer(load(pool, CALLBACK_AT), 0)
    _exec_blas(load(pool, EXEC_BLAS), pieces, queue)
    _store_pointer(load(pool, CALLBACK_AT), load(pool, CALLBACK))


def run_pieces(sync, dojob, pieces, size, queue, dojob_data):
    """OpenBLAS's threads callback: run ``pieces`` pieces (``size`` bytes each, from
    ``queue``) with dojob, all at once, then return."""
    pool = carray(_as_pointer(_pool_address()), (POOL_SLOTS,), np.int64)
    pool = carray(_as_pointer(_pool_address()), (POOL_SLOTS + HELPER_STRIDE * pool[HELPER_ROOM],), np.int64)
    queue_at = _address(queue)
    slots = load(pool, MAX_PIECES)
    # OpenBLAS's own workers use the slots below their count; ours take them from the top
    fits = _load_int(load(pool, WORKERS_AT)) - 1 <= slots - pieces
    if pieces - 1 > load(pool, ALIVE) or load(pool, STOP) != 0 or not fits or not take(pool, HELD):
        _on_openblas_workers(pool, pieces, queue_at)
        return
    counters = np.zeros(COUNTER_STRIDE, np.int64)
    args = (_address(dojob), np.int64(pieces), np.int64(size), queue_at, np.int64(dojob_data), slots, counters)
    run_held(pool, load(pool, PIECES_JOB), stash(args), 0.0, np.intp(pieces))


def compiled_run_pieces():
    """run_pieces as a C callback, cached like the kernels."""
    signature = types.void(types.int32, types.voidptr, types.int32, types.uint64, types.voidptr, types.int32)
    return cfunc(signature, cache=True, nogil=True)(run_pieces)
