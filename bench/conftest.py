"""Shared state of a benchmark session: per-point medians, for speedups over numpy."""
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "quick: a subset of the grid that runs in under a minute")


@pytest.fixture(scope="session")
def medians():
    """(shape, n, dtype, backend) -> median seconds per call, filled as benchmarks finish."""
    return {}
