"""The twolayer command and the TWOLAYER_BACKEND default."""

import pytest

from twolayer import cli

from .conftest import run_python


def test_check_passes_on_every_backend():
    result = run_python("-m", "twolayer", "check")
    for name in cli.available_backends():
        assert f"{name}: passed" in result.stdout


def test_check_exits_non_zero_on_failure(monkeypatch, capsys):
    monkeypatch.setattr(cli, "sanity_check", lambda backend, seed: backend != "numpy")
    assert cli.main(["check", "--backends", "numpy"]) == 1
    assert "numpy: FAILED" in capsys.readouterr().out


def test_info_names_the_machine():
    result = run_python("-m", "twolayer", "info")
    for key in (
        "cpu:",
        "cores:",
        "numpy:",
        "numba:",
        "blas:",
        "wide layers:",
        "openblas idle threads:",
        "openblas threads in our calls:",
    ):
        assert key in result.stdout


@pytest.mark.parametrize("value, expected", [("numpy", "numpy"), ("auto", None)])
def test_env_sets_the_default_backend(value, expected):
    code = "import twolayer; print(twolayer.resolve_backend())"
    result = run_python(code=code, env={"TWOLAYER_BACKEND": value})
    assert result.stdout.strip() == (expected or cli.available_backends()[0])


def test_env_with_unknown_backend_is_explained():
    code = "import twolayer; twolayer.resolve_backend()"
    result = run_python(code=code, env={"TWOLAYER_BACKEND": "gpu"}, check=False)
    assert result.returncode != 0
    assert "TWOLAYER_BACKEND: expected one of 'auto', 'numba', 'numpy', got 'gpu'" in result.stderr


@pytest.mark.slow
def test_info_says_when_openblas_runs_kernels_narrower_than_the_cpu():
    from numba.core.codegen import get_host_cpu_features
    from threadpoolctl import threadpool_info

    if not any(lib.get("internal_api") == "openblas" for lib in threadpool_info()):
        pytest.skip("NumPy's BLAS here is not an OpenBLAS")
    avx512 = "+avx512f" in get_host_cpu_features().split(",")
    narrow = run_python("-m", "twolayer", "info", env={"OPENBLAS_CORETYPE": "Haswell"}).stdout
    assert ("hint: OpenBLAS runs its Haswell kernels on this AVX-512 CPU" in narrow) == avx512
    if avx512:
        assert "hint:" not in run_python("-m", "twolayer", "info", env={"OPENBLAS_CORETYPE": "SkylakeX"}).stdout


def test_info_names_a_blas_threadpoolctl_does_not_know_by_its_file(monkeypatch):
    import sys

    from twolayer import machine

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/maps")
    import numpy  # noqa: F401  (maps NumPy's BLAS)

    assert any("blas" in name.rsplit("/", 1)[-1].lower() for name in machine._loaded_blas_files())
    monkeypatch.setattr("threadpoolctl.threadpool_info", lambda: [])  # as for Debian's BLIS
    monkeypatch.setattr(machine, "_loaded_blas_files", lambda: ["/usr/lib/x86_64-linux-gnu/blis-pthread/libblas.so.3"])
    assert machine.blas_info() == ["unknown /usr/lib/x86_64-linux-gnu/blis-pthread/libblas.so.3"]
