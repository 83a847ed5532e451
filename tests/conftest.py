"""What every test module shares: the backends and paths to run over, the one random
problem generator, and the one way to run Python in a new process."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import twolayer

# Every concrete backend, and every path of the numba backend forced on every shape (the
# portable one included): a backend that fails to load fails its tests, it does not vanish.
CONCRETE_BACKENDS = [b for b in twolayer.BACKENDS if b != "auto"]
PATHS = ("row", "tile", "narrow", "blas", "portable")
EVERY_PATH = [*CONCRETE_BACKENDS, *(f"numba:{path}" for path in PATHS)]


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """Every entry kernel, both float types, compiled (or loaded from Numba's cache) before
    the first test, in one process per core: a cold suite compiles in half the time."""
    from twolayer.fast import compile as kernels
    from twolayer.fast import warmup

    return warmup.warm([(name, dtype) for dtype in ("float64", "float32") for name in kernels.ENTRY_KERNELS])


@pytest.fixture(params=EVERY_PATH)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20261128)


def random_problem(rng, n, dims, dtype=np.float64, scale=1.0, soft=False):
    """data, one-hot (or soft) labels and params for ``dims``; weights scaled by ``scale``."""
    Dx, H, Dy = dims
    data = rng.standard_normal((n, Dx))
    if soft:
        labels = rng.random((n, Dy))
        labels /= labels.sum(axis=1, keepdims=True)
    else:
        labels = np.zeros((n, Dy))
        labels[np.arange(n), rng.integers(0, Dy, size=n)] = 1
    params = scale * rng.standard_normal((Dx + 1) * H + (H + 1) * Dy)
    return data.astype(dtype), labels.astype(dtype), params.astype(dtype)


def run_python(*args, code=None, env=None, timeout=900, check=True):
    """``python args...`` (or ``python -c code args...``) in a new process with this
    interpreter, ``env`` added to the environment (a value of None removes the variable).
    Returns the CompletedProcess; with ``check``, a non-zero exit fails the test with its
    output."""
    environment = {**os.environ, **(env or {})}
    environment = {k: v for k, v in environment.items() if v is not None}
    command = [sys.executable, *(["-c", textwrap.dedent(code)] if code is not None else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result
