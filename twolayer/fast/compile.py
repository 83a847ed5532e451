"""Compilation of the entry kernels: each is compiled for the float type of its first
call, and for the other one only if a call needs it (a typical user needs one: half the
wait of a first-ever compile). Inputs are typed read-only, so that read-only and
writeable arrays share one compiled version.

A dispatcher is published with compilation switched off, so no call can trigger another
compile; a second float type is compiled on a twin of the dispatcher (the same function,
so the same cache entries) and handed over as a finished overload.
"""

import threading

import numba
from numba import types

from ..kernels import blocks, narrow, openblas_pieces, pool, portable, single, wide
from ..kernels.common import array_types
from . import numpy_blas


def _arrays(dt):  # read-only 2-D and 1-D, writeable 2-D and 1-D
    ro2, ro1, rw1 = array_types(dt)
    return ro2, ro1, types.Array(dt, 2, "C"), rw1


def _simple(dt):  # data, labels, params, grad (the dimensions come from the shapes)
    ro2, ro1, _, rw1 = _arrays(dt)
    return (ro2, ro2, ro1, rw1)


def _tile(dt):  # data, labels, params, grad, and the address of the narrow tile loop
    return (*_simple(dt), types.int64)


def _tiles(dt):  # data, labels, params, Dx, H, Dy, r0, r1, tile rows, scratch, grad
    return blocks.tiles_signature(dt).args


def _chunks(dt):  # blocks.runner_signature, then the pool's (blocks.pool_signature)
    return (*blocks.runner_signature(dt), *blocks.pool_signature())


def _columns(dt):  # wide.columns_signature, then the pool's
    return (*wide.columns_signature(dt), *blocks.pool_signature())


def _split(dt):  # single.split_signature, then the pool's
    return (*single.split_signature(dt), *blocks.pool_signature())


def _job(dt):  # the thread id, the address of the call's arguments, a zero of type dt
    return pool.job_signature(dt).args


def _portable(name):
    def signature(dt):
        ro2, ro1, rw2, rw1 = _arrays(dt)
        return {
            "hidden_forward_tail": (rw1, ro1, rw1),  # h_flat, b1, bias_tile
            "output_forward_tail_columns": (
                rw2,
                ro1,
                ro2,
                types.intp,
                rw2,
                rw2,
                rw1,
            ),  # zT, b2, labels, r0, yT, rows, gb2
            "output_forward_tail_rows": (rw2, ro1, ro2, types.intp, rw1),  # z, b2, labels, r0, gb2
            "hidden_backward_head": (rw2, rw2, rw1),  # d, h, gb1
            "add_into": (rw1, rw1),
        }[name]

    return signature


ENTRY_KERNELS = {
    "row": (single.rows_forward_backward, _simple),
    "row_split": (single.rows_split, _split),
    "row_split_job": (single.rows_split_job, _job),
    "tile": (narrow.tile_forward_backward, _tile),
    "narrow_tiles": (narrow.narrow_tiles, _tiles),
    "narrow_tiles_hinted": (narrow.narrow_tiles_hinted, _tiles),
    "blas_tiles": (wide.wide_tiles, _tiles),
    "blocks": (blocks.run_chunks, _chunks),
    "blocks_job": (blocks.chunks_job, _job),
    "blas_columns": (wide.wide_columns, _columns),
    "blas_columns_job": (wide.columns_job, _job),
    "pieces_job": (openblas_pieces.pieces_job, _job),
    **{
        name: (getattr(portable, name), _portable(name))
        for name in (
            "hidden_forward_tail",
            "output_forward_tail_columns",
            "output_forward_tail_rows",
            "hidden_backward_head",
            "add_into",
        )
    },
}
_compiled = {}  # entry name -> its dispatcher, once compiled for a first float type
_ready = set()  # (entry name, numpy dtype) pairs that _compiled's dispatchers accept
_twins = {}  # entry name -> the twin dispatchers that compiled its later float types
_lock = threading.Lock()


def kernel(name, dtype):
    """The dispatcher of entry kernel ``name``, compiled (at least) for ``dtype``, a float32
    or float64 numpy dtype."""
    if (name, dtype) not in _ready:
        with _lock:
            if (name, dtype) not in _ready:
                _compile(name, dtype)
    return _compiled[name]


_addresses = {}  # (entry name, numpy dtype) -> the address of its compiled code


def address(name, dtype):
    """The address of entry kernel ``name``'s compiled code for ``dtype`` (compiled or
    loaded first), for the kernels that call it (a tile loop, a job): Numba's own entry
    point of the overload, as its first-class functions use it, valid for this process."""
    key = (name, dtype)
    found = _addresses.get(key)
    if found is None:
        signature_of = ENTRY_KERNELS[name][1]
        compiled = kernel(name, dtype).overloads[signature_of(numba.from_dtype(dtype))]
        found = _addresses[key] = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
    return found


_helper = []  # the pool's helper start routine, once compiled or loaded
_run_pieces = []  # OpenBLAS's threads callback (kernels/openblas_pieces.py), likewise


def run_pieces_address():
    """The address of the callback that runs NumPy's products on the pool, a C callback
    compiled once and cached like the kernels."""
    if not _run_pieces:
        with _lock:
            if not _run_pieces:
                _run_pieces.append(openblas_pieces.compiled_run_pieces())
    return _run_pieces[0].address


def helper_address():
    """The address of the pool's helper start routine (kernels/pool.py: helper_main), a C
    callback compiled with the jobs, and cached like them."""
    if not _helper:
        with _lock:
            _load_helper()
    return _helper[0].address


def _load_helper():  # with _lock held
    if not _helper:
        _helper.append(pool.compiled_helper_main())


def ready_address(name, dtype):
    """address(name, dtype) if it is known already, else None (a dictionary lookup)."""
    return _addresses.get((name, dtype))


def published(name):
    """The dispatcher of ``name`` if it has been compiled for some float type, else None:
    callers that find one try it first and compile only on a TypeError."""
    return _compiled.get(name)


def is_compiled(name, dtype):
    """Whether entry kernel ``name`` is compiled for ``dtype``."""
    return (name, dtype) in _ready


def cache_stats(name):
    """(hits, misses) of Numba's cache for entry kernel ``name``, over all its float types."""
    dispatchers = [_compiled[name], *_twins.get(name, [])] if name in _compiled else []
    return (
        sum(sum(d.stats.cache_hits.values()) for d in dispatchers),
        sum(sum(d.stats.cache_misses.values()) for d in dispatchers),
    )


def _compile(name, dtype):
    dispatcher, signature_of = ENTRY_KERNELS[name]
    if name.startswith("blas") and numpy_blas.bound() is None:  # its GEMM symbols must be bound first
        raise RuntimeError("the BLAS kernels need NumPy's OpenBLAS, which was not found")
    signature = signature_of(numba.from_dtype(dtype))
    if name not in _compiled:  # not published yet: no call can reach it meanwhile
        dispatcher.compile(signature)
        dispatcher.disable_compile()
        _compiled[name] = dispatcher
    else:
        options = {k: v for k, v in dispatcher.targetoptions.items() if k != "nopython"}  # njit's own
        twin = numba.njit(**options)(dispatcher.py_func)
        twin.enable_caching()  # every entry kernel is cached (ENTRY); cache=True is not a target option
        twin.compile(signature)
        twin.disable_compile()
        _twins.setdefault(name, []).append(twin)  # it owns the compiled code
        dispatcher.add_overload(next(iter(twin.overloads.values())))
    _ready.add((name, dtype))
    if name.endswith("_job"):  # jobs need the pool's helpers: compile (or load) them now
        _load_helper()
