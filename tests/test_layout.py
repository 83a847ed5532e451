"""The parameter layout, the FLOP count and the presets."""

import numpy as np
import pytest

from twolayer import SHAPES, flop_count, pack_params, param_count, unpack_params
from twolayer.layout import hidden_units


@pytest.mark.parametrize("dims", [(1, 1, 1), (10, 5, 10), (3, 7, 2), *SHAPES.values()])
def test_param_count(dims):
    Dx, H, Dy = dims
    assert param_count(dims) == (Dx + 1) * H + (H + 1) * Dy
    assert hidden_units(Dx, Dy, param_count(dims)) == H  # how the row and tile kernels find H


def test_unpack_is_row_major_views_in_order():
    dims = (3, 4, 2)
    params = np.arange(param_count(dims), dtype=np.float64)
    W1, b1, W2, b2 = unpack_params(params, dims)
    assert W1.shape == (3, 4) and b1.shape == (4,) and W2.shape == (4, 2) and b2.shape == (2,)
    assert W1[0, 1] == 1 and W1[1, 0] == 4  # row-major
    assert b1[0] == 12 and W2[0, 0] == 16 and W2[1, 0] == 18 and b2[0] == 24
    for part in (W1, b1, W2, b2):
        assert np.shares_memory(part, params)
    assert np.array_equal(pack_params(W1, b1, W2, b2), params)


def test_unpack_and_pack_errors():
    with pytest.raises(ValueError, match="expected a 1-D vector of length .* = 26"):
        unpack_params(np.zeros(25), (3, 4, 2))
    with pytest.raises(ValueError, match=r"b2 must have shape \(2,\)"):
        pack_params(np.zeros((3, 4)), np.zeros(4), np.zeros((4, 2)), np.zeros(3))


def test_flop_count_counts_the_five_products():
    n, (Dx, H, Dy) = 7, (3, 4, 2)
    products = [(n, Dx, H), (n, H, Dy), (H, n, Dy), (n, Dy, H), (Dx, n, H)]  # xW1, hW2, h^T d1, d1 W2^T, x^T d3
    assert flop_count(n, (Dx, H, Dy)) == sum(2 * a * b * c for a, b, c in products)
