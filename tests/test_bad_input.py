"""Bad input: a ValueError or TypeError that names the argument, what was expected and
what came; never a crash, a wrong answer or a modified input."""

import numpy as np
import pytest

from twolayer import forward_backward_prop, param_count

DIMS = (4, 3, 2)
P = param_count(DIMS)


def good():
    rng = np.random.default_rng(5)
    labels = np.zeros((6, 2))
    labels[:, 0] = 1
    return rng.standard_normal((6, 4)), labels, rng.standard_normal(P)


CASES = [
    # (label, replace (data, labels, params, dims) -> new args, error type, message regex)
    (
        "data 1-D",
        lambda d, l, p, m: (d[0], l, p, m),
        ValueError,
        r"data: expected a 2-D array .*data\[None, :\].*got 1-D with shape \(4,\)",
    ),
    (
        "data 3-D",
        lambda d, l, p, m: (d[None], l, p, m),
        ValueError,
        r"data: expected a 2-D array .*got 3-D with shape \(1, 6, 4\)",
    ),
    (
        "data columns",
        lambda d, l, p, m: (d[:, :3], l, p, m),
        ValueError,
        r"data: expected shape \(N, Dx\) = \(N, 4\).*got \(6, 3\)",
    ),
    (
        "labels 1-D ints",
        lambda d, l, p, m: (d, np.zeros(6, int), p, m),
        ValueError,
        r"labels: expected a 2-D array .*np.eye\(2\)\[labels\]",
    ),
    (
        "labels rows",
        lambda d, l, p, m: (d, l[:5], p, m),
        ValueError,
        r"labels: expected shape \(N, Dy\) = \(6, 2\).*got \(5, 2\)",
    ),
    (
        "labels columns",
        lambda d, l, p, m: (d, np.zeros((6, 3)), p, m),
        ValueError,
        r"labels: expected shape \(N, Dy\) = \(6, 2\).*got \(6, 3\)",
    ),
    (
        "params short",
        lambda d, l, p, m: (d, l, p[:-1], m),
        ValueError,
        rf"params: expected length .* = {P} .*got length {P - 1}",
    ),
    (
        "params 2-D",
        lambda d, l, p, m: (d, l, p[None], m),
        ValueError,
        rf"params: expected a 1-D array of length .* = {P}, got 2-D",
    ),
    (
        "dims two",
        lambda d, l, p, m: (d, l, p, (4, 3)),
        ValueError,
        r"dimensions: expected three positive integers .*got 2 values",
    ),
    (
        "dims zero",
        lambda d, l, p, m: (d, l, p, (4, 0, 2)),
        ValueError,
        r"dimensions: expected H to be a positive integer, got 0",
    ),
    (
        "dims negative",
        lambda d, l, p, m: (d, l, p, (-4, 3, 2)),
        ValueError,
        r"dimensions: expected Dx to be a positive integer, got -4",
    ),
    (
        "dims fractional",
        lambda d, l, p, m: (d, l, p, (4, 3.5, 2)),
        TypeError,
        r"dimensions: expected H to be a positive integer, got float 3.5",
    ),
    (
        "dims float",
        lambda d, l, p, m: (d, l, p, (4.0, 3, 2)),
        TypeError,
        r"dimensions: expected Dx to be a positive integer, got float",
    ),
    (
        "dims bool",
        lambda d, l, p, m: (d, l, p, (4, True, 2)),
        TypeError,
        r"dimensions: expected H to be a positive integer, got bool",
    ),
    (
        "dims string",
        lambda d, l, p, m: (d, l, p, "432"),
        TypeError,
        r"dimensions: expected a sequence of three positive integers .*got str",
    ),
    ("dims None", lambda d, l, p, m: (d, l, p, None), TypeError, r"dimensions: expected a sequence .*got NoneType"),
    ("dims int", lambda d, l, p, m: (d, l, p, 4), TypeError, r"dimensions: expected a sequence .*got int"),
    ("data None", lambda d, l, p, m: (None, l, p, m), TypeError, r"data: expected a numeric array, got None"),
    ("labels None", lambda d, l, p, m: (d, None, p, m), TypeError, r"labels: expected a numeric array, got None"),
    ("params None", lambda d, l, p, m: (d, l, None, m), TypeError, r"params: expected a numeric array, got None"),
    (
        "data complex",
        lambda d, l, p, m: (d + 0j, l, p, m),
        TypeError,
        r"data: expected a real numeric dtype .*got dtype complex128",
    ),
    (
        "params complex",
        lambda d, l, p, m: (d, l, p.astype(np.complex64), m),
        TypeError,
        r"params: expected a real numeric dtype .*got dtype complex64",
    ),
    (
        "data object",
        lambda d, l, p, m: (d.astype(object), l, p, m),
        TypeError,
        r"data: expected a real numeric dtype .*got dtype object",
    ),
    (
        "labels strings",
        lambda d, l, p, m: (d, l.astype(str), p, m),
        TypeError,
        r"labels: expected a real numeric dtype .*got dtype <U",
    ),
    (
        "data string",
        lambda d, l, p, m: ("data", l, p, m),
        TypeError,
        r"data: expected a real numeric dtype .*got dtype <U4",
    ),
    (
        "data ragged",
        lambda d, l, p, m: ([[1.0, 2.0], [3.0]], l, p, m),
        TypeError,
        r"data: expected a numeric array, got list",
    ),
    (
        "longdouble",
        lambda d, l, p, m: (d.astype(np.longdouble), l, p, m),
        TypeError,
        r"expected float32 or float64 .*got dtypes",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_explained(backend, case):
    _, change, error, pattern = case
    data, labels, params = good()
    originals = [data.copy(), labels.copy(), params.copy()]
    with pytest.raises(error, match=pattern):
        forward_backward_prop(*change(data, labels, params, DIMS), backend=backend)
    for a, b in zip((data, labels, params), originals):
        assert np.array_equal(a, b)


def test_dimensions_as_numpy_ints_and_list_are_fine(backend):
    data, labels, params = good()
    a = forward_backward_prop(data, labels, params, DIMS, backend=backend)
    b = forward_backward_prop(data, labels, params, [np.int64(4), np.int32(3), 2], backend=backend)
    c = forward_backward_prop(data, labels, params, np.array(DIMS), backend=backend)
    assert a[0] == b[0] == c[0]


def test_a_list_of_dimensions_is_checked_again_after_it_changes(backend):
    # validate.check_inputs remembers the last dimensions TUPLE by identity; a list can
    # change between calls and must be checked every time.
    data, labels, params = good()
    dims = list(DIMS)
    for _ in range(2):
        forward_backward_prop(data, labels, params, dims, backend=backend)
    dims[1] = 0
    with pytest.raises(ValueError, match="H"):
        forward_backward_prop(data, labels, params, dims, backend=backend)
    remembered = tuple(DIMS)
    forward_backward_prop(data, labels, params, remembered, backend=backend)
    with pytest.raises(ValueError, match="params"):
        forward_backward_prop(data, labels, params[:-1], remembered, backend=backend)


def test_unknown_backend_lists_the_known_ones():
    data, labels, params = good()
    with pytest.raises(
        ValueError, match=r"backend: expected one of 'auto', 'numba', 'numpy', or 'numba:<path>', got 'cuda'"
    ):
        forward_backward_prop(data, labels, params, DIMS, backend="cuda")
    with pytest.raises(
        ValueError,
        match=r"backend: expected 'numba:' followed by one of row, tile, narrow, blas, portable, "
        r"got 'numba:gpu'",
    ):
        forward_backward_prop(data, labels, params, DIMS, backend="numba:gpu")
    with pytest.raises(TypeError, match=r"backend: expected one of .*got list"):
        forward_backward_prop(data, labels, params, DIMS, backend=["numpy"])


@pytest.mark.parametrize(
    "make_out, error, pattern",
    [
        (lambda: [0.0] * P, TypeError, r"out: expected a numpy.ndarray of shape"),
        (
            lambda: np.zeros(P - 1),
            ValueError,
            rf"out: expected shape \({P},\) and dtype float64, got shape \({P - 1},\)",
        ),
        (lambda: np.zeros(P, np.float32), ValueError, r"out: expected shape .* and dtype float64, got .* float32"),
        (lambda: np.zeros(2 * P)[::2], ValueError, r"out: expected a writeable, C-contiguous array"),
    ],
)
def test_bad_out(backend, make_out, error, pattern):
    data, labels, params = good()
    with pytest.raises(error, match=pattern):
        forward_backward_prop(data, labels, params, DIMS, backend=backend, out=make_out())


def test_read_only_out_is_refused(backend):
    data, labels, params = good()
    out = np.zeros(P)
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"out: expected a writeable, C-contiguous array"):
        forward_backward_prop(data, labels, params, DIMS, backend=backend, out=out)


@pytest.mark.parametrize(
    "which", ["labels is a view of out", "labels is out's exported buffer", "out overlaps data in one buffer"]
)
def test_out_sharing_memory_with_an_input_is_refused(backend, which):
    data, labels, params = good()
    given = (data.copy(), labels.copy())
    if which == "labels is a view of out":  # out owns the memory: labels.base is out
        out = np.zeros(P)
        labels = out[:12].reshape(6, 2)
    elif which == "labels is out's exported buffer":  # labels.base is a memoryview, not out
        out = np.zeros(P)
        labels = np.frombuffer(memoryview(out)[:12]).reshape(6, 2)
    else:  # both views of one buffer, sharing out's last 4 elements
        buf = np.zeros(P + 20)
        out, data = buf[:P], buf[P - 4 :].reshape(6, 4)
    data[:], labels[:] = given
    with pytest.raises(ValueError, match="out: must not share memory"):
        forward_backward_prop(data, labels, params, DIMS, backend=backend, out=out)
    assert np.array_equal(data, given[0]) and np.array_equal(labels, given[1])


def test_out_aliasing_params_is_refused(backend):
    data, labels, params = good()
    before = params.copy()
    with pytest.raises(ValueError, match="out: must not share memory"):
        forward_backward_prop(data, labels, params, DIMS, backend=backend, out=params)
    assert np.array_equal(params, before)
