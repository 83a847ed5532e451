"""The same cost and gradient over data too large for one machine: Dask.

Cost and gradient are sums over rows, so a dataset is a map over row chunks (the fused
kernel on each chunk, where the chunk lives) and a tree sum of the (cost, gradient)
pairs. ``params`` enters the task graph once, as a single key that every chunk task
depends on: each worker fetches it once.

Works with whatever Dask scheduler is active: the local threaded one by default, or a
``distributed`` cluster once a ``Client`` exists (``Client("tcp://scheduler:8786")``).
"""

try:
    import dask
    import dask.array as da
except ImportError as err:  # pragma: no cover - exercised in a subprocess without dask
    raise ImportError("twolayer.distributed needs Dask: pip install 'twolayer[dask]'") from err

import numpy as np

from . import api
from .validate import check_dimensions, check_inputs, compute_dtype

DEFAULT_CHUNK_BYTES = 64 << 20  # plain arrays are cut into chunks of about this size


def _chunk_cost_grad(data, labels, params, dims, backend):
    """One chunk's (cost, gradient in float64); runs on a worker."""
    cost, grad = api.forward_backward_prop(data, labels, params, dims, backend=backend)
    return cost, grad.astype(np.float64, copy=False)


def _sum_parts(*parts):
    cost = 0.0
    grad = None
    for c, g in parts:  # in order: the same tree gives the same sum
        cost += c
        grad = g.copy() if grad is None else grad + g
    return cost, grad


def _as_row_chunked(x, name, ncols, chunk_rows):
    """x as a 2-D dask array with all its columns in one chunk."""
    if isinstance(x, da.Array):
        arr = x
    else:
        arr = np.asarray(x) if x is not None else None
        if arr is None or arr.dtype.kind not in "biuf":
            raise TypeError(
                f"{name}: expected a real numeric array or dask array, got "
                f"{type(x).__name__}{'' if arr is None else f' of dtype {arr.dtype}'}"
            )
        if arr.ndim == 2:
            rows = chunk_rows or max(1, DEFAULT_CHUNK_BYTES // max(1, arr.shape[1] * arr.itemsize))
            arr = da.from_array(arr, chunks=(rows, -1))
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array with {ncols} columns, got {arr.ndim}-D with shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric dtype, got dtype {arr.dtype}")
    if any(np.isnan(c) for c in arr.chunks[0]):
        raise ValueError(f"{name}: its row chunk sizes are unknown; call {name}.compute_chunk_sizes() first")
    return arr.rechunk({1: -1}) if len(arr.chunks[1]) > 1 else arr


def forward_backward_prop(data, labels, params, dimensions, *, backend="auto", chunk_rows=None, split_every=8):
    """``twolayer.forward_backward_prop`` over a dataset chunked along its rows.

    Computes ``forward_backward_delayed(...)`` with the active Dask scheduler.

    Parameters
    ----------
    data : dask.array.Array or array_like, shape (N, Dx)
        Row-chunked; a plain array is cut into chunks of ``chunk_rows`` rows (default:
        about 64 MiB per chunk). Column chunks are merged.
    labels : dask.array.Array or array_like, shape (N, Dy)
        Rechunked to data's row chunks if they differ.
    params : array_like, shape (P,)
        Sent to the workers once.
    dimensions : sequence of three ints
        ``(Dx, H, Dy)``.
    backend : {"auto", "numba", "numpy"}
        The backend each chunk runs on.
    chunk_rows : int, optional
        Rows per chunk for plain-array inputs.
    split_every : int
        Fan-in of the tree sum.

    Returns
    -------
    cost : float
        Summed over all rows.
    grad : ndarray, shape (P,)
        In the compute dtype (float32 if every input is float32, else float64). Chunk
        gradients are summed in float64.
    """
    result, dtype = forward_backward_delayed(
        data, labels, params, dimensions, backend=backend, chunk_rows=chunk_rows, split_every=split_every
    )
    cost, grad = result.compute()
    return float(cost), grad.astype(dtype)


def forward_backward_delayed(data, labels, params, dimensions, *, backend="auto", chunk_rows=None, split_every=8):
    """The task graph of ``forward_backward_prop``, not yet computed: a dask.delayed
    ``(cost, grad in float64)`` and the dtype the gradient is returned in."""
    dims = check_dimensions(dimensions)
    Dx, H, Dy = dims
    params = np.asarray(params) if params is not None else None
    if params is None or params.dtype.kind not in "biuf":
        raise TypeError("params: expected a real numeric array")
    data = _as_row_chunked(data, "data", Dx, chunk_rows)
    labels = _as_row_chunked(labels, "labels", Dy, chunk_rows)
    if data.shape[1] != Dx:
        raise ValueError(f"data: expected shape (N, Dx) = (N, {Dx}) for dimensions {dims}, got {data.shape}")
    if labels.shape != (data.shape[0], Dy):
        raise ValueError(f"labels: expected shape (N, Dy) = ({data.shape[0]}, {Dy}) to match data, got {labels.shape}")
    if type(split_every) is not int or split_every < 2:
        raise ValueError(f"split_every: expected an int >= 2, got {split_every!r}")
    dtype = compute_dtype(data.dtype, labels.dtype, params.dtype)
    if labels.chunks[0] != data.chunks[0]:
        labels = labels.rechunk((data.chunks[0], -1))
    params = params.astype(dtype, copy=False)
    check_inputs(np.empty((0, Dx), dtype), np.empty((0, Dy), dtype), params, dims)  # params: length, ndim

    # pure=False: fresh keys per call, so that a call never reuses a finished identical one
    p = dask.delayed(params, pure=False)  # one key: each worker fetches params once
    chunk = dask.delayed(_chunk_cost_grad, pure=False)
    parts = [chunk(d, y, p, dims, backend) for d, y in zip(data.to_delayed().ravel(), labels.to_delayed().ravel())]
    combine = dask.delayed(_sum_parts, pure=False)
    while len(parts) > 1:
        parts = [combine(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0], dtype
