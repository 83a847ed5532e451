"""Throughput against batch size: each backend at each (shape, N, dtype) of the grid.

Run:   pytest bench --benchmark-group-by=group      (full grid, about 5 minutes on 2 cores)
       pytest bench -m quick                         (under a minute)
Track: add --benchmark-autosave, later --benchmark-compare --benchmark-compare-fail=median:10%
       (same machine), or compare speedups across machines with `twolayer gate`.

Each result's extra_info carries samples/s, GFLOP/s, the fraction of this machine's GEMM
peak (measured once per session) and the speedup over numpy at the same point.
"""

import numpy as np
import pytest

from twolayer import peers
from twolayer.benchmark import BATCH_SIZES, DTYPES, batch_sizes_for, make_call, make_problem
from twolayer.layout import SHAPES, flop_count, param_count
from twolayer.machine import gemm_peak

# numpy first: the others' speedups are over it, measured earlier in the same session.
BACKENDS = ["numpy", "numba", *peers.available()]
QUICK = {("cs224n", 1), ("cs224n", 16), ("cs224n", 4096), ("sentiment", 256), ("mnist", 256), ("wide", 16)}


def _points():
    for shape in SHAPES:
        for n in batch_sizes_for(shape, BATCH_SIZES):
            for dtype in DTYPES:
                marks = [pytest.mark.quick] if (shape, n) in QUICK and dtype == "float64" else []
                yield pytest.param((shape, n, dtype), id=f"{shape}-N{n}-{dtype}", marks=marks)


def _record(benchmark, medians, shape, n, dtype, backend):
    dims = SHAPES[shape]
    info = dict(shape=shape, dims=list(dims), n=n, dtype=dtype, backend=backend)
    if benchmark.stats is not None:  # None under --benchmark-disable
        seconds = benchmark.stats.stats.median
        medians[(shape, n, dtype, backend)] = seconds
        gflops = flop_count(n, dims) / seconds / 1e9
        base = medians.get((shape, n, dtype, "numpy"))
        info.update(
            samples_per_s=n / seconds,
            gflops=gflops,
            peak_fraction=gflops / gemm_peak(dtype),
            speedup=base / seconds if base else None,
        )
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("point", list(_points()))
@pytest.mark.parametrize("backend", BACKENDS)
def test_throughput(benchmark, medians, backend, point):
    shape, n, dtype = point
    dims = SHAPES[shape]
    data, labels, params = make_problem(dims, n, dtype)
    f = make_call(backend, dims, dtype)
    f(data, labels, params)  # the first call compiles: never timed
    benchmark.group = f"{shape} N={n} {dtype}"
    cost, grad = benchmark(f, data, labels, params)
    assert np.isfinite(cost) and cost > 0
    assert grad.shape == (param_count(dims),) and np.isfinite(grad).all()
    _record(benchmark, medians, shape, n, dtype, backend)
