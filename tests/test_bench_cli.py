"""`twolayer bench`, `report` and `gate` end to end, on a tiny grid (no timing asserted)."""

import itertools
import json
import os
import sys

import numpy as np
import pytest

from twolayer import benchmark, cli, peers
from twolayer.layout import SHAPES
from twolayer.trainloop import LoopRecord, format_loop_table

from .conftest import run_python


def twolayer_cli(*args, **kwargs):
    return run_python("-m", "twolayer", *args, check=False, **kwargs)


@pytest.fixture(scope="module")
def run_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "run.json"
    result = twolayer_cli(
        "bench",
        "--shapes",
        "cs224n",
        "sentiment",
        "--batch-sizes",
        "1",
        "300",
        "--dtypes",
        "float64",
        "float32",
        "--backends",
        "numba",
        "--budget",
        "0.01",
        "--json",
        str(path),
        "--plot",
        str(path.with_suffix(".png")),
    )
    assert result.returncode == 0, result.stderr
    assert "thread pool" in result.stdout and "gemm peak" in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.startswith("shape"))
    assert header.split() == ["shape", "N", "dtype", "numba", "us", "samples/s", "numpy", "us", "speedup", "%", "peak"]
    return path


@pytest.mark.slow
def test_bench_writes_one_record_per_measurement(run_json):
    doc = json.loads(run_json.read_text())
    records = doc["records"]
    assert len(records) == 2 * 2 * 2 * 2  # shapes x batch sizes x dtypes x (numpy, numba)
    for r in records:
        assert r["samples_per_s"] > 0 and r["seconds"] > 0 and 0 < r["peak_fraction"]
        assert r["speedup"] == pytest.approx(1.0) if r["backend"] == "numpy" else r["speedup"] > 0
    assert os.path.getsize(run_json.with_suffix(".png")) > 10_000
    assert os.path.getsize(str(run_json.with_suffix("")) + "-speedup.png") > 10_000


@pytest.mark.slow
def test_a_run_over_an_unbound_blas_records_what_each_layer_size_chose(tmp_path):
    # NumPy's OpenBLAS made unfindable: the machine record printed before the timing knows
    # only the example layer size; the saved one, and the line printed after the table,
    # every layer size the run timed
    path = tmp_path / "run.json"
    code = (
        "import sys\n"
        "from twolayer.fast import numpy_blas\n"
        "numpy_blas._find = lambda: None\n"
        "from twolayer import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    args = ["bench", "--shapes", "sentiment", "--batch-sizes", "64", "--dtypes", "float32", "--backends", "numba"]
    result = run_python(*args, "--budget", "0.01", "--json", str(path), code=code)
    saved = json.loads(path.read_text())["machine"]["wide layers"]
    assert "(50, 100, 5) float32:" in saved and "(784, 128, 10) float64:" in saved
    assert f"wide layers: {saved}" in result.stdout.split("shape")[-1]  # after the table


@pytest.mark.slow
def test_report_reprints_the_table(run_json):
    result = twolayer_cli("report", str(run_json))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("cs224n") == 4 and "sentiment" in result.stdout


@pytest.mark.slow
def test_gate_passes_on_itself_and_fails_on_a_regression(run_json, tmp_path):
    assert twolayer_cli("gate", str(run_json), str(run_json)).returncode == 0
    doc = json.loads(run_json.read_text())
    for r in doc["records"]:
        if r["backend"] == "numba" and r["n"] == 300 and r["shape"] == "cs224n" and r["dtype"] == "float64":
            r["speedup"] *= 0.5  # this point got twice as slow, relative to numpy
    slower = tmp_path / "slower.json"
    slower.write_text(json.dumps(doc))
    result = twolayer_cli("gate", str(run_json), str(slower), "--tolerance", "0.2")
    assert result.returncode == 1
    assert "FAIL cs224n    N=300" in result.stdout and "FAILED" in result.stdout


@pytest.mark.parametrize("name", peers.OPTIONAL)
def test_a_missing_peer_is_named_with_its_install_command(name, monkeypatch, capsys):
    # Installed or not here: the peer is made to look missing.
    find_spec = peers.importlib.util.find_spec
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda module: None if module == name else find_spec(module))
    assert cli.main(["bench", "--backends", name, "--shapes", "cs224n", "--batch-sizes", "1"]) == 2
    err = capsys.readouterr().err
    assert f"the {name} peer is not installed; install it with: {peers.INSTALL[name]}" in err


@pytest.mark.parametrize("name", ["textbook", *peers.available()])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_peers_compute_the_same_function(name, dtype):
    dims = SHAPES["cs224n"]
    data, labels, params = benchmark.make_problem(dims, 20, dtype)
    c0, g0 = benchmark.make_call("numpy", dims, dtype)(data, labels, params)
    c1, g1 = benchmark.make_call(name, dims, dtype)(data, labels, params)
    rtol = 1e-9 if dtype == "float64" else 1e-4
    assert abs(c0 - c1) < rtol * c0
    assert np.abs(g0 - g1).max() <= rtol * np.abs(g0).max()


def test_backends_take_turns_at_each_point_each_turn_after_settling(monkeypatch):
    events = []
    monkeypatch.setattr(benchmark.time, "sleep", lambda seconds: events.append(("sleep", seconds)))
    monkeypatch.setattr(benchmark, "make_call", lambda backend, dims, dtype: lambda *args: events.append(backend))
    records = benchmark.sweep(["cs224n"], [1, 4], ["float64"], ["numpy", "numba"], budget=0.0)
    assert [(r.n, r.backend) for r in records] == [(1, "numpy"), (1, "numba"), (4, "numpy"), (4, "numba")]
    sleeps = [e for e in events if isinstance(e, tuple)]
    assert sleeps == [("sleep", benchmark.SETTLE_SECONDS)] * (4 * benchmark.ROUNDS) and benchmark.SETTLE_SECONDS > 0
    after_each_sleep = [events[i + 1] for i, e in enumerate(events) if isinstance(e, tuple)]
    assert after_each_sleep == ["numpy", "numba"] * (2 * benchmark.ROUNDS) and benchmark.ROUNDS > 1
    events.clear()
    benchmark.sweep(["cs224n"], [1], ["float64"], ["numba"], budget=0.0, settle=0.0, rounds=1)
    assert [e for e in events if isinstance(e, tuple)] == [("sleep", 0.0)]


def test_a_burst_in_one_turn_does_not_move_the_median(monkeypatch):
    """Each backend's time is the median over all its turns' samples."""
    monkeypatch.setattr(benchmark.time, "sleep", lambda seconds: None)
    turns = iter([[2e-6, 2e-6], [9e-6, 9e-6], [2e-6, 2e-6], [1e-6, 1e-6], [2e-6, 2e-6], [1e-6, 1e-6]])
    monkeypatch.setattr(benchmark, "timed_samples", lambda call, budget, warm_up: next(turns))
    numpy_record, numba_record = benchmark.sweep(["cs224n"], [1], ["float64"], ["numpy", "numba"], rounds=3)
    assert numpy_record.seconds == 2e-6 and numba_record.seconds == 1e-6 and numba_record.speedup == 2.0


@pytest.mark.slow
@pytest.mark.parametrize("option", ["--settle", "--budget"])
def test_a_negative_time_is_refused_by_name(option):
    result = twolayer_cli("bench", option, "-1")
    assert (
        result.returncode == 2
        and option in result.stderr
        and "expected a number of seconds >= 0, got -1" in result.stderr
    )


def test_the_loop_table_shows_what_the_loop_adds_to_each_backends_call_in_microseconds():
    # the same 4 us on a 20 us call and on an 80 us one: ratios 1.20 and 1.05
    records = [
        LoopRecord("sentiment", (50, 100, 5), 64, "float64", "numpy", 160e-6, 84e-6, 80e-6, 1.0, 90e-6),
        LoopRecord("sentiment", (50, 100, 5), 64, "float64", "numba", 100e-6, 24e-6, 20e-6, 1.6, 26e-6),
    ]
    header, _, row = format_loop_table(records).splitlines()
    assert header.split("  ")[-1].strip() == "loop adds us, numba / numpy"
    assert row.endswith("4.0 / 4.0") and " 1.20 " in row and " 1.05 " in row


@pytest.mark.slow
def test_bench_loop_times_the_training_loop_and_the_gate_reads_it(tmp_path):
    path = tmp_path / "loop.json"
    result = twolayer_cli(
        "bench",
        "--loop",
        "--shapes",
        "cs224n",
        "mnist",
        "--batch-sizes",
        "64",
        "--dtypes",
        "float64",
        "--budget",
        "0.01",
        "--json",
        str(path),
    )
    assert result.returncode == 0, result.stderr
    assert (
        "step speedup" in result.stdout and "in loop / alone" in result.stdout and "step cost / alone" in result.stdout
    )
    records = json.loads(path.read_text())["loop_records"]
    assert {(r["shape"], r["n"], r["backend"]) for r in records} == {
        (s, 64, b) for s in ("cs224n", "mnist") for b in ("numpy", "numba")
    }
    for r in records:
        assert r["step_seconds"] > r["call_seconds"] > 0 and r["alone_seconds"] > 0
        assert r["in_loop_ratio"] == pytest.approx(r["call_seconds"] / r["alone_seconds"])
        assert r["in_step_ratio"] == pytest.approx(r["step_cost_seconds"] / r["alone_seconds"])
        assert r["step_cost_seconds"] < r["step_seconds"]  # the loop around the call costs time too
        assert r["step_speedup"] == pytest.approx(1.0) if r["backend"] == "numpy" else r["step_speedup"] > 0
    report = twolayer_cli("report", str(path))
    assert report.returncode == 0 and report.stdout.count("float64") == 2
    doc = json.loads(path.read_text())
    for r in doc["loop_records"]:
        if r["backend"] == "numba" and r["shape"] == "mnist":
            r["step_speedup"] *= 0.5
    slower = tmp_path / "slower.json"
    slower.write_text(json.dumps(doc))
    gate = twolayer_cli("gate", str(path), str(slower))
    assert gate.returncode == 1 and "FAIL mnist     N=64     float64 numba loop" in gate.stdout


@pytest.mark.slow
def test_report_writes_markdown_tables(run_json):
    result = twolayer_cli("report", str(run_json), "--markdown")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "| shape | N | dtype | numba µs | samples/s | numpy µs | speedup | % peak |"
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|---:|"
    assert len(lines) == 2 + 2 * 2 * 2 and all(line.startswith("| ") and line.endswith(" |") for line in lines[2:])


@pytest.mark.slow
def test_bench_plot_without_matplotlib_stops_before_any_timing(tmp_path):
    fake = tmp_path / "matplotlib"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    result = twolayer_cli(
        "bench",
        "--plot",
        str(tmp_path / "x.png"),
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "twolayer bench: --plot needs matplotlib: pip install 'twolayer[plot]'"
    assert result.stdout == ""  # nothing timed, no machine description even


@pytest.mark.slow
def test_compile_warms_every_kernel_the_default_bench_runs():
    result = twolayer_cli("compile", "--dtypes", "float64")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()}
    assert {"row", "tile", "narrow_tiles", "blas_tiles", "blocks", "blocks_job"} <= listed
    assert "kernels for" in result.stderr and "from the cache" in result.stderr


@pytest.mark.slow
def test_report_sets_runs_side_by_side_labelled_by_machine(run_json, tmp_path):
    result = twolayer_cli("report", str(run_json), str(run_json), "--plot", str(tmp_path / "runs.png"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"run 1: {run_json} (") and " cores, " in lines[0]
    assert lines[1].startswith(f"run 2: {run_json} (")
    header = next(line for line in lines if line.startswith("shape"))
    assert header.split() == [
        "shape",
        "N",
        "dtype",
        "run",
        "1",
        "us",
        "run",
        "1",
        "x",
        "run",
        "2",
        "us",
        "run",
        "2",
        "x",
    ]
    assert os.path.getsize(tmp_path / "runs.png") > 10_000


def test_the_loops_call_time_leaves_out_rare_stalls_but_not_the_calls_after_evaluations():
    from twolayer.trainloop import EVAL_EVERY, mean_without_stalls

    assert mean_without_stalls([1.0] * 199 + [1000.0]) == 1.0  # one stall in 200 calls
    after_evaluations = [1.0] * (200 - 200 // EVAL_EVERY) + [5.0] * (200 // EVAL_EVERY)
    assert mean_without_stalls(after_evaluations) > 1.0 + 3.0 / EVAL_EVERY
    assert mean_without_stalls([2.0, 7.0]) == 4.5  # too few calls to leave any out


def test_the_stored_result_loop_runs_the_users_code_around_a_call_that_computes_nothing():
    import numpy as np

    import twolayer
    from twolayer.trainloop import LEARNING_RATE, make_loop, run_steps, stored_call

    problem = make_loop("cs224n", 8, "float64")
    call = stored_call(problem)
    first = problem.X[:8], problem.Y[:8]
    expected_cost, expected_grad = twolayer.forward_backward_prop(*first, problem.params, problem.dims, backend="numpy")
    cost, grad = call(problem.X[8:16], problem.Y[8:16], problem.params)  # other data: the same stored result
    assert cost == expected_cost and np.array_equal(grad, expected_grad)
    params = problem.params.copy()
    batches = []

    def recording_call(data, labels, params):
        batches.append(data.shape)
        return call(data, labels, params)

    ticks = itertools.count()  # a clock that ticks once per reading: no real timing in a test
    step_times, call_times = run_steps(
        recording_call, problem, params, 20, np.random.default_rng(0), clock=ticks.__next__
    )
    assert batches == [(8, problem.dims[0])] * 20
    # each step reads the clock before the batch, around the call, and after the update
    assert step_times == [3] * 20 and call_times == [1] * 20
    # the user's update still ran, with the stored gradient
    np.testing.assert_allclose(params, problem.params - 20 * LEARNING_RATE * expected_grad)


def test_the_loop_point_times_the_calls_alone_in_every_turn_beside_the_loops():
    # the host's speed drifts between minutes: the ratio of the loop's time to the time
    # alone must compare times taken in the same turns
    from twolayer.benchmark import make_call
    from twolayer.trainloop import measure_loop_point

    order = []

    def recording(backend, dims, dtype):
        call = make_call(backend, dims, dtype)

        def run(data, labels, params):
            order.append(backend)
            return call(data, labels, params)

        return run

    records = measure_loop_point(
        "cs224n", 8, "float64", ["numpy", "numba"], budget=0.05, rounds=3, settle=0, make_call=recording
    )
    turns = [backend for backend, _ in itertools.groupby(order)]
    # warm-up and sizing (a loop of each), then per turn a loop of each and each alone
    assert turns == ["numpy", "numba"] * (2 + 2 * 3)
    assert [r.backend for r in records] == ["numpy", "numba"] and all(r.alone_seconds > 0 for r in records)
