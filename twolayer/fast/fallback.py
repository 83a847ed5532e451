"""Wide layers where NumPy's BLAS cannot be bound (MKL, Apple's Accelerate, BLIS, the
reference BLAS, ...): NumPy's products with the elementwise stages fused between them
(the portable path), or our own tiles and no BLAS at all (the narrow path), whichever is
faster here. Timed once per process, on one problem, before the first such call returns,
so that a batch size takes the same path in every call of a process.

These BLAS differ by 10x and more. On this project's 2-core machine, (784, 128, 10)
float64 at 64 and 256 rows, the NumPy backend's time over each path's
(`python dev/fallback_paths.py mnist float64 64,256`): the reference BLAS, portable
1.00-1.01x, narrow 8.2-10.1x; Debian's BLIS 1.02x, 3.0-3.4x; MKL 2026.2 1.02-1.09x,
0.73-0.78x; an OpenBLAS left unbound 1.08-1.11x, 0.57-0.63x.
"""

import math
import threading
import time

import numpy as np

from ..kernels import narrow
from ..layout import SHAPES, param_count
from . import numpy_blas
from .paths import W1_BEYOND_CACHE

# The problem both paths are timed on: a batch whose products are most of its time.
PROBLEM_SHAPE, PROBLEM_ROWS = "mnist", 64
# How much faster our tiles must be to be chosen: near a tie the vendor's GEMM stays.
NARROW_MIN_SPEEDUP = 1.25
# A tile of the narrow path costs about the same whatever rows it holds (its loops run
# over all of its rows, and over every weight: (784,128,10) float64 430-450 us from 4 to 32
# rows, (1024^3) 13 ms), so it is timed above on two full tiles. Batches of fewer than two
# tiles take our tiles only where they were SURE_SPEEDUP faster (the reference BLAS 6.5-7.4x,
# BLIS 2.8-3.0x here), else NumPy's products; below one tile, the row kernel where W1 stays
# in cache (17 us a row for (784,128,10) float64, 3.1-3.3x the NumPy backend at 4 rows over
# both),
# else NumPy's products (the row kernel streams a W1 beyond the cache once per row:
# (1024^3) float64 1.3 ms a row, 0.5-0.8x BLIS's products at 4-16 rows).
SURE_SPEEDUP = 2.5
TURNS = 5  # each path timed this many times, in turns; the best time of each counts
CANDIDATES = ("portable", "narrow")

_lock = threading.Lock()
# {"decision": {path, why, and the best times in seconds where measured}} once decided,
# set in one step, so that a thread that does not take the lock sees all of it or nothing
_state = {}


def _decision():
    if "decision" not in _state:
        with _lock:
            if "decision" not in _state:
                _state["decision"] = _decide()
    return _state["decision"]


def wide_path():
    """The path wide layers take where NumPy's BLAS is not bound, "portable" or "narrow",
    measured at the first call (TWOLAYER_BLAS=numpy or none skips the measurement)."""
    return _decision()["path"]


def decided():
    """wide_path() if it has been decided, else None (nothing is measured)."""
    return _state["decision"]["path"] if "decision" in _state else None


def path_for(n, dims, itemsize):
    """The path of n rows of a wide layer where NumPy's BLAS is not bound: "portable",
    "narrow" or "row" (see SURE_SPEEDUP)."""
    decision = _decision()
    if decision["path"] == "portable":
        return "portable"
    T = narrow.tile_rows(*dims, itemsize)
    if n >= 2 * T:
        return "narrow"
    if "best" not in decision:  # TWOLAYER_BLAS=none: no BLAS at all
        return "row" if 2 * n < T else "narrow"
    if decision["best"]["portable"] < SURE_SPEEDUP * decision["best"]["narrow"]:
        return "portable"
    if n >= T:
        return "narrow"
    return "row" if dims[0] * dims[1] < W1_BEYOND_CACHE else "portable"


def _decide():
    forced = numpy_blas.choice()
    if forced == "numpy":
        return {"path": "portable", "why": "TWOLAYER_BLAS=numpy"}
    if forced == "none":
        return {"path": "narrow", "why": "TWOLAYER_BLAS=none"}
    best = time_paths()
    narrow = best["portable"] >= NARROW_MIN_SPEEDUP * best["narrow"]
    return {"path": "narrow" if narrow else "portable", "why": "measured", "best": best}


def time_paths(turns=TURNS):
    """Best seconds of each candidate path on the timing problem, float64."""
    from . import forward_backward  # the backend's entry point (this module is part of it)

    dims, n = SHAPES[PROBLEM_SHAPE], PROBLEM_ROWS
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, dims[0]))
    labels = np.eye(dims[2])[rng.integers(0, dims[2], n)]
    params = 0.1 * rng.standard_normal(param_count(dims))
    for path in CANDIDATES:  # compiles or loads the kernels, warms the workspaces
        forward_backward(data, labels, params, dims, path=path)
    best = dict.fromkeys(CANDIDATES, math.inf)
    for _ in range(turns):
        for path in CANDIDATES:
            start = time.perf_counter()
            forward_backward(data, labels, params, dims, path=path)
            best[path] = min(best[path], time.perf_counter() - start)
    return best


def describe():
    """The decision and why, for ``twolayer info`` (measures if not done yet)."""
    decision = _decision()
    path = decision["path"]
    how = {
        "portable": "portable path (products through NumPy's BLAS",
        "narrow": "narrow path (our own tiles, no BLAS",
    }[path]
    if decision["why"] != "measured":
        return f"{how}: {decision['why']})"
    best = decision["best"]
    other = "none" if path == "portable" else "numpy"
    return (
        f"{how}: NumPy's is not an OpenBLAS twolayer can bind; {PROBLEM_SHAPE} {PROBLEM_ROWS} rows "
        f"float64 took {best['portable'] * 1e3:.2f} ms through it, {best['narrow'] * 1e3:.2f} ms on "
        f"the tiles; TWOLAYER_BLAS={other} forces the other)"
    )
