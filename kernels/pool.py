"""twolayer's own thread pool, on the kernel side: the block of memory through which a
call hands its work to the helper threads (the pool), and the life of a helper.

A call's parallel work is a job: a function ``job(tid, args, zero)`` that every thread
runs (tid 0 the caller, 1.. the helpers), taking its tasks from shared counters, so that
the caller alone finishes the job when no helper comes (asleep, busy elsewhere, or in a
forked child that has none). Its arguments are the caller's tuple of arrays, stored on
the caller's stack (stash) and read by the helpers (unstash) while the job is open: the
caller closes the job, and waits for the helpers inside it to leave, before it returns.

An idle helper spins on sched_yield(): it answers a call within a microsecond, and most
of the time gives its core to a thread that wants it, such as NumPy's BLAS threads
running the user's own products between our calls (dev/idle_wait.py measures the
alternatives; dev/eval_stall.py the times it does not). After the pool's idle time
without a job (a millisecond) it sleeps on a condition variable; the next call wakes it
and starts without it. A helper that missed two jobs in a row is moved off the caller's
CPU by the caller (_move_helpers_off).

The helpers are native threads (pthread_create on helper_main, a C callback), so that
they never need the GIL and are not Python threads (twolayer/fast/threads.py).
"""

import ctypes

import llvmlite.binding as ll
import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from .common import INLINE, JIT, function_at

# The pool's slots (int64). Written by the caller: the open job's number (0: none), the
# last job's number, the address of the job's function and of its arguments, its float
# size, how many threads may take part, the CPU it runs on, and whether a caller holds
# the pool (one at a time opens jobs: ours, or NumPy's products, openblas_pieces.py).
# Written by helpers: how many are inside the job, and how many jobs they took part in
# (a cache line of their own). The rest: helpers asleep, wake-ups so far, stop request,
# the next helper's tid, helpers alive, idle time before sleeping (ns), the clock id,
# and how many helpers the pool has room for.
JOB, LAST, FUNCTION, ARGS, ITEMSIZE, THREADS, CALLER_CPU, HELD = 0, 1, 2, 3, 4, 5, 6, 7
INSIDE, JOINED = 8, 9
SLEEPING, WAKE, STOP, NEXT_TID, ALIVE, IDLE_NS, CLOCK, HELPER_ROOM = 16, 17, 18, 19, 20, 21, 22, 23
# For NumPy's products on the pool (openblas_pieces.py, written once by Python): the job
# that runs a product's pieces, OpenBLAS's thread-slot count (MAX_THREADS), and the
# addresses of its exec_blas, of its callback pointer, of our callback, and of its count
# of worker threads (an int).
PIECES_JOB, MAX_PIECES, EXEC_BLAS, CALLBACK_AT, CALLBACK, WORKERS_AT = 24, 25, 26, 27, 28, 29
# Then a pthread mutex and condition variable, 128 bytes each (40 and 48 on Linux, 64 and
# 48 on macOS).
MUTEX, CONDITION = 32, 48
POOL_SLOTS = 64
# Then a cache line per helper: its thread id in the kernel (0 until it has started) and
# the last job it took part in, written by it; the job after which a caller last moved it.
HELPER_STRIDE = 8
KERNEL_TID, TOOK_PART, MOVED_AFTER = 0, 1, 2

# Counters of a job's tasks: each on a cache line of its own.
COUNTER_STRIDE = 8

_LIBC_FUNCTIONS = (
    "sched_yield",
    "clock_gettime",
    "pthread_mutex_lock",
    "pthread_mutex_unlock",
    "pthread_cond_wait",
    "pthread_cond_broadcast",
)
_libc = ctypes.CDLL(None)
# Linux's: which CPU a thread runs on, and on which it may (not on macOS: there a helper
# is never moved, see _move_off_cpu)
_CPU_FUNCTIONS = ("sched_getcpu", "sched_getaffinity", "sched_setaffinity", "gettid")
CAN_MOVE = all(hasattr(_libc, name) for name in _CPU_FUNCTIONS)
for _name in _LIBC_FUNCTIONS + (_CPU_FUNCTIONS if CAN_MOVE else ()):
    # resolved for the JIT, and for code loaded from the cache
    ll.add_symbol(_name, ctypes.cast(getattr(_libc, _name), ctypes.c_void_p).value)
CPU_MASK_WORDS = 16  # a cpu_set_t: 1024 CPUs


def _slot_pointer(context, builder, array_type, array, index):
    array = make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, array, [index])


def _counter_at(context, builder, sig, args):
    # the address of counters[i], for an intrinsic whose first two arguments are counters, i
    index = context.cast(builder, args[1], sig.args[1], types.intp)
    return _slot_pointer(context, builder, sig.args[0], args[0], index)


def _is_counters(a):
    return isinstance(a, types.Array) and a.ndim == 1 and a.dtype == types.int64


@intrinsic
def load(typingctx, counters, i):
    """counters[i], read atomically (seq_cst)."""
    if not _is_counters(counters):
        return None

    def codegen(context, builder, sig, args):
        at = _counter_at(context, builder, sig, args)
        return builder.load_atomic(at, "seq_cst", 8)

    return types.int64(counters, i), codegen


@intrinsic
def store(typingctx, counters, i, value):
    """counters[i] = value, atomically (seq_cst)."""
    if not (_is_counters(counters) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        at = _counter_at(context, builder, sig, args)
        builder.store_atomic(context.cast(builder, args[2], sig.args[2], types.int64), at, "seq_cst", 8)
        return context.get_dummy_value()

    return types.none(counters, i, value), codegen


@intrinsic
def fetch_add(typingctx, counters, i, value):
    """counters[i] += value atomically (seq_cst); returns its value before."""
    if not (_is_counters(counters) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        at = _counter_at(context, builder, sig, args)
        return builder.atomic_rmw("add", at, context.cast(builder, args[2], sig.args[2], types.int64), "seq_cst")

    return types.int64(counters, i, value), codegen


@intrinsic
def take(typingctx, counters, i):
    """counters[i] from 0 to 1 atomically (seq_cst); whether this call did it."""
    if not _is_counters(counters):
        return None

    def codegen(context, builder, sig, args):
        at = _counter_at(context, builder, sig, args)
        zero, one = ir.Constant(ir.IntType(64), 0), ir.Constant(ir.IntType(64), 1)
        return builder.extract_value(builder.cmpxchg(at, zero, one, "seq_cst", "seq_cst"), 1)

    return types.boolean(counters, i), codegen


@njit(**INLINE)
def next_task(counters, i):
    """The next task of the tasks counted in counters[i] (zeroed before they start). Each
    thread takes the next task as it finishes its last, so a thread that is slowed (by
    another program, or woken late) takes fewer, and a thread that never comes takes none."""
    return fetch_add(counters, i, 1)


def _libc_call(builder, name, args=(), arg_types=()):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), list(arg_types)), name)
    return builder.call(fn, list(args))


@intrinsic
def _sched_yield(typingctx):
    def codegen(context, builder, sig, args):
        _libc_call(builder, "sched_yield")
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _pause(typingctx):
    """A spin-wait hint to the CPU (x86's pause), where it has one."""

    def codegen(context, builder, sig, args):
        if "x86" in ll.get_process_triple():
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
            )
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _cpu(typingctx):
    """The CPU this thread runs on (sched_getcpu), -1 where unknown."""

    def codegen(context, builder, sig, args):
        if not CAN_MOVE:
            return ir.Constant(ir.IntType(64), -1)
        return builder.sext(_libc_call(builder, "sched_getcpu"), ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def _kernel_tid(typingctx):
    """This thread's id in the kernel (gettid), 0 where unknown."""

    def codegen(context, builder, sig, args):
        if not CAN_MOVE:
            return ir.Constant(ir.IntType(64), 0)
        return builder.sext(_libc_call(builder, "gettid"), ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def _affinity(typingctx, set_it, thread, mask):
    """sched_setaffinity (if set_it, a literal) or sched_getaffinity of kernel thread id
    ``thread`` (0: this thread), with ``mask`` (CPU_MASK_WORDS uint64) as its cpu_set_t;
    0 on success."""
    if not (
        isinstance(set_it, types.BooleanLiteral) and isinstance(thread, types.Integer) and isinstance(mask, types.Array)
    ):
        return None

    def codegen(context, builder, sig, args):
        if not CAN_MOVE:
            return ir.Constant(ir.IntType(32), -1)
        data = builder.bitcast(make_array(sig.args[2])(context, builder, args[2]).data, cgutils.voidptr_t)
        i32, size = ir.IntType(32), ir.Constant(ir.IntType(64), CPU_MASK_WORDS * 8)
        pid = builder.trunc(context.cast(builder, args[1], sig.args[1], types.int64), i32)
        name = "sched_setaffinity" if set_it.literal_value else "sched_getaffinity"
        return _libc_call(builder, name, [pid, size, data], [i32, ir.IntType(64), cgutils.voidptr_t])

    return types.int32(set_it, thread, mask), codegen


@intrinsic
def _now_ns(typingctx, pool):
    """clock_gettime(the pool's clock) in nanoseconds (a timespec is two longs on Linux
    and macOS)."""
    if not _is_counters(pool):
        return None

    def codegen(context, builder, sig, args):
        i64, i32 = ir.IntType(64), ir.IntType(32)
        timespec = ir.LiteralStructType([i64, i64])
        clock = builder.load(
            _slot_pointer(context, builder, sig.args[0], args[0], context.get_constant(types.intp, CLOCK))
        )
        at = cgutils.alloca_once(builder, timespec)
        _libc_call(builder, "clock_gettime", [builder.trunc(clock, i32), at], [i32, timespec.as_pointer()])
        seconds = builder.load(cgutils.gep_inbounds(builder, at, 0, 0))
        nanoseconds = builder.load(cgutils.gep_inbounds(builder, at, 0, 1))
        return builder.add(builder.mul(seconds, ir.Constant(i64, 1_000_000_000)), nanoseconds)

    return types.int64(pool), codegen


def _pthread(name, *slots):
    """An intrinsic f(pool) calling pthread function ``name`` on the objects at ``slots``."""

    @intrinsic
    def call(typingctx, pool):
        if not _is_counters(pool):
            return None

        def codegen(context, builder, sig, args):
            pointers = [
                builder.bitcast(
                    _slot_pointer(context, builder, sig.args[0], args[0], context.get_constant(types.intp, s)),
                    cgutils.voidptr_t,
                )
                for s in slots
            ]
            _libc_call(builder, name, pointers, [cgutils.voidptr_t] * len(slots))
            return context.get_dummy_value()

        return types.none(pool), codegen

    return call


_lock = _pthread("pthread_mutex_lock", MUTEX)
_unlock = _pthread("pthread_mutex_unlock", MUTEX)
_wait = _pthread("pthread_cond_wait", CONDITION, MUTEX)
_broadcast = _pthread("pthread_cond_broadcast", CONDITION)


@intrinsic
def stash(typingctx, args):
    """The address of a copy of tuple ``args`` on the calling function's stack, valid
    until it returns. No reference is taken: the caller holds the arrays."""
    if not isinstance(args, types.BaseTuple):
        return None

    def codegen(context, builder, sig, llargs):
        at = cgutils.alloca_once(builder, llargs[0].type)
        builder.store(llargs[0], at)
        return builder.ptrtoint(at, ir.IntType(64))

    return types.int64(args), codegen


def unstash_as(tuple_of):
    """An intrinsic unstash(address, zero): the tuple of type tuple_of(float type of zero)
    stashed at ``address``, its arrays borrowed (no reference counting: the stashing
    caller holds them). Unchecked."""

    @intrinsic
    def unstash(typingctx, address, zero):
        if not (isinstance(address, types.Integer) and isinstance(zero, types.Float)):
            return None
        tup = tuple_of(zero)

        def codegen(context, builder, sig, args):
            value = builder.load(builder.inttoptr(args[0], context.get_value_type(tup).as_pointer()))
            for i, member in enumerate(tup):
                if isinstance(member, types.Array):
                    array = make_array(member)(context, builder, builder.extract_value(value, i))
                    array.meminfo = cgutils.get_null_value(array.meminfo.type)
                    array.parent = cgutils.get_null_value(array.parent.type)
                    value = builder.insert_value(value, array._getvalue(), i)
            return value

        return tup(address, zero), codegen

    return unstash


def job_signature(dt):
    """Every job's: job(tid, address of its arguments, a zero of float type dt); the zero
    tells a job's two compiled versions apart."""
    return types.none(types.intp, types.int64, dt)


@intrinsic
def job_at(typingctx, address, zero):
    """The job whose compiled code is at ``address``, for floats of zero's type, as a
    function to call. Unchecked: the address must be such a job's."""
    if not (isinstance(address, types.Integer) and isinstance(zero, types.Float)):
        return None
    fnty = types.FunctionType(job_signature(zero))

    def codegen(context, builder, sig, args):
        return function_at(context, builder, fnty, args[0])

    return fnty(address, zero), codegen


@intrinsic
def zero_of(typingctx, array):
    """A zero of the array's float type."""
    if not (isinstance(array, types.Array) and isinstance(array.dtype, types.Float)):
        return None

    def codegen(context, builder, sig, args):
        return context.get_constant(sig.return_type, 0.0)

    return array.dtype(array), codegen


@intrinsic
def zero_is_single(typingctx, zero):
    """Whether zero is a float32 (known when compiling)."""
    if not isinstance(zero, types.Float):
        return None

    def codegen(context, builder, sig, args):
        return context.get_constant(types.boolean, zero.bitwidth == 32)

    return types.boolean(zero), codegen


@njit(**JIT)
def run_job(pool, helpers, job, args, zero, threads):
    """Run ``job`` on ``args`` (a stash) here as tid 0 and, if ``helpers``, on the helpers
    below tid ``threads`` that come while it runs; returns once every helper inside it
    has left. One caller at a time holds the pool; another runs its job alone."""
    if helpers and take(pool, HELD):
        run_held(pool, job, args, zero, threads)
    else:
        job_at(job, zero)(0, args, zero)


@njit(**JIT)
def run_held(pool, job, args, zero, threads):
    """run_job for a caller that holds the pool (pool[HELD] taken); lets go of it."""
    number = load(pool, LAST) + 1
    store(pool, LAST, number)
    store(pool, FUNCTION, job)
    store(pool, ARGS, args)
    store(pool, ITEMSIZE, 4 if zero_is_single(zero) else 8)
    store(pool, THREADS, threads)
    cpu = _cpu()
    store(pool, CALLER_CPU, cpu)
    joined = load(pool, JOINED)
    store(pool, JOB, number)
    if load(pool, SLEEPING) != 0:  # checked after the job is open: see _sleep
        _lock(pool)
        store(pool, WAKE, load(pool, WAKE) + 1)
        _broadcast(pool)
        _unlock(pool)
    job_at(job, zero)(0, args, zero)
    store(pool, JOB, 0)
    spins = 0
    while load(pool, INSIDE) != 0:  # a helper still inside reads our stack
        spins = _spin_once(spins)
    if load(pool, JOINED) - joined < threads - 1:
        _move_helpers_off(pool, number, threads, cpu)
    store(pool, HELD, 0)


@njit(**INLINE)
def _helper_line(tid):
    return POOL_SLOTS + HELPER_STRIDE * (tid - 1)


@njit(**JIT)
def _move_helpers_off(pool, number, threads, cpu):
    # After job ``number``: a helper that missed it and the one before (both woke it if it
    # slept) waits for a CPU, most often the caller's (see _move_off_cpu; where it waits
    # is not known: one that Linux moved while it waited has not run since). So it is
    # moved off the caller's CPU, which leaves it where it is if it is elsewhere. A move
    # costs the caller 4.5 us even where it moves nothing, so one miss is left alone (a
    # helper that another thread keeps from its CPU for a moment, such as OpenBLAS's
    # spinning after the user's product, misses one call), and so is a helper moved
    # before that has not come since (another program may hold every other CPU).
    if cpu < 0 or load(pool, STOP) != 0:
        return
    for tid in range(1, threads):
        line = _helper_line(tid)
        thread, took_part = load(pool, line + KERNEL_TID), load(pool, line + TOOK_PART)
        if thread != 0 and took_part < number - 1 and load(pool, line + MOVED_AFTER) <= took_part:
            store(pool, line + MOVED_AFTER, number)
            _move_off_cpu(thread, cpu)


@njit(**INLINE)
def wait_until(counters, i, value):
    """Spin until counters[i] reaches ``value`` (other threads finish their tasks)."""
    spins = 0
    while load(counters, i) < value:
        spins = _spin_once(spins)


@njit(**INLINE)
def _spin_once(spins):
    # one round of a short wait: pause at first, then yield the core, in case the thread
    # waited for shares it (more threads than cores)
    if spins < 4096:
        _pause()
    else:
        _sched_yield()
    return spins + 1


@njit(**INLINE)
def _new_job(pool, last):
    # the number of a job opened since job ``last``, else 0
    job = load(pool, JOB)
    return 0 if job == last else job


@njit(**INLINE)
def _sleep(pool, last):
    # Sleep until a call wakes us (or stop). Counted asleep before the last look at the
    # job, as the caller opens its job before it looks for sleepers: one of the two sees
    # the other (seq_cst), so no job is left waiting for a sleeping helper.
    _lock(pool)
    wake = load(pool, WAKE)
    fetch_add(pool, SLEEPING, 1)
    while load(pool, WAKE) == wake and load(pool, STOP) == 0 and _new_job(pool, last) == 0:
        _wait(pool)
    fetch_add(pool, SLEEPING, -1)
    _unlock(pool)


@njit(**INLINE)
def _move_off_cpu(thread, cpu):
    # A helper on the caller's CPU cannot help until the call ends, and Linux can leave it
    # there: in a VM it wakes a helper there when the host has halted the idle vCPU it
    # slept on (after a second without calls, this VM's helper then joined 2-12 of the
    # next 150 calls, tests/test_concurrency.py), and it moves the user's thread onto the
    # CPU of a waiting helper (in a training loop, runs of 7-20 calls without the helper).
    # So the helper, kernel thread ``thread`` (0: this one), is moved to another CPU it
    # may run on: its affinity without ``cpu``, then back to what it was.
    if cpu < 0 or cpu >= 64 * CPU_MASK_WORDS:
        return
    allowed = np.zeros(CPU_MASK_WORDS, np.uint64)
    if _affinity(False, thread, allowed) != 0:
        return
    others = allowed.copy()
    others[cpu // 64] &= ~(np.uint64(1) << np.uint64(cpu % 64))
    if others.any() and _affinity(True, thread, others) == 0:
        _affinity(True, thread, allowed)


@njit(**INLINE)
def _leave_callers_cpu(pool):
    # a helper woken on the caller's CPU moves itself
    cpu = _cpu()
    if cpu == load(pool, CALLER_CPU):
        _move_off_cpu(0, cpu)


@njit(**JIT)
def serve(pool, tid):
    """A helper's life: take part in every job opened in ``pool`` as thread ``tid`` while it
    may (tid below the job's thread count), until a stop request."""
    last = 0
    line = _helper_line(tid)
    idle_since = _now_ns(pool)
    rounds = 0
    while load(pool, STOP) == 0:
        job = _new_job(pool, last)
        if job != 0:
            last = job
            fetch_add(pool, INSIDE, 1)
            if load(pool, JOB) == job and tid < load(pool, THREADS):  # still open: its stash is there
                function, args = load(pool, FUNCTION), load(pool, ARGS)
                if load(pool, ITEMSIZE) == 4:
                    zero32 = np.float32(0.0)
                    job_at(function, zero32)(tid, args, zero32)
                else:
                    job_at(function, 0.0)(tid, args, 0.0)
                store(pool, line + TOOK_PART, job)
                fetch_add(pool, JOINED, 1)
            fetch_add(pool, INSIDE, -1)
            idle_since = _now_ns(pool)
            continue
        _sched_yield()
        rounds += 1
        if rounds % 64 == 0 and _now_ns(pool) - idle_since > load(pool, IDLE_NS):
            _sleep(pool, last)
            _leave_callers_cpu(pool)
            idle_since = _now_ns(pool)


def helper_main(block):
    """A helper thread's start routine: block is the pool's memory."""
    pool = carray(block, (POOL_SLOTS,), np.int64)
    pool = carray(block, (POOL_SLOTS + HELPER_STRIDE * pool[HELPER_ROOM],), np.int64)
    tid = fetch_add(pool, NEXT_TID, 1)
    line = _helper_line(tid)
    store(pool, line + KERNEL_TID, _kernel_tid())
    serve(pool, tid)
    store(pool, line + KERNEL_TID, 0)
    fetch_add(pool, ALIVE, -1)
    return block


def compiled_helper_main():
    """helper_main as a C callback (void *(*)(void *)), cached like the kernels."""
    return cfunc(types.voidptr(types.voidptr), cache=True, nogil=True)(helper_main)
