"""Memory bounds, a long run without growth, unusual but valid inputs, and a fuzz run of
the argument checks (in a subprocess, so that a crash would be seen, not suffered)."""

import numpy as np
import pytest

from twolayer import forward_backward_prop

from .conftest import random_problem, run_python


@pytest.mark.slow
def test_extra_peak_memory_of_a_large_batch_is_bounded():
    """N = 65536, (784, 128, 10), float64: the inputs are 420 MB; the call itself may add
    the gradient and a workspace that does not grow with N, well under 96 MiB."""
    out = run_python(
        code="""
        import numpy as np, twolayer
        from twolayer.benchmark import make_problem
        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        dims = (784, 128, 10)
        data, labels, params = make_problem(dims, 65536, "float64")
        twolayer.forward_backward_prop(data[:600], labels[:600], params, dims, backend="numba")  # compile, pools
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
        before = status("VmRSS:")
        twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
        print(status("VmHWM:") - before)
    """
    ).stdout
    extra = int(out.split()[-1])
    assert extra < 96 * 2**20, f"{extra / 2**20:.1f} MiB"


@pytest.mark.slow
def test_no_memory_growth_over_fifty_thousand_calls():
    out = run_python(
        code="""
        import numpy as np, twolayer
        from twolayer.benchmark import make_problem
        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        cases = [((10, 5, 10), n) for n in (1, 20, 700)] + [((50, 100, 5), 40)]
        problems = [(dims, *make_problem(dims, n, "float64")) for dims, n in cases]
        def calls(k):
            for i in range(k):
                dims, d, y, p = problems[i % len(problems)]
                twolayer.forward_backward_prop(d, y, p, dims, backend="numba")
        calls(5_000)
        before = rss()
        calls(50_000)
        print(rss() - before)
    """
    ).stdout
    growth = int(out.split()[-1])
    assert growth < 2 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"


def test_memory_mapped_and_negative_stride_inputs(backend, tmp_path, rng):
    dims = (6, 4, 3)
    data, labels, params = random_problem(rng, 700, dims)
    expected = forward_backward_prop(data, labels, params, dims, backend=backend)
    mm = np.memmap(tmp_path / "data.bin", dtype=np.float64, mode="w+", shape=data.shape)
    mm[:] = data
    mm.flush()
    ro = np.memmap(tmp_path / "data.bin", dtype=np.float64, mode="r", shape=data.shape)
    got = forward_backward_prop(ro, labels, params, dims, backend=backend)
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1])
    flipped = forward_backward_prop(
        data[::-1][::-1], labels[:, ::-1][:, ::-1], params[::-1][::-1], dims, backend=backend
    )
    assert flipped[0] == pytest.approx(expected[0], rel=1e-14)
    assert np.allclose(flipped[1], expected[1], rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_fuzzed_arguments_only_ever_raise_value_or_type_errors():
    """Random shapes, dtypes and garbage objects through the public API: a clear
    ValueError/TypeError or a result, never another exception, a crash or a hang."""
    out = run_python(
        code="""
        import numpy as np, twolayer
        rng = np.random.default_rng(2026)
        garbage = [None, "abc", 3, 2.5, [], [[1, 2], [3]], {"a": 1}, object(), np.float64(1), b"xy",
                   np.array("s"), np.zeros((2, 2), complex), np.zeros(3, object), np.zeros((2, 0)),
                   np.zeros((0, 3)), np.ones((2, 2, 2)), np.array([np.nan]), np.zeros(4, "datetime64[s]")]
        dtypes = [np.float64, np.float32, np.float16, np.int32, np.uint8, np.bool_, np.complex64, object,
                  np.longdouble]
        dims_choices = [(3, 2, 4), (1, 1, 1), [3, 2, 4], (3, 2), (3, 0, 4), (3, -1, 4), (3.0, 2, 4), "324",
                        None, (True, 2, 4), (3, 2, 4, 5), np.array([3, 2, 4]), (np.int8(3), 2, 4)]
        outcomes = {"ok": 0, "ValueError": 0, "TypeError": 0}
        for i in range(3000):
            dims = dims_choices[rng.integers(len(dims_choices))]
            n = int(rng.integers(0, 6))
            args = []
            for shape in [(n, 3), (n, 4), (3 * 2 + 2 + 2 * 4 + 4,)]:
                r = rng.random()
                if r < 0.15:
                    args.append(garbage[rng.integers(len(garbage))])
                    continue
                if r < 0.3:
                    shape = tuple(int(rng.integers(0, 5)) for _ in range(int(rng.integers(0, 4))))
                dt = dtypes[rng.integers(len(dtypes))] if rng.random() < 0.3 else np.float64
                a = rng.standard_normal(shape) if shape else np.float64(rng.standard_normal())
                args.append(np.asarray(a).astype(dt))
            backend = ["numpy", "numba", "auto", "numba:row", "numba:tile", "numba:narrow", "numba:blas",
                       "numba:portable"][i % 8]
            try:
                twolayer.forward_backward_prop(*args, dims, backend=backend)
                outcomes["ok"] += 1
            except (ValueError, TypeError) as err:
                assert str(err), "an error without a message"
                outcomes[type(err).__name__] += 1
        print(outcomes)
    """
    ).stdout
    outcomes = eval(out.strip().splitlines()[-1])
    assert min(outcomes.values()) > 0, outcomes  # every kind of outcome was exercised
