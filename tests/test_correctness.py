"""forward_backward_prop against an independent long-double formulation, on every backend."""

import numpy as np
import pytest

import twolayer
from twolayer import fast, forward_backward_prop, param_count

from .conftest import random_problem
from .oracle import assert_close_to_oracle, forward_backward_longdouble

SHAPES = [(1, 1, 1), (1, 3, 2), (4, 1, 3), (5, 6, 1), (10, 5, 10), (3, 17, 4), (33, 9, 7), (50, 100, 5)]
RTOL = {np.float64: 1e-12, np.float32: 1e-4}


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("n", [1, 2, 7, 64, 131])
def test_matches_longdouble_oracle(backend, rng, dims, n):
    data, labels, params = random_problem(rng, n, dims)
    cost, grad = forward_backward_prop(data, labels, params, dims, backend=backend)
    assert type(cost) is float
    assert grad.shape == (param_count(dims),) and grad.dtype == np.float64
    assert_close_to_oracle(cost, grad, data, labels, params, dims, RTOL[np.float64])


@pytest.mark.parametrize("n", [1, 33, 300])
def test_float32_in_float32_out(backend, rng, n):
    dims = (10, 5, 10)
    data, labels, params = random_problem(rng, n, dims, dtype=np.float32)
    cost, grad = forward_backward_prop(data, labels, params, dims, backend=backend)
    assert type(cost) is float and grad.dtype == np.float32
    assert_close_to_oracle(cost, grad, data, labels, params, dims, RTOL[np.float32])


def test_soft_labels(backend, rng):
    dims = (6, 4, 5)
    data, labels, params = random_problem(rng, 40, dims, soft=True)
    labels[::3] *= 2.5  # rows need not sum to one: d1 = yhat * rowsum(y) - y
    cost, grad = forward_backward_prop(data, labels, params, dims, backend=backend)
    assert_close_to_oracle(cost, grad, data, labels, params, dims, RTOL[np.float64])


def test_one_hot_reduces_to_yhat_minus_y(backend, rng):
    dims = (4, 3, 6)
    data, labels, params = random_problem(rng, 9, dims)
    _, grad = forward_backward_prop(data, labels, params, dims, backend=backend)
    # gb2 = sum_rows(yhat - y)
    W1, b1, W2, b2 = twolayer.unpack_params(params, dims)
    yhat = twolayer.softmax(twolayer.sigmoid(data @ W1 + b1) @ W2 + b2)
    assert np.allclose(grad[-dims[2] :], (yhat - labels).sum(axis=0), rtol=1e-12, atol=1e-12)


def test_extreme_logits_give_the_exact_finite_cost(backend):
    # h is one-hot-ish and W2 has +-1e3 entries: logits differ by ~2e3, yhat of the true class
    # underflows to 0 in float64, so -log(softmax) would be inf. The exact cost is finite.
    dims = (2, 2, 3)
    W1 = np.array([[50.0, -50.0], [0.0, 0.0]])
    b1 = np.zeros(2)
    W2 = np.array([[1000.0, -1000.0, 0.0], [0.0, 0.0, 0.0]])
    b2 = np.zeros(3)
    params = twolayer.pack_params(W1, b1, W2, b2)
    data = np.array([[1.0, 0.0], [1.0, 3.0]])
    labels = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    cost, grad = forward_backward_prop(data, labels, params, dims, backend=backend)
    ref_cost, _ = forward_backward_longdouble(data, labels, params, dims)
    assert np.isfinite(cost) and cost > 1999
    assert cost == pytest.approx(float(ref_cost), rel=1e-14)
    assert_close_to_oracle(cost, grad, data, labels, params, dims, 1e-12)


def test_empty_batch(backend):
    dims = (3, 4, 2)
    params = np.ones(param_count(dims))
    cost, grad = forward_backward_prop(np.zeros((0, 3)), np.zeros((0, 2)), params, dims, backend=backend)
    assert cost == 0.0 and type(cost) is float
    assert grad.shape == params.shape and not grad.any()


@pytest.mark.parametrize("where", ["data", "labels", "params"])
def test_nan_never_gives_a_finite_cost(backend, rng, where):
    dims = (4, 3, 5)
    arrays = dict(zip(("data", "labels", "params"), random_problem(rng, 6, dims)))
    arrays[where].flat[1] = np.nan
    cost, grad = forward_backward_prop(arrays["data"], arrays["labels"], arrays["params"], dims, backend=backend)
    assert not np.isfinite(cost)


def test_inf_input_never_gives_a_finite_cost(backend, rng):
    dims = (4, 3, 5)
    data, labels, params = random_problem(rng, 6, dims)
    params[-1] = np.inf  # a logit of +inf
    cost, _ = forward_backward_prop(data, labels, params, dims, backend=backend)
    assert not np.isfinite(cost)


@pytest.mark.parametrize(
    "dtypes, expected",
    [
        ((np.float32, np.float32, np.float64), np.float64),
        ((np.float64, np.float32, np.float32), np.float64),
        ((np.int64, np.float32, np.float32), np.float64),  # NumPy's int64 + float32 promotion
        ((np.int32, np.bool_, np.float64), np.float64),
        ((np.int8, np.uint8, np.int16), np.float64),
        ((np.float16, np.float16, np.float32), np.float32),
    ],
)
def test_dtype_promotion(backend, rng, dtypes, expected):
    dims = (3, 4, 2)
    data, labels, params = random_problem(rng, 5, dims)
    data, labels, params = (np.round(a * 3).astype(t) for a, t in zip((data, labels, params), dtypes))
    cost, grad = forward_backward_prop(data, labels, params, dims, backend=backend)
    assert grad.dtype == expected
    rtol = RTOL[np.float32] if expected == np.float32 else RTOL[np.float64]
    assert_close_to_oracle(cost, grad, data, labels, params, dims, rtol)


def test_lists_are_accepted(backend):
    dims = (2, 1, 2)
    cost, grad = forward_backward_prop([[1, 2]], [[0, 1]], [0.1] * param_count(dims), dims, backend=backend)
    ref_cost, ref_grad = forward_backward_longdouble(
        np.array([[1, 2]]), np.array([[0, 1]]), np.full(param_count(dims), 0.1), dims
    )
    assert cost == pytest.approx(float(ref_cost), rel=1e-14)
    assert grad.dtype == np.float64 and grad.shape == (param_count(dims),)
    np.testing.assert_allclose(grad, ref_grad.astype(np.float64), rtol=1e-13, atol=1e-15)


def _layouts(a):
    """The same values in other memory layouts."""
    f = np.asfortranarray(a)
    big = np.zeros((a.shape[0] * 2, a.shape[1] * 3) if a.ndim == 2 else (a.shape[0] * 2,), a.dtype)
    strided = big[::2, ::3] if a.ndim == 2 else big[::2]
    strided[...] = a
    reversed_ = np.ascontiguousarray(a[::-1])[::-1]  # negative strides
    ro = a.copy()
    ro.flags.writeable = False
    return {"fortran": f, "strided": strided, "negative": reversed_, "readonly": ro}


@pytest.mark.parametrize("layout", ["fortran", "strided", "negative", "readonly"])
def test_any_memory_layout(backend, rng, layout):
    dims = (6, 4, 3)
    data, labels, params = random_problem(rng, 11, dims)
    expected = forward_backward_prop(data, labels, params, dims, backend=backend)
    got = forward_backward_prop(
        _layouts(data)[layout], _layouts(labels)[layout], _layouts(params)[layout], dims, backend=backend
    )
    assert got[0] == pytest.approx(expected[0], rel=1e-13)
    assert np.allclose(got[1], expected[1], rtol=1e-12, atol=1e-13)


def test_inputs_are_never_modified(backend, rng):
    dims = (5, 4, 3)
    arrays = random_problem(rng, 9, dims)
    copies = [a.copy() for a in arrays]
    forward_backward_prop(*arrays, dims, backend=backend)
    forward_backward_prop(*(a.astype(np.float32) for a in arrays), dims, backend=backend)
    for a, c in zip(arrays, copies):
        assert np.array_equal(a, c)


def test_out_receives_the_gradient(backend, rng):
    dims = (5, 4, 3)
    data, labels, params = random_problem(rng, 9, dims)
    out = np.full(param_count(dims), np.nan)
    cost, grad = forward_backward_prop(data, labels, params, dims, backend=backend, out=out)
    assert grad is out
    ref_cost, ref_grad = forward_backward_prop(data, labels, params, dims, backend=backend)
    assert cost == ref_cost and np.array_equal(out, ref_grad)


@pytest.mark.parametrize("seed", range(3))
def test_sanity_check_passes(backend, seed, capsys):
    assert twolayer.sanity_check(backend=backend, seed=seed) is True
    assert "Gradient check passed!" in capsys.readouterr().out


def test_gradcheck_on_soft_labels_and_odd_shapes(backend, rng):
    for dims in [(1, 1, 1), (3, 1, 4), (2, 5, 1)]:
        data, labels, params = random_problem(rng, 4, dims, soft=True)
        assert twolayer.gradcheck_naive(
            lambda p: forward_backward_prop(data, labels, p, dims, backend=backend), params, verbose=False
        )


# A W1 beyond the cache: a few rows of it run a kernel of their own (rows_split), which
# the small shapes above never reach. The contract holds there too.
WIDE = (512, 520, 3)


@pytest.mark.parametrize("backend", ["numba", "numba:row"])
def test_a_few_rows_of_a_wide_layer_keep_the_contract(backend, rng):
    assert WIDE[0] * WIDE[1] >= fast.paths.W1_BEYOND_CACHE and fast.choose_path(5, *WIDE) == "row"
    data, labels, params = random_problem(rng, 5, WIDE, soft=True, scale=0.1)
    labels[1] *= 2.5
    strided = np.repeat(data, 2, axis=1)[:, ::2]  # not contiguous
    inputs = [a.copy() for a in (strided, labels, params)]
    cost, grad = forward_backward_prop(strided, labels, params, WIDE, backend=backend)
    assert all(np.array_equal(a, b) for a, b in zip(inputs, (strided, labels, params)))
    assert_close_to_oracle(cost, grad, data, labels, params, WIDE, RTOL[np.float64])
    singles = [a.astype(np.float32) for a in (data, labels, params)]
    cost32, grad32 = forward_backward_prop(*singles, WIDE, backend=backend)
    assert grad32.dtype == np.float32 and cost32 == pytest.approx(cost, rel=1e-4)
    for i, name in enumerate(("data", "labels", "params")):
        arrays = [data, labels, params]
        arrays[i] = arrays[i].copy()
        arrays[i].flat[7] = np.nan
        assert not np.isfinite(forward_backward_prop(*arrays, WIDE, backend=backend)[0]), name
    params_inf = params.copy()
    params_inf[-1] = np.inf
    assert not np.isfinite(forward_backward_prop(data, labels, params_inf, WIDE, backend=backend)[0])
