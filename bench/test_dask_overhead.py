"""Dask's overhead at a size CI can afford: the single-process kernel against
twolayer.distributed on the local threaded scheduler, (50, 100, 5), 200k rows in chunks
of 25k. Worker processes and 10^6..10^7 rows: bench/dask_scaling.py."""

import dask
import dask.array as da
import numpy as np
import pytest

import twolayer
from twolayer import distributed
from twolayer.benchmark import make_problem
from twolayer.layout import SHAPES

DIMS = SHAPES["sentiment"]
N, CHUNK = 200_000, 25_000


@pytest.fixture(scope="module")
def problem():
    return make_problem(DIMS, N, "float64")


@pytest.mark.parametrize("where", ["single process", "dask threads"])
def test_dask_overhead(benchmark, problem, where):
    data, labels, params = problem
    if where == "single process":
        f = lambda: twolayer.forward_backward_prop(data, labels, params, DIMS)  # noqa: E731
    else:
        d, y = da.from_array(data, chunks=(CHUNK, -1)), da.from_array(labels, chunks=(CHUNK, -1))

        def f():
            with dask.config.set(scheduler="threads"):
                return distributed.forward_backward_prop(d, y, params, DIMS)

    f()
    benchmark.group = f"dask overhead sentiment N={N}"
    cost, grad = benchmark(f)
    expected = twolayer.forward_backward_prop(data, labels, params, DIMS)
    assert abs(cost - expected[0]) <= 1e-10 * expected[0]
    assert np.allclose(grad, expected[1], rtol=1e-10, atol=1e-12)
    benchmark.extra_info.update(rows=N, chunk_rows=CHUNK, scenario="dask")
