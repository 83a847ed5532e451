"""``forward_backward_prop``: validate -> pick a backend -> compute -> (cost, grad)."""

import functools
import importlib
import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import reference
from .validate import check_inputs, check_out

BACKENDS = ("auto", "numba", "numpy")
# Module implementing each concrete backend; each exposes forward_backward(data, labels, params, dims, out).
_MODULES = {"numpy": "twolayer.reference", "numba": "twolayer.fast"}
_loaded = {"numpy": reference.forward_backward}
_EXPECTED = f"one of {', '.join(map(repr, BACKENDS))}, or 'numba:<path>'"


def _load(name):
    """The compute function of backend ``name``, importing it on first use.

    ``None`` stands for the default backend: $TWOLAYER_BACKEND, read at the first call
    that relies on it, else "auto".
    """
    if name is None:
        _loaded[None] = fn = _load(default_backend())
        return fn
    if type(name) is not str:
        raise TypeError(f"backend: expected {_EXPECTED}, got {type(name).__name__} {name!r}")
    if name.startswith("numba:"):  # the numba backend with its path forced, for comparisons and tests
        fast = importlib.import_module(_MODULES["numba"])
        path = name[len("numba:") :]
        if path not in fast.PATHS:
            raise ValueError(f"backend: expected 'numba:' followed by one of {', '.join(fast.PATHS)}, got {name!r}")
        _loaded[name] = fn = functools.partial(fast.forward_backward, path=path)
        return fn
    if name == "auto":
        try:
            fn = _load("numba")
        except ImportError:
            fn = _loaded["numpy"]
        _loaded["auto"] = fn
        return fn
    if name not in _MODULES:
        raise ValueError(f"backend: expected {_EXPECTED}, got {name!r}")
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError as err:
        raise ImportError(f"backend {name!r} is not available: {err}") from err
    _loaded[name] = fn = module.forward_backward
    return fn


def default_backend():
    """The backend used when none is given: $TWOLAYER_BACKEND, else "auto"."""
    name = os.environ.get("TWOLAYER_BACKEND", "auto") or "auto"
    if name not in BACKENDS:
        raise ValueError(f"TWOLAYER_BACKEND: expected one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    return name


def _compute_function(backend):
    try:
        return _loaded[backend]
    except (KeyError, TypeError):  # first use of this backend, or an unhashable name
        return _load(backend)


def resolve_backend(backend: str | None = None) -> str:
    """The concrete backend name ("numba" or "numpy") that ``backend`` stands for."""
    fn = _compute_function(backend)
    if isinstance(fn, functools.partial):  # "numba:<path>"
        return "numba"
    return next(name for name in ("numba", "numpy") if _loaded.get(name) is fn)


def set_num_threads(n: int) -> None:
    """Threads used by the numba backend's parallel kernels, for every Python thread.

    Defaults to NUMBA_NUM_THREADS (all cores); at most that many.
    """
    importlib.import_module(_MODULES["numba"]).set_num_threads(n)


def get_num_threads() -> int:
    """Threads the numba backend's parallel kernels use."""
    return importlib.import_module(_MODULES["numba"]).get_num_threads()


def forward_backward_prop(
    data: ArrayLike,
    labels: ArrayLike,
    params: ArrayLike,
    dimensions: Sequence[int],
    *,
    backend: str | None = None,
    out: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """Cost and gradient of a two-layer sigmoid network with a softmax output.

    The drop-in replacement for CS224n assignment 1's ``q2_neural.forward_backward_prop``.

    Parameters
    ----------
    data : array_like, shape (N, Dx)
        One example per row.
    labels : array_like, shape (N, Dy)
        One-hot rows, or any non-negative rows (soft labels, label smoothing).
    params : array_like, shape ((Dx + 1) * H + (H + 1) * Dy,)
        W1 (Dx, H), b1 (H,), W2 (H, Dy), b2 (Dy,), each row-major, concatenated.
    dimensions : sequence of three ints
        ``(Dx, H, Dy)``.
    backend : {"auto", "numba", "numpy"} or "numba:<path>", optional
        "auto" is the fastest one installed. Default: $TWOLAYER_BACKEND, else "auto".
        "numba:<path>" forces one of the numba backend's paths ("row", "tile", "narrow",
        "blas", "portable"), for comparisons; each is correct for any shape.
    out : ndarray, shape (P,), optional
        Where to write the gradient (C-contiguous, of the compute dtype); returned as ``grad``.

    Returns
    -------
    cost : float
        ``-sum(labels * log(softmax(sigmoid(data W1 + b1) W2 + b2)))``: the SUM over
        the batch, not the mean.
    grad : ndarray, shape (P,)
        d cost / d params in params' layout, in the compute dtype: float32 if every input
        is float32, float64 otherwise (integers and bool promote as in NumPy).
    """
    data, labels, params, dims = check_inputs(data, labels, params, dimensions)
    if out is not None:
        check_out(out, len(params), params.dtype, data, labels, params)
    try:  # _compute_function, inlined: this runs on every call
        compute = _loaded[backend]
    except (KeyError, TypeError):
        compute = _load(backend)
    return compute(data, labels, params, dims, out)
