"""twolayer's thread pool: native helper threads that take part in the parallel kernels'
jobs beside the calling thread (kernels/pool.py), sized by set_num_threads.

Why our own pool, not Numba's OpenMP one: in a user's training loop, our calls alternate
with the user's own NumPy code. An OpenMP worker either spins with `pause` (it takes a
core from the user's BLAS threads: their products ran 1.8x as long beside it) or
sleeps, and waking it cost this VM 25-50 us at the first call after the user's code.
Ours spin on sched_yield() and answer in under a microsecond (dev/idle_wait.py), but
only briefly: they sleep after IDLE_NS without a job, and a call never waits for a
helper: it starts, and helpers join as they come. Where NumPy's OpenBLAS allows it, the
pool also runs the pieces of NumPy's own threaded products (kernels/openblas_pieces.py).
"""

import atexit
import ctypes
import os
import threading
import time

import numba
import numpy as np

from ..kernels import openblas_pieces
from ..kernels import pool as slots
from . import numpy_blas
from .compile import address, helper_address, kernel, run_pieces_address

# Idle time after which a helper sleeps. A sleeping helper costs the next call its
# wake-up (25-50 us here); a spinning one costs nothing on a core nobody else wants, but
# sched_yield() does not always give the core away (Linux 6.18's EEVDF): beside a 20 ms
# spin, 3-9% of the user's 4 ms evaluations right after our call ran over twice as long,
# the BLAS thread on our core starved (three runs of dev/eval_stall.py: 45 of 800, 27 of
# 400, 23 of 600); beside 1 ms, 3 of 800. 1 ms covers the user's code between the steps
# of a small loop (a batch, an update: tens of microseconds), and where the gap is longer,
# the wake-up costs a few percent of it. TWOLAYER_SPIN_MS sets it (0: sleep at once).
SPIN_ENV = "TWOLAYER_SPIN_MS"
DEFAULT_SPIN_MS = 1


def _idle_ns():
    value = os.environ.get(SPIN_ENV, "")
    if value == "":
        return int(DEFAULT_SPIN_MS * 1_000_000)
    try:
        ms = float(value)
    except ValueError:
        ms = -1.0
    if not 0 <= ms <= 60_000:
        raise ValueError(f"{SPIN_ENV}: expected milliseconds from 0 to 60000, got {value!r}")
    return int(ms * 1_000_000)


IDLE_NS = _idle_ns()

# NumPy's threaded products on our pool (kernels/openblas_pieces.py), where its OpenBLAS
# has the threads callback: set at the first parallel call. TWOLAYER_OPENBLAS_THREADS=keep
# leaves them on OpenBLAS's own worker threads.
SHARE_ENV = "TWOLAYER_OPENBLAS_THREADS"

_threads = numba.config.NUMBA_NUM_THREADS
_libc = ctypes.CDLL(None)
_libc.calloc.restype = ctypes.c_void_p
_libc.calloc.argtypes = (ctypes.c_size_t, ctypes.c_size_t)


class _Pool:
    """The pool's memory (never freed: a helper may look at it until the process ends)
    and its helper threads, started as calls need them."""

    def __init__(self):
        room = max(numba.config.NUMBA_NUM_THREADS - 1, 0)  # helpers: a cache line each
        size = slots.POOL_SLOTS + slots.HELPER_STRIDE * room
        raw = _libc.calloc(size * 8 + 64, 1)  # never freed: see the class
        if not raw:
            raise MemoryError("twolayer's thread pool: calloc failed")
        self.address = raw + (-raw % 64)
        self.slots = np.ctypeslib.as_array((ctypes.c_int64 * size).from_address(self.address))
        self.slots[:] = 0
        self.slots[slots.HELPER_ROOM] = room
        self.slots[slots.NEXT_TID] = 1
        self.slots[slots.IDLE_NS] = IDLE_NS
        self.slots[slots.CLOCK] = time.CLOCK_MONOTONIC
        for name, slot in (("pthread_mutex_init", slots.MUTEX), ("pthread_cond_init", slots.CONDITION)):
            if getattr(_libc, name)(ctypes.c_void_p(self.address + 8 * slot), None) != 0:
                raise OSError(f"{name} failed")
        self.helpers = 0
        self.lock = threading.Lock()  # one of our calls at a time opens jobs
        self.shares_blas = None  # whether NumPy's products run here: None until the first parallel call
        self.sharing_failed = None  # why they could not, if sharing raised

    def start_helpers(self, n):
        """Start helpers until there are n."""
        if self.helpers >= n:
            return
        routine = helper_address()
        while self.helpers < n:
            self.slots[slots.ALIVE] += 1
            thread = ctypes.c_void_p()
            if _libc.pthread_create(
                ctypes.byref(thread), None, ctypes.c_void_p(routine), ctypes.c_void_p(self.address)
            ):
                self.slots[slots.ALIVE] -= 1
                return  # no more threads to be had: calls run with the helpers there are
            _libc.pthread_detach(thread)
            self.helpers += 1

    def share_with_openblas(self):
        """Have NumPy's threaded products run on this pool if its OpenBLAS can (a helper
        for each of its threads beyond the caller) and the user did not opt out."""
        lib = numpy_blas.library()
        controls = lib.threads_callback() if lib is not None else None
        if os.environ.get(SHARE_ENV) == "keep" or controls is None or lib.get_num_threads() - 1 > self.helpers:
            self.shares_blas = False
            return
        setter, pointer, exec_blas, workers, max_threads = controls
        try:
            callback, job = run_pieces_address(), address("pieces_job", np.dtype(np.float64))
        except Exception as error:  # the user's call goes on; twolayer info says why
            self.shares_blas, self.sharing_failed = False, f"{type(error).__name__}: {error}"
            return
        for slot, value in (
            (slots.PIECES_JOB, job),
            (slots.MAX_PIECES, max_threads),
            (slots.EXEC_BLAS, exec_blas),
            (slots.CALLBACK_AT, pointer),
            (slots.CALLBACK, callback),
            (slots.WORKERS_AT, workers),
        ):
            self.slots[slot] = value
        openblas_pieces.POOL_CELL.value = self.address
        setter(callback)
        self.shares_blas = True

    def stop(self, timeout=1.0):
        """Ask the helpers to end, and wait for them (at exit: the memory stays, but the
        code they run is unloaded with the process's modules)."""
        self.slots[slots.STOP] = 1
        _libc.pthread_mutex_lock(ctypes.c_void_p(self.address + 8 * slots.MUTEX))
        _libc.pthread_cond_broadcast(ctypes.c_void_p(self.address + 8 * slots.CONDITION))
        _libc.pthread_mutex_unlock(ctypes.c_void_p(self.address + 8 * slots.MUTEX))
        deadline = time.monotonic() + timeout
        while self.slots[slots.ALIVE] > 0 and time.monotonic() < deadline:
            time.sleep(0.001)


_pool = _Pool()


def _stop_sharing():
    # NumPy's products back on OpenBLAS's own workers
    lib = numpy_blas.library() if _pool.shares_blas else None
    controls = lib.threads_callback() if lib is not None else None
    if controls is not None:
        controls[0](None)


def _after_fork_in_child():
    # the child has none of the parent's helpers, and its copy of the pool may hold a job,
    # helpers inside it, a locked mutex: start over (its first parallel call shares again)
    global _pool
    _stop_sharing()
    _pool = _Pool()


def _at_exit():
    _stop_sharing()
    _pool.stop()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)


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


def run(family, threads, args, dtype, blas):
    """Run parallel entry kernel ``family`` on ``args`` with up to ``threads`` threads (the
    caller and helpers of the pool); ``blas``: its jobs call the bound BLAS, held at one
    thread meanwhile. Results do not depend on how many threads take part."""
    numpy_blas.shorten_idle_spin()
    fn, job = kernel(family, dtype), address(family + "_job", dtype)
    pool = _pool
    threads = min(threads, _threads)
    if threads > 1 and pool.lock.acquire(blocking=False):  # else another thread has the pool: run alone
        try:
            pool.start_helpers(threads - 1)
            if pool.shares_blas is None:
                pool.share_with_openblas()
            return _run(fn, (*args, pool.slots, True, job, threads), blas)
        finally:
            pool.lock.release()
    return _run(fn, (*args, pool.slots, False, job, 1), blas)


def _run(fn, args, blas):
    if blas:
        with numpy_blas.single_threaded:
            return fn(*args)
    return fn(*args)


def jobs_opened():
    """How many jobs this process's pool has opened (calls that ran with helpers)."""
    return int(_pool.slots[slots.LAST])


def jobs_joined():
    """How many times a helper took part in a job of this process's pool."""
    return int(_pool.slots[slots.JOINED])


def helpers_asleep():
    return int(_pool.slots[slots.SLEEPING])


def helper_thread_ids():
    """The kernel's thread ids of the helpers started so far (Linux; empty elsewhere)."""
    lines = _pool.slots[slots.POOL_SLOTS :].reshape(-1, slots.HELPER_STRIDE)
    return [int(t) for t in lines[: _pool.helpers, slots.KERNEL_TID] if t != 0]


def helpers_started():
    return _pool.helpers


def sharing_description():
    """Where NumPy's threaded products run, for ``twolayer info``."""
    lib = numpy_blas.library()
    if lib is None:
        return "-"
    if os.environ.get(SHARE_ENV) == "keep":
        return f"OpenBLAS's own workers ({SHARE_ENV}=keep)"
    if lib.threads_callback() is None:
        return "OpenBLAS's own workers (this OpenBLAS has no threads callback, 0.3.27+)"
    shared = _pool.shares_blas
    if shared is False:
        return f"OpenBLAS's own workers ({_pool.sharing_failed or 'OpenBLAS has more threads than our pool'})"
    when = "" if shared else ", from the first parallel call"
    return f"twolayer's pool (OpenBLAS's threads callback{when}; {SHARE_ENV}=keep opts out)"


def pool_description():
    source = f"{SPIN_ENV}={os.environ[SPIN_ENV]}" if os.environ.get(SPIN_ENV) else f"default; {SPIN_ENV} sets it"
    return (
        f"twolayer's own: {_threads - 1} helper thread(s) beside the caller, idle ones spin on"
        f" sched_yield for {IDLE_NS / 1e6:g} ms ({source}), then sleep"
    )
