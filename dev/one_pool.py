"""Experiment, not in the package: NumPy's threaded products run their pieces on
twolayer's pool (OpenBLAS's threads callback, OpenBLAS 0.3.27+, here pip's NumPy's
`scipy_openblas_set_threads_callback_function64_`), so that one pool serves the user's
products and our calls, and no OpenBLAS worker spins on our helper's core after the
user's product. Checks that a product gives the same bits, times products back to back
with each pool, then the training loop with the callback off and on in turns.

    python dev/one_pool.py [rounds] [points: sentiment:64:float64,...]

With BLAS_POOL=own the products get a second pool of our kind instead of ours.

Not safe beyond this script: the callback opens jobs on the pool without the lock that
twolayer's calls take (a product in another Python thread during our call would share
the pool's slots), assumes OpenBLAS runs no more pieces than the pool has threads (the
pieces of a product wait on one another), and a forked child keeps the callback but not
the helpers.
"""

import ctypes
import glob
import os
import statistics
import sys
import time

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

import twolayer
from twolayer.benchmark import raise_mmap_threshold
from twolayer.fast import threads
from twolayer.kernels import pool as P
from twolayer.trainloop import POINTS, make_loop, mean_without_stalls, run_steps, stored_call, time_alone


@intrinsic
def _call_dojob(typingctx, fn, thread_num, data, dojob_data):
    sig = types.none(types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i32, cgutils.voidptr_t, i32])
        f = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(
            f, [builder.trunc(args[1], i32), builder.inttoptr(args[2], cgutils.voidptr_t), builder.trunc(args[3], i32)]
        )
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _address_of(typingctx, p):
    def codegen(context, builder, sig, args):
        return builder.ptrtoint(args[0], ir.IntType(64))

    return types.int64(p), codegen


@intrinsic
def _pointer(typingctx, a):
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(a), codegen


_unstash = P.unstash_as(lambda zero: types.UniTuple(types.int64, 5))


@njit(P.job_signature(types.float64), nogil=True)
def pieces_job(tid, address, zero):
    dojob, numjobs, elsize, jobdata, dojob_data = _unstash(address, zero)
    if tid < numjobs:
        _call_dojob(dojob, tid, jobdata + tid * elsize, dojob_data)


sig = P.job_signature(types.float64)
ov = pieces_job.overloads[sig.args]
JOB = ov.library.get_pointer_to_function(ov.fndesc.llvm_func_name)
if os.environ.get("BLAS_POOL") == "own":  # a second pool of our kind, for the products alone
    _blas_pool = threads._Pool()
    _blas_pool.start_helpers(1)
    POOL, SIZE = _blas_pool.address, _blas_pool.slots.shape[0]
else:
    POOL, SIZE = threads._pool.address, threads._pool.slots.shape[0]


@cfunc(types.void(types.int32, types.voidptr, types.int32, types.uint64, types.voidptr, types.int32), nogil=True)
def callback(sync, dojob, numjobs, elsize, jobdata, dojob_data):
    pool = carray(_pointer(POOL), (SIZE,), np.int64)
    args = (_address_of(dojob), np.int64(numjobs), np.int64(elsize), _address_of(jobdata), np.int64(dojob_data))
    P.run_job(pool, True, JOB, P.stash(args), 0.0, np.intp(numjobs))


lib = ctypes.CDLL(
    glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "libscipy_openblas64_*.so"))[0]
)
set_cb = lib.scipy_openblas_set_threads_callback_function64_
set_cb.argtypes = [ctypes.c_void_p]


def one_pool(on):
    set_cb(callback.address if on else None)


def check():
    a = np.random.rand(300, 400)
    b = np.random.rand(400, 500)
    ref = a @ b
    one_pool(True)
    c = a @ b
    one_pool(False)
    assert np.array_equal(c, ref)


def products(shape_a, shape_b, n=200):
    a = np.random.rand(*shape_a)
    b = np.random.rand(*shape_b)
    out = {}
    for on in (False, True, False, True):
        one_pool(on)
        a @ b
        t = []
        for _ in range(n):
            s = time.perf_counter()
            a @ b
            t.append(time.perf_counter() - s)
        out.setdefault(on, []).append(np.median(t) * 1e6)
    one_pool(False)
    return out


def loop(points, rounds):
    for shape, batch, dtype in points:
        pr = make_loop(shape, batch, dtype)

        def api_call(backend, dims=pr.dims):
            return lambda data, labels, params: twolayer.forward_backward_prop(
                data, labels, params, dims, backend=backend
            )

        ours, npb = api_call("numba"), api_call("numpy")
        variants = {
            "ours": (ours, False),
            "ours+1pool": (ours, True),
            "numpy": (npb, False),
            "numpy+1pool": (npb, True),
            "stored": (stored_call(pr), False),
        }
        for c, on in variants.values():
            one_pool(on)
            run_steps(c, pr, pr.params.copy(), 20, np.random.default_rng(0))
        one_pool(False)
        st, _ = run_steps(ours, pr, pr.params.copy(), 20, np.random.default_rng(0))
        steps = max(50, int(0.15 / statistics.fmean(st)) // 10 * 10)
        res = {k: ([], []) for k in variants}
        for r in range(rounds):
            for k in list(variants) if r % 2 == 0 else list(variants)[::-1]:
                c, on = variants[k]
                one_pool(on)
                time.sleep(0.1)
                s, ct = run_steps(c, pr, pr.params.copy(), steps, np.random.default_rng(r))
                res[k][0].extend(s)
                res[k][1].extend(ct)
        one_pool(False)
        data, labels = pr.X[:batch].copy(), pr.Y[:batch].copy()
        alone = time_alone(ours, data, labels, pr.params.copy(), 0.2, 0.15)
        base = mean_without_stalls(res["stored"][0])
        cells = []
        for k in ("ours", "ours+1pool", "numpy", "numpy+1pool"):
            step = mean_without_stalls(res[k][0])
            call = mean_without_stalls(res[k][1])
            cells.append(
                f"{k}: step {step * 1e6:.0f} call/alone {call / alone:.2f} cost/alone {(step - base) / alone:.2f}"
            )
        print(f"{shape}:{batch}:{dtype} alone {alone * 1e6:.1f} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    raise_mmap_threshold()
    pr = make_loop("sentiment", 64, "float64")
    twolayer.forward_backward_prop(
        pr.X[:64], pr.Y[:64], pr.params.copy(), pr.dims, backend="numba"
    )  # starts the helper
    check()
    print("check ok", flush=True)
    for sa, sb in [
        ((2000, 50), (50, 100)),
        ((2000, 784), (784, 128)),
        ((64, 784), (784, 128)),
        ((500, 500), (500, 500)),
    ]:
        r = products(sa, sb)
        print(f"product {sa}x{sb[1]}: OpenBLAS's threads {r[False]} us, one pool {r[True]} us", flush=True)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    points = (
        [(s, int(n), d) for s, n, d in (p.split(":") for p in sys.argv[2].split(","))] if len(sys.argv) > 2 else POINTS
    )
    loop(points, rounds)
