"""Per-thread scratch that calls reuse: no allocation, and no page faults, in a training
loop (a fresh 4 KiB page cost 1-2.7 us on the VMs measured). Each Python thread has its
own, grown to the largest call it has made."""

import threading

import numpy as np

_local = threading.local()


def scratch(n, dtype):
    """n elements of ``dtype`` scratch for this Python thread's call."""
    ws = _local.__dict__.get(dtype)
    if ws is None or ws.shape[0] < n:
        ws = _local.__dict__[dtype] = aligned_empty(max(n, 1024), dtype)
    return ws[:n]


def chunk_costs(n):
    """n float64 slots for the costs of a call's chunks."""
    costs = _local.__dict__.get("costs")
    if costs is None or costs.shape[0] < n:
        costs = _local.__dict__["costs"] = np.empty(max(n, 64))
    return costs[:n]


def aligned_empty(n, dtype, alignment=64):
    """np.empty(n, dtype) starting on an ``alignment``-byte boundary. BLAS kernels may take
    different paths for differently aligned operands; a fixed alignment keeps the BLAS
    path's results identical from call to call and thread to thread."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n + alignment // itemsize, dtype)
    start = (-raw.ctypes.data % alignment) // itemsize
    return raw[start : start + n]
