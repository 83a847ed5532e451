"""The plain NumPy backend: the oracle every faster path is tested against.

Written for clarity first; it is still a reasonable NumPy implementation (BLAS for the
products, one temporary per step), so the speedups quoted against it are honest.

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
    """Logistic function that never overflows: exp is only taken of -|z|."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


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
    h = sigmoid_of(data @ W1 + b1)
    z2 = h @ W2 + b2
    shifted = z2 - z2.max(axis=1, keepdims=True)
    sumexp = np.exp(shifted).sum(axis=1, keepdims=True)
    log_yhat = shifted - np.log(sumexp)  # log-softmax: finite even when yhat underflows
    # The cost is a sum over N*Dy terms: accumulate it in float64 whatever the dtype.
    cost = -np.sum(labels * log_yhat, dtype=np.float64)

    # backward
    d1 = np.exp(log_yhat) * labels.sum(axis=1, keepdims=True) - labels
    d2 = d1 @ W2.T
    d3 = d2 * h * (1.0 - h)

    grad = np.empty(total, dtype=params.dtype) if out is None else out
    np.matmul(data.T, d3, out=grad[o_W1:o_b1].reshape(Dx, H))
    np.sum(d3, axis=0, out=grad[o_b1:o_W2])
    np.matmul(h.T, d1, out=grad[o_W2:o_b2].reshape(H, Dy))
    np.sum(d1, axis=0, out=grad[o_b2:total])
    return float(cost), grad
