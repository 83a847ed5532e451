"""twolayer.distributed: the same gradient over row-chunked dask arrays."""

import dask.array as da
import numpy as np
import pytest

import twolayer
from twolayer import distributed

from .conftest import random_problem, run_python

DIMS = (12, 7, 4)


def single_process(data, labels, params):
    return twolayer.forward_backward_prop(data, labels, params, DIMS)


def assert_same(got, expected, rtol=1e-10):
    assert abs(got[0] - expected[0]) <= rtol * abs(expected[0])
    assert np.max(np.abs(got[1] - expected[1])) <= rtol * np.max(np.abs(expected[1]))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_threaded_scheduler_matches_single_process(backend, rng):
    data, labels, params = random_problem(rng, 5000, DIMS)
    got = distributed.forward_backward_prop(
        da.from_array(data, chunks=(600, -1)), da.from_array(labels, chunks=(600, -1)), params, DIMS, backend=backend
    )
    assert_same(got, single_process(data, labels, params))


def test_differently_chunked_inputs_are_rechunked(rng):
    data, labels, params = random_problem(rng, 3001, DIMS)
    got = distributed.forward_backward_prop(
        da.from_array(data, chunks=(700, 5)), da.from_array(labels, chunks=(450, 2)), params, DIMS, split_every=2
    )
    assert_same(got, single_process(data, labels, params))


def test_plain_arrays_are_chunked_and_float32_stays_float32(rng):
    data, labels, params = random_problem(rng, 2500, DIMS, dtype=np.float32)
    cost, grad = distributed.forward_backward_prop(data, labels, params, DIMS, chunk_rows=300)
    assert grad.dtype == np.float32
    assert_same((cost, grad), single_process(data, labels, params), rtol=1e-5)


def test_empty_dataset(rng):
    params = random_problem(rng, 1, DIMS)[2]
    cost, grad = distributed.forward_backward_prop(np.zeros((0, 12)), np.zeros((0, 4)), params, DIMS)
    assert cost == 0.0 and not grad.any()


@pytest.mark.parametrize(
    "change, error, pattern",
    [
        (lambda d, y, p: (d[:, :5], y, p), ValueError, r"data: expected shape \(N, Dx\) = \(N, 12\)"),
        (lambda d, y, p: (d, y[:-1], p), ValueError, r"labels: expected shape \(N, Dy\) = \(50, 4\)"),
        (lambda d, y, p: (d[None], y, p), ValueError, r"data: expected a 2-D array"),
        (lambda d, y, p: (d, y, p[:-1]), ValueError, r"params: expected length"),
        (lambda d, y, p: (d[d[:, 0] > 0], y, p), ValueError, r"compute_chunk_sizes"),
        (lambda d, y, p: ("x", y, p), TypeError, r"data: expected a real numeric"),
    ],
)
def test_bad_input(change, error, pattern, rng):
    data, labels, params = random_problem(rng, 50, DIMS)
    d, y = da.from_array(data, chunks=(20, -1)), da.from_array(labels, chunks=(20, -1))
    with pytest.raises(error, match=pattern):
        distributed.forward_backward_prop(*change(d, y, params), DIMS)


def test_params_enter_the_graph_once(rng):
    data, labels, params = random_problem(rng, 1000, DIMS)
    d, y = da.from_array(data, chunks=(100, -1)), da.from_array(labels, chunks=(100, -1))
    result, dtype = distributed.forward_backward_delayed(d, y, params, DIMS)
    graph = dict(result.__dask_graph__())
    params_keys = [k for k in graph if str(k).startswith("ndarray-")]  # dask.delayed(params)
    chunk_tasks = [k for k in graph if str(k).startswith("_chunk_cost_grad")]
    assert len(chunk_tasks) == 10 and len(params_keys) == 1
    assert all(params_keys[0] in graph[k].dependencies for k in chunk_tasks)  # a reference, not a copy
    assert dtype == np.float64


def test_local_cluster_of_two_worker_processes(rng):
    import distributed as distributed_  # installed by the dask extra

    data, labels, params = random_problem(rng, 20_000, DIMS)
    expected = single_process(data, labels, params)
    with (
        distributed_.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed_.Client(cluster) as client,
    ):
        got = distributed.forward_backward_prop(
            da.from_array(data, chunks=(2500, -1)), da.from_array(labels, chunks=(2500, -1)), params, DIMS
        )
        workers = client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2
    assert_same(got, expected)


def test_without_dask_the_package_works_and_the_module_says_what_to_install():
    code = (
        "import sys; sys.modules['dask'] = None\n"
        "import numpy as np, twolayer\n"
        "twolayer.forward_backward_prop(np.ones((2, 3)), np.eye(2), np.ones(3*2+2+2*2+2), (3, 2, 2))\n"
        "try:\n    import twolayer.distributed\nexcept ImportError as e:\n    print(e)\n"
    )
    assert "pip install 'twolayer[dask]'" in run_python(code=code).stdout
