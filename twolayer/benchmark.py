"""The sweep behind ``twolayer bench``: time each backend at each (shape, N, dtype),
and express it as samples/s, GFLOP/s, a fraction of this machine's GEMM peak and a
speedup over the NumPy backend measured in the same run."""

import itertools
import statistics
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from . import peers
from .api import forward_backward_prop
from .layout import SHAPES, flop_count, param_count
from .machine import gemm_peak

# Batch sizes of the full grid (the pytest-benchmark suite) and of `twolayer bench`.
BATCH_SIZES = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536)
DEFAULT_BATCH_SIZES = (1, 16, 256, 4096, 65536)
# The wide preset stops at 4096 rows: beyond, one NumPy call takes seconds.
MAX_ROWS = {"wide": 4096}
DTYPES = ("float64", "float32")


def raise_mmap_threshold():
    """Put glibc's allocator in the state in which NumPy's temporaries are fastest, before
    a benchmark times the NumPy backend (the yardstick of every speedup).

    glibc serves allocations above its mmap threshold with fresh pages, which fault on
    first touch (1-2.7 us per 4 KiB page on the VMs measured), and raises the threshold to
    the size of any such block that is freed, up to 32 MiB. So the same NumPy code runs at
    different speeds in different processes: the NumPy backend took 7.1 ms or 2.5 ms for
    (50, 100, 5) N = 4096, depending on whether a 16 MB array had been freed before. Here
    one is, so that NumPy is always timed at its faster.
    """
    block = np.empty((32 << 20) - (1 << 16), np.uint8)
    del block


def batch_sizes_for(shape, batch_sizes=BATCH_SIZES):
    return [n for n in batch_sizes if n <= MAX_ROWS.get(shape, n)]


def make_problem(dims, n, dtype, seed=0):
    """Random data, one-hot labels and small weights (sigmoids away from saturation)."""
    rng = np.random.default_rng(seed)
    Dx, H, Dy = dims
    data = rng.standard_normal((n, Dx)).astype(dtype)
    labels = np.zeros((n, Dy), dtype)
    labels[np.arange(n), rng.integers(0, Dy, size=n)] = 1
    params = (0.1 * rng.standard_normal(param_count(dims))).astype(dtype)
    return data, labels, params


def make_call(backend, dims, dtype):
    """``f(data, labels, params) -> (cost, grad)`` for a backend or a peer."""
    if backend in peers.PEERS:
        return peers.make(backend, dims, dtype)
    return lambda data, labels, params: forward_backward_prop(data, labels, params, dims, backend=backend)


def timed_samples(call, budget=0.1, min_samples=1, sample_seconds=2e-4, warm_up=True):
    """Seconds per call, one value per sample: at least ``min_samples``, and more until
    ``budget`` seconds have passed. A warm-up call first unless already warm (the first
    call compiles and is never timed); each sample repeats the call enough times to last
    ``sample_seconds``, so that sub-microsecond differences are resolved."""
    if warm_up:
        call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-9)
    number = max(1, int(sample_seconds / once))
    samples = [once] if number == 1 else []  # a call that long is a sample already
    while len(samples) < min_samples or time.perf_counter() - start < budget:
        t = time.perf_counter()
        for _ in range(number):
            call()
        samples.append((time.perf_counter() - t) / number)
    return samples


@dataclass
class Record:
    shape: str
    dims: tuple
    n: int
    dtype: str
    backend: str
    seconds: float  # median per call
    samples_per_s: float
    gflops: float
    peak_fraction: float  # of this machine's GEMM peak in this dtype
    speedup: float = None  # over the numpy backend at the same point, same run

    def as_dict(self):
        return asdict(self)


# Seconds of timing per point of the grid, shared by the backends: the run's length does
# not grow with the number of peers installed.
BUDGET_SECONDS = 0.6
# Seconds of idleness before each backend's turn. The backend measured just before leaves
# its thread pool spinning, and that takes a core from the next one. OpenBLAS's workers
# spun 2^28 TSC cycles (0.1 s; right after NumPy's calls (784,128,10) N = 4096 took 36-51 ms
# against 20 ms) until twolayer shortened that to 2^18 (numpy_blas.shorten_idle_spin, done
# before any timing); GNU OpenMP's default spin, which PyTorch's pool keeps, lasts 7-10 ms.
SETTLE_SECONDS = 0.02


# Turns each backend takes at a point, a third of the budget each: on a shared machine a
# burst of another tenant's load can last a whole 0.25 s measurement and double it (one
# grid run here had (784,128,10) N = 4096 float32 at 17.1 ms against 9.2 ms in the run
# before, behind NumPy and both peers). In three turns a burst reaches a third of a
# backend's samples, and the median over all of them passes it by.
ROUNDS = 3


def measure_point(shape, n, dtype, backends, budget=BUDGET_SECONDS, settle=SETTLE_SECONDS, rounds=ROUNDS):
    """One Record per backend at (shape, n, dtype), speedups left for ``attach_speedups``.
    The backends take ``rounds`` turns, each after ``settle`` seconds of idleness, sharing
    ``budget`` seconds; each backend's time is the median of its samples from all turns."""
    dims = SHAPES[shape]
    data, labels, params = make_problem(dims, n, dtype)
    calls = {b: make_call(b, dims, dtype) for b in backends}
    samples = {b: [] for b in backends}
    turn_budget = budget / (rounds * len(backends))
    for turn in range(rounds):
        for b in backends:
            f = calls[b]
            time.sleep(settle)
            with warnings.catch_warnings():  # a peer's warnings would land in the table
                warnings.simplefilter("ignore")
                samples[b] += timed_samples(lambda: f(data, labels, params), turn_budget, warm_up=turn == 0)
    records = []
    for b in backends:
        seconds = statistics.median(samples[b])
        gflops = flop_count(n, dims) / seconds / 1e9
        records.append(
            Record(shape, dims, n, np.dtype(dtype).name, b, seconds, n / seconds, gflops, gflops / gemm_peak(dtype))
        )
    return records


def attach_speedups(records):
    """Set each record's speedup over the numpy record at the same (shape, n, dtype)."""
    numpy_seconds = {(r.shape, r.n, r.dtype): r.seconds for r in records if r.backend == "numpy"}
    for r in records:
        base = numpy_seconds.get((r.shape, r.n, r.dtype))
        r.speedup = base / r.seconds if base else None
    return records


def grid(shapes, batch_sizes, dtypes):
    """The (shape, N, dtype) points of a sweep."""
    return [(s, n, d) for s in shapes for n in batch_sizes_for(s, batch_sizes) for d in dtypes]


def estimate_seconds(point, backends, budget=BUDGET_SECONDS, settle=SETTLE_SECONDS, rounds=ROUNDS):
    """About how long ``measure_point`` takes at ``point``: the budget and the settling,
    and where one call outlasts its share (each backend makes a warm-up call and at least
    one per turn), those calls, at a guessed half of the GEMM peak."""
    shape, n, dtype = point
    call = flop_count(n, SHAPES[shape]) / (0.5 * gemm_peak(dtype) * 1e9)
    extra = max(0.0, (rounds + 1) * call - budget / len(backends)) * len(backends)
    return budget + rounds * len(backends) * settle + extra


def sweep(
    shapes, batch_sizes, dtypes, backends, budget=BUDGET_SECONDS, progress=None, settle=SETTLE_SECONDS, rounds=ROUNDS
):
    """Records for every point of the grid; ``progress(seconds, total seconds, label)``
    after each, in estimated seconds (estimate_seconds). At each point the backends take
    turns (``measure_point``), so that a drift of the machine's speed touches them alike."""
    points = grid(shapes, batch_sizes, dtypes)
    estimates = [estimate_seconds(p, backends, budget, settle, rounds) for p in points]
    records = []
    for (shape, n, dtype), done in zip(points, itertools.accumulate(estimates)):
        records += measure_point(shape, n, dtype, backends, budget=budget, settle=settle, rounds=rounds)
        if progress is not None:
            progress(done, sum(estimates), f"{shape} N={n} {dtype}")
    return attach_speedups(records)


def _fmt_time(seconds):
    us = seconds * 1e6
    return f"{us:,.2f}" if us < 10 else f"{us:,.1f}" if us < 1000 else f"{us:,.0f}"


def _fmt_rate(x):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def format_table(records, fast="numba", markdown=False):
    """One row per (shape, N, dtype): ``fast``'s time per call and samples/s, numpy's time,
    the fastest other backend's (name and time), ``fast``'s speedup over numpy and its %
    of the GEMM peak. Under 100 columns; the JSON of a run keeps every backend's numbers."""
    rows = {}
    for r in records:
        rows.setdefault((r.shape, r.n, r.dtype), {})[r.backend] = r
    others = [b for b in dict.fromkeys(r.backend for r in records) if b not in (fast, "numpy")]
    unit = "µs" if markdown else "us"
    header = ["shape", "N", "dtype", f"{fast} {unit}", "samples/s", f"numpy {unit}"]
    header += [f"best peer {unit}"] if others else []
    header += ["speedup", "% peak"]
    lines = [header]
    for (shape, n, dtype), by_backend in rows.items():
        mine, base = by_backend.get(fast), by_backend.get("numpy")
        line = [
            shape,
            str(n),
            dtype,
            _fmt_time(mine.seconds) if mine else "-",
            _fmt_rate(mine.samples_per_s) if mine else "-",
            _fmt_time(base.seconds) if base else "-",
        ]
        if others:
            peers = [by_backend[b] for b in others if b in by_backend]
            best = min(peers, key=lambda r: r.seconds) if peers else None
            line.append(f"{best.backend} {_fmt_time(best.seconds)}" if best else "-")
        line += [
            f"{mine.speedup:.1f}x" if mine and mine.speedup else "-",
            f"{100 * mine.peak_fraction:.1f}" if mine else "-",
        ]
        lines.append(line)
    return render_table(lines, markdown)


def render_table(lines, markdown=False):
    """Columns of text, or a Markdown table: the first row is the header, the first column
    left-aligned, the others right-aligned."""
    if markdown:
        out = ["| " + " | ".join(lines[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(lines[0]) - 1)) + "|"]
        return "\n".join(out + ["| " + " | ".join(row) + " |" for row in lines[1:]])
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    out = []
    for k, row in enumerate(lines):
        out.append(
            "  ".join(cell.rjust(w) if i >= 1 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        )
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
