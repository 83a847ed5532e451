"""The Numba kernels themselves: every path against the long-double oracle, the
vectorized exp/log, float32 purity, determinism, threads and the compile cache."""

import ast
import concurrent.futures
import ctypes
import os
import re
import time

import numba
import numpy as np
import pytest
from numba import types

import twolayer
from twolayer import fast, param_count, unpack_params
from twolayer.fast import compile as kernels_compile
from twolayer.fast import fallback, numpy_blas, paths
from twolayer.kernels import narrow, single, wide
from twolayer.kernels.common import ENTRY, FASTMATH, JIT, matrix, pack_tile, param_views
from twolayer.kernels.gemm import LIBRARY_MIN_LDB
from twolayer.kernels.mathfn import vexp, vlog
from twolayer.kernels.pool import next_task

from .conftest import random_problem, run_python
from .oracle import assert_close_to_oracle

PATHS = list(fast.PATHS)
RTOL = {np.float64: 1e-12, np.float32: 1e-4}


@pytest.mark.parametrize("path", PATHS)
# (5, 100, 3): H = 100 tiles the BLAS path's bias 16 rows at a time, whole tiles and a tail.
@pytest.mark.parametrize("dims", [(1, 1, 1), (10, 5, 10), (3, 1, 7), (1, 6, 2), (7, 13, 3), (20, 9, 11), (5, 100, 3)])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 129, 700])
def test_every_path_matches_the_oracle(path, dims, n, rng):
    data, labels, params = random_problem(rng, n, dims, scale=0.7)
    cost, grad = fast.forward_backward(data, labels, params, dims, path=path)
    assert_close_to_oracle(cost, grad, data, labels, params, dims, RTOL[np.float64])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_path_soft_labels_saturation_and_dtype(path, dtype, rng):
    dims = (6, 5, 4)
    data, labels, params = random_problem(rng, 300, dims, dtype=dtype, scale=4.0, soft=True)
    labels[::5] *= 3  # rows that do not sum to one
    cost, grad = fast.forward_backward(data, labels, params, dims, path=path)
    assert grad.dtype == dtype
    assert_close_to_oracle(cost, grad, data, labels, params, dims, RTOL[dtype])


@pytest.mark.parametrize("path", PATHS)
def test_every_path_nan_gives_nan_cost(path, rng):
    dims = (4, 3, 5)
    for which in range(3):
        arrays = list(random_problem(rng, 600, dims))
        arrays[which].flat[7] = np.nan
        cost, _ = fast.forward_backward(*arrays, dims, path=path)
        assert np.isnan(cost), (which, cost)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_every_path_overwrites_a_gradient_buffer_full_of_nan(path, n, rng):
    # The row kernel sets the gradient from the first row instead of zeroing it first.
    dims = (7, 13, 3)
    data, labels, params = random_problem(rng, n, dims)
    out = np.full_like(params, np.nan)
    cost, grad = fast.forward_backward(data, labels, params, dims, out=out, path=path)
    assert grad is out
    assert_close_to_oracle(cost, grad, data, labels, params, dims, RTOL[np.float64])


def test_no_more_than_one_row_takes_the_row_path_where_w1_fits_the_cache():
    # fast.forward_backward relies on it to skip choose_path at N <= 1 for fewer params
    # than W1_BEYOND_CACHE; one row takes the row kernel beyond that too
    for dims in [*twolayer.SHAPES.values(), (1, 1, 1), (300, 300, 300), (512, 511, 1)]:
        for itemsize in (4, 8):
            for direct in (False, True):
                paths_for = [fast.choose_path(n, *dims, itemsize, direct) for n in (0, 1)]
                beyond = dims[0] * dims[1] >= paths.W1_BEYOND_CACHE
                assert param_count(dims) >= paths.W1_BEYOND_CACHE or not beyond
                assert paths_for == ["row", "row"], (dims, itemsize, direct)


def test_narrow_layers_keep_the_row_path_for_two_rows():
    cs224n = twolayer.SHAPES["cs224n"]
    assert [fast.choose_path(n, *cs224n) for n in (1, 2, 3, 511, 512)] == ["row", "row", "tile", "tile", "narrow"]


def test_narrow_layers_never_bind_the_blas():
    # Binding loads the BLAS and its dispatchers (80 ms warm, 0.6 s cold): a user of narrow
    # layers only must not pay for it at the first call.
    code = (
        "import numpy as np, twolayer\n"
        "from twolayer.fast import numpy_blas\n"
        "for n in (1, 4, 300, 3000):\n"
        "    y = np.eye(10)[np.arange(n) % 10]\n"
        "    twolayer.forward_backward_prop(np.ones((n, 10)), y, np.ones(115), (10, 5, 10))\n"
        "print(numpy_blas._bound)\n"
    )
    assert run_python(code=code).stdout.strip() == "[]"


def test_a_big_w1_keeps_the_row_path_for_a_few_rows():
    # more on a packed GEMM than on the direct kernels where W1 stays in cache; beyond it,
    # six on both: rows_split shares the weights' trip through memory out over the threads
    big, mnist, sentiment = twolayer.SHAPES["wide"], twolayer.SHAPES["mnist"], twolayer.SHAPES["sentiment"]
    for itemsize in (4, 8):
        assert [fast.choose_path(n, *big, itemsize) for n in (6, 7)] == ["row", "blas"]
        assert [fast.choose_path(n, *big, itemsize, direct_gemm=True) for n in (6, 7)] == ["row", "blas"]
        for dims in (mnist, sentiment):
            assert [fast.choose_path(n, *dims, itemsize, direct_gemm=True) for n in (1, 2)] == ["row", "blas"]
    assert [fast.choose_path(n, *mnist, 4) for n in (3, 4)] == ["row", "blas"]
    assert [fast.choose_path(n, *sentiment, 8) for n in (1, 2)] == ["row", "blas"]
    assert fast.entry_kernels("row", 6, big, 8) == ["row_split", "row_split_job"]
    assert fast.entry_kernels("row", 3, mnist, 8) == ["row"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 5, 37])
def test_rows_of_a_wide_layer_share_out_by_blocks_with_the_same_bits_on_any_thread_count(dtype, n):
    # Uneven blocks (520 inputs, 510 hidden units: 9 and 8 blocks of 64, the last short);
    # 37 rows: three groups of SPLIT_ROWS, the last short.
    dims = (520, 510, 30)
    assert dims[0] * dims[1] >= paths.W1_BEYOND_CACHE and dims[1] % single.SPLIT_BLOCK != 0
    data, labels, params = random_problem(np.random.default_rng(13), n, dims, dtype=dtype)
    out = np.full(param_count(dims), np.nan, dtype)  # overwritten, never read
    results = []
    try:
        for threads in (1, 2, 1, 2):
            twolayer.set_num_threads(threads)
            cost, grad = fast.forward_backward(data, labels, params, dims, out=out.copy(), path="row")
            results.append((cost, grad))
    finally:
        twolayer.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for cost, grad in results[1:]:
        assert cost == results[0][0] and np.array_equal(grad, results[0][1])
    assert_close_to_oracle(*results[0], data, labels, params, dims, RTOL[dtype])


@pytest.mark.parametrize(
    "dims", [twolayer.SHAPES["mnist"], twolayer.SHAPES["wide"], (50, 100, 5), (33, 7, 1100), (2048, 2048, 2048)]
)
@pytest.mark.parametrize("itemsize", [4, 8])
def test_blas_path_cuts_a_batch_by_the_batch_alone(dims, itemsize):
    """Chunks: a power of two, growing with N, within the accumulator budget, covering
    the batch; a big W1 is split by columns instead for small batches, and at any batch
    where two chunks' accumulators would not fit (blocks of at least 16 columns, at least
    two of them where the layer is wide enough; tiles of bounded rows)."""
    P = param_count(dims)
    last = 1
    for n in (2, 3, 31, 32, 64, 100, 256, 4096, 65536, 10**6):
        T, per_chunk, chunks = paths.blas_chunks(n, *dims, itemsize)
        assert chunks & (chunks - 1) == 0 and chunks >= last and chunks <= paths.BLAS_MAX_CHUNKS
        assert chunks == 1 or chunks * P * itemsize <= paths.ACCUMULATOR_BYTES
        assert per_chunk * chunks >= n > per_chunk * (chunks - 1) and 1 <= T <= per_chunk
        last = chunks
        columns = paths.blas_columns(n, *dims, itemsize)
        big_w1 = dims[0] * dims[1] >= paths.COLUMNS_MIN_WEIGHTS
        beyond_cache = dims[0] * dims[1] >= paths.W1_BEYOND_CACHE
        max_rows = (paths.COLUMNS_MAX_ROWS_BEYOND_CACHE if beyond_cache else paths.COLUMNS_MAX_ROWS)[itemsize]
        assert (columns is not None) == (big_w1 and (chunks == 1 or n <= max_rows))
        if columns is not None:
            R, JB, KB = columns
            assert R == min(n, paths.COLUMNS_TILE_ROWS) and JB >= 16 and KB >= 16
            assert JB <= max(16, dims[1] // 2) and KB <= max(16, dims[2] // 2)


@pytest.mark.parametrize("dims", [(10, 5, 10), twolayer.SHAPES["mnist"], twolayer.SHAPES["wide"], (2048, 2048, 2048)])
@pytest.mark.parametrize("itemsize", [4, 8])
def test_narrow_path_cuts_a_batch_into_whole_tiles_within_the_accumulator_budget(dims, itemsize):
    """A wide layer runs on the narrow path where NumPy's BLAS is slow (fallback.py): its
    chunks' accumulators stay within the budget there, as the BLAS path's do."""
    P = param_count(dims)
    for n in (1, 31, 32, 257, 4096, 65536, 10**6):
        T, per_chunk, chunks = paths.narrow_chunks(n, *dims, itemsize)
        assert per_chunk % T == 0 and per_chunk * chunks >= n > per_chunk * (chunks - 1)
        assert chunks <= paths.NARROW_CHUNKS
        assert chunks == 1 or chunks * P * itemsize <= paths.ACCUMULATOR_BYTES
    assert paths.narrow_chunks(10**6, 10, 5, 10, itemsize)[2] == paths.NARROW_CHUNKS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_tile_transposes_rows_and_zeroes_the_rest(dtype, rng):
    """Blocks of 8 x 8 go through registers when D >= 8, overlapping at the last block of
    columns; leftover rows go one by one. Every D around a multiple of 8, every n mod 8."""
    T = 24
    for D in (1, 7, 8, 9, 10, 15, 16, 17, 20):
        src = rng.standard_normal((40, D)).astype(dtype)
        before = src.copy()
        for r0, n in ((0, 0), (3, 5), (0, 8), (5, 13), (1, 16), (16, 24), (2, 23)):
            dst = np.full((D, T), np.nan, dtype)
            pack_tile(src, r0, n, dst)
            expected = np.zeros((D, T), dtype)
            expected[:, :n] = src[r0 : r0 + n].T
            assert np.array_equal(dst, expected), (D, r0, n)
        assert np.array_equal(src, before)


def test_param_views_agree_with_the_layout():
    dims = (3, 4, 5)
    params = np.arange(param_count(dims), dtype=np.float64)
    for got, expected in zip(param_views(params, *dims), unpack_params(params, dims)):
        assert np.array_equal(got, expected)


def test_matrix_view_shares_memory_and_checks_its_size():
    flat = np.arange(12.0)
    m = matrix(flat, 3, 4)
    assert m.shape == (3, 4) and np.array_equal(m, flat.reshape(3, 4))
    m[2, 1] = -1.0
    assert flat[9] == -1.0
    for rows, cols in [(3, 5), (2, 4), (-3, -4)]:
        with pytest.raises(ValueError, match="wrong size"):
            matrix(flat, rows, cols)


def test_fastmath_keeps_nan_and_inf_semantics():
    assert not FASTMATH & {"nnan", "ninf", "fast"}
    assert ENTRY["cache"] is True and "cache" not in JIT  # see kernels/common.py


def _slice_assignments_from_values(source):
    """Lines of ``source`` that assign to a slice anything but a number."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and not isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Subscript) and any(isinstance(n, ast.Slice) for n in ast.walk(target.slice)):
                    lines.append(node.lineno)
    return lines


def test_kernels_copy_arrays_with_a_loop_not_a_slice_assignment():
    # `h[:] = b1` makes Numba compile a formatted shape-mismatch error: 2.5 s of a cold
    # first call (kernels/common.py: copy_into)
    assert _slice_assignments_from_values("h[:] = b1\nh[:] = 0\nhr[j0:j1] = b1[j0:j1]\nh[0] = b1[0]\n") == [1, 3]
    kernels_dir = os.path.dirname(narrow.__file__)
    found = {}
    for name in sorted(os.listdir(kernels_dir)):
        if name.endswith(".py"):
            with open(os.path.join(kernels_dir, name)) as f:
                lines = _slice_assignments_from_values(f.read())
            if lines:
                found[name] = lines
    assert found == {}


@numba.njit(**JIT)
def _apply(f_is_exp, x, out):
    for i in range(x.shape[0]):
        out[i] = vexp(x[i]) if f_is_exp else vlog(x[i])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorized_exp_and_log_are_within_two_ulp(dtype):
    rng = np.random.default_rng(3)
    finfo = np.finfo(dtype)
    lo, hi = (-103.0, 88.0) if dtype == np.float32 else (-744.0, 709.0)
    x = np.concatenate([rng.uniform(lo, hi, 200_000), rng.uniform(-30, 30, 200_000)]).astype(dtype)
    out = np.empty_like(x)
    _apply(True, x, out)
    ref = np.exp(x.astype(np.longdouble))
    normal = ref > finfo.tiny
    assert np.max(np.abs((out[normal] - ref[normal]) / ref[normal])) <= 2 * finfo.eps
    y = np.concatenate([rng.uniform(1, 100, 200_000), 10.0 ** rng.uniform(-30, 30, 200_000)]).astype(dtype)
    _apply(False, y, out[: y.size])
    ref = np.log(y.astype(np.longdouble))
    assert np.max(np.abs(out[: y.size] - ref) / np.maximum(1, np.abs(ref))) <= 2 * finfo.eps


_AVX2_ONLY = "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+popcnt,+sse4.2,-avx512f,-avx512vl,-avx512dq,-avx512bw,-avx512cd"


@pytest.mark.slow
def test_exp_keeps_its_accuracy_where_2_to_the_k_is_built_from_bits():
    """Without AVX-512, exp builds 2**k from bits instead of calling ldexp (slow there):
    the accuracy and special-value tests above, run again compiled for AVX2."""
    env = {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": _AVX2_ONLY}
    run_python(code="from twolayer.kernels import mathfn; assert not mathfn.SCALE_BY_LDEXP", env=env)
    tests = [f"{__file__}::test_vectorized_exp_and_log_{name}" for name in ("are_within_two_ulp", "special_values")]
    result = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, env=env)
    assert "4 passed" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorized_exp_and_log_special_values(dtype):
    big = 1000.0
    x = np.array([np.nan, np.inf, -np.inf, big, -big, 0.0], dtype)
    out = np.empty_like(x)
    _apply(True, x, out)
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == 0 and out[3] == np.inf and out[4] == 0
    assert out[5] == 1
    tiny = np.array([-740.0 if dtype == np.float64 else -100.0], dtype)  # a subnormal result
    _apply(True, tiny, tiny_out := np.empty_like(tiny))
    assert 0 < tiny_out[0] < np.finfo(dtype).tiny
    assert tiny_out[0] == pytest.approx(float(np.exp(tiny.astype(np.longdouble))[0]), rel=1e-3)
    y = np.array([np.nan, np.inf, 1.0], dtype)
    _apply(False, y, out[:3])
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "worker, signature",
    [
        ("single.rows_forward_backward", kernels_compile.ENTRY_KERNELS["row"][1]),
        ("single.rows_split_job", kernels_compile.ENTRY_KERNELS["row_split_job"][1]),
        ("narrow.tiles_forward_backward", None),
        ("narrow.tiles_forward_backward_hinted", None),
        ("wide.tiles_forward_backward", None),
        ("wide.columns_job", kernels_compile.ENTRY_KERNELS["blas_columns_job"][1]),
        ("portable.hidden_forward_tail", kernels_compile.ENTRY_KERNELS["hidden_forward_tail"][1]),
        ("portable.output_forward_tail_columns", kernels_compile.ENTRY_KERNELS["output_forward_tail_columns"][1]),
        ("portable.hidden_backward_head", kernels_compile.ENTRY_KERNELS["hidden_backward_head"][1]),
    ],
)
def test_float32_kernels_do_no_float64_vector_arithmetic(worker, signature):
    """Float literals promote in Numba; a float32 kernel's vector loops must stay float32."""
    module_name, name = worker.split(".")
    py_func = getattr(getattr(twolayer.kernels, module_name), name).py_func
    fresh = numba.njit(**{**JIT, "cache": False})(py_func)  # cached code cannot be inspected
    if module_name == "wide":
        assert numpy_blas.bound()  # its GEMM symbols must be bound before it compiles
    f32 = types.float32
    if signature is not None:
        sig = signature(f32)
    else:  # data, labels, params, Dx, H, Dy, r0, r1, rows, scratch, grad
        ro2, ro1, rw1 = (
            types.Array(f32, 2, "C", readonly=True),
            types.Array(f32, 1, "C", readonly=True),
            types.Array(f32, 1, "C"),
        )
        sig = (ro2, ro2, ro1, *(types.intp,) * 6, rw1, rw1)
    fresh.compile(sig)
    ir = fresh.inspect_llvm(sig)
    if "forward_backward" in name or "tail" in name:  # the stages with loops long enough to vectorize
        assert re.findall(r"<\d+ x float>", ir), "expected vectorized float32 loops"
    assert not re.findall(r"<\d+ x double>", ir)
    # The only widenings allowed: a scalar cost added to its float64 sum, once per
    # tile, row or output layout, never inside vector arithmetic.
    widenings = re.findall(r"fpext [^\n]*", ir)
    assert len(widenings) <= 2 and all(re.match(r"fpext float %\S+ to double", w) for w in widenings), widenings


@pytest.mark.parametrize(
    "dims, n, path",
    [
        ((10, 5, 10), 20_000, "narrow"),
        ((60, 40, 7), 5_000, "blas"),
        ((784, 128, 10), 16, "blas"),
        ((784, 128, 10), 64, "blas"),
        ((784, 128, 10), 300, "blas"),
        ((33, 7, 1100), 40, "blas"),
        ((256, 300, 70), 40, "blas"),  # column split: 3 hidden and 2 output blocks, uneven
    ],
)
def test_parallel_paths_are_bitwise_identical_across_thread_counts_and_calls(dims, n, path):
    # Chunks (and column blocks) are fixed by the batch, each product single-threaded.
    data, labels, params = random_problem(np.random.default_rng(11), n, dims)
    assert fast.resolve_path(fast.choose_path(n, *dims), n, dims) == path
    results = []
    try:
        for threads in (1, 2, 1, 2):
            twolayer.set_num_threads(threads)
            results.append(twolayer.forward_backward_prop(data, labels, params, dims, backend="numba"))
    finally:
        twolayer.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for cost, grad in results[1:]:
        assert cost == results[0][0]
        assert np.array_equal(grad, results[0][1])


def test_a_small_column_split_runs_on_one_thread_with_the_same_result(monkeypatch):
    # Below COLUMNS_THREADED_MIN_FLOPS the split opens no job in the pool even with threads
    # to spare; forced onto the threads, the same blocks give the same bits.
    dims, n = (784, 128, 10), 4
    data, labels, params = random_problem(np.random.default_rng(12), n, dims)
    assert fast.paths.blas_columns(n, *dims, 8) is not None
    assert not fast.paths.columns_threaded(n, *dims, 8)
    assert fast.entry_kernels("blas", n, dims, 8) == ["blas_columns", "blas_columns_job"]
    jobs = fast.threads.jobs_opened()
    serial = twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
    assert fast.threads.jobs_opened() == jobs
    monkeypatch.setitem(paths.COLUMNS_THREADED_MIN_FLOPS, 8, 0)
    threaded = twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
    if fast.get_num_threads() > 1:
        assert fast.threads.jobs_opened() == jobs + 1
    assert serial[0] == threaded[0] and np.array_equal(serial[1], threaded[1])


def test_next_task_hands_out_every_task_once_across_threads():
    """The run-time queue of the parallel kernels: each task to exactly one taker, however
    many iterations of a prange take from it at once."""

    @numba.njit(parallel=True)
    def take_all(tasks, takers):
        queues = np.zeros(2, np.int64)
        taken = np.zeros(tasks, np.int64)
        for _ in numba.prange(takers):
            t = next_task(queues, 1)
            while t < tasks:
                taken[t] += 1
                t = next_task(queues, 1)
        return taken, queues

    for tasks, takers in ((1, 2), (64, 2), (1000, 7), (3, 50)):
        taken, queues = take_all(tasks, takers)
        assert (taken == 1).all()
        assert queues[0] == 0 and queues[1] == tasks + takers  # one failed take per taker


@pytest.mark.parametrize("nK, nJ", [(1, 1), (1, 2), (16, 16), (3, 16), (16, 1), (5, 7), (1, 64)])
def test_the_column_splits_last_stage_runs_every_block_once_largest_first(nK, nJ):
    """Each hidden block (two GEMMs) once, then each output block (one GEMM) once."""
    tasks = [wide._backward_task(i, nK, nJ) for i in range(nK + nJ)]
    assert tasks == [(j, False) for j in range(nJ)] + [(k, True) for k in range(nK)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_column_split_over_uneven_blocks_matches_the_oracle(dtype, monkeypatch, rng):
    dims = (256, 300, 70)
    monkeypatch.setattr(paths, "COLUMN_BLOCK_COLUMNS", {"direct": 128, "packed": 128})
    data, labels, params = random_problem(rng, 24, dims, dtype=dtype, scale=0.1)
    assert paths.blas_columns(24, *dims, data.itemsize, numpy_blas.packed_from()) == (24, 128, 35)
    cost, grad = fast.forward_backward(data, labels, params, dims, path="blas")
    assert_close_to_oracle(cost, grad, data, labels, params, dims, RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_column_split_in_several_tiles_matches_the_oracle(dtype, monkeypatch, rng):
    """Tiles after the first add to the weight gradients (beta = 1): a network too big
    for two chunks' accumulators reaches them at any batch; forced here on a small one."""
    dims = twolayer.SHAPES["mnist"]
    monkeypatch.setattr(paths, "COLUMNS_TILE_ROWS", 8)
    data, labels, params = random_problem(rng, 30, dims, dtype=dtype, scale=0.1)
    assert paths.blas_columns(30, *dims, data.itemsize)[0] == 8
    cost, grad = fast.forward_backward(data, labels, params, dims, path="blas")
    assert_close_to_oracle(cost, grad, data, labels, params, dims, RTOL[dtype])


@pytest.mark.slow
def test_a_batch_beyond_the_cache_takes_the_hinted_tiles_and_matches_the_oracle(rng):
    """Past HINT_FROM_BYTES the narrow path hints each next tile into cache (entry kernels
    of their own, compiled apart from the plain ones); its results must be as right."""
    Dx, H, Dy = dims = twolayer.SHAPES["cs224n"]
    n = narrow.HINT_FROM_BYTES // ((Dx + Dy) * 8) + 1000
    data, labels, params = random_problem(rng, n, dims)
    assert fast.choose_path(n, *dims) == "narrow"
    for threads in (1, 2):
        twolayer.set_num_threads(threads)
        try:
            cost, grad = fast.forward_backward(data, labels, params, dims, path="narrow")
        finally:
            twolayer.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        assert_close_to_oracle(cost, grad, data, labels, params, dims, RTOL[np.float64])
    assert fast.entry_kernels("narrow", n, dims, 8)[0] == "narrow_tiles_hinted"
    assert fast.entry_kernels("narrow", n // 2, dims, 8)[0] == "narrow_tiles"


@pytest.mark.parametrize("dims", [(1, 1, 1), (10, 5, 10), (20, 9, 11), (100, 2, 20), (5, 100, 3)])
@pytest.mark.parametrize("itemsize", [4, 8])
def test_a_small_batch_is_one_tile_or_the_fewest_equal_tiles_within_budget(dims, itemsize):
    # (The tiles' results: test_every_path_matches_the_oracle forces the tile path at N = 700.)
    per_row = narrow.scratch_size(*dims, 1) * itemsize
    for n in range(1, 512):
        T = narrow.small_batch_tile_rows(n, *dims, itemsize)
        tiles = -(-n // T)
        assert T >= 8 and T % 8 == 0 and (T - 8) * per_row < narrow.ONE_TILE_BYTES
        rows = (n + 7) // 8 * 8  # as one tile
        assert tiles == 1 or rows * per_row > (tiles - 1) * narrow.ONE_TILE_BYTES  # no fewer would do
        assert n - (tiles - 1) * T > T - 8 * tiles  # equal tiles, up to rounding to 8 rows


def test_kernels_gemm_is_numpys_blas_and_agrees_with_matmul(rng):
    from threadpoolctl import threadpool_info

    from twolayer.kernels.gemm import gemm

    lib = numpy_blas.bound()
    assert lib, "NumPy's wheels ship an OpenBLAS; the kernels must find it"
    loaded = [i["filepath"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert os.path.realpath(lib.path) in map(os.path.realpath, loaded)
    for dtype, rtol in ((np.float64, 1e-13), (np.float32, 1e-5)):
        # column ranges of wider arrays too: their row stride is the leading dimension
        big = rng.standard_normal((7, 11)).astype(dtype)
        c = np.zeros((7, 9), dtype)
        gemm(big[:, 2:7], False, big[:5, 1:4], False, c[:, 3:6], 0.0)
        np.testing.assert_allclose(c[:, 3:6], big[:, 2:7] @ big[:5, 1:4], rtol=rtol, atol=rtol)
        assert not c[:, :3].any() and not c[:, 6:].any()
        for trans_a in (False, True):
            for trans_b in (False, True):
                a = rng.standard_normal((7, 5) if trans_a else (5, 7)).astype(dtype)
                b = rng.standard_normal((3, 7) if trans_b else (7, 3)).astype(dtype)
                c0 = rng.standard_normal((5, 3)).astype(dtype)
                expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
                for beta in (0.0, 1.0):
                    c = c0.copy()
                    gemm(a, trans_a, b, trans_b, c, beta)
                    np.testing.assert_allclose(c, expected + beta * c0, rtol=rtol, atol=rtol)
        c = np.full((5, 3), np.nan, dtype)  # k = 0 with beta = 0: zeros, whatever c held
        gemm(np.empty((5, 0), dtype), False, np.empty((0, 3), dtype), False, c, 0.0)
        assert np.array_equal(c, np.zeros((5, 3), dtype))


# (m, n, k) around the direct kernels' choices (k = 32, a C of 2^17 elements, k = 512) and
# their edge paths (rows and columns left over from blocks of 32, 16, 8, 4, 2).
GEMM_SIZES = [(1, 1, 1), (37, 13, 5), (5, 3, 31), (33, 2, 32), (3, 67, 100), (130, 9, 16), (400, 400, 16), (8, 400, 40)]
GEMM_SIZES += [(330, 400, 600)]  # a long k on a big C: A B in slices along k


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m, n, k", GEMM_SIZES)
def test_kernels_gemm_every_variant_and_size_agrees_with_matmul(dtype, m, n, k, rng):
    # Through whatever numpy_blas bound: OpenBLAS's GEMM, or the dispatcher that sends
    # some products to the direct kernels. beta = 0 must not read c (here NaN).
    from twolayer.kernels.gemm import gemm

    rtol = 1e-12 if dtype == np.float64 else 2e-5
    for trans_a in (False, True):
        for trans_b in (False, True):
            a = rng.standard_normal((k, m + 3) if trans_a else (m, k + 3)).astype(dtype)
            a = a[:, 1 : m + 1] if trans_a else a[:, 1 : k + 1]  # a row stride beyond the width
            b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
            expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
            scale = np.sqrt(k) * 4
            for beta in (0.0, 1.0):
                c0 = np.full((m, n), np.nan, dtype) if beta == 0 else rng.standard_normal((m, n)).astype(dtype)
                c = c0.copy()
                gemm(a, trans_a, b, trans_b, c, beta)
                want = expected + (beta * c0 if beta else 0)
                assert np.all(np.abs(c - want) <= rtol * scale), (trans_a, trans_b, beta)


def test_the_direct_kernels_are_bound_wherever_the_cpu_has_avx512():
    # OpenBLAS's AVX-512 small-matrix kernels serve the BLAS path when this CPU has AVX-512
    # and the library exports them: for every weights' product where OpenBLAS picked
    # narrower kernels, for those of narrow layers beside its own AVX-512 ones.
    import ctypes

    import llvmlite.binding as ll

    lib = numpy_blas.bound()
    features = ll.get_host_cpu_features()
    dll = ctypes.CDLL(lib.path)
    expected = (
        all(features.get(f) for f in numpy_blas.AVX512_FEATURES)
        and hasattr(dll, "dgemm_small_kernel_b0_nn_SKYLAKEX")
        and os.environ.get("TWOLAYER_BLAS", "auto") != "cblas"
    )
    beside = lib.core.lower() in numpy_blas.OPENBLAS_AVX512_CORES
    assert (lib.dispatchers is not None) == expected
    assert lib.beside_avx512 == (expected and beside)
    described = fast.runtime_info()["blas path gemm"]
    assert ("small-matrix kernels, called directly" in described) == expected
    assert lib.core in described
    assert numpy_blas.packed_from() == (0 if not expected else LIBRARY_MIN_LDB if beside else numpy_blas.LP64_MAX)


def test_the_column_split_takes_wider_blocks_on_the_packed_gemm():
    # OpenBLAS's packed GEMM packs x again for every block: wider blocks where it runs them
    dims = twolayer.SHAPES["wide"]
    assert paths.blas_columns(16, *dims, 8, packed_from=0)[1:] == (512, 512)
    assert paths.blas_columns(16, *dims, 8, packed_from=numpy_blas.LP64_MAX)[1:] == (128, 128)
    assert paths.blas_columns(16, 784, 128, 10, 8, packed_from=0)[1:] == (64, 16)
    assert paths.blas_columns(16, 784, 300, 1000, 8, packed_from=LIBRARY_MIN_LDB)[1:] == (150, 500)


def test_the_direct_kernels_self_check_rejects_a_kernel_that_computes_something_else():
    # They are OpenBLAS's internal functions: each is tried on a small product before it is
    # bound. A kernel that computes another product (A B asked as A^T B) is turned down.
    lib = numpy_blas.bound()
    if lib.dispatchers is None:
        pytest.skip(f"the direct kernels are not bound here: {fast.runtime_info()['blas path gemm']}")
    dll = ctypes.CDLL(lib.path)
    nn = dll.dgemm_small_kernel_b0_nn_SKYLAKEX
    assert numpy_blas._small_kernel_agrees(nn, "d", True, "nn")
    assert not numpy_blas._small_kernel_agrees(nn, "d", True, "tn")
    assert not numpy_blas._small_kernel_agrees(dll.sgemm_small_kernel_nt_SKYLAKEX, "s", False, "tt")


def test_binding_warms_openblas_buffers_from_several_threads_at_one_openblas_thread():
    # OpenBLAS hands each single-threaded product the first free buffer of a table; one
    # where no product with a wide C ran made sgemm 2.3x slower on a Zen 1. The warm-up
    # must run at once on enough threads to take a buffer each, on OpenBLAS's one thread
    # (else its threaded driver packs into other buffers), and restore its thread count.
    import threading

    lib = numpy_blas.bound()
    calls, inside, most_inside, lock = [], [0], [0], threading.Lock()

    def fake_gemm(kind):
        def gemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
            with lock:
                inside[0] += 1
                most_inside[0] = max(most_inside[0], inside[0])
                calls.append((kind, threading.get_ident(), lib.get_num_threads(), order, m, n, k, lda, ldb, ldc))
            time.sleep(0.02)  # as long as a real warm-up product, for the others to come in
            with lock:
                inside[0] -= 1

        return gemm

    fakes = {kind: numpy_blas.cblas_prototype(kind)(fake_gemm(kind)) for kind in ("d", "s")}
    before = lib.get_num_threads()
    numpy_blas._warm_buffers(lib, {kind: ctypes.cast(f, ctypes.c_void_p).value for kind, f in fakes.items()})
    assert lib.get_num_threads() == before
    threads = numpy_blas.warm_threads()
    assert len({c[1] for c in calls}) == threads
    assert sorted(c[0] for c in calls) == ["d"] * threads + ["s"] * threads
    assert {c[2] for c in calls} == {1}
    assert most_inside[0] >= 2
    rows, inner, columns = numpy_blas.WARM_ROWS, numpy_blas.WARM_INNER, numpy_blas.WARM_COLUMNS
    # row-major C (rows, columns): OpenBLAS's column-major C is `columns` rows tall, more
    # than any GEMM_P, so it packs B whole
    assert {c[3:] for c in calls} == {(101, rows, columns, inner, inner, columns, columns)}
    assert columns > 768


def test_the_warm_up_goes_on_when_threads_cannot_start(monkeypatch):
    # It is a speed-up: a process out of threads must neither fail nor wait forever.
    import threading

    lib = numpy_blas.bound()
    started, calls = [0], []
    real_start = threading.Thread.start

    def start(self):
        if self.name == "twolayer-warm-blas":
            if started[0] == 2:
                raise RuntimeError("can't start new thread")
            started[0] += 1
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    fakes = {kind: numpy_blas.cblas_prototype(kind)(lambda *args, kind=kind: calls.append(kind)) for kind in "ds"}
    before = lib.get_num_threads()
    gemm = {kind: ctypes.cast(fake, ctypes.c_void_p).value for kind, fake in fakes.items()}
    done = threading.Event()
    worker = threading.Thread(target=lambda: (numpy_blas._warm_buffers(lib, gemm), done.set()))
    real_start(worker)
    assert done.wait(30), "the warm-up waited for threads that never started"
    assert sorted(calls) == ["d", "d", "s", "s"]
    assert lib.get_num_threads() == before


class _PythonSmallKernel:
    """A stand-in for one of OpenBLAS's small-matrix kernels, with its calling convention
    (column-major C = alpha op(A) op(B) [+ beta C]), computed by NumPy and then spoiled by
    ``error``: the self-check runs on every CPU, not only on those with AVX-512."""

    def __init__(self, kind, beta0, ops, error=None):
        self.kind, self.beta0, self.ops, self.error = kind, beta0, ops, error

    def _matrix(self, address, rows, cols, ld):
        real = ctypes.c_double if self.kind == "d" else ctypes.c_float
        buffer = (real * (ld * cols)).from_address(address)
        return np.frombuffer(buffer, np.float64 if self.kind == "d" else np.float32).reshape(cols, ld)[:, :rows].T

    def __call__(self, m, n, k, a, lda, alpha, b, ldb, *rest):
        beta, c, ldc = (0.0, *rest) if self.beta0 else (rest[0].value, *rest[1:])
        op_a = self._matrix(a, k, m, lda).T if self.ops[0] == "t" else self._matrix(a, m, k, lda)
        op_b = self._matrix(b, n, k, ldb).T if self.ops[1] == "t" else self._matrix(b, k, n, ldb)
        out = self._matrix(c, m, n, ldc)
        product = alpha.value * (op_a @ op_b)
        if self.error == "scaled":
            product *= 1.001
        if self.error == "beta ignored" or self.beta0:
            out[...] = product
        else:
            out[...] = product + beta * out
        return 0


@pytest.mark.parametrize("kind", ["d", "s"])
@pytest.mark.parametrize("ops", ["nn", "nt", "tn", "tt"])
@pytest.mark.parametrize("beta0", [True, False])
def test_the_direct_kernels_self_check_takes_the_product_and_nothing_else(kind, beta0, ops):
    assert numpy_blas._small_kernel_agrees(_PythonSmallKernel(kind, beta0, ops), kind, beta0, ops)
    assert not numpy_blas._small_kernel_agrees(_PythonSmallKernel(kind, beta0, ops, "scaled"), kind, beta0, ops)
    if not beta0:  # a kernel that overwrites C where it should add to it
        spoiled = _PythonSmallKernel(kind, beta0, ops, "beta ignored")
        assert not numpy_blas._small_kernel_agrees(spoiled, kind, beta0, ops)


@pytest.mark.slow
def test_an_unknown_twolayer_blas_is_a_clear_error():
    code = (
        "import numpy as np, twolayer\n"
        "d = np.ones((4, 784)); y = np.eye(10)[:4]; p = np.zeros(twolayer.param_count((784, 128, 10)))\n"
        "try:\n"
        "    twolayer.forward_backward_prop(d, y, p, (784, 128, 10), backend='numba')\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    out = run_python(code=code, env={"TWOLAYER_BLAS": "cblass"}).stdout.strip()
    assert out == "TWOLAYER_BLAS: expected one of 'auto', 'cblas', 'numpy', 'none', got 'cblass'"


@pytest.mark.slow
def test_twolayer_blas_cblas_keeps_openblas_gemm_and_agrees():
    code = (
        "import numpy as np, twolayer\n"
        "from twolayer import fast\n"
        "rng = np.random.default_rng(5)\n"
        "out = []\n"
        "for dims, n in [((784, 128, 10), 64), ((50, 100, 5), 300)]:\n"
        "    d = rng.standard_normal((n, dims[0])); y = np.eye(dims[2])[rng.integers(0, dims[2], n)]\n"
        "    p = 0.5 * rng.standard_normal(twolayer.param_count(dims))\n"
        "    out.append(twolayer.forward_backward_prop(d, y, p, dims)[1].tolist())\n"
        "print(fast.runtime_info()['blas path gemm'])\n"
        "print(repr(out))\n"
    )
    runs = [run_python(code=code, env={"TWOLAYER_BLAS": e}).stdout.splitlines() for e in ("cblas", "auto")]
    assert runs[0][0].startswith("OpenBLAS's GEMM (")
    for cblas_grad, auto_grad in zip(eval(runs[0][1]), eval(runs[1][1])):
        np.testing.assert_allclose(auto_grad, cblas_grad, rtol=1e-11, atol=1e-13 * np.max(np.abs(cblas_grad)))


# (dims, n): on the tiles without a BLAS, two tiles and more, fewer, one row kernel batch
UNBOUND_CASES = [((30, 20, 9), 700), ((784, 128, 10), 40), ((784, 128, 10), 8), ((40, 30, 90), 300)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "blas, paths_taken",
    [("numpy", "portable"), ("none", "narrow row"), ("auto", None)],
)
def test_without_a_bound_blas_wide_layers_take_a_fallback_path_and_agree(blas, paths_taken):
    # NumPy's BLAS is not bound, as where it is not an OpenBLAS (MKL, Accelerate, BLIS, the
    # reference BLAS): TWOLAYER_BLAS=numpy issues the products through NumPy, none runs our
    # own kernels, auto (here with the OpenBLAS made unfindable) times both first. The
    # result agrees with the BLAS path's and with the oracle.
    code = (
        "import numpy as np, twolayer\n"
        "from twolayer import fast\n"
        "from twolayer.fast import fallback, numpy_blas\n"
        "numpy_blas._find = lambda: None\n"
        "rng = np.random.default_rng(3)\n"
        "out, paths = [], set()\n"
        f"for dims, n in {UNBOUND_CASES}:\n"
        "    d = rng.standard_normal((n, dims[0])); y = np.eye(dims[2])[rng.integers(0, dims[2], n)]\n"
        "    p = 0.5 * rng.standard_normal(twolayer.param_count(dims))\n"
        "    cost, grad = twolayer.forward_backward_prop(d, y, p, dims)\n"
        "    paths.add(fast.resolve_path(fast.choose_path(n, *dims), n, dims))\n"
        "    out.append((cost, grad.tolist()))\n"
        "print(numpy_blas.bound(), ' '.join(sorted({d['why'] for d in fallback._decisions.values()})))\n"
        "print(' '.join(sorted(paths)))\n"
        "print(fast.runtime_info()['wide layers'])\n"
        "print(repr(out))\n"
    )
    first, taken, info, results = run_python(code=code, env={"TWOLAYER_BLAS": blas}).stdout.splitlines()
    assert first == "None " + ("measured" if blas == "auto" else f"TWOLAYER_BLAS={blas}")
    if blas == "auto":  # each of the three layer sizes timed, and said
        assert info.count("ms on the tiles") == 3 and set(taken.split()) <= {"portable", "narrow", "row"}
    else:
        assert taken == paths_taken and f"TWOLAYER_BLAS={blas}" in info
    rng = np.random.default_rng(3)
    for (dims, n), (cost, grad) in zip(UNBOUND_CASES, eval(results)):
        d = rng.standard_normal((n, dims[0]))
        y = np.eye(dims[2])[rng.integers(0, dims[2], n)]
        p = 0.5 * rng.standard_normal(param_count(dims))
        blas_cost, blas_grad = fast.forward_backward(d, y, p, dims, path="blas")
        assert cost == pytest.approx(blas_cost, rel=1e-13)
        np.testing.assert_allclose(grad, blas_grad, rtol=1e-11, atol=1e-13 * np.max(np.abs(blas_grad)))
        assert_close_to_oracle(cost, np.array(grad), d, y, p, dims, RTOL[np.float64])


@pytest.fixture
def undecided_fallback(monkeypatch):
    """The fallback's decision forgotten for the test (and restored after), NumPy's BLAS
    taken for unbound, and the paths' timing replaced by the test's own."""
    monkeypatch.setattr(fallback, "_decisions", {})
    monkeypatch.setattr(numpy_blas, "fits", lambda *sizes: False)
    monkeypatch.delenv("TWOLAYER_BLAS", raising=False)
    timed = []

    def time_as(portable, narrow):
        def time_paths(dims, itemsize):
            timed.append((dims, itemsize))
            return {"portable": portable, "narrow": narrow}

        monkeypatch.setattr(fallback, "time_paths", time_paths)
        return timed

    return time_as


MNIST, WIDE = twolayer.SHAPES["mnist"], twolayer.SHAPES["wide"]


@pytest.mark.parametrize(
    "portable, narrow, chosen",
    [(3.6e-3, 0.5e-3, "narrow"), (1.25e-3, 1e-3, "narrow"), (1.2e-3, 1e-3, "portable"), (0.34e-3, 0.5e-3, "portable")],
)
def test_an_unbound_blas_gives_wide_layers_the_faster_path_timed_once(undecided_fallback, portable, narrow, chosen):
    # our tiles are taken where they are NARROW_MIN_SPEEDUP faster; nearer a tie, NumPy's
    timed = undecided_fallback(portable, narrow)
    assert fast.entry_kernels("blas", 64, MNIST, 8) == [
        *fast.entry_kernels("portable", 64, MNIST, 8),
        *fast.entry_kernels("narrow", 64, MNIST, 8),
        "row",
    ]  # before the decision: what any path might run, so that all are compiled ahead
    assert not timed and fallback.decided(MNIST, 8) is None
    assert [fast.resolve_path("blas", 64, MNIST) for _ in range(3)] == [chosen] * 3
    assert timed == [(MNIST, 8)] and fallback.decided(MNIST, 8) == chosen
    assert fast.entry_kernels("blas", 64, MNIST, 8) == fast.entry_kernels(chosen, 64, MNIST, 8)
    assert fast.resolve_path("row", 64, MNIST) == "row" and fast.resolve_path("portable", 64, MNIST) == "portable"
    # each layer size and float type is timed at its own first call
    fast.resolve_path("blas", 64, MNIST, 4)
    fast.resolve_path("blas", 64, WIDE)
    assert timed == [(MNIST, 8), (MNIST, 4), (WIDE, 8)]
    assert fallback.describe().count("ms on the tiles") == 3


def test_threads_that_meet_an_undecided_fallback_wait_for_one_timing(undecided_fallback, monkeypatch):
    timed = undecided_fallback(3.6e-3, 0.5e-3)
    slow_timing = fallback.time_paths

    def time_paths(dims, itemsize):
        time.sleep(0.2)  # the other threads arrive while it runs
        return slow_timing(dims, itemsize)

    monkeypatch.setattr(fallback, "time_paths", time_paths)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        paths_taken = list(pool.map(lambda n: fast.resolve_path("blas", n, MNIST), [64] * 8))
    assert paths_taken == ["narrow"] * 8 and len(timed) == 1


@pytest.mark.parametrize(
    "speedup, expected",
    [  # NumPy's time over the tiles' -> for 4, 15, 16, 32, 63, 64 rows of (784, 128, 10), then (1024^3)
        (0.7, ["portable"] * 6 + ["row"] + ["portable"] * 5),
        (2.0, ["portable"] * 5 + ["narrow"] + ["row"] * 5 + ["narrow"]),
        (6.5, ["row"] * 3 + ["narrow"] * 3 + ["row"] * 5 + ["narrow"]),
    ],
)
def test_a_slow_blas_gives_each_batch_the_cheaper_of_its_products_our_tiles_and_the_row_kernel(
    undecided_fallback, speedup, expected
):
    # A tile costs about the same whatever rows it holds: fewer rows than two tiles take our
    # tiles only where they won by SURE_SPEEDUP; fewer than one, the row kernel where W1
    # stays in cache; where it does not, the row path below two tiles, and for a few rows
    # (paths.ROW_MAX_ROWS) on any BLAS (tiles of 32 rows here, float64)
    undecided_fallback(speedup * 1e-3, 1e-3)
    assert narrow.tile_rows(*MNIST, 8) == narrow.tile_rows(*WIDE, 8) == 32
    assert paths.ROW_MAX_ROWS[True][8] == 6
    rows = (4, 15, 16, 32, 63, 64)
    assert [fast.resolve_path("blas", n, dims) for dims in (MNIST, WIDE) for n in rows] == expected


@pytest.mark.parametrize(
    "blas, expected, described",
    [
        ("numpy", ["portable"] * 3, "portable path (products through NumPy's BLAS: TWOLAYER_BLAS=numpy)"),
        ("none", ["row", "row", "narrow"], "our own kernels, no BLAS (TWOLAYER_BLAS=none)"),
    ],
)
def test_twolayer_blas_picks_the_fallback_without_timing(undecided_fallback, monkeypatch, blas, expected, described):
    timed = undecided_fallback(1.0, 1.0)
    monkeypatch.setenv("TWOLAYER_BLAS", blas)
    assert [fast.resolve_path("blas", n, WIDE) for n in (15, 16, 64)] == expected  # no BLAS with none
    assert not timed and fallback.describe() == described


def test_set_num_threads():
    before = twolayer.get_num_threads()
    try:
        twolayer.set_num_threads(1)
        assert twolayer.get_num_threads() == 1
    finally:
        twolayer.set_num_threads(before)
    for bad in (0, -1, 1.5, "2", True, numba.config.NUMBA_NUM_THREADS + 1):
        with pytest.raises(ValueError, match="n: expected an int from 1 to"):
            twolayer.set_num_threads(bad)


@pytest.mark.slow
def test_numba_num_threads_is_honoured():
    result = run_python(code="import twolayer; print(twolayer.get_num_threads())", env={"NUMBA_NUM_THREADS": "1"})
    assert result.stdout.strip() == "1"


def _second_run(code):
    """stdout of ``code`` run in a second new process: the first may compile and save to
    the cache, so the second must load from it."""
    run_python(code=code)
    return run_python(code=code).stdout


def _cache_counts(*names):
    # code printing the cache hits and misses of entry kernels `names`, all float types
    return (
        "from twolayer.fast.compile import cache_stats\n"
        f"counts = [cache_stats(name) for name in {names!r}]\n"
        "print(sum(h for h, m in counts), sum(m for h, m in counts))\n"
    )


@pytest.mark.slow
def test_a_second_process_loads_the_kernels_from_the_cache():
    code = (
        "import numpy as np, twolayer\n"
        "from twolayer import fast\n"
        "d = np.ones((1, 10)); y = np.zeros((1, 10)); y[0, 3] = 1\n"
        "for dt in (np.float64, np.float32):\n"
        "    p = np.ones(115, dt)\n"
        "    twolayer.forward_backward_prop(d.astype(dt), y.astype(dt), p, (10, 5, 10), backend='numba')\n"
    ) + _cache_counts("row")
    hits, misses = map(int, _second_run(code).split())
    assert hits == 2 and misses == 0  # float32 and float64, both from the cache


@pytest.mark.slow
def test_a_first_call_loads_only_its_own_float_type():
    # Half the cache to load, and on a first-ever call half the compile.
    code = (
        "import numpy as np, twolayer\n"
        "from twolayer import fast\n"
        "d = np.ones((1, 10)); y = np.zeros((1, 10)); y[0, 3] = 1\n"
        "twolayer.forward_backward_prop(d, y, np.ones(115), (10, 5, 10), backend='numba')\n"
        "print(len(fast.compile.published('row').signatures))\n"
    ) + _cache_counts("row")
    signatures, hits, misses = map(int, _second_run(code).split())
    assert (signatures, hits, misses) == (1, 1, 0)


@pytest.mark.slow
def test_a_second_process_loads_the_blas_kernels_with_numpys_blas_bound():
    # The cached BLAS kernels refer to GEMM symbols by name; a new process must bind them
    # (twolayer/fast/numpy_blas.py) before loading, and then compute what this process computes.
    dims = (60, 40, 7)
    code = (
        "import numpy as np, twolayer\n"
        "from twolayer import fast\n"
        "rng = np.random.default_rng(5)\n"
        "d = rng.standard_normal((3000, 60)); y = np.eye(7)[rng.integers(0, 7, 3000)]\n"
        "p = rng.standard_normal(61 * 40 + 41 * 7) * 0.3\n"
        "cost, grad = twolayer.forward_backward_prop(d, y, p, (60, 40, 7), backend='numba')\n"
        "print(repr(cost), float(np.abs(grad).sum()))\n"
    ) + _cache_counts("blas_tiles", "blocks", "blocks_job")
    cost, gsum, hits, misses = _second_run(code).split()
    assert int(hits) >= 1 and int(misses) == 0  # each BLAS kernel used, for float64
    rng = np.random.default_rng(5)
    d = rng.standard_normal((3000, 60))
    y = np.eye(7)[rng.integers(0, 7, 3000)]
    p = rng.standard_normal(61 * 40 + 41 * 7) * 0.3
    assert fast.choose_path(3000, *dims) == "blas"
    expected_cost, expected_grad = twolayer.forward_backward_prop(d, y, p, dims, backend="numpy")
    assert abs(float(cost) - expected_cost) <= 1e-12 * abs(expected_cost)
    assert abs(float(gsum) - np.abs(expected_grad).sum()) <= 1e-12 * np.abs(expected_grad).sum()


def test_non_contiguous_inputs_are_copied_not_rejected(rng):
    dims = (5, 4, 3)
    data, labels, params = random_problem(rng, 50, dims)
    expected = twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")
    got = twolayer.forward_backward_prop(
        np.asfortranarray(data), labels[:, ::-1][:, ::-1], params[::-1][::-1], dims, backend="numba"
    )
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1])
