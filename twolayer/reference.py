"""The plain NumPy backend: the oracle every faster path is tested against.

Written for clarity first, but it is the yardstick of every speedup we quote, so it
must not be slower than the NumPy code a student writes for the assignment (BLAS for the
products, elementwise steps as whole-array operations): `twolayer bench --backends
textbook` compares them (docs/design.md, "The NumPy backend is the yardstick").

The deltas, named once for the whole package (CS224n's notation)::

    z1 = x W1 + b1            (N, H)   hidden pre-activation
    h  = sigmoid(z1)          (N, H)
    z2 = h W2 + b2            (N, Dy)  logits
    yhat = softmax(z2)        (N, Dy)
    cost = -sum(y * log yhat) = sum_rows(rowsum(y) * logsumexp(z2) - sum_k y_k z2_k)
    d1 = dcost/dz2 = yhat * rowsum(y) - y        (N, Dy)   (yhat - y for one-hot rows)
    d2 = dcost/dh  = d1 W2^T                     (N, H)
    d3 = dcost/dz1 = d2 * h * (1 - h)            (N, H)
    gW2 = h^T d1, gb2 = sum_rows(d1), gW1 = x^T d3, gb1 = sum_rows(d3)
"""

import numpy as np

from .layout import param_offsets


def sigmoid_of(z):
    """Logistic function, accurate to an ulp or two over the whole range, without warnings.

    Branch-free on purpose: the textbook form lets exp(-z) overflow to inf where z < -709
    (float32: -88), and 1 / (1 + inf) is then the correct 0. A form that splits on the
    sign of z (np.where) ran 8x slower on random signs (mispredicted branches, 3.5 ns per
    element here): the NumPy backend's speed is the yardstick of every speedup we quote.
    """
    with np.errstate(over="ignore"):
        e = np.exp(-z)
    e += 1.0  # in place: each temporary of the NumPy backend is fresh pages
    return np.divide(1.0, e, out=e) if e.ndim else 1.0 / e  # np.reciprocal: 5x slower


def forward_backward(data, labels, params, dims, out=None):
    """Cost and gradient; inputs already validated (same float dtype, shapes checked).

    data (N, Dx), labels (N, Dy), params (P,), dims (Dx, H, Dy); returns (cost, grad (P,)).
    """
    Dx, H, Dy = dims
    o_W1, o_b1, o_W2, o_b2, total = param_offsets(Dx, H, Dy)
    W1 = params[o_W1:o_b1].reshape(Dx, H)
    b1 = params[o_b1:o_W2]
    W2 = params[o_W2:o_b2].reshape(H, Dy)
    b2 = params[o_b2:total]

    # forward
    z1 = data @ W1
    z1 += b1
    h = sigmoid_of(z1)
    shifted = h @ W2
    shifted += b2
    shifted -= shifted.max(axis=1, keepdims=True)  # z2 - rowmax(z2): exp cannot overflow
    e = np.exp(shifted)
    sumexp = e.sum(axis=1, keepdims=True)
    ysum = labels.sum(axis=1, keepdims=True)
    # cost = sum_rows(rowsum(y) log(sumexp)) - sum(y * shifted), as in the module docstring:
    # finite even where yhat underflows; both sums are over nonnegative terms for
    # nonnegative labels, so nothing cancels. Accumulated in float64 whatever the dtype.
    cost = np.sum(ysum * np.log(sumexp), dtype=np.float64) - np.sum(labels * shifted, dtype=np.float64)

    # backward
    d1 = e  # made yhat * rowsum(y) - y in place
    d1 *= ysum / sumexp
    d1 -= labels
    d3 = d1 @ W2.T  # d2, made d3 in place
    d3 *= h
    d3 *= 1.0 - h

    grad = np.empty(total, dtype=params.dtype) if out is None else out
    _product_into(data.T, d3, grad[o_W1:o_b1].reshape(Dx, H))
    np.sum(d3, axis=0, out=grad[o_b1:o_W2])
    _product_into(h.T, d1, grad[o_W2:o_b2].reshape(H, Dy))
    np.sum(d1, axis=0, out=grad[o_b2:total])
    return float(cost), grad


def _product_into(a, b, out):
    """out = a @ b. With one example (an outer product) np.matmul skips BLAS: (784, 1) @
    (1, 128) took 113 us against np.dot's 16-49; from a few examples on, matmul is the
    faster (N = 4: 15-24 us against 19-31)."""
    (np.dot if a.shape[1] == 1 else np.matmul)(a, b, out=out)
