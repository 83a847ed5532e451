"""The BLAS behind the kernels' GEMMs: NumPy's own OpenBLAS, bound by symbol name.

kernels/blas.py calls two C symbols, ``twolayer_cblas_dgemm`` and
``twolayer_cblas_sgemm``, with the CBLAS interface and 64-bit integers (ILP64). ``bind()``
points them at the OpenBLAS that NumPy's wheels ship (``scipy_cblas_dgemm64_`` and
friends) before any kernel is compiled or loaded from Numba's cache; the cached object
code refers to the names, not to addresses, so it stays valid from process to process.

Why NumPy's BLAS rather than SciPy's (which Numba's own np.dot uses): one BLAS thread pool
in the process instead of two competing for the cores, the newer OpenBLAS, and no SciPy
import, which took 0.2 s of the first call.
"""
import ctypes
import threading

import llvmlite.binding as ll

SYMBOLS = {"d": "twolayer_cblas_dgemm", "s": "twolayer_cblas_sgemm"}


class Library:
    """A bound BLAS: its path, and its thread-count getter and setter."""

    def __init__(self, path, get_num_threads, set_num_threads):
        self.path = path
        self.get_num_threads = get_num_threads
        self.set_num_threads = set_num_threads


_lock = threading.Lock()
_bound = []  # [Library] once bind() succeeded


def _find():
    """NumPy's OpenBLAS with ILP64 CBLAS symbols: (path, ctypes.CDLL, symbol prefix), or None.

    OpenBLAS's ILP64 builds end their symbols in "64_"; NumPy's wheels add the prefix
    "scipy_". LP64 libraries (SciPy's own OpenBLAS, say) do not match, and are not used.
    """
    import numpy  # noqa: F401  (loads NumPy's BLAS into the process)
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        if lib.internal_api != "openblas":
            continue
        dll = ctypes.CDLL(lib.filepath)
        for prefix in ("scipy_", ""):
            if all(hasattr(dll, f"{prefix}{name}64_") for name in
                   ("cblas_dgemm", "cblas_sgemm", "openblas_get_num_threads", "openblas_set_num_threads")):
                return lib.filepath, dll, prefix
    return None


def bind():
    """Bind the kernels' GEMM symbols to NumPy's OpenBLAS; the Library, or None when NumPy's
    BLAS is not an ILP64 OpenBLAS (then the kernels that need it must not be used)."""
    with _lock:
        if not _bound:
            found = _find()
            if found is None:
                return None
            path, dll, prefix = found
            for kind, symbol in SYMBOLS.items():
                address = ctypes.cast(getattr(dll, f"{prefix}cblas_{kind}gemm64_"), ctypes.c_void_p).value
                ll.add_symbol(symbol, address)
            getter = getattr(dll, f"{prefix}openblas_get_num_threads64_")
            setter = getattr(dll, f"{prefix}openblas_set_num_threads64_")
            getter.restype = ctypes.c_int
            setter.argtypes = [ctypes.c_int]
            _bound.append(Library(path, getter, setter))
        return _bound[0]
