"""The training-loop scenario (twolayer/trainloop.py): ten SGD steps as users write them,
with their own NumPy code between our calls and an evaluation on NumPy's BLAS threads.

Run:   pytest bench/test_training_loop.py --benchmark-group-by=group
Each result's extra_info carries the step's speedup over numpy in the same session, the
call's mean time in the loop (without stalls) and its median time alone, and the call's
cost to the step: the step time minus that of the same loop whose call returns a stored
result (the "stored result" runs, before numpy's at each point). A thread pool that
starts fighting the user's shows there first.
"""

import numpy as np
import pytest

from twolayer.benchmark import make_call
from twolayer.trainloop import (
    EVAL_EVERY,
    POINTS,
    STORED,
    make_loop,
    mean_without_stalls,
    run_steps,
    stored_call,
    time_alone,
)

QUICK = {("mnist", 256, "float64"), ("sentiment", 4096, "float64"), ("cs224n", 4096, "float64")}


@pytest.fixture(scope="module")
def problems():
    return {}


@pytest.mark.parametrize(
    "point",
    [pytest.param(p, id=f"{p[0]}-B{p[1]}-{p[2]}", marks=[pytest.mark.quick] if p in QUICK else []) for p in POINTS],
)
# the baseline first, then numpy: the costs and speedups are over them
@pytest.mark.parametrize("backend", [STORED, "numpy", "numba"], ids=["stored", "numpy", "numba"])
def test_training_loop(benchmark, medians, problems, backend, point):
    shape, batch, dtype = point
    if point not in problems:
        problems[point] = make_loop(shape, batch, dtype)
    problem = problems[point]
    call = stored_call(problem) if backend == STORED else make_call(backend, problem.dims, dtype)
    params = problem.params.copy()
    rng = np.random.default_rng(0)
    call_times = []

    def ten_steps():
        steps, calls = run_steps(call, problem, params, EVAL_EVERY, rng)
        call_times.extend(calls)
        return steps

    ten_steps()  # compiles, warms the workspaces
    call_times.clear()
    benchmark.group = f"training loop {shape} batch={batch} {dtype}"
    steps = benchmark(ten_steps)
    assert len(steps) == EVAL_EVERY and np.isfinite(params).all()
    info = dict(shape=shape, dims=list(problem.dims), n=batch, dtype=dtype, backend=backend, scenario="training loop")
    if benchmark.stats is not None:  # None under --benchmark-disable
        seconds = benchmark.stats.stats.median / EVAL_EVERY
        medians[(shape, batch, dtype, backend, "loop")] = seconds
        if backend == STORED:
            return
        base = medians.get((shape, batch, dtype, "numpy", "loop"))
        stored = medians.get((shape, batch, dtype, STORED, "loop"))
        alone = time_alone(call, problem.X[:batch].copy(), problem.Y[:batch].copy(), problem.params.copy(), 0.2, 0.15)
        info.update(
            step_seconds=seconds,
            step_speedup=base / seconds if base else None,
            call_seconds=mean_without_stalls(call_times),
            alone_seconds=alone,
            step_cost_seconds=seconds - stored if stored else None,
        )
    benchmark.extra_info.update(info)
