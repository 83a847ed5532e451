"""Accuracy against an extended-precision evaluation, on every path of both backends,
including saturated sigmoids and logits far apart. Run with -s to see the worst errors."""
import numpy as np
import pytest

from twolayer import fast, forward_backward_prop

from oracle import forward_backward_longdouble, random_problem

BOUND = {np.float64: 1e-13, np.float32: 1e-4}
# (dims, n, weight scale): ordinary, saturated sigmoids (|z| of tens), extreme logits
PROBLEMS = [((10, 5, 10), 300, 0.5), ((10, 5, 10), 700, 30.0), ((20, 16, 6), 200, 1.0),
            ((20, 16, 6), 300, 40.0), ((6, 40, 3), 900, 200.0), ((30, 3, 8), 64, 1e3)]
CALLS = {
    "numpy": lambda d, y, p, dims: forward_backward_prop(d, y, p, dims, backend="numpy"),
    **{f"numba-{path}": (lambda path: lambda d, y, p, dims: fast.forward_backward(d, y, p, dims, path=path))(path)
       for path in fast.PATHS},
}
worst = {}


def relative_errors(cost, grad, data, labels, params, dims):
    ref_cost, ref_grad = forward_backward_longdouble(data, labels, params, dims)
    cost_err = abs(np.longdouble(cost) - ref_cost) / abs(ref_cost)
    grad_err = np.max(np.abs(grad.astype(np.longdouble) - ref_grad)) / np.max(np.abs(ref_grad))
    return float(cost_err), float(grad_err)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("call", list(CALLS))
def test_within_bound_of_long_double(call, dtype):
    rng = np.random.default_rng(7)
    for dims, n, scale in PROBLEMS:
        data, labels, params = random_problem(rng, n, dims, dtype=dtype, scale=scale)
        cost, grad = CALLS[call](data, labels, params, dims)
        errors = relative_errors(cost, grad, data, labels, params, dims)
        key = (call, np.dtype(dtype).name)
        worst[key] = tuple(max(a, b) for a, b in zip(worst.get(key, (0.0, 0.0)), errors))
        assert max(errors) <= BOUND[dtype], (dims, n, scale, errors)


def test_report_worst_errors(capsys):
    with capsys.disabled():
        print("\nworst relative error against long double (cost, grad / max|grad|):")
        for (call, dtype), (c, g) in sorted(worst.items()):
            print(f"  {call:13s} {dtype:8s} cost {c:.1e}  grad {g:.1e}")
    assert len(worst) == 2 * len(CALLS)  # every case above ran in this session
