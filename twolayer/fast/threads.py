"""Numba's thread pool: started with a short OpenMP spin, sized by set_num_threads, kept
out of forked children where it cannot run, and never beside a spinning BLAS pool.

Two pools share the cores in a user's training loop: ours, and NumPy's BLAS threads,
which run the user's own products. Each spins for a while after its work before it
sleeps, and a spinning pool takes a core from the other. So ours spins briefly
(OMP_SPIN_ROUNDS), and OpenBLAS's is shortened once (numpy_blas.shorten_idle_spin).
"""

import os
import threading

import numba

from . import numpy_blas

# GNU OpenMP (Numba's "omp" layer) keeps its workers spinning for 300,000 rounds after
# every parallel region before they sleep: 7-10 ms of a core, taken from whatever the
# caller runs next. 10,000 rounds (~0.3 ms) still catch calls 100 us apart. libgomp reads
# GOMP_SPINCOUNT once, when it loads, which is when Numba starts its pool here (unless
# something loaded libgomp before). A setting of the user's is kept, and ours leaves the
# environment again, so that child processes do not inherit it.
OMP_SPIN_ROUNDS = 10_000


def _start_numba_threads():
    """Start Numba's thread pool (the layer is then known), with a short OpenMP spin.
    Returns who chose libgomp's spin: "twolayer", "environment" or None (not ours to set)."""
    user_set = "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
    from numba.np.ufunc import parallel

    if user_set or getattr(parallel, "_is_initialized", True):
        numba.get_num_threads()
        return "environment" if user_set else None
    os.environ["GOMP_SPINCOUNT"] = str(OMP_SPIN_ROUNDS)
    try:
        numba.get_num_threads()
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    return "twolayer"


_omp_spin_set_by = _start_numba_threads()
THREADING_LAYER = numba.threading_layer()
_threads = numba.get_num_threads()
# GNU OpenMP cannot run a parallel region in a forked child (Numba aborts the process),
# and the workqueue layer cannot even be entered twice at once: guard both.
_FORK_UNSAFE = THREADING_LAYER in ("omp", "workqueue")
_forked = False
_workqueue_lock = threading.Lock() if THREADING_LAYER == "workqueue" else None


def _after_fork_in_child():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def set_num_threads(n):
    """Threads used by the parallel kernels (1 .. NUMBA_NUM_THREADS), for all Python threads."""
    global _threads
    if type(n) is not int or isinstance(n, bool) or not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"n: expected an int from 1 to {numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS), got {n!r}"
        )
    _threads = n


def get_num_threads():
    return _threads


def variant(family, blocks):
    """The entry kernel of ``family`` that runs ``blocks`` blocks (None: as many as there
    are threads): ``family``_parallel over Numba's threads, or ``family``_serial where a
    parallel launch is unsafe or pointless (one thread, one block, a forked child). Both
    run the same chunks and reduce them in the same order: the result is bitwise the same."""
    if _threads == 1 or blocks == 1 or (_forked and _FORK_UNSAFE):
        return family + "_serial"
    return family + "_parallel"


def run(kernel, family, blocks, args, dtype, blas):
    """Run the variant of ``family`` for ``blocks`` blocks on ``args``; ``kernel(name,
    dtype)`` gives the compiled entry kernel. ``blas``: the kernels call the bound BLAS,
    held at one thread meanwhile."""
    numpy_blas.shorten_idle_spin()
    name = variant(family, blocks)
    if name.endswith("_serial"):
        return _run(kernel(name, dtype), args, blas)
    if _workqueue_lock is not None and not _workqueue_lock.acquire(blocking=False):
        return _run(kernel(family + "_serial", dtype), args, blas)  # another thread is inside the workqueue pool
    try:
        if numba.get_num_threads() != _threads:
            numba.set_num_threads(_threads)  # Numba's count is per calling thread
        return _run(kernel(name, dtype), args, blas)
    finally:
        if _workqueue_lock is not None:
            _workqueue_lock.release()


def _run(fn, args, blas):
    if blas:
        with numpy_blas.single_threaded:
            return fn(*args)
    return fn(*args)


def omp_spin_description():
    if THREADING_LAYER != "omp":
        return f"not OpenMP (threading layer {THREADING_LAYER})"
    if _omp_spin_set_by == "twolayer":
        return f"{OMP_SPIN_ROUNDS} rounds (set by twolayer)"
    if _omp_spin_set_by == "environment":
        return "as GOMP_SPINCOUNT / OMP_WAIT_POLICY say"
    return "libgomp's own (Numba's pool was started before twolayer)"
