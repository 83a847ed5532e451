"""Shared state of a benchmark session: per-point medians, for speedups over numpy."""

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "quick: a subset of the grid that runs in under a minute")
    from twolayer.benchmark import raise_mmap_threshold

    raise_mmap_threshold()  # NumPy, the yardstick, timed at its faster (see there)


@pytest.fixture(scope="session")
def medians():
    """(shape, n, dtype, backend) -> median seconds per call, filled as benchmarks finish."""
    return {}
