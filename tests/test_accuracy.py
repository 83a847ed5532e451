"""Accuracy against an extended-precision evaluation, on every path of both backends,
including saturated sigmoids and logits far apart. Run with -s to see the worst errors."""

import numpy as np
import pytest

from twolayer import fast, forward_backward_prop

from .conftest import random_problem
from .oracle import forward_backward_longdouble

BOUND = {np.float64: 1e-13, np.float32: 1e-4}
# (dims, n, weight scale): ordinary, saturated sigmoids (|z| of tens), extreme logits
PROBLEMS = [
    ((10, 5, 10), 300, 0.5),
    ((10, 5, 10), 700, 30.0),
    ((20, 16, 6), 200, 1.0),
    ((20, 16, 6), 300, 40.0),
    ((6, 40, 3), 900, 200.0),
    ((30, 3, 8), 64, 1e3),
]
BACKENDS = ["numpy", *(f"numba:{path}" for path in fast.PATHS)]


def relative_errors(cost, grad, data, labels, params, dims):
    ref_cost, ref_grad = forward_backward_longdouble(data, labels, params, dims)
    cost_err = abs(np.longdouble(cost) - ref_cost) / abs(ref_cost)
    grad_err = np.max(np.abs(grad.astype(np.longdouble) - ref_grad)) / np.max(np.abs(ref_grad))
    return float(cost_err), float(grad_err)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", BACKENDS)
def test_within_bound_of_long_double(backend, dtype):
    rng = np.random.default_rng(7)
    worst = (0.0, 0.0)
    for dims, n, scale in PROBLEMS:
        data, labels, params = random_problem(rng, n, dims, dtype=dtype, scale=scale)
        cost, grad = forward_backward_prop(data, labels, params, dims, backend=backend)
        errors = relative_errors(cost, grad, data, labels, params, dims)
        assert max(errors) <= BOUND[dtype], (dims, n, scale, errors)
        worst = tuple(map(max, worst, errors))
    print(
        f"\n{backend:15s} {np.dtype(dtype).name:8s} worst relative error against long double: "
        f"cost {worst[0]:.1e}, grad {worst[1]:.1e} (of max |grad|)"
    )
