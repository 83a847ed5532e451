"""Many Python threads at once, and processes made by fork and spawn."""

import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

import twolayer
from twolayer import fast
from twolayer.fast import numpy_blas, threads
from twolayer.kernels import pool

from .conftest import random_problem, run_python

# One problem per kernel path, including the parallel ones (rows_split: the rows of a W1
# beyond the cache).
CASES = [
    ((10, 5, 10), 1),
    ((10, 5, 10), 37),
    ((10, 5, 10), 3000),
    ((50, 100, 5), 700),
    ((7, 3, 2), 5),
    ((520, 510, 30), 2),
]


def _problems():
    rng = np.random.default_rng(99)
    return [(dims, *random_problem(rng, n, dims)) for dims, n in CASES]


def test_paths_covered():
    assert {fast.choose_path(n, *dims) for dims, n in CASES} == {"row", "tile", "narrow", "blas"}


def test_numpys_blas_gets_its_thread_count_back_after_concurrent_blas_calls():
    # The BLAS path holds NumPy's OpenBLAS at one thread while its blocks run; the last of
    # several overlapping calls must restore the count the process had.
    lib = numpy_blas.bound()
    before = lib.get_num_threads()
    dims, data, labels, params = next(p for p in _problems() if fast.choose_path(p[1].shape[0], *p[0]) == "blas")

    def work():
        for _ in range(20):
            twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lib.get_num_threads() == before


@pytest.mark.slow
def test_eight_threads_thousands_of_calls_match_serial_results():
    problems = _problems()
    expected = [twolayer.forward_backward_prop(d, y, p, dims, backend="numba") for dims, d, y, p in problems]
    failures = []

    def worker(seed):
        order = np.random.default_rng(seed).integers(0, len(problems), size=300)
        for i in order:
            dims, d, y, p = problems[i]
            cost, grad = twolayer.forward_backward_prop(d, y, p, dims, backend="numba")
            if cost != expected[i][0] or not np.array_equal(grad, expected[i][1]):
                failures.append((seed, i))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "deadlock: a thread did not finish"
    assert failures == []


def _child_call(i):
    dims, d, y, p = _problems()[i]
    cost, grad = twolayer.forward_backward_prop(d, y, p, dims, backend="numba")
    return cost, grad.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_children_after_the_parallel_kernel_finish_with_the_same_answers(method):
    problems = _problems()
    # The parent runs both parallel kernels first: a forked child inherits their thread pool.
    expected = [_child_call(i) for i in range(len(problems))]
    assert fast.choose_path(3000, 10, 5, 10) == "narrow" and fast.choose_path(700, 50, 100, 5) == "blas"
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        result = pool.map_async(_child_call, list(range(len(problems))) * 2)
        got = result.get(timeout=600)
    for i, (cost, grad) in enumerate(got):
        want_cost, want_grad = expected[i % len(problems)]
        if method == "fork":  # the child runs the parent's compiled code: bitwise the same
            assert (cost, grad) == (want_cost, want_grad), CASES[i % len(problems)]
        else:
            # A spawned child loads the kernels from the cache; code compiled in this
            # process, when the cache was cold, may round differently in the last bit.
            got_grad, want = np.frombuffer(grad), np.frombuffer(want_grad)
            assert abs(cost - want_cost) <= 1e-14 * abs(want_cost)
            assert np.max(np.abs(got_grad - want)) <= 1e-14 * np.max(np.abs(want))


_SECOND_TYPE_WHILE_CALLING = """
import threading, numpy as np, twolayer
from twolayer import fast
from twolayer.fast import numpy_blas, threads
rng = np.random.default_rng(3)
dims = (10, 5, 10)
problems = []
for n in (1, 37, 3000):  # row, tile, narrow
    d = rng.standard_normal((n, 10)); y = np.eye(10)[rng.integers(0, 10, n)]; p = rng.standard_normal(115)
    problems.append((d, y, p, twolayer.forward_backward_prop(d, y, p, dims, backend="numba")))
stop, bad, calls = threading.Event(), [], [0]
def caller():  # float64 calls, all the time the float32 kernels are added
    while not stop.is_set():
        for d, y, p, (cost, grad) in problems:
            c, g = twolayer.forward_backward_prop(d, y, p, dims, backend="numba")
            bad.extend([] if c == cost and np.array_equal(g, grad) else [len(d)])
            calls[0] += 1
threads = [threading.Thread(target=caller) for _ in range(3)]
for t in threads: t.start()
for d, y, p, _ in problems:
    d, y, p = (a.astype(np.float32) for a in (d, y, p))
    c, g = twolayer.forward_backward_prop(d, y, p, dims, backend="numba")
    c0, g0 = twolayer.forward_backward_prop(d, y, p, dims, backend="numpy")
    assert g.dtype == np.float32 and abs(c - c0) <= 1e-4 * abs(c0), (len(d), c, c0)
    assert np.max(np.abs(g - g0)) <= 1e-4 * np.max(np.abs(g0)), len(d)
stop.set()
for t in threads: t.join()
assert not bad, bad
from twolayer.fast.compile import is_compiled
assert all(is_compiled(name, np.dtype("float32")) for name in ("row", "tile", "narrow_tiles", "blocks", "blocks_job"))
print(calls[0])
"""


@pytest.mark.slow
def test_a_second_float_type_arrives_while_other_threads_call_the_first():
    # A process starts with float64 calls on three Python threads; float32 kernels are then
    # compiled (or loaded) and handed to the same dispatchers while those calls go on.
    assert int(run_python(code=_SECOND_TYPE_WHILE_CALLING).stdout) > 0


# CPU time the pool's helpers burn once idle. They spin on sched_yield for IDLE_NS after a
# call (a core nobody else wants), then sleep until the next call, which wakes them.
_POOL_PROBE = """
import time
from twolayer import fast
from twolayer.fast import threads
from twolayer.benchmark import make_problem
dims = (10, 5, 10)
data, labels, params = make_problem(dims, 4096, "float64")
assert fast.choose_path(4096, *dims) == "narrow"
def others_cpu(seconds):  # CPU time of all threads but this one
    t = time.process_time() - time.thread_time()
    time.sleep(seconds)
    return time.process_time() - time.thread_time() - t
fast.forward_backward(data, labels, params, dims)
spinning = others_cpu(threads.IDLE_NS / 2e9)  # half the idle time
time.sleep(threads.IDLE_NS / 1e9)
asleep, sleepers = others_cpu(0.2), threads.helpers_asleep()
jobs = threads.jobs_opened()
fast.forward_backward(data, labels, params, dims)
print(spinning, asleep, sleepers, threads.jobs_opened() - jobs, threads.helpers_started())
"""


def _pool_probe(**env):
    result = run_python(code=_POOL_PROBE, env={"NUMBA_NUM_THREADS": "2", "TWOLAYER_SPIN_MS": None, **env})
    spinning, asleep, sleepers, jobs, helpers = result.stdout.split()
    assert int(helpers) == 1 and int(jobs) == 1
    assert int(sleepers) == 1
    return float(spinning), float(asleep)


@pytest.mark.slow
def test_idle_helpers_sleep_after_the_idle_time_and_a_call_wakes_them():
    spinning, asleep = _pool_probe()
    assert asleep < 0.02, (spinning, asleep)
    assert spinning > asleep, (spinning, asleep)
    # TWOLAYER_SPIN_MS=0: asleep right after each call, so no busy core to see
    spinning, asleep = _pool_probe(TWOLAYER_SPIN_MS="0")
    assert spinning < 0.005 and asleep < 0.02, (spinning, asleep)


def test_a_bad_spin_setting_is_a_clear_error_at_the_first_call():
    code = (
        "import numpy as np, twolayer\n"
        "twolayer.forward_backward_prop(np.ones((1, 2)), np.ones((1, 2)), np.ones(12), (2, 2, 2))"
    )
    result = run_python(code=code, env={"TWOLAYER_SPIN_MS": "lots"}, check=False)
    assert result.returncode == 1
    assert "ValueError: TWOLAYER_SPIN_MS: expected milliseconds from 0 to 60000, got 'lots'" in result.stderr


# CPU time NumPy's OpenBLAS workers burn in the 50 ms after a threaded product: their idle
# spin. twolayer shortens it at its first parallel call, when no other Python thread runs.
_OPENBLAS_SPIN_PROBE = """
import sys, threading, time
import numpy as np
import twolayer
from twolayer import fast
from twolayer.benchmark import make_problem
from twolayer.fast import numpy_blas, threads
a = np.random.default_rng(0).random((400, 400))
def others_cpu_after_a_product():
    a @ a
    t = time.process_time() - time.thread_time()
    time.sleep(0.05)
    return time.process_time() - time.thread_time() - t
# the other thread runs until released, however long loading the kernels takes
release = threading.Event()
other = threading.Thread(target=release.wait) if "--thread" in sys.argv else None
if other: other.start()
dims = (10, 5, 10)
data, labels, params = make_problem(dims, 4096, "float64")
twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")  # a parallel call
before = numpy_blas.shorten_idle_spin()
if other:
    release.set()
    other.join()
    twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
print(before, numpy_blas.shorten_idle_spin(), fast.runtime_info()["openblas idle threads"], sep="|")
print(min(others_cpu_after_a_product() for _ in range(3)))
"""


def _openblas_spin_probe(*args, **env):
    # the products on OpenBLAS's own workers, whose spin this is about
    env = {
        "TWOLAYER_OPENBLAS_THREADS": "keep",
        "OPENBLAS_THREAD_TIMEOUT": None,
        "TWOLAYER_OPENBLAS_SPIN": None,
        "OPENBLAS_NUM_THREADS": "2",
        "NUMBA_NUM_THREADS": "2",
        **env,
    }
    result = run_python(*args, code=_OPENBLAS_SPIN_PROBE, env=env)
    states, seconds = result.stdout.strip().splitlines()
    return states.split("|"), float(seconds)


@pytest.mark.slow
def test_openblas_idle_threads_sleep_soon_after_a_parallel_call_and_users_can_opt_out():
    lib = numpy_blas.bound()
    if lib is None or not lib.can_shorten_spin():
        pytest.skip(f"NumPy's BLAS here has no spin to shorten: {numpy_blas.idle_spin_description()}")
    (before, after, described), ours = _openblas_spin_probe()
    assert (before, after) == ("shortened", "shortened")
    assert described.startswith(f"sleep after 2^{numpy_blas.IDLE_SPIN_LOG2} cycles (set by twolayer")
    (before, after, described), kept = _openblas_spin_probe(TWOLAYER_OPENBLAS_SPIN="keep")
    assert before == after == described == "kept (TWOLAYER_OPENBLAS_SPIN=keep)"
    # OpenBLAS's default spin takes most of the 50 ms; 2^18 cycles a fraction of a millisecond.
    assert kept > 0.02, kept
    assert ours < kept / 4, (ours, kept)


@pytest.mark.slow
def test_openblas_spin_is_left_alone_while_another_python_thread_runs():
    # Restarting OpenBLAS's threads while another thread is inside OpenBLAS could hang it.
    lib = numpy_blas.bound()
    if lib is None or not lib.can_shorten_spin():
        pytest.skip(f"NumPy's BLAS here has no spin to shorten: {numpy_blas.idle_spin_description()}")
    (before, after, described), _ = _openblas_spin_probe("--thread")
    assert (before, after) == ("pending", "shortened")
    (before, after, described), _ = _openblas_spin_probe("--thread", OPENBLAS_THREAD_TIMEOUT="25")
    assert before == after == "set by OPENBLAS_THREAD_TIMEOUT=25"


@pytest.mark.parametrize(
    "dims, n", [((10, 5, 10), 3000), ((784, 128, 10), 300), ((256, 300, 70), 40), ((520, 510, 30), 2)]
)
def test_a_call_whose_helpers_never_come_finishes_alone_with_the_same_bits(monkeypatch, dims, n):
    # A job is open to helpers, never waits for them: asleep, busy or never started (a
    # forked child, no threads to be had), the caller takes every task itself.
    data, labels, params = random_problem(np.random.default_rng(21), n, dims)
    expected = twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
    lonely = threads._Pool()
    monkeypatch.setattr(lonely, "start_helpers", lambda n: None)
    monkeypatch.setattr(threads, "_pool", lonely)
    cost, grad = twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
    if fast.get_num_threads() > 1:
        assert threads.jobs_opened() == 1 and lonely.helpers == 0
    assert cost == expected[0] and np.array_equal(grad, expected[1])


_OVERSUBSCRIBED = """
import numpy as np, twolayer
from twolayer.fast import threads
from twolayer.benchmark import make_problem
results = {}
for threads_used in (6, 1, 6):
    twolayer.set_num_threads(threads_used)
    for dims, n in [((10, 5, 10), 5000), ((784, 128, 10), 600), ((256, 300, 70), 40)]:
        d, y, p = make_problem(dims, n, "float64")
        for _ in range(20):
            cost, grad = twolayer.forward_backward_prop(d, y, p, dims, backend="numba")
        first = results.setdefault((dims, n), (cost, grad))
        assert cost == first[0] and np.array_equal(grad, first[1]), (dims, n, threads_used)
print(threads.helpers_started())
"""


@pytest.mark.slow
def test_more_threads_than_cores_give_the_same_bits_and_finish():
    # Six threads on this machine's cores: helpers that wait for one another yield the core.
    result = run_python(code=_OVERSUBSCRIBED, env={"NUMBA_NUM_THREADS": "6"}, timeout=300)
    assert int(result.stdout) == 5


@pytest.mark.slow
def test_calls_as_helpers_fall_asleep_and_wake_give_the_same_bits():
    # Pauses around the helpers' idle time (threads.IDLE_NS) put calls at every moment of
    # a helper's spin, its fall asleep and its wake-up; first, a second without calls.
    dims, data, labels, params = next(p for p in _problems() if p[1].shape[0] == 3000)
    expected = twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
    time.sleep(1.0)
    pauses = np.random.default_rng(5).uniform(0, 2 * threads.IDLE_NS / 1e9, 150)
    jobs, joins = threads.jobs_opened(), []
    for i, pause in enumerate(pauses):
        time.sleep(pause)
        joined = threads.jobs_joined()
        cost, grad = twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
        joins.append(threads.jobs_joined() - joined)
        assert cost == expected[0] and np.array_equal(grad, expected[1]), f"call {i}, after {pause * 1e3:.3f} ms"
    if fast.get_num_threads() > 1:
        assert threads.jobs_opened() == jobs + len(pauses), threads.pool_description()
        # The helper still comes after its sleeps, to the end: one woken on the caller's
        # CPU moves itself (kernels/pool.py, _leave_callers_cpu).
        assert sum(joins[len(joins) // 2 :]) > 0, joins


_HELPER_ON_CALLERS_CPU = """
import os, time
import twolayer
from twolayer.benchmark import make_problem
from twolayer.fast import threads
dims = (784, 128, 10)
data, labels, params = make_problem(dims, 64, "float64")
for _ in range(2):
    twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
(helper,) = threads.helper_thread_ids()
cpus = os.sched_getaffinity(0)
cpu = min(cpus)
os.sched_setaffinity(0, {cpu})  # this thread, the caller
good = 0
for trial in range(20):
    # the helper waits on the caller's CPU, as Linux sometimes leaves it after the user's
    # own products, then may run anywhere again
    os.sched_setaffinity(helper, {cpu})
    time.sleep(0.02)
    os.sched_setaffinity(helper, cpus)
    joined = []
    for call in range(10):
        before = threads.jobs_joined()
        twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
        joined.append(threads.jobs_joined() - before)
    good += all(joined[3:])
print(good)
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not (pool.CAN_MOVE and len(os.sched_getaffinity(0)) >= 2), reason="moves threads between CPUs: Linux, 2 CPUs"
)
def test_a_helper_left_on_the_callers_cpu_is_moved_off_it():
    # Without the move (kernels/pool.py, _move_helpers_off) such a helper came to every
    # call from the fourth on in 5-8 of 20 trials here; with it, in 19-20.
    result = run_python(code=_HELPER_ON_CALLERS_CPU, timeout=300)
    assert int(result.stdout) >= 15, result.stdout


# NumPy's threaded products on our pool (kernels/openblas_pieces.py).


def _shares_here():
    lib = numpy_blas.library()
    return lib is not None and lib.threads_callback() is not None and lib.get_num_threads() > 1


def _products(rng):
    a, b = rng.random((300, 400)), rng.random((400, 500))
    m = rng.random((300, 300)) + 300 * np.eye(300)
    return [
        lambda: a @ b,
        lambda: a.astype(np.float32) @ b.astype(np.float32),
        lambda: a[:64] @ b,
        lambda: m @ a[:, 0],  # a threaded matrix-vector product
        lambda: np.linalg.solve(m, a[:, :50]),  # LU: OpenBLAS's own workers, around the callback
    ]


@pytest.mark.skipif(not _shares_here(), reason="NumPy's OpenBLAS has no threads callback (0.3.27+) here")
def test_numpys_products_run_on_our_pool_with_the_same_bits():
    dims, data, labels, params = next(p for p in _problems() if p[1].shape[0] == 3000)
    twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")  # a parallel call shares
    assert threads._pool.shares_blas
    assert threads.sharing_description().startswith("twolayer's pool (OpenBLAS's threads callback;")
    products = _products(np.random.default_rng(7))
    opened = threads.jobs_opened()
    with_pool = [f() for f in products]
    assert threads.jobs_opened() > opened  # the products' pieces ran as jobs of the pool
    threads._stop_sharing()
    try:
        opened = threads.jobs_opened()
        without = [f() for f in products]
        assert threads.jobs_opened() == opened
    finally:
        threads._pool.share_with_openblas()
    for i, (got, want) in enumerate(zip(with_pool, without)):
        assert got.dtype == want.dtype and np.array_equal(got, want), i


_PRODUCTS_AND_CALLS_FROM_THREADS = """
import sys, threading, numpy as np, twolayer
from twolayer.fast import numpy_blas, threads
from twolayer.benchmark import make_problem
rng = np.random.default_rng(1)
a, b = rng.random((300, 400)), rng.random((400, 500))
m = rng.random((300, 300)) + 300 * np.eye(300)
dims = (50, 100, 5)
d, y, p = make_problem(dims, 700, "float64")
call = lambda: twolayer.forward_backward_prop(d, y, p, dims, backend="numba")
expected_call = call()
assert threads._pool.shares_blas == (sys.argv[1] != "kept"), threads._pool.shares_blas
if sys.argv[1] == "more-threads":  # OpenBLAS now has more threads than our pool has helpers
    numpy_blas.library().set_num_threads(4)
work = [lambda: a @ b, lambda: m @ a[:, 0], lambda: np.linalg.solve(m, a[:, :50])]
expected = [f() for f in work]
bad, done = [], [0]
def same(j, got):
    # Our calls hold OpenBLAS at one thread while they run, and the blocking of its GEMM and
    # LU follows the thread count (GEMM's from two threads on a Xeon's SkylakeX kernels,
    # beyond two on Zen), so their last bits may move: held to 1e-12 of the largest element
    # (a shared buffer would move them by the size of the elements). GEMV's split never
    # changes a sum.
    if j == 1:
        return np.array_equal(got, expected[j])
    return np.abs(got - expected[j]).max() <= 1e-12 * np.abs(expected[j]).max()
def products(k):
    for i in range(60):
        j = (i + k) % len(work)
        bad.extend([] if same(j, work[j]()) else [("product", j)])
        done[0] += 1
def calls():
    for i in range(100):
        c, g = call()
        bad.extend([] if c == expected_call[0] and np.array_equal(g, expected_call[1]) else ["call"])
ts = [threading.Thread(target=products, args=(k,)) for k in range(4)]
ts += [threading.Thread(target=calls) for _ in range(2)]
for t in ts: t.start()
for t in ts: t.join()
assert not bad, bad[:5]
print(done[0])
"""


@pytest.mark.slow
@pytest.mark.skipif(not _shares_here(), reason="NumPy's OpenBLAS has no threads callback (0.3.27+) here")
@pytest.mark.parametrize(
    "case, env",
    [
        ("shares", {}),
        ("kept", {"TWOLAYER_OPENBLAS_THREADS": "keep"}),
        ("more-threads", {"NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}),
    ],
)
def test_products_and_calls_from_six_threads_give_the_same_bits(case, env):
    # Four threads of products (LU among them, on OpenBLAS's own workers) beside two of
    # our calls; with the pool shared, kept on OpenBLAS's workers, and with OpenBLAS given
    # more threads than our pool has (its products then go to its own workers).
    if case == "more-threads" and fast.get_num_threads() < 2:
        pytest.skip("needs two cores")
    result = run_python(case, code=_PRODUCTS_AND_CALLS_FROM_THREADS, env=env, timeout=300)
    assert int(result.stdout) == 240


def _child_product(_):
    rng = np.random.default_rng(2)
    a, b = rng.random((300, 400)), rng.random((400, 500))
    dims, data, labels, params = next(p for p in _problems() if p[1].shape[0] == 3000)
    twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")  # a parallel call shares
    return (a @ b).tobytes(), threads._pool.shares_blas


@pytest.mark.slow
@pytest.mark.skipif(not _shares_here(), reason="NumPy's OpenBLAS has no threads callback (0.3.27+) here")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_children_run_products_after_the_parent_shared_its_pool(method):
    # A forked child gives NumPy's products back to OpenBLAS's workers (it has none of our
    # helpers), then shares its own pool at its first parallel call.
    expected, shares = _child_product(0)
    assert shares
    with multiprocessing.get_context(method).Pool(2) as pool:
        got = pool.map_async(_child_product, range(4)).get(timeout=300)
    assert all(product == expected and shares for product, shares in got)
