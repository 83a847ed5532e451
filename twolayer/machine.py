"""What machine this is: CPU, cores, library versions, BLAS, Numba's threading layer."""

import importlib
import os
import platform
import sys

import numpy as np


def cpu_model():
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores():
    """Cores this process may run on (the affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def blas_info():
    """One line per BLAS library loaded in this process: name, version, threads, kernel."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        rows = [
            f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads, "
            f"{i.get('architecture') or i.get('threading_layer')}) {os.path.basename(i.get('filepath', ''))}"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
        if rows:
            return rows
    loaded = _loaded_blas_files()
    if loaded:  # a BLAS threadpoolctl does not know, e.g. Debian's BLIS as libblas.so.3
        return [f"unknown {path}" for path in loaded]
    try:  # NumPy >= 1.25 reports how it was built
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return [f"{blas.get('name')} {blas.get('version')} (from numpy's build configuration)"]
    except Exception:  # older NumPy, or a build without the information
        return ["unknown"]


def _loaded_blas_files():
    """Shared libraries mapped into this process whose file names say BLAS (Linux only)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "/" in line}
    except OSError:
        return []
    words = ("blas", "blis", "mkl", "accelerate", "armpl")
    return sorted(p for p in paths if any(w in os.path.basename(p).lower() for w in words))


# OpenBLAS's cores with AVX-512 kernels (its core name, lower case); on an AVX-512 CPU any
# other is narrower than it could be (0.3.31 picks Haswell on a Zen 5).
OPENBLAS_AVX512_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def blas_kernel_hint():
    """A line for the user when NumPy's OpenBLAS runs kernels narrower than the CPU's
    vectors, else None. On this project's Zen 5, OpenBLAS 0.3.31 picked its Haswell
    kernels; with OPENBLAS_CORETYPE=SkylakeX its GEMM ran 1.7x faster (210.1 against
    124.7 GFLOP/s float64). twolayer's own products take its AVX-512 kernels either way
    (fast/numpy_blas.py)."""
    try:
        from numba.core.codegen import get_host_cpu_features
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    if "+avx512f" not in get_host_cpu_features().split(","):
        return None
    for lib in threadpool_info():
        core = str(lib.get("architecture")).lower()
        if lib.get("internal_api") == "openblas" and core not in (*OPENBLAS_AVX512_CORES, "none"):
            return (
                f"OpenBLAS runs its {lib['architecture']} kernels on this AVX-512 CPU: start Python with "
                "OPENBLAS_CORETYPE=SkylakeX for faster NumPy products"
            )
    return None


def _version(module):
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return "not installed"


def describe():
    """A dict describing this machine and the libraries the computation runs on."""
    from . import __version__

    info = {
        "twolayer": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable cores": usable_cores(),
        "numpy": np.__version__,
        "numba": _version("numba"),
        "blas": blas_info(),
    }
    try:
        from . import fast
    except ImportError:
        pass
    else:
        info.update(fast.runtime_info())
    hint = blas_kernel_hint()
    if hint:
        info["hint"] = hint
    return info


_peaks = {}


def gemm_peak(dtype=np.float64, n=2048, repeats=5):
    """GFLOP/s of NumPy's matmul on n x n matrices: the machine's practical peak.

    Best of ``repeats`` after a warm-up, measured once per process and dtype; the
    benchmarks report throughput as a fraction of it.
    """
    import time

    dtype = np.dtype(dtype)
    key = (dtype, n)
    if key not in _peaks:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        out = np.empty((n, n), dtype)
        np.matmul(a, b, out=out)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t)
        _peaks[key] = 2 * n**3 / best / 1e9
    return _peaks[key]
