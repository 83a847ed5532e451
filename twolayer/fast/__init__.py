"""The numba backend: picks a path (paths.py), compiles its kernels on first use
(compile.py, or ahead: warmup.py), runs them on our thread pool (threads.py) with
NumPy's BLAS bound for the products (numpy_blas.py) or through NumPy itself
(portable.py), in per-thread scratch (workspace.py)."""

import numba
import numpy as np

from ..kernels import narrow, single, wide
from . import fallback, numpy_blas, portable, threads
from .compile import address, is_compiled, kernel, published, ready_address
from .paths import (
    PATHS,
    W1_BEYOND_CACHE,
    blas_chunks,
    blas_columns,
    choose_path,
    columns_threaded,
    narrow_chunks,
)
from .threads import get_num_threads, set_num_threads
from .workspace import chunk_costs, scratch

__all__ = [
    "PATHS",
    "choose_path",
    "entry_kernels",
    "forward_backward",
    "get_num_threads",
    "resolve_path",
    "runtime_info",
    "set_num_threads",
]


def resolve_path(path, n, dims, itemsize=8):
    """The path that runs for ``path`` and n rows: where NumPy's BLAS is not bound (or
    cannot take these sizes), "blas" runs as "portable", "narrow" or "row", by what was
    faster here (fallback.py; the first such call measures)."""
    if path == "blas" and not numpy_blas.fits(*dims):
        return fallback.path_for(n, dims, itemsize)
    return path


def _plan(path, n, dims, itemsize, data_bytes):
    """(kernel family, its cut of the batch) for n rows on ``path``: "row", "row_split"
    (the row path where W1 is beyond the cache), or "tile" (None),
    "portable" (None), "blas_columns" (tile rows, hidden and output block widths), or a
    chunked family, "narrow", "narrow_hinted" or "blas" (tile rows, rows per chunk, chunks)."""
    path = resolve_path(path, n, dims, itemsize)
    if path == "row" and dims[0] * dims[1] >= W1_BEYOND_CACHE:
        return "row_split", None
    if path in ("row", "tile", "portable"):
        return path, None
    if path == "narrow":
        # batches beyond the cache take the tile loop that hints the next tile's rows in
        return ("narrow_hinted" if data_bytes > narrow.HINT_FROM_BYTES else "narrow"), narrow_chunks(n, *dims, itemsize)
    columns = blas_columns(n, *dims, itemsize, numpy_blas.packed_from())
    if columns is not None:
        return "blas_columns", columns
    return "blas", blas_chunks(n, *dims, itemsize)


def entry_kernels(path, n, dims, itemsize):
    """The entry kernels a call of n rows on ``path`` runs here (with this thread count);
    where NumPy's BLAS is not bound and this layer size is not timed yet, those of every
    path it may take (fallback.py), so that all are compiled ahead."""
    if path == "blas" and not numpy_blas.fits(*dims) and fallback.decided(dims, itemsize) is None:
        candidates = (*fallback.CANDIDATES, "row")
        return list(dict.fromkeys(k for c in candidates for k in entry_kernels(c, n, dims, itemsize)))
    family, cut = _plan(path, n, dims, itemsize, n * (dims[0] + dims[2]) * itemsize)
    if family == "row":
        return [family]
    if family == "tile":
        return ["tile", "narrow_tiles"]
    if family == "portable":
        return portable.entry_kernels(dims)
    if family in ("blas_columns", "row_split"):
        return [family, family + "_job"]
    return [_TILES[family], "blocks", "blocks_job"]


# The tile loop of each chunked path (an entry kernel the runners call by its address).
_TILES = {"narrow": "narrow_tiles", "narrow_hinted": "narrow_tiles_hinted", "blas": "blas_tiles"}


def _compute(path, data, labels, params, dims, grad):
    family, cut = _plan(path, data.shape[0], dims, grad.itemsize, (data.size + labels.size) * grad.itemsize)
    if family == "row":
        return kernel(family, grad.dtype)(data, labels, params, grad)
    if family == "tile":
        return kernel(family, grad.dtype)(data, labels, params, grad, address("narrow_tiles", grad.dtype))
    if family == "portable":
        return portable.forward_backward(kernel, data, labels, params, dims, grad)
    if family == "row_split":
        ws = scratch(single.split_scratch_size(data.shape[0], *dims), grad.dtype)
        return threads.run(family, get_num_threads(), (data, labels, params, ws, grad), grad.dtype, blas=False)
    if family == "blas_columns":
        R, JB, KB = cut
        ws = scratch(wide.columns_scratch_size(dims[1], dims[2], R), grad.dtype)
        args = (data, labels, params, *dims, R, JB, KB, ws, grad)
        n_threads = get_num_threads() if columns_threaded(data.shape[0], *dims, grad.itemsize) else 1
        return threads.run(family, n_threads, args, grad.dtype, blas=True)
    # Workspace: one gradient accumulator per chunk, then one scratch region per block
    # (kernels/common.py). Chunks are fixed by the batch; blocks follow the thread count.
    T, per_chunk, chunks = cut
    blocks = min(get_num_threads(), chunks)
    per_block = wide.scratch_size(*dims, T) if family == "blas" else narrow.scratch_size(*dims, T)
    ws = scratch(chunks * grad.shape[0] + blocks * per_block, grad.dtype)
    tiles = address(_TILES[family], grad.dtype)
    # the BLAS path's tile loop overwrites an accumulator with its first tile; the narrow one adds
    zero = family != "blas"
    args = (data, labels, params, *dims, T, per_chunk, blocks, ws, chunk_costs(chunks), grad, tiles, per_block, zero)
    return threads.run("blocks", blocks, args, grad.dtype, blas=family == "blas")


_empty = np.empty  # a module global: one lookup fewer on the N = 1 path


def forward_backward(data, labels, params, dims, out=None, path=None):
    """Cost and gradient with validated inputs (see twolayer.api); ``path`` forces a kernel
    ("row", "tile", "narrow", "blas" or "portable").

    Every entry kernel returns the cost as a float64, which Numba hands back as a Python
    float. At N = 1 the whole call is a few microseconds, so the common case goes straight
    to the compiled kernel.
    """
    grad = _empty(len(params), params.dtype) if out is None else out  # len: no shape tuple
    if path is None:
        n = len(data)
        # choose_path's answer for n <= 1 where W1 fits the cache, without the call (~0.07 us)
        small = n <= 1 and len(params) < W1_BEYOND_CACHE
        path = "row" if small else choose_path(n, *dims, grad.itemsize, numpy_blas.direct_gemm)
    # only "row" and "tile" name a kernel of their own; a wide layer's rows take rows_split
    k = published(path) if path != "row" or len(params) < W1_BEYOND_CACHE else None
    try:
        if k is not None:
            if path == "row":
                return k(data, labels, params, grad), grad
            tiles = ready_address("narrow_tiles", grad.dtype)
            if tiles is not None:
                return k(data, labels, params, grad, tiles), grad
        return _compute(path, data, labels, params, dims, grad), grad
    except TypeError:
        # The kernel was not compiled for this float type yet (_compute compiles it), or
        # the arrays are not C-contiguous, the only layout compiled: they are copied once.
        contiguous = data.flags.c_contiguous and labels.flags.c_contiguous and params.flags.c_contiguous
        if contiguous and (k is None or is_compiled(path, grad.dtype)):
            raise
        data, labels, params = (np.ascontiguousarray(a) for a in (data, labels, params))
        return _compute(path, data, labels, params, dims, grad), grad


def runtime_info():
    """Numba's threading layer and thread counts, and how each pool's idle threads behave,
    for ``twolayer info`` and the benchmark."""
    import llvmlite.binding as ll

    lib = numpy_blas.bound()
    return {
        "threads": f"{get_num_threads()} (NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS})",
        "thread pool": threads.pool_description(),
        "wide layers": f"BLAS path on NumPy's {lib.interface} OpenBLAS" if lib else fallback.describe(),
        "blas path gemm": numpy_blas.gemm_description() or "-",
        "numpy's products": threads.sharing_description(),
        "openblas idle threads": numpy_blas.idle_spin_description(),
        "openblas threads in our calls": numpy_blas.hold_description(),
        "svml": bool(numba.config.USING_SVML),
        "llvm cpu": ll.get_host_cpu_name(),
    }
