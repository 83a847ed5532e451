"""Every argument check and normalization: nothing invalid gets past ``check_inputs``.

The checks run on every call, so the common case (float32 or float64 ndarrays of one
dtype, dimensions a tuple of ints) takes a short path of identity and shape tests;
everything else goes through the slow path that explains what is wrong.
"""

import numpy as np

from .layout import normalize_dimensions, param_offsets

COMPUTE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_FAST_DTYPES = frozenset(COMPUTE_DTYPES)
_ACCEPTED = "float32 or float64 (float16, integer and bool inputs are promoted)"


def check_dimensions(dimensions):
    """``(Dx, H, Dy)`` as three positive Python ints, or a TypeError/ValueError."""
    if type(dimensions) is tuple or type(dimensions) is list:
        if len(dimensions) == 3:
            Dx, H, Dy = dimensions
            if type(Dx) is int and type(H) is int and type(Dy) is int and Dx > 0 and H > 0 and Dy > 0:
                return Dx, H, Dy
    return normalize_dimensions(dimensions)


def _as_ndarray(x, name):
    """``x`` as a base-class ndarray (views of subclasses such as memmap), or a TypeError."""
    if x is None:
        raise TypeError(f"{name}: expected a numeric array, got None")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as err:  # ragged nested lists and the like
        raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__} ({err})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric dtype ({_ACCEPTED}), got dtype {arr.dtype}")
    return arr


def _check_ndim(arr, ndim, name, what):
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array {what}, got {arr.ndim}-D with shape {arr.shape}")


def compute_dtype(*dtypes):
    """The float dtype the computation runs in, following NumPy's promotion rules.

    Mixed float32/float64 gives float64; integers and bool promote to float64 as NumPy's
    ufuncs would; float16 is computed in float32. Anything else is a TypeError.
    """
    dt = np.result_type(*dtypes)
    if dt.kind in "biu":
        return COMPUTE_DTYPES[1]
    if dt.kind == "f" and dt.itemsize == 2:
        return COMPUTE_DTYPES[0]
    dt = dt.newbyteorder("=")
    if dt not in _FAST_DTYPES:
        raise TypeError(f"data, labels, params: expected {_ACCEPTED}, got dtypes {', '.join(map(str, dtypes))}")
    return dt


_ndarray = np.ndarray
_F32, _F64 = COMPUTE_DTYPES
_lengths = {}  # dimensions -> params length, memoized: this runs on every call
# The last valid dimensions tuple seen, and its params length: callers in a loop pass the
# same tuple object every time, and a tuple of ints cannot change.
_last_dims = (None, 0)


def _params_length(dims):
    length = _lengths.get(dims)
    if length is None:
        if len(_lengths) > 4096:
            _lengths.clear()
        length = _lengths[dims] = param_offsets(*dims)[4]
    return length


def check_inputs(data, labels, params, dimensions):
    """Validate the four arguments of ``forward_backward_prop``.

    Returns ``(data, labels, params, (Dx, H, Dy))`` with the three arrays as ndarrays of
    one compute dtype (float32 or float64). The caller's arrays are never written to:
    a conversion makes a copy, otherwise the originals are returned as they are (any
    memory layout; backends that need a particular one arrange it themselves).
    """
    global _last_dims
    dims = dimensions
    last = _last_dims  # one read: another thread may replace it
    if dims is last[0]:
        length = last[1]
    else:
        if type(dims) is not tuple or len(dims) != 3:
            dims = check_dimensions(dims)
        else:
            Dx, H, Dy = dims
            if not (type(Dx) is int and type(H) is int and type(Dy) is int and Dx > 0 and H > 0 and Dy > 0):
                dims = normalize_dimensions(dims)
        length = _params_length(dims)
        if dims is dimensions:  # a tuple of ints, immutable: safe to recognize by identity
            _last_dims = (dims, length)
    if type(data) is not _ndarray or type(labels) is not _ndarray or type(params) is not _ndarray:
        data = _as_ndarray(data, "data")
        labels = _as_ndarray(labels, "labels")
        params = _as_ndarray(params, "params")
    dshape, lshape = data.shape, labels.shape  # each .shape builds a tuple: ~30 ns
    if (
        len(dshape) != 2
        or len(lshape) != 2
        or params.ndim != 1
        or dshape[1] != dims[0]
        or lshape[0] != dshape[0]
        or lshape[1] != dims[2]
        or len(params) != length
    ):
        _explain_shapes(data, labels, params, dims)
    dt = data.dtype
    if dt is not labels.dtype or dt is not params.dtype or (dt is not _F64 and dt is not _F32):
        for name, arr in (("data", data), ("labels", labels), ("params", params)):
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{name}: expected a real numeric dtype ({_ACCEPTED}), got dtype {arr.dtype}")
        dt = compute_dtype(data.dtype, labels.dtype, params.dtype)
        data = data.astype(dt, copy=False)
        labels = labels.astype(dt, copy=False)
        params = params.astype(dt, copy=False)
    return data, labels, params, dims


def _explain_shapes(data, labels, params, dims):
    """Raise the ValueError that says which shape is wrong."""
    Dx, H, Dy = dims
    total = param_offsets(Dx, H, Dy)[4]
    if data.ndim != 2:
        hint = " (a single example must still be 2-D: data[None, :])" if data.ndim == 1 else ""
        _check_ndim(data, 2, "data", f"of shape (N, Dx) = (N, {Dx}){hint}")
    if labels.ndim != 2:
        hint = f" (for integer class labels, pass one-hot rows: np.eye({Dy})[labels])" if labels.ndim == 1 else ""
        _check_ndim(labels, 2, "labels", f"of shape (N, Dy) = ({data.shape[0]}, {Dy}){hint}")
    if params.ndim != 1:
        _check_ndim(params, 1, "params", f"of length (Dx+1)*H + (H+1)*Dy = {total}")
    n = data.shape[0]
    if data.shape[1] != Dx:
        raise ValueError(f"data: expected shape (N, Dx) = (N, {Dx}) for dimensions {dims}, got {data.shape}")
    if labels.shape != (n, Dy):
        raise ValueError(
            f"labels: expected shape (N, Dy) = ({n}, {Dy}) to match data {data.shape} "
            f"and dimensions {dims}, got {labels.shape}"
        )
    raise ValueError(
        f"params: expected length (Dx+1)*H + (H+1)*Dy = {total} for dimensions {dims}, got length {params.shape[0]}"
    )


def _may_alias(out, a):
    """False only when ``a`` provably shares no memory with ``out``, which owns its memory.

    NumPy points a view at the array that owns the memory, or at the object that exported
    it (a memoryview, an mmap, another non-owning array): anything else needs a real check.
    """
    b = a.base
    if b is None:
        return a is out
    return b is out or type(b) is not np.ndarray or not b.flags.owndata


def check_out(out, size, dtype, data, labels, params):
    """``out`` must be a writeable, C-contiguous 1-D array of ``size`` elements of ``dtype``,
    sharing no memory with the inputs. This runs on every call that passes ``out``, so the
    common case is a few identity tests (it took 0.7 us, more than a third of an N = 1
    call, when written with a generator and two flags objects)."""
    if type(out) is not np.ndarray:
        raise TypeError(f"out: expected a numpy.ndarray of shape ({size},) and dtype {dtype}, got {type(out).__name__}")
    if out.shape != (size,) or (out.dtype is not dtype and out.dtype != dtype):
        raise ValueError(
            f"out: expected shape ({size},) and dtype {dtype}, got shape {out.shape} and dtype {out.dtype}"
        )
    flags = out.flags
    if not (flags.c_contiguous and flags.writeable):
        raise ValueError("out: expected a writeable, C-contiguous array")
    if not flags.owndata or _may_alias(out, data) or _may_alias(out, labels) or _may_alias(out, params):
        if np.may_share_memory(out, data) or np.may_share_memory(out, labels) or np.may_share_memory(out, params):
            raise ValueError("out: must not share memory with data, labels or params")
    return out
