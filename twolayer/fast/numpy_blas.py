"""NumPy's own BLAS, for the kernels' GEMMs: found, bound by symbol name, held at one
thread while our blocks run, and its idle threads sent to sleep sooner.

kernels/gemm.py calls two C symbols with the ILP64 CBLAS interface. ``bound()`` points
them at the OpenBLAS that NumPy loaded, before any kernel is compiled or loaded from
Numba's cache (the cached object code refers to the names, not to addresses):

- pip's wheels: ILP64 symbols with NumPy's prefix, ``scipy_cblas_dgemm64_``;
- Debian's, Ubuntu's and conda's OpenBLAS: LP64 ``cblas_dgemm``, reached through small
  compiled adapters with the ILP64 signature (kernels/gemm.py).

Any other BLAS (MKL, Accelerate, BLIS, the reference BLAS) is not bound: wide layers then
issue their products through NumPy itself (the portable path), or run on our own tiles
where those were faster (fallback.py).

On a CPU with AVX-512 the symbols point instead at a dispatcher that calls OpenBLAS's own
AVX-512 small-matrix kernels directly where they win (kernels/gemm.py: direct_gemm): for
the weights' products where OpenBLAS runs narrower kernels (0.3.31 takes its Haswell
kernels on a Zen 5), for those on short rows beside its own AVX-512 kernels (a Xeon);
TWOLAYER_BLAS=cblas keeps OpenBLAS's GEMM for every product. Binding also writes
OpenBLAS's first packing buffers (_warm_buffers). Why NumPy's BLAS
and not SciPy's (which Numba's own np.dot uses): one BLAS thread pool in the process, and
no SciPy import (0.2 s of a first call).
"""

import ctypes
import os
import re
import threading

import llvmlite.binding as ll
import numpy as np

from ..kernels.gemm import (
    LIBRARY_MIN_LDB,
    LIBRARY_SYMBOLS,
    LP64_SYMBOLS,
    SMALL_OPS,
    SYMBOLS,
    direct_dispatchers,
    lp64_adapters,
    small_symbol,
)
from ..machine import OPENBLAS_AVX512_CORES

# OpenBLAS's workers spin for 2^28 TSC cycles (about 0.1 s) after each threaded product
# before they sleep; in a training loop that spin takes a core from our threads on every
# call. 2^18 cycles (0.1 ms at 2.6 GHz) keeps back-to-back products awake (docs/design.md).
IDLE_SPIN_LOG2 = 18
# Opt-out: TWOLAYER_OPENBLAS_SPIN=keep leaves OpenBLAS's idle spin as it is.
KEEP_SPIN_ENV = "TWOLAYER_OPENBLAS_SPIN"
LP64_MAX = 2**31 - 1
# What OpenBLAS's SkylakeX kernels are compiled for (-march=skylake-avx512).
AVX512_FEATURES = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


class Library:
    """A bound OpenBLAS: where it is, its interface, its thread controls."""

    def __init__(self, path, interface, dll, name):
        self.path = path
        self.interface = interface  # "ILP64" or "LP64"
        self.dll, self.name = dll, name  # the library, and its symbol names (prefix, suffix)
        self.get_num_threads = _function(dll, name("openblas_get_num_threads"), ctypes.c_int)
        self.set_num_threads = _function(dll, name("openblas_set_num_threads"), None, ctypes.c_int)
        # Exported without NumPy's prefix even in its wheels (OpenBLAS 0.3.21 .. 0.3.31).
        self._spin_controls = [
            _function(dll, f, None) for f in ("openblas_read_env", "blas_thread_shutdown_", "blas_thread_init")
        ]
        parallel = _function(dll, name("openblas_get_parallel"), ctypes.c_int)
        self.threading = {0: "sequential", 1: "pthreads", 2: "openmp"}.get(parallel() if parallel else -1, "unknown")
        corename = _function(dll, name("openblas_get_corename"), ctypes.c_char_p)
        self.core = corename().decode() if corename else "unknown"  # the kernels OpenBLAS picked
        self.adapters = None  # LP64: the compiled adapters, kept alive here
        self.dispatchers = None  # direct kernels: the compiled dispatchers, kept alive here
        self.beside_avx512 = False  # whether they serve beside OpenBLAS's own AVX-512 kernels

    def threads_callback(self):
        """OpenBLAS's threads callback (0.3.27 and later, a pthreads build): (its setter, the
        address of the pointer it sets, of exec_blas, of the count of OpenBLAS's worker
        threads, and MAX_THREADS), or None."""
        dll = self.dll
        setter = _function(dll, self.name("openblas_set_threads_callback_function"), None, ctypes.c_void_p)
        config = _function(dll, self.name("openblas_get_config"), ctypes.c_char_p)
        found = re.search(rb"MAX_THREADS=(\d+)", (config() if config else None) or b"")
        if setter is None or found is None or self.threading != "pthreads":
            return None
        try:  # exported without NumPy's prefix, like the spin controls
            pointer = ctypes.addressof(ctypes.c_void_p.in_dll(dll, "openblas_threads_callback_"))
            workers = ctypes.addressof(ctypes.c_int.in_dll(dll, "blas_num_threads"))
            exec_blas = ctypes.cast(dll.exec_blas, ctypes.c_void_p).value
        except (AttributeError, ValueError):
            return None
        return setter, pointer, exec_blas, workers, int(found.group(1))

    def can_shorten_spin(self):
        """Whether the idle spin of this build can be changed: a pthreads OpenBLAS (an
        OpenMP one follows OMP_WAIT_POLICY) that exports the three functions it takes."""
        return self.threading == "pthreads" and all(self._spin_controls)

    def restart_threads_with_timeout(self, log2_cycles):
        """Restart OpenBLAS's thread server so that its workers sleep after 2^log2_cycles
        TSC cycles without work (OPENBLAS_THREAD_TIMEOUT, which OpenBLAS reads only when
        the server starts). OpenBLAS itself shuts the server down the same way before every
        fork(); like a fork, this must not happen while another thread is inside BLAS."""
        read_env, shutdown, init = self._spin_controls
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(log2_cycles)
        try:
            read_env()
            shutdown()
            init()  # the server reads the timeout now; it keeps it across later restarts
        finally:
            del os.environ["OPENBLAS_THREAD_TIMEOUT"]
            read_env()  # OpenBLAS's copy of the environment is the environment again


def _function(dll, symbol, restype, *argtypes):
    fn = getattr(dll, symbol, None)
    if fn is not None:
        fn.restype = restype
        fn.argtypes = argtypes
    return fn


def _find():
    """NumPy's OpenBLAS: (path, ctypes.CDLL, interface, symbol namer), or None."""
    import numpy  # noqa: F401  (loads NumPy's BLAS into the process)
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        if lib.internal_api != "openblas":
            continue
        dll = ctypes.CDLL(lib.filepath)
        # ILP64 builds end their symbols in "64_"; NumPy's wheels add the prefix "scipy_".
        for prefix, suffix, interface in (("scipy_", "64_", "ILP64"), ("", "64_", "ILP64"), ("", "", "LP64")):

            def name(base, prefix=prefix, suffix=suffix):
                return f"{prefix}{base}{suffix}"

            if all(
                hasattr(dll, name(f))
                for f in ("cblas_dgemm", "cblas_sgemm", "openblas_get_num_threads", "openblas_set_num_threads")
            ):
                return lib.filepath, dll, interface, name
    return None


_lock = threading.RLock()
_library = []  # [Library] once found, [None] where there is no OpenBLAS to use
_bound = []  # [Library] once its GEMM is bound for the kernels, [None] where it cannot be


def library():
    """NumPy's OpenBLAS, found and opened on first use (its thread controls), its GEMM not
    bound yet; None when it is not an OpenBLAS, or TWOLAYER_BLAS=numpy or none asks for
    no bound BLAS. Cheap: the spin control of every parallel call needs it."""
    if not _library:
        with _lock:
            if not _library:
                _library.append(_open())
    return _library[0]


def bound():
    """library(), its GEMM bound for the kernels on first use (the BLAS path's first call:
    the cached dispatchers load then, 80 ms). TWOLAYER_BLAS=cblas binds its GEMM alone,
    without the direct kernels."""
    if not _bound:
        with _lock:
            if not _bound:
                lib = library()
                if lib is not None:
                    _bind(lib, choice() != "cblas")
                _bound.append(lib)
    return _bound[0]


# TWOLAYER_BLAS: auto; cblas, OpenBLAS's GEMM without the direct kernels; numpy, every
# wide layer's products through NumPy (the portable path); none, no BLAS at all (our
# own tiles). Where NumPy's BLAS is not bound, auto measures which of the last two is
# faster (fallback.py).
BLAS_CHOICES = ("auto", "cblas", "numpy", "none")


def choice():
    """TWOLAYER_BLAS, checked."""
    value = os.environ.get("TWOLAYER_BLAS", "auto") or "auto"
    if value not in BLAS_CHOICES:
        raise ValueError(f"TWOLAYER_BLAS: expected one of {', '.join(map(repr, BLAS_CHOICES))}, got {value!r}")
    return value


def _open():
    if choice() in ("numpy", "none"):
        return None
    found = _find()
    if found is None:
        return None
    path, dll, interface, name = found
    return Library(path, interface, dll, name)


def _bind(library, direct):
    dll, name = library.dll, library.name
    gemm = {kind: ctypes.cast(getattr(dll, name(f"cblas_{kind}gemm")), ctypes.c_void_p).value for kind in SYMBOLS}
    if library.interface == "LP64":
        for kind, symbol in LP64_SYMBOLS.items():
            ll.add_symbol(symbol, gemm[kind])
        library.adapters = lp64_adapters()
        gemm = {kind: adapter.address for kind, adapter in library.adapters.items()}
    _warm_buffers(library, gemm)
    small = _small_kernels(dll) if direct else None
    if small:
        for symbol, address in small.items():
            ll.add_symbol(symbol, address)
        for kind, symbol in LIBRARY_SYMBOLS.items():
            ll.add_symbol(symbol, gemm[kind])
        library.beside_avx512 = library.core.lower() in OPENBLAS_AVX512_CORES
        library.dispatchers = direct_dispatchers(library.beside_avx512)
        gemm = {kind: dispatcher.address for kind, dispatcher in library.dispatchers.items()}
    for kind, symbol in SYMBOLS.items():
        ll.add_symbol(symbol, gemm[kind])


# OpenBLAS packs a single-threaded GEMM's operands into one of a table of buffers, the
# first one free when the call starts, mapped on its first use and written only by the
# products that run in it. Where C has at most GEMM_P columns (a layer up to 320 wide for
# sgemm on its Haswell kernels), it packs B a few columns at a time, and its kernel reads
# ahead into pages of the buffer that nothing has written, which Linux backs with its one
# shared zero page. On a Zen 1 EPYC that cost sgemm more than half its speed (x (128, 784)
# W1 (784, 128): 16 against 36 GFLOP/s) in every buffer where no product with a wider C
# had run, and which buffer our threads got moved as NumPy's products took some: after
# one (512, 512) product of NumPy's, our (784, 128, 10) float32 batch 256 took 2.5 ms
# instead of 1.6. So when the GEMM is bound, WARM_THREADS_PER_CORE threads per core at
# once run one such product on zeros in each float type, each in a buffer of its own:
# (64, 320) x (320, 1024), 1.3 MB written per buffer, 21 ms in all once, on that machine.
# A speed-up only: where threads cannot be started, the ones started go on without the
# others.
WARM_THREADS_PER_CORE = 3
WARM_ROWS, WARM_INNER, WARM_COLUMNS = 64, 320, 1024


def cblas_prototype(kind):
    """The ctypes prototype of cblas_?gemm with 64-bit sizes, the signature the kernels'
    symbols are bound to (kernels/gemm.py: _cblas_signature)."""
    real = ctypes.c_double if kind == "d" else ctypes.c_float
    i32, i64, p = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
    return ctypes.CFUNCTYPE(None, i32, i32, i32, i64, i64, i64, real, p, i64, p, i64, real, p, i64)


def warm_threads():
    """How many threads warm OpenBLAS's buffers: WARM_THREADS_PER_CORE per usable core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return WARM_THREADS_PER_CORE * cores


def _warm_buffers(library, gemm):
    """Write OpenBLAS's first buffers with products whose C is WARM_COLUMNS wide, at
    OpenBLAS's one thread, from several threads at once (ctypes lets go of the GIL)."""
    functions = {kind: cblas_prototype(kind)(gemm[kind]) for kind in gemm}
    dtypes = {"d": np.float64, "s": np.float32}
    count = warm_threads()
    start = threading.Barrier(count)

    def warm():
        try:
            start.wait()
        except threading.BrokenBarrierError:  # some threads could not start
            pass
        for kind, dtype in dtypes.items():
            x, w = np.zeros((WARM_ROWS, WARM_INNER), dtype), np.zeros((WARM_INNER, WARM_COLUMNS), dtype)
            out = np.empty((WARM_ROWS, WARM_COLUMNS), dtype)
            functions[kind](101, 111, 111, WARM_ROWS, WARM_COLUMNS, WARM_INNER, 1.0, x.ctypes.data, WARM_INNER,
                            w.ctypes.data, WARM_COLUMNS, 0.0, out.ctypes.data, WARM_COLUMNS)  # fmt: skip

    saved = library.get_num_threads()
    library.set_num_threads(1)
    try:
        workers = []
        try:
            for _ in range(count):
                workers.append(threading.Thread(target=warm, name="twolayer-warm-blas"))
                workers[-1].start()
        except RuntimeError:  # "can't start new thread"
            workers.pop()
            start.abort()
        for worker in workers:
            worker.join()
    finally:
        library.set_num_threads(saved)


def _small_kernels(dll):
    """{our symbol: address} of OpenBLAS's AVX-512 small-matrix kernels, where this CPU has
    AVX-512 and each kernel gives the product NumPy gives on a small test (they are
    OpenBLAS's internal functions, not its API); else None."""
    features = ll.get_host_cpu_features()
    if not all(features.get(f) for f in AVX512_FEATURES):
        return None
    found = {}
    for kind in SYMBOLS:
        for beta0 in (True, False):
            for ops in SMALL_OPS:
                fn = getattr(dll, f"{kind}gemm_small_kernel_{'b0_' if beta0 else ''}{ops}_SKYLAKEX", None)
                if fn is None or not _small_kernel_agrees(fn, kind, beta0, ops):
                    return None
                found[small_symbol(kind, beta0, ops)] = ctypes.cast(fn, ctypes.c_void_p).value
    return found


def _small_kernel_agrees(fn, kind, beta0, ops, m=37, n=5, k=40):
    """Whether a direct kernel computes column-major C = op(A) op(B) (+ C) as NumPy does,
    on sizes that reach its edge paths (37 rows: 32 + 4 + 1)."""
    import numpy as np

    dtype, real = (np.float64, ctypes.c_double) if kind == "d" else (np.float32, ctypes.c_float)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ops[0] == "t" else (m, k)).astype(dtype)  # as op(A) reads it
    b = rng.standard_normal((n, k) if ops[1] == "t" else (k, n)).astype(dtype)
    c = np.full((m, n), np.nan if beta0 else 1.0, dtype)
    expected = (a.T if ops[0] == "t" else a) @ (b.T if ops[1] == "t" else b) + (0 if beta0 else c)
    # column-major views of these row-major arrays: X^T, with leading dimension X.shape[1]
    fa, fb, fc = (np.asfortranarray(x) for x in (a, b, c))
    args = [m, n, k, fa.ctypes.data, fa.shape[0], real(1.0), fb.ctypes.data, fb.shape[0]]
    args += [] if beta0 else [real(1.0)]
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64, real, ctypes.c_void_p, ctypes.c_int64]
    fn.argtypes += ([] if beta0 else [real]) + [ctypes.c_void_p, ctypes.c_int64]
    fn(*args, fc.ctypes.data, fc.shape[0])
    return bool(np.allclose(fc, expected, rtol=1e-4, atol=1e-4 * np.sqrt(k)))


def direct_gemm():
    """Whether the BLAS path's products run on the direct kernels."""
    lib = bound()
    return lib is not None and lib.dispatchers is not None


def packed_from():
    """The row length of B (a layer's width) from which the BLAS path's products run on
    OpenBLAS's packed GEMM: all of them without the direct kernels, those on long rows
    beside OpenBLAS's own AVX-512 kernels (kernels/gemm.py: LIBRARY_MIN_LDB), none of the
    weights' products where OpenBLAS runs narrower ones."""
    lib = bound()
    if lib is None or lib.dispatchers is None:
        return 0
    return LIBRARY_MIN_LDB if lib.beside_avx512 else LP64_MAX


def gemm_description():
    """Which GEMM the BLAS path's products run on, for ``twolayer info``; None if unbound."""
    lib = bound()
    if lib is None:
        return None
    if lib.dispatchers and lib.beside_avx512:
        return (
            f"OpenBLAS's GEMM ({lib.core} kernels); its AVX-512 small-matrix kernels, called "
            f"directly, for layers up to {LIBRARY_MIN_LDB - 1} wide (TWOLAYER_BLAS=cblas opts out)"
        )
    if lib.dispatchers:
        return (
            f"OpenBLAS's AVX-512 small-matrix kernels, called directly (OpenBLAS itself runs its "
            f"{lib.core} kernels here; TWOLAYER_BLAS=cblas opts out)"
        )
    return f"OpenBLAS's GEMM ({lib.core} kernels)"


def hold_description():
    """What the BLAS path does to OpenBLAS's process-wide thread count, for ``twolayer info``."""
    if bound() is None:
        return "-"
    return (
        "held at 1 while a call of ours is inside it, and for the first call's warm-up of its "
        "buffers (process-wide: a product another thread starts meanwhile runs on one thread), "
        "then restored; TWOLAYER_BLAS=numpy opts out"
    )


def fits(*sizes):
    """Whether a bound BLAS takes these sizes (LP64: below 2^31)."""
    lib = bound()
    return lib is not None and (lib.interface == "ILP64" or max(sizes) <= LP64_MAX)


class SingleThreaded:
    """Holds the bound BLAS at one thread while blocks run on our pool's threads, so that one
    thread pool is busy at a time; restores the previous count when the last concurrent
    caller leaves.

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
                lib = library()
                self._saved = lib.get_num_threads()
                if self._saved != 1:
                    lib.set_num_threads(1)
            self._depth += 1

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved != 1:
                library().set_num_threads(self._saved)


single_threaded = SingleThreaded()


# ---------------------------------------------------------------------------
# OpenBLAS's idle spin. Shortened once, at the first parallel call, when nothing can be
# inside OpenBLAS: no other Python thread is alive (a threaded call from another thread
# would hang the restart). Until then each parallel call looks again (threading.active_count,
# ~0.1 us).

_spin = {"state": None}  # None: not looked at yet; "pending": waiting for the other threads to end
_spin_lock = threading.Lock()


def shorten_idle_spin():
    """Shorten OpenBLAS's idle spin to 2^IDLE_SPIN_LOG2 cycles if it is ours to do and safe
    now. Returns the state: "shortened", "pending" or a reason it is left alone."""
    state = _spin["state"]
    if state is not None and state != "pending":
        return state
    with _spin_lock:
        state = _spin["state"]
        if state is None:
            state = _spin["state"] = _whose_spin()
        if state == "pending" and threading.active_count() == 1:
            library().restart_threads_with_timeout(IDLE_SPIN_LOG2)
            state = _spin["state"] = "shortened"
    return state


def _whose_spin():
    lib = library()
    if lib is None:
        return "not an OpenBLAS"
    if os.environ.get(KEEP_SPIN_ENV) == "keep":
        return f"kept ({KEEP_SPIN_ENV}=keep)"
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return f"set by OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']}"
    if not lib.can_shorten_spin():
        return f"OpenBLAS's own ({lib.threading} build without the controls)"
    return "pending"


def idle_spin_description():
    """What OpenBLAS's idle workers do, for ``twolayer info``."""
    state = _spin["state"] or _whose_spin()
    if state == "shortened":
        return f"sleep after 2^{IDLE_SPIN_LOG2} cycles (set by twolayer; {KEEP_SPIN_ENV}=keep opts out)"
    if state == "pending":
        return f"spin 2^28 cycles until a parallel call with no other Python thread running (then 2^{IDLE_SPIN_LOG2})"
    return state
