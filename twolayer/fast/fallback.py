"""Wide layers where NumPy's BLAS cannot be bound (MKL, Apple's Accelerate, BLIS, the
reference BLAS, ...): NumPy's products with the elementwise stages fused between them
(the portable path), or our own kernels and no BLAS at all (the narrow path's tiles, the
row kernel), whichever is faster here. Timed once per process for each layer size and
float type, at its first call, so that a batch size takes the same path in every call of
a process.

These BLAS differ by 10x and more, and the portable path's own cost (five products called
from Python) by layer size. On this project's 2-core machine, float64 at 64 and 256 rows,
the NumPy backend's time over each path's (`python dev/fallback_paths.py mnist float64
64,256`, the same for sentiment): (784, 128, 10) over the reference BLAS, portable
1.00-1.01x, narrow 8.2-10.1x; Debian's BLIS 1.02x, 3.0-3.4x; MKL 2026.2 1.02-1.09x,
0.73-0.78x; an OpenBLAS left unbound 1.08-1.11x, 0.57-0.63x; (50, 100, 5) over MKL
1.13-1.60x, 2.2-3.0x (its portable path took 45-96 us from run to run, and near the
threshold the choice can differ between processes: TWOLAYER_BLAS pins it).
"""

import statistics
import threading
import time

import numpy as np

from ..kernels import narrow
from ..layout import SHAPES, param_count
from . import numpy_blas, paths
from .paths import W1_BEYOND_CACHE

# How much faster our tiles must be to be chosen: near a tie the vendor's GEMM stays.
NARROW_MIN_SPEEDUP = 1.25
# A tile of the narrow path costs about the same whatever rows it holds (its loops run
# over all of its rows, and over every weight: (784,128,10) float64 430-450 us from 4 to 32
# rows), so the paths are timed on two full tiles. Batches of fewer than two tiles take
# our tiles only where they were SURE_SPEEDUP faster ((784,128,10) float64: the reference
# BLAS 6.5-7.4x, BLIS 2.8-3.0x here), else NumPy's products; below one tile, the row
# kernel where W1 stays in cache (17 us a row for (784,128,10) float64, 3.1-3.3x the
# NumPy backend at 4 rows over both). Where W1 is beyond the cache, the row path
# (rows_split: the weights streamed once per group of rows, shared out over the threads)
# takes every batch under two tiles where our tiles beat NumPy's products at all: (1024^3)
# over BLIS at 8-32 rows (`python dev/fallback_paths.py wide float64 8,16,24,32`), float64
# 2.4-3.7x the NumPy backend's speed, where a tile took 12.6 ms whatever its rows (0.57-1.42x)
# and NumPy's products 1.01-1.06x; float32 2.2-3.2x, tiles 0.29-0.82x, products
# 1.00-1.01x. And a few rows (paths.ROW_MAX_ROWS) on any BLAS: over MKL, float64 at 5-6
# rows 1.58-1.59x, its products 1.05-1.09x.
SURE_SPEEDUP = 2.5
# Each path is timed this many times, in turns, and the median of each counts; past
# TIMING_SECONDS, after three turns, no more ((1024^3) over the reference BLAS: 100 ms a
# call through NumPy).
TURNS = 7
TIMING_SECONDS = 0.2
CANDIDATES = ("portable", "narrow")
# The layer size `twolayer info` reports (timed there if no call has been yet).
EXAMPLE = (SHAPES["mnist"], 8)

_lock = threading.Lock()
# (dims, itemsize) -> {path, why, and the median times in seconds where measured}; each
# decision is stored in one step, so a thread that reads without the lock sees all of it
_decisions = {}


def _decision(dims, itemsize):
    key = (tuple(dims), itemsize)
    if key not in _decisions:
        with _lock:
            if key not in _decisions:
                _decisions[key] = _decide(*key)
    return _decisions[key]


def decided(dims, itemsize):
    """The path ("portable" or "narrow") chosen for this layer size and float type, or None
    if it has not been yet (nothing is measured)."""
    decision = _decisions.get((tuple(dims), itemsize))
    return decision and decision["path"]


def path_for(n, dims, itemsize):
    """The path of n rows of a wide layer where NumPy's BLAS is not bound: "portable",
    "narrow" or "row" (see SURE_SPEEDUP). The first call of a layer size and float type
    times the paths (TWOLAYER_BLAS=numpy or none chooses without timing)."""
    wide = dims[0] * dims[1] >= W1_BEYOND_CACHE
    if wide and n <= paths.ROW_MAX_ROWS[True][itemsize]:
        return "row"  # as on OpenBLAS's packed GEMM (paths.py), over MKL too
    decision = _decision(dims, itemsize)
    if decision["path"] == "portable":
        return "portable"
    T = narrow.tile_rows(*dims, itemsize)
    if n >= 2 * T:
        return "narrow"
    if wide:
        return "row"
    medians = decision.get("medians")
    if medians is None:  # TWOLAYER_BLAS=none: no BLAS at all
        return "row" if 2 * n < T else "narrow"
    if medians["portable"] < SURE_SPEEDUP * medians["narrow"]:
        return "portable"
    return "narrow" if n >= T else "row"


def _decide(dims, itemsize):
    forced = numpy_blas.choice()
    if forced == "numpy":
        return {"path": "portable", "why": "TWOLAYER_BLAS=numpy"}
    if forced == "none":
        return {"path": "narrow", "why": "TWOLAYER_BLAS=none"}
    medians = time_paths(dims, itemsize)
    narrow_wins = medians["portable"] >= NARROW_MIN_SPEEDUP * medians["narrow"]
    return {"path": "narrow" if narrow_wins else "portable", "why": "measured", "medians": medians}


def time_paths(dims, itemsize, turns=TURNS):
    """Median seconds of each candidate path on two tiles' rows of random data, timed in
    turns (the median: a BLAS whose threads must wake has a fast best and a slow typical
    call; MKL's portable path at (50, 100, 5) 64 rows: best 50 us, median 96 us)."""
    from . import forward_backward  # the backend's entry point (this module is part of it)

    dtype = np.float64 if itemsize == 8 else np.float32
    n = 2 * narrow.tile_rows(*dims, itemsize)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, dims[0])).astype(dtype)
    labels = np.eye(dims[2], dtype=dtype)[rng.integers(0, dims[2], n)]
    params = (0.1 * rng.standard_normal(param_count(dims))).astype(dtype)
    for path in CANDIDATES:  # compiles or loads the kernels, warms the workspaces
        forward_backward(data, labels, params, dims, path=path)
    times = {path: [] for path in CANDIDATES}
    end = time.perf_counter() + TIMING_SECONDS
    for turn in range(turns):
        if turn >= 3 and time.perf_counter() > end:
            break
        for path in CANDIDATES[:: 1 if turn % 2 else -1]:
            start = time.perf_counter()
            forward_backward(data, labels, params, dims, path=path)
            times[path].append(time.perf_counter() - start)
    return {path: statistics.median(t) for path, t in times.items()}


def describe():
    """What wide layers do here, for ``twolayer info``: the decisions so far (the example
    layer size timed now if there are none)."""
    forced = numpy_blas.choice()
    if forced == "numpy":
        return "portable path (products through NumPy's BLAS: TWOLAYER_BLAS=numpy)"
    if forced == "none":
        return "our own kernels, no BLAS (TWOLAYER_BLAS=none)"
    if not _decisions:
        _decision(*EXAMPLE)
    cells = []
    for (dims, itemsize), d in sorted(_decisions.items()):
        kind = "float64" if itemsize == 8 else "float32"
        medians = d["medians"]
        cells.append(
            f"{dims} {kind}: {'our tiles' if d['path'] == 'narrow' else 'its products'} "
            f"({medians['portable'] * 1e3:.2f} ms through NumPy, {medians['narrow'] * 1e3:.2f} ms on the tiles)"
        )
    return (
        "NumPy's BLAS is not an OpenBLAS twolayer can bind: each layer size takes NumPy's products "
        "or our own kernels, whichever its first call timed faster; " + "; ".join(cells)
    )
