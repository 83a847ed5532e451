"""The training-loop scenario: minibatch SGD as users write it, with their own NumPy code
between our calls (a fancy-indexed minibatch, the update, and every tenth step an
evaluation whose product runs on NumPy's BLAS threads). Calls timed back to back on a
quiet machine miss what happens here: thread pools that spin after their work and take
a core from the next one, threads that fell asleep and must be woken, data fresh from
another core's cache.

For each backend: the step time (what the user waits for); the call's cost to the loop,
its step time minus that of the same loop whose call returns a stored result (what it
costs the user's code too: data it left in the other core's cache, threads that compete
with the user's); the call's own mean time inside the loop (the slowest 1% of calls left
out: time slices lost to other programs, which the median alone leaves out too; the calls
after each evaluation are 10%, and stay in); and its median time alone (back to back on
one batch, after a quiet moment).
"""

import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

from .api import forward_backward_prop
from .benchmark import make_problem, render_table
from .layout import SHAPES, unpack_params

# The points of the loop table: (shape, batch, dtype).
POINTS = (
    [("mnist", n, "float64") for n in (64, 256, 4096)]
    + [("mnist", n, "float32") for n in (64, 256, 4096)]
    + [("sentiment", n, "float64") for n in (64, 256, 4096)]
    + [("cs224n", n, "float64") for n in (64, 256, 4096)]
)
TRAIN_ROWS = 10_000  # the training set the minibatches are drawn from
VALIDATION_ROWS = 2_000
EVAL_EVERY = 10
LEARNING_RATE = 1e-3
STALLS = 0.01  # the share of slowest calls in the loop left out of its mean
STORED = "stored result"  # the baseline loop, its call returning a stored result


def mean_without_stalls(times):
    """The mean of the calls (or steps) in the loop, the slowest STALLS of them left out."""
    kept = sorted(times)[: max(1, round(len(times) * (1 - STALLS)))]
    return statistics.fmean(kept)


@dataclass
class LoopProblem:
    shape: str
    dims: tuple
    batch: int
    dtype: str
    X: np.ndarray
    Y: np.ndarray
    X_val: np.ndarray
    params: np.ndarray


def make_loop(shape, batch, dtype, seed=0):
    dims = SHAPES[shape]
    X, Y, params = make_problem(dims, max(TRAIN_ROWS, batch), dtype, seed=seed)
    return LoopProblem(shape, dims, batch, np.dtype(dtype).name, X, Y, X[:VALIDATION_ROWS].copy(), params)


def stored_call(problem, backend="numpy"):
    """A call that returns a stored result (``backend``'s for the first batch) at once: the
    loop around it is the user's code alone, the baseline of the call's cost to the loop."""
    cost, grad = forward_backward_prop(
        problem.X[: problem.batch], problem.Y[: problem.batch], problem.params.copy(), problem.dims, backend=backend
    )
    return lambda data, labels, params: (cost, grad)


def run_steps(call, problem, params, steps, rng, clock=time.perf_counter):
    """``steps`` SGD steps on ``params`` (updated in place), ``call(data, labels, params)
    -> (cost, grad)`` computing each gradient. Returns (seconds per step, seconds per call)."""
    X, Y, X_val, dims, batch = problem.X, problem.Y, problem.X_val, problem.dims, problem.batch
    step_times, call_times = [], []
    for step in range(steps):
        t0 = clock()
        idx = rng.integers(0, len(X), batch)
        data, labels = X[idx], Y[idx]
        t1 = clock()
        cost, grad = call(data, labels, params)
        t2 = clock()
        params -= LEARNING_RATE * grad
        if step % EVAL_EVERY == EVAL_EVERY - 1:  # the user's own evaluation, plain NumPy
            W1, b1, W2, b2 = unpack_params(params, dims)
            (1 / (1 + np.exp(-(X_val @ W1 + b1))) @ W2 + b2).argmax(axis=1)
        step_times.append(clock() - t0)
        call_times.append(t2 - t1)
    return step_times, call_times


def time_alone(call, data, labels, params, budget, settle):
    """Median seconds of ``call`` back to back on one batch, after ``settle`` seconds of
    quiet (the median: a tight loop of parallel calls here sometimes stalls for a whole
    time slice, which would flatter the loop's ratio)."""
    return statistics.median(alone_times(call, data, labels, params, budget, settle))


def alone_times(call, data, labels, params, budget, settle):
    """Seconds of each of ``call``'s calls back to back on one batch, for ``budget``
    seconds (5 calls at least), after ``settle`` seconds of quiet and one call untimed."""
    time.sleep(settle)
    call(data, labels, params)
    times = []
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        call(data, labels, params)
        times.append(time.perf_counter() - t)
    return times


@dataclass
class LoopRecord:
    shape: str
    dims: tuple
    n: int  # the batch
    dtype: str
    backend: str
    step_seconds: float  # mean over the steps, evaluations included
    call_seconds: float  # mean of the call inside the loop, without stalls
    alone_seconds: float  # median of the call back to back, alone
    step_speedup: float = None  # numpy's step time over this backend's, same run
    # the step time minus that of the same loop whose call returns a stored result (both
    # means without stalls, as the call's): the call's cost to the loop
    step_cost_seconds: float = None
    scenario: str = "training loop"

    @property
    def in_loop_ratio(self):
        """The call's own time in the loop over its time alone."""
        return self.call_seconds / self.alone_seconds

    @property
    def in_step_ratio(self):
        """The call's cost to the loop over its time alone; None for runs saved without
        the stored-result loop."""
        return None if self.step_cost_seconds is None else self.step_cost_seconds / self.alone_seconds

    def as_dict(self):
        return {**asdict(self), "in_loop_ratio": self.in_loop_ratio, "in_step_ratio": self.in_step_ratio}


def measure_loop_point(shape, batch, dtype, backends, budget=0.6, rounds=3, settle=0.15, make_call=None):
    """One LoopRecord per backend. In each of ``rounds`` turns, the backends and the loop
    whose call returns a stored result each run the loop, then each backend is timed
    alone, each after ``settle`` seconds of quiet; the loops share half of ``budget``
    seconds, the calls alone the other half."""
    problem = make_loop(shape, batch, dtype)
    calls = {b: (make_call(b, problem.dims, dtype) if make_call else _api_call(b, problem.dims)) for b in backends}
    calls[STORED] = stored_call(problem)
    for call in calls.values():  # compile, warm the workspaces
        call(problem.X[:batch], problem.Y[:batch], problem.params.copy())
    steps = {}
    for b, call in calls.items():  # each turn lasts about budget / (2 rounds backends)
        params = problem.params.copy()
        t = time.perf_counter()
        run_steps(call, problem, params, EVAL_EVERY, np.random.default_rng(0))
        per_step = (time.perf_counter() - t) / EVAL_EVERY
        steps[b] = max(2, int(budget / (2 * rounds * len(calls)) / per_step) // EVAL_EVERY) * EVAL_EVERY
    # Each turn times the loops, then each backend alone: the host's speed drifts from one
    # minute to the next, and a ratio of times taken minutes apart measured that drift.
    times = {b: ([], []) for b in calls}
    alone = {b: [] for b in backends}
    data, labels = problem.X[:batch].copy(), problem.Y[:batch].copy()
    share = budget / (2 * rounds * len(backends))  # of each turn, for each backend alone
    for turn in range(rounds):
        for b, call in calls.items():
            time.sleep(settle)
            params = problem.params.copy()
            step_times, call_times = run_steps(call, problem, params, steps[b], np.random.default_rng(turn))
            times[b][0].extend(step_times)
            times[b][1].extend(call_times)
        for b in backends:
            alone[b] += alone_times(calls[b], data, labels, problem.params.copy(), share, settle)
    records = []
    for b in backends:
        records.append(
            LoopRecord(
                shape,
                problem.dims,
                batch,
                problem.dtype,
                b,
                statistics.fmean(times[b][0]),
                mean_without_stalls(times[b][1]),
                statistics.median(alone[b]),
                step_cost_seconds=mean_without_stalls(times[b][0]) - mean_without_stalls(times[STORED][0]),
            )
        )
    numpy_step = next((r.step_seconds for r in records if r.backend == "numpy"), None)
    for r in records:
        r.step_speedup = numpy_step / r.step_seconds if numpy_step else None
    return records


def _api_call(backend, dims):
    return lambda data, labels, params: forward_backward_prop(data, labels, params, dims, backend=backend)


def format_loop_table(records, fast="numba", markdown=False):
    """Per point: each backend's step time, then ``fast``'s step speedup over numpy, its
    call's time alone and in the loop, and two ratios to its time alone: the call's own
    time in the loop, and its cost to the step (step time minus the stored-result loop's,
    "-" for runs saved without it); then numpy's two ratios (what the loop's fresh data
    cost any backend); last, what the loop adds to each call's time, fast's and numpy's,
    in microseconds (in the loop minus alone: a short call shows a bigger ratio for the
    same microseconds)."""
    backends = list(dict.fromkeys(r.backend for r in records))
    rows = {}
    for r in records:
        rows.setdefault((r.shape, r.n, r.dtype), {})[r.backend] = r
    header = [
        "shape",
        "batch",
        "dtype",
        *(f"{b} step ms" for b in backends),
        "step speedup",
        f"{fast} call alone ms",
        "in loop ms",
        "in loop / alone",
        "step cost / alone",
        "numpy's in loop / alone",
        "numpy's step cost / alone",
        f"loop adds us, {fast} / numpy",
    ]
    lines = [header]
    for (shape, n, dtype), by_backend in rows.items():
        line = [shape, str(n), dtype]
        line += [f"{by_backend[b].step_seconds * 1e3:.3f}" if b in by_backend else "-" for b in backends]
        r = by_backend.get(fast)
        line += (
            [
                f"{r.step_speedup:.2f}x" if r.step_speedup else "-",
                f"{r.alone_seconds * 1e3:.3f}",
                f"{r.call_seconds * 1e3:.3f}",
                *_ratios(r),
            ]
            if r
            else ["-"] * 5
        )
        line += _ratios(by_backend.get("numpy"))
        line.append(" / ".join(_added_us(by_backend.get(b)) for b in (fast, "numpy")))
        lines.append(line)
    return render_table(lines, markdown)


def _added_us(record):
    return "-" if record is None else f"{(record.call_seconds - record.alone_seconds) * 1e6:.1f}"


def _ratios(record):
    if record is None:
        return ["-", "-"]
    step = record.in_step_ratio
    return [f"{record.in_loop_ratio:.2f}", "-" if step is None else f"{step:.2f}"]
