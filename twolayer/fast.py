"""The Numba backend: picks a kernel by N, the dimensions and the float size (never by
the thread count), compiles it on first use, and keeps Numba's threads and BLAS's
threads out of each other's way.

Paths (kernels/):
  row       single.py   one row at a time; the tiniest batches, where the call is the cost,
                        and a few rows when W1 is too big for the cache
  tile      narrow.py   one transposed tile, no threads; small batches of narrow layers
  narrow    narrow.py   fixed chunks of tiles over Numba's threads; narrow layers
  blas      wide.py     BLAS products on row chunks; wide layers (one block per thread,
                        each with single-threaded BLAS)
"""
import os
import threading

import numba
import numpy as np
from numba import types

from . import blas
from .kernels import narrow, single, wide
from .layout import param_offsets

# Fixed chunk count of the narrow path: independent of the thread count, so that the
# result is too; large enough to balance 2..64 threads.
NARROW_CHUNKS = 64
# Workspace cap for per-block gradient accumulators of the BLAS path (bytes).
BLAS_ACCUMULATOR_BYTES = 48 << 20
# Weights in W1 from which it no longer stays in cache between the products of a call.
W1_BEYOND_CACHE = 1 << 18
# Rows up to which the row kernel beats the BLAS path when W1 is beyond the cache, by
# itemsize. Measured on (1024, 1024, 1024), us per call (row / BLAS): float64 N = 2
# 1850 / 2150-2830, N = 3 2600 / 2190; float32 N = 5 1500 / 1680, N = 6 a tie
# (1810-1850 / 1920-1990), N = 8 2380 / 1580.
ROW_MAX_ROWS = {4: 5, 8: 2}
# Rows up to which the row kernel beats one tile on narrow layers (a tile costs about
# 250 short loops for (10, 5, 10) whatever its rows). Measured, us per kernel call, row / tile, N = 2:
# (10,5,10) 1.11 / 1.52, (20,10,5) 1.31 / 2.28, (4,16,10) 1.25 / 2.34, (100,2,20) 1.94 / 2.89;
# only (1,1,1) lost, 0.86 / 0.74. At N = 3 the tile won for (3,7,2) and (1,1,1).
NARROW_ROW_MAX_ROWS = 2


# ---------------------------------------------------------------------------
# Path choice: measured crossovers, see README ("How it is fast").

def choose_path(n, Dx, H, Dy, itemsize=8):
    """The kernel for n rows of a (Dx, H, Dy) network of ``itemsize``-byte floats
    (crossovers measured on 2 cores).

    Narrow layers (Dx H + H Dy <= 256) take the transposed tiles: a tile's work is a
    handful of vector operations per weight, while each BLAS call costs a microsecond or
    more; from (10, 20, 10) on, BLAS wins (README, "How it is fast"); but one or two rows
    take the row kernel, since a tile costs a few hundred short loops whatever its rows.
    A W1 beyond the cache keeps the row kernel for a few rows: it streams the weights
    once per row, the BLAS path about five times per call.
    """
    if Dx * H + H * Dy <= 256:
        if n <= NARROW_ROW_MAX_ROWS:
            return "row"
        return "tile" if n < 512 else "narrow"
    if n <= 1 or (Dx * H >= W1_BEYOND_CACHE and n <= ROW_MAX_ROWS[itemsize]):
        return "row"
    return "blas"


def blas_chunk_rows(Dx, H, Dy):
    """Rows per BLAS chunk: a chunk's activations stay in L2 between the GEMMs.

    Measured at N = 4096 on 2 cores (GFLOP/s by rows per chunk): (50, 100, 5) 70 at 64-192
    rows, 60 at 512; (784, 128, 10) 84-86 at 64-128, 81 at 256, 76 at 1024; but
    (1024, 1024, 1024) 96-97 at 256 against 94 at 128.
    """
    return 256 if Dx * H >= W1_BEYOND_CACHE else 128


# ---------------------------------------------------------------------------
# Compilation: each entry kernel is compiled for the float type of its first call, and
# for the other one only if a call needs it (a typical user needs one: half the wait of a
# first-ever compile, README "Compilation"). The inputs are typed
# read-only, so that read-only and writeable arrays share one compiled version. A
# dispatcher is published with compilation switched off, so no call can trigger another
# compile; a second float type is compiled on a twin of the dispatcher (the same function,
# so the same cache entries) and handed over as a finished overload.

def _signature(kind, dt):
    ro2 = types.Array(dt, 2, "C", readonly=True)
    ro1 = types.Array(dt, 1, "C", readonly=True)
    rw1 = types.Array(dt, 1, "C")
    dims = (types.intp,) * 3
    if kind == "simple":  # data, labels, params, grad (the dimensions come from the shapes)
        return (ro2, ro2, ro1, rw1)
    # data, labels, params, Dx, H, Dy, rows per tile/chunk, rows per chunk/block, blocks, ws, costs, grad
    return (ro2, ro2, ro1, *dims, types.intp, types.intp, types.intp, rw1, types.Array(types.float64, 1, "C"), rw1)


_KERNELS = {
    "row": (single.rows_forward_backward, "simple"),
    "tile": (narrow.tile_forward_backward, "simple"),
    "narrow_serial": (narrow.narrow_serial, "chunked"),
    "narrow_parallel": (narrow.narrow_parallel, "chunked"),
    "blas_serial": (wide.wide_serial, "chunked"),
    "blas_parallel": (wide.wide_parallel, "chunked"),
}
_compiled = {}  # entry name -> its dispatcher, once compiled for a first float type
_ready = set()  # (entry name, numpy dtype) pairs that _compiled's dispatchers accept
_twins = {}  # entry name -> the twin dispatchers that compiled its later float types
_compile_lock = threading.Lock()


def kernel(name, dtype):
    """The dispatcher of entry kernel ``name``, compiled (at least) for ``dtype``, a float32
    or float64 numpy dtype."""
    if (name, dtype) not in _ready:
        with _compile_lock:
            if (name, dtype) not in _ready:
                _compile(name, dtype)
    return _compiled[name]


def _compile(name, dtype):
    dispatcher, kind = _KERNELS[name]
    if name.startswith("blas") and not _numpy_blas():  # its GEMM symbols must be bound first
        raise RuntimeError("the BLAS kernels need NumPy's ILP64 OpenBLAS, which was not found")
    signature = _signature(kind, numba.from_dtype(dtype))
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


# ---------------------------------------------------------------------------
# Threads.

# GNU OpenMP (Numba's "omp" layer) keeps its workers spinning for 300,000 rounds after
# every parallel region before they sleep: 7-10 ms of a core here, taken from whatever the
# caller runs next. In a training step (our call, the user's NumPy product, the update) the
# product then competed with our spinning worker, and the next call with OpenBLAS's (README,
# "In a training loop"): a (10,5,10) N = 65536 step took 8.0 ms, 3.8-5.1 with 10,000
# rounds; (50,100,5) N = 4096 8.0, 3.9-4.8. 10,000 rounds (~0.3 ms) still catch calls
# 100 us apart (N = 512: 21-28 us after a 100 us gap, as with 300,000; 3,000 rounds: 42-71 us).
# libgomp reads GOMP_SPINCOUNT once, when it loads, which is when Numba starts its pool
# here (unless something loaded libgomp before). A setting of the user's is kept, and ours
# leaves the environment again, so that child processes do not inherit it.
OMP_SPIN_ROUNDS = 10_000


def _start_numba_threads():
    """Start Numba's thread pool (the layer is then known), with a short OpenMP spin.
    Returns who chose libgomp's spin: "twolayer", "environment" or None (not ours to set)."""
    user_set = "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
    from numba.np.ufunc import parallel

    if user_set or getattr(parallel, "_is_initialized", True):
        numba.get_num_threads()
        return "environment" if user_set else None
    os.environ["GOMP_SPINCOUNT"] = str(OMP_SPIN_ROUNDS)
    try:
        numba.get_num_threads()
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    return "twolayer"


_omp_spin_set_by = _start_numba_threads()
THREADING_LAYER = numba.threading_layer()
_threads = numba.get_num_threads()
# GNU OpenMP cannot run a parallel region in a forked child (Numba aborts the process),
# and the workqueue layer cannot even be entered twice at once: guard both.
_FORK_UNSAFE = THREADING_LAYER in ("omp", "workqueue")
_forked = False
_workqueue_lock = threading.Lock() if THREADING_LAYER == "workqueue" else None


def _after_fork_in_child():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def set_num_threads(n):
    """Threads used by the parallel kernels (1 .. NUMBA_NUM_THREADS), for all Python threads."""
    global _threads
    if type(n) is not int or isinstance(n, bool) or not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"n: expected an int from 1 to {numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS), got {n!r}")
    _threads = n


def get_num_threads():
    return _threads


class _SingleThreadedBlas:
    """Holds the kernels' BLAS (NumPy's, twolayer/blas.py) at one thread while blocks run
    in Numba's threads, so that one thread pool is busy at a time; restores the previous
    count when the last concurrent caller leaves.

    OpenBLAS's thread count is process-wide and is set here through its own C function:
    threadpoolctl only lets the first thread that used it change it, and from any other
    Python thread the limit would silently not apply.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = 1

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                lib = _numpy_blas()
                self._saved = lib.get_num_threads()
                if self._saved != 1:
                    lib.set_num_threads(1)
            self._depth += 1

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved != 1:
                _numpy_blas().set_num_threads(self._saved)


_single_threaded_blas = _SingleThreadedBlas()
_blas_library = None  # twolayer.blas.Library once bound; False where NumPy's BLAS cannot serve


def _numpy_blas():
    """The BLAS the kernels call, bound on first use (before any BLAS kernel loads), or
    False when NumPy's BLAS is not an ILP64 OpenBLAS."""
    global _blas_library
    if _blas_library is None:
        _blas_library = blas.bind() or False
    return _blas_library


def _run_parallel(name, args):
    """Run a parallel kernel, or its serial counterpart where a parallel launch is unsafe or
    pointless. That one runs the same chunks in the same order (and the BLAS path's
    blocks with single-threaded BLAS either way), so the result is bitwise the same."""
    if name == "blas_parallel":
        with _single_threaded_blas:
            return _run_parallel_kernel(name, args)
    return _run_parallel_kernel(name, args)


def _run_parallel_kernel(name, args):
    serial = name.replace("_parallel", "_serial")
    dtype = args[-1].dtype  # the gradient's
    if _threads == 1 or (_forked and _FORK_UNSAFE):
        return kernel(serial, dtype)(*args)
    if _workqueue_lock is not None and not _workqueue_lock.acquire(blocking=False):
        return kernel(serial, dtype)(*args)  # another thread is inside the workqueue pool
    try:
        if numba.get_num_threads() != _threads:
            numba.set_num_threads(_threads)  # Numba's count is per calling thread
        return kernel(name, dtype)(*args)
    finally:
        if _workqueue_lock is not None:
            _workqueue_lock.release()


# ---------------------------------------------------------------------------

_local = threading.local()


def _workspace(n, dtype):
    """n elements of scratch, reused by this Python thread's calls (no allocation, and no
    page faults, in a training loop); it grows to the largest call seen."""
    ws = _local.__dict__.get(dtype)
    if ws is None or ws.shape[0] < n:
        ws = _local.__dict__[dtype] = _aligned_empty(max(n, 1024), dtype)
    return ws[:n]


def _aligned_empty(n, dtype, alignment=64):
    """np.empty(n, dtype) starting on an ``alignment``-byte boundary. BLAS kernels may take
    different paths for differently aligned operands; a fixed alignment keeps the BLAS
    path's results identical from call to call and thread to thread."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n + alignment // itemsize, dtype)
    start = (-raw.ctypes.data % alignment) // itemsize
    return raw[start : start + n]


def _chunk_costs(n):
    costs = _local.__dict__.get("costs")
    if costs is None or costs.shape[0] < n:
        costs = _local.__dict__["costs"] = np.empty(max(n, 64))
    return costs[:n]


def _chunked(path, data, labels, params, Dx, H, Dy, grad):
    # Workspace: one gradient accumulator per chunk, then one scratch region per block
    # (kernels/common.py). Blocks follow the thread count; chunks, on the narrow path, do not.
    n = data.shape[0]
    P = grad.shape[0]
    if path == "blas" and not _numpy_blas():
        path = "narrow"  # correct for any shape, only slower on wide layers
    if path == "narrow":
        T = narrow.tile_rows(Dx, H, Dy, grad.itemsize)
        per_chunk = max(1, -(-n // (T * NARROW_CHUNKS))) * T
        chunks = max(1, -(-n // per_chunk))
        blocks = min(_threads, chunks)
        ws = _workspace(chunks * P + blocks * narrow.scratch_size(Dx, H, Dy, T), grad.dtype)
        return _run_parallel("narrow_parallel", (data, labels, params, Dx, H, Dy, T, per_chunk, blocks, ws,
                                                 _chunk_costs(chunks), grad))
    # blas: one block (and accumulator) per thread, as many as the accumulator budget allows
    R = blas_chunk_rows(Dx, H, Dy)
    blocks = max(1, min(_threads, -(-n // R), BLAS_ACCUMULATOR_BYTES // (P * grad.itemsize)))
    per_block = max(1, -(-n // blocks))
    R = min(R, per_block)
    ws = _workspace(blocks * (P + wide.scratch_size(Dx, H, Dy, R)), grad.dtype)
    args = (data, labels, params, Dx, H, Dy, R, per_block, blocks, ws, _chunk_costs(blocks), grad)
    if blocks == 1 and _threads > 1:
        return kernel("blas_serial", grad.dtype)(*args)  # one block: BLAS parallelizes each product
    return _run_parallel("blas_parallel", args)


def _compute(path, data, labels, params, dims, grad):
    if path == "row" or path == "tile":
        return kernel(path, grad.dtype)(data, labels, params, grad)
    return _chunked(path, data, labels, params, *dims, grad)


_empty = np.empty  # a module global: one lookup fewer on the N = 1 path


def forward_backward(data, labels, params, dims, out=None, path=None):
    """Cost and gradient with validated inputs (see twolayer.api); ``path`` forces a kernel.

    Every entry kernel returns the cost as a float64, which Numba hands back as a Python
    float. At N = 1 the whole call is a few microseconds, so the common case goes straight
    to the compiled kernel.
    """
    grad = _empty(len(params), params.dtype) if out is None else out  # len: no shape tuple
    if path is None:
        n = len(data)
        # choose_path's answer for n <= 1 whatever the shape, without the call (~0.07 us)
        path = "row" if n <= 1 else choose_path(n, *dims, grad.itemsize)
    k = _compiled.get(path)  # only "row" and "tile" name a kernel of their own
    try:
        if k is not None:
            return k(data, labels, params, grad), grad
        return _compute(path, data, labels, params, dims, grad), grad
    except TypeError:
        # The kernel was not compiled for this float type yet (_compute compiles it), or
        # the arrays are not C-contiguous, the only layout compiled: they are copied once.
        contiguous = data.flags.c_contiguous and labels.flags.c_contiguous and params.flags.c_contiguous
        if contiguous and (k is None or (path, grad.dtype) in _ready):
            raise
        data, labels, params = (np.ascontiguousarray(a) for a in (data, labels, params))
        return _compute(path, data, labels, params, dims, grad), grad


def _omp_spin_description():
    if THREADING_LAYER != "omp":
        return f"not OpenMP (threading layer {THREADING_LAYER})"
    if _omp_spin_set_by == "twolayer":
        return f"{OMP_SPIN_ROUNDS} rounds (set by twolayer)"
    if _omp_spin_set_by == "environment":
        return "as GOMP_SPINCOUNT / OMP_WAIT_POLICY say"
    return "libgomp's own (Numba's pool was started before twolayer)"


def _openblas_spin_description():
    if not _numpy_blas():
        return "n/a (NumPy's BLAS is not an ILP64 OpenBLAS)"
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return f"sleep after 2^{os.environ['OPENBLAS_THREAD_TIMEOUT']} cycles (OPENBLAS_THREAD_TIMEOUT)"
    return "spin for 2^28 cycles (~0.1 s) after each product (README, In a training loop)"


def runtime_info():
    """Numba's threading layer and thread counts, for ``twolayer info`` and the benchmark."""
    import llvmlite.binding as ll

    return {
        "numba threading layer": THREADING_LAYER,
        "numba threads": f"{_threads} (NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS})",
        "openmp spin after a parallel region": _omp_spin_description(),
        "openblas idle threads": _openblas_spin_description(),
        "svml": bool(numba.config.USING_SVML),
        "llvm cpu": ll.get_host_cpu_name(),
    }
