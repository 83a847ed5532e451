"""The parameter layout, the FLOP count and the shape presets: defined here and nowhere else.

``params`` is one flat vector holding, in this order and each row-major,
W1 (Dx x H), b1 (H), W2 (H x Dy), b2 (Dy) -- the CS224n ``q2_neural.py`` layout.
"""

import operator
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

# Named problem shapes (Dx, H, Dy), used by the benchmarks, the CLI and the tests.
SHAPES = {
    "cs224n": (10, 5, 10),  # the assignment's sanity check
    "sentiment": (50, 100, 5),  # word-vector sentiment classifier, assignment 1 q4
    "mnist": (784, 128, 10),
    "wide": (1024, 1024, 1024),
}


def normalize_dimensions(dimensions):
    """Return ``dimensions`` as a tuple of three positive Python ints, or raise.

    Accepts any sequence of three integers (Python or NumPy ints, integral floats are
    refused: a fractional layer width is always a bug upstream).
    """
    if isinstance(dimensions, (str, bytes)) or not hasattr(dimensions, "__len__"):
        raise TypeError(
            "dimensions: expected a sequence of three positive integers (Dx, H, Dy), "
            f"got {type(dimensions).__name__} {dimensions!r}"
        )
    if len(dimensions) != 3:
        raise ValueError(
            f"dimensions: expected three positive integers (Dx, H, Dy), got {len(dimensions)} values: {dimensions!r}"
        )
    out = []
    for name, value in zip(("Dx", "H", "Dy"), dimensions):
        if isinstance(value, (bool, np.bool_)):
            value_ok = None
        else:
            try:
                value_ok = operator.index(value)
            except TypeError:
                value_ok = None
        if value_ok is None:
            raise TypeError(
                f"dimensions: expected {name} to be a positive integer, got {type(value).__name__} {value!r}"
            )
        if value_ok < 1:
            raise ValueError(f"dimensions: expected {name} to be a positive integer, got {value_ok}")
        out.append(value_ok)
    return tuple(out)


def param_count(dimensions: Sequence[int]) -> int:
    """Length of the flat parameter vector: (Dx + 1) * H + (H + 1) * Dy."""
    Dx, H, Dy = normalize_dimensions(dimensions)
    return (Dx + 1) * H + (H + 1) * Dy


def param_offsets(Dx, H, Dy):
    """Start offsets of W1, b1, W2, b2 and the total length, in params' order."""
    o_b1 = Dx * H
    o_W2 = o_b1 + H
    o_b2 = o_W2 + H * Dy
    return 0, o_b1, o_W2, o_b2, o_b2 + Dy


def hidden_units(Dx, Dy, P):
    """H of a params vector of length P = (Dx + 1) * H + (H + 1) * Dy (the inverse of the total above)."""
    return (P - Dy) // (Dx + 1 + Dy)


def unpack_params(params: ArrayLike, dimensions: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Views ``(W1, b1, W2, b2)`` into the flat vector ``params`` (no copy when contiguous).

    Shapes: W1 (Dx, H), b1 (H,), W2 (H, Dy), b2 (Dy,).
    """
    Dx, H, Dy = normalize_dimensions(dimensions)
    params = np.asarray(params)
    o_W1, o_b1, o_W2, o_b2, total = param_offsets(Dx, H, Dy)
    if params.ndim != 1 or params.shape[0] != total:
        raise ValueError(
            f"params: expected a 1-D vector of length (Dx+1)*H + (H+1)*Dy = {total} "
            f"for dimensions {(Dx, H, Dy)}, got shape {params.shape}"
        )
    return (
        params[o_W1:o_b1].reshape(Dx, H),
        params[o_b1:o_W2],
        params[o_W2:o_b2].reshape(H, Dy),
        params[o_b2:total],
    )


def pack_params(W1: ArrayLike, b1: ArrayLike, W2: ArrayLike, b2: ArrayLike) -> np.ndarray:
    """The flat vector holding W1 (Dx, H), b1 (H,), W2 (H, Dy), b2 (Dy,), in that order."""
    W1, b1, W2, b2 = (np.asarray(a) for a in (W1, b1, W2, b2))
    if W1.ndim != 2 or W2.ndim != 2:
        raise ValueError(f"pack_params: expected 2-D W1 and W2, got shapes {W1.shape} and {W2.shape}")
    Dx, H = W1.shape
    Dy = W2.shape[1]
    expected = {"b1": (H,), "W2": (H, Dy), "b2": (Dy,)}
    for name, arr in (("b1", b1), ("W2", W2), ("b2", b2)):
        if arr.shape != expected[name]:
            raise ValueError(
                f"pack_params: W1 has shape {W1.shape}, so {name} must have shape {expected[name]}, got {arr.shape}"
            )
    return np.concatenate([W1.ravel(), b1, W2.ravel(), b2])


def flop_count(n: int, dimensions: Sequence[int]) -> int:
    """Floating-point operations of one forward+backward call on ``n`` rows.

    The two products shaped like W1 (x W1 and x^T d3) cost 2 N Dx H each; the three
    shaped like W2 (h W2, h^T d1 and d1 W2^T) cost 2 N H Dy each. Elementwise work
    (sigmoid, softmax, deltas) is not counted, as is the convention for GEMM-bound code.
    The input gradient d3 W1^T is not part of the contract, so it is not counted.
    """
    Dx, H, Dy = normalize_dimensions(dimensions)
    return 4 * n * Dx * H + 6 * n * H * Dy
