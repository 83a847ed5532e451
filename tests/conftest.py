import numpy as np
import pytest

import twolayer

# Every concrete backend: a backend that fails to load fails its tests, it does not vanish.
CONCRETE_BACKENDS = [b for b in twolayer.BACKENDS if b != "auto"]


@pytest.fixture(params=CONCRETE_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20261128)
