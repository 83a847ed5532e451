"""The twolayer command and the TWOLAYER_BACKEND default."""
import os
import subprocess
import sys

import pytest

from twolayer import cli


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "twolayer", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_check_passes_on_every_backend():
    result = run("check")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in cli.available_backends():
        assert f"{name}: passed" in result.stdout


def test_check_exits_non_zero_on_failure(monkeypatch, capsys):
    monkeypatch.setattr(cli, "sanity_check", lambda backend, seed: backend != "numpy")
    assert cli.main(["check", "--backends", "numpy"]) == 1
    assert "numpy: FAILED" in capsys.readouterr().out


def test_info_names_the_machine():
    result = run("info")
    assert result.returncode == 0, result.stderr
    for key in ("cpu:", "cores:", "numpy:", "numba:", "blas:"):
        assert key in result.stdout


@pytest.mark.parametrize("value, expected", [("numpy", "numpy"), ("auto", None)])
def test_env_sets_the_default_backend(value, expected):
    code = "import twolayer; print(twolayer.resolve_backend())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "TWOLAYER_BACKEND": value}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (expected or cli.available_backends()[0])


def test_env_with_unknown_backend_is_explained():
    code = "import twolayer; twolayer.resolve_backend()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "TWOLAYER_BACKEND": "gpu"}, timeout=300)
    assert result.returncode != 0
    assert "TWOLAYER_BACKEND: expected one of 'auto', 'numba', 'numpy', got 'gpu'" in result.stderr
