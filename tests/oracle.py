"""An independent formulation of the contract, for the tests: one row at a time, in
np.longdouble, with its own unpacking and the plain -log(softmax) cost (long double's
range keeps that finite where float64 would overflow)."""

import numpy as np

L = np.longdouble


def forward_backward_longdouble(data, labels, params, dims):
    """(cost, grad) as long doubles; grad in params' layout."""
    Dx, H, Dy = dims
    p = np.asarray(params, dtype=L)
    W1 = p[: Dx * H].reshape(Dx, H)
    b1 = p[Dx * H : Dx * H + H]
    W2 = p[Dx * H + H : Dx * H + H + H * Dy].reshape(H, Dy)
    b2 = p[Dx * H + H + H * Dy :]
    assert b2.shape == (Dy,)
    gW1, gb1 = np.zeros((Dx, H), L), np.zeros(H, L)
    gW2, gb2 = np.zeros((H, Dy), L), np.zeros(Dy, L)
    cost = L(0)
    with np.errstate(over="ignore"):  # exp(-z) -> inf is the exact sigmoid 0 here
        for x, y in zip(np.asarray(data, dtype=L), np.asarray(labels, dtype=L)):
            cost = _row(x, y, W1, b1, W2, b2, gW1, gb1, gW2, gb2, cost)
    return cost, np.concatenate([gW1.ravel(), gb1, gW2.ravel(), gb2])


def _row(x, y, W1, b1, W2, b2, gW1, gb1, gW2, gb2, cost):
    """One example: adds its gradient to gW1, gb1, gW2, gb2 and returns cost minus its log-likelihood."""
    h = 1 / (1 + np.exp(-(x @ W1 + b1)))
    z = h @ W2 + b2
    e = np.exp(z - z.max())
    yhat = e / e.sum()
    d1 = yhat * y.sum() - y
    gW2 += np.outer(h, d1)
    gb2 += d1
    d3 = (W2 @ d1) * h * (1 - h)
    gW1 += np.outer(x, d3)
    gb1 += d3
    return cost - np.sum(y * np.log(yhat))


def assert_close_to_oracle(cost, grad, data, labels, params, dims, rtol):
    """Cost within rtol relative (at least 1 absolute), grad within rtol of max |grad|."""
    ref_cost, ref_grad = forward_backward_longdouble(data, labels, params, dims)
    scale_g = max(float(np.max(np.abs(ref_grad))), 1.0) if ref_grad.size else 1.0
    assert abs(float(cost) - float(ref_cost)) <= rtol * max(1.0, abs(float(ref_cost))), (cost, ref_cost)
    err = float(np.max(np.abs(np.asarray(grad, L) - ref_grad))) if grad.size else 0.0
    assert err <= rtol * scale_g, (err, scale_g)
