"""Property-based: random dimensions, batch sizes, dtypes and memory layouts."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twolayer import forward_backward_prop, gradcheck_naive, param_count

DTYPES = {"float64": np.float64, "float32": np.float32}


@st.composite
def problems(draw, max_dim=40, max_n=300):
    dims = tuple(draw(st.integers(1, max_dim)) for _ in range(3))
    n = draw(st.integers(0, max_n))
    dtype = DTYPES[draw(st.sampled_from(sorted(DTYPES)))]
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0]))
    soft = draw(st.booleans())
    rng = np.random.default_rng(seed)
    Dx, H, Dy = dims
    data = rng.standard_normal((n, Dx))
    labels = rng.random((n, Dy)) if soft else np.eye(Dy)[rng.integers(0, Dy, size=n)]
    params = scale * rng.standard_normal(param_count(dims))
    arrays = [a.astype(dtype) for a in (data, labels, params)]
    layout = draw(st.sampled_from(["C", "F", "strided", "readonly"]))
    if layout == "F":
        arrays[:2] = [np.asfortranarray(a) for a in arrays[:2]]
    elif layout == "strided":
        arrays = [np.repeat(a, 2, axis=-1)[..., ::2] for a in arrays]
    elif layout == "readonly":
        for a in arrays:
            a.flags.writeable = False
    return dims, arrays


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_numba_and_numpy_backends_agree(problem):
    dims, (data, labels, params) = problem
    c1, g1 = forward_backward_prop(data, labels, params, dims, backend="numpy")
    c2, g2 = forward_backward_prop(data, labels, params, dims, backend="numba")
    assert g1.dtype == g2.dtype == params.dtype
    tol = 1e-10 if params.dtype == np.float64 else 2e-4
    assert abs(c1 - c2) <= tol * max(1.0, abs(c1))
    assert np.max(np.abs(g1 - g2), initial=0.0) <= tol * max(1.0, np.max(np.abs(g1), initial=0.0))


@settings(max_examples=25, deadline=None)
@given(problems(max_dim=6, max_n=8))
def test_gradcheck_passes_on_small_problems(problem):
    dims, (data, labels, params) = problem
    data, labels, params = (np.asarray(a, np.float64) for a in (data, labels, params))
    assert gradcheck_naive(
        lambda p: forward_backward_prop(data, labels, p, dims, backend="numba"), params, verbose=False
    )
