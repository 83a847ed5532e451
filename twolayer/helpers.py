"""The helpers of CS224n assignment 1: softmax, sigmoid, sigmoid_grad, gradcheck_naive."""

import random
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .api import forward_backward_prop
from .layout import SHAPES, param_count
from .reference import sigmoid_of


def _as_float_array(x, name):
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def softmax(x: ArrayLike) -> NDArray[np.floating]:
    """Softmax of a vector, or of each row of a matrix.

    Parameters
    ----------
    x : array_like, shape (D,) or (N, D)

    Returns
    -------
    ndarray, same shape as ``x``
        Shifted by the (row) maximum first, so it never overflows:
        ``softmax([[1001, 1002], [3, 4]])`` is ``[0.26894142, 0.73105858]`` in both rows.
    """
    x = _as_float_array(x, "x")
    if x.ndim not in (1, 2):
        raise ValueError(f"x: expected a 1-D or 2-D array, got {x.ndim}-D with shape {x.shape}")
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: ArrayLike) -> NDArray[np.floating]:
    """Logistic function ``1 / (1 + exp(-x))``, elementwise; no overflow warning at +-1000."""
    return sigmoid_of(_as_float_array(x, "x"))


def sigmoid_grad(s: ArrayLike) -> NDArray[np.floating]:
    """Derivative of the sigmoid, given its OUTPUT ``s = sigmoid(x)``: ``s * (1 - s)``."""
    s = _as_float_array(s, "s")
    return s * (1.0 - s)


def gradcheck_naive(
    f: Callable[[NDArray[np.float64]], tuple[float, ArrayLike]],
    x: ArrayLike,
    *,
    h: float = 1e-4,
    tolerance: float = 1e-5,
    verbose: bool = True,
) -> bool:
    """Check the gradient of ``f`` at ``x`` against central differences (CS224n's rules).

    Parameters
    ----------
    f : callable
        ``f(x) -> (cost, grad)`` with ``grad`` of the same shape as ``x``.
    x : array_like
        The point to check at. A float64 copy is perturbed; the caller's array is not.
    h, tolerance : float
        Step of the central difference and the largest accepted relative error
        ``|a - b| / max(1, |a|, |b|)``.

    Returns
    -------
    bool
        True if every coordinate passes. Prints "Gradient check passed!" or the first
        failing index with both values. Python's ``random`` state is restored before
        every call of ``f``, so ``f`` may sample (as CS224n's word2vec checks do).
    """
    x = np.array(x, dtype=np.float64)  # a copy: the caller's array is never perturbed
    rndstate = random.getstate()
    random.setstate(rndstate)
    _, grad = f(x)
    grad = np.asarray(grad)
    if grad.shape != x.shape:
        raise ValueError(f"f: expected a gradient of shape {x.shape} (the shape of x), got {grad.shape}")

    for ix in np.ndindex(x.shape):
        old = x[ix]
        x[ix] = old + h
        random.setstate(rndstate)
        fxph = float(f(x)[0])
        x[ix] = old - h
        random.setstate(rndstate)
        fxmh = float(f(x)[0])
        x[ix] = old
        numgrad = (fxph - fxmh) / (2 * h)
        reldiff = abs(numgrad - grad[ix]) / max(1.0, abs(numgrad), abs(grad[ix]))
        if not reldiff <= tolerance:  # written so that NaN fails
            if verbose:
                print("Gradient check failed.")
                print(f"First gradient error found at index {ix}")
                print(f"Your gradient: {grad[ix]:f} \t Numerical gradient: {numgrad:f}")
            return False
    if verbose:
        print("Gradient check passed!")
    return True


def sanity_check(
    backend: str | None = None,
    *,
    n: int = 20,
    dimensions: Sequence[int] = SHAPES["cs224n"],
    seed: int | None = None,
    verbose: bool = True,
) -> bool:
    """CS224n's sanity check: gradcheck ``forward_backward_prop`` on random data.

    N = 20 examples with one-hot labels, dimensions (10, 5, 10). Uses its own random
    generator, so NumPy's global random state is left alone. Returns True on success.
    """
    rng = np.random.default_rng(seed)
    Dx, H, Dy = dimensions
    data = rng.standard_normal((n, Dx))
    labels = np.zeros((n, Dy))
    labels[np.arange(n), rng.integers(0, Dy, size=n)] = 1
    params = rng.standard_normal(param_count(dimensions))
    if verbose:
        print(f"Running sanity check (backend={backend or 'default'})...")
    return gradcheck_naive(
        lambda p: forward_backward_prop(data, labels, p, dimensions, backend=backend), params, verbose=verbose
    )
