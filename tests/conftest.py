import numpy as np
import pytest

import twolayer

# Every concrete backend, and every path of the numba backend forced on every shape (the
# portable one included): a backend that fails to load fails its tests, it does not vanish.
CONCRETE_BACKENDS = [b for b in twolayer.BACKENDS if b != "auto"]
PATHS = ("row", "tile", "narrow", "blas", "portable")
EVERY_PATH = [*CONCRETE_BACKENDS, *(f"numba:{path}" for path in PATHS)]


@pytest.fixture(params=EVERY_PATH)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20261128)
