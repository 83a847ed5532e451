"""Which calls of the training loop our helper thread takes part in: the numba backend's
call at each step of the ten between two evaluations, its median time, and the share
of those calls that woke a sleeping helper and that the helper joined.

    python dev/loop_joins.py sentiment 64 float64 [steps]

Run it with OPENBLAS_THREAD_TIMEOUT=16 to see what OpenBLAS's idle spin after the
evaluation's last product costs the call right after it (docs/design.md, "Threads in a
user's program").
"""

import sys
import time

import numpy as np

from twolayer import forward_backward_prop
from twolayer.benchmark import raise_mmap_threshold
from twolayer.fast import threads
from twolayer.kernels import pool as slots
from twolayer.layout import unpack_params
from twolayer.trainloop import EVAL_EVERY, LEARNING_RATE, make_loop


def main(shape, batch, dtype, steps=3000, warmup=100):
    raise_mmap_threshold()
    problem = make_loop(shape, batch, dtype)
    X, Y, X_val, dims = problem.X, problem.Y, problem.X_val, problem.dims
    params, rng = problem.params.copy(), np.random.default_rng(0)
    forward_backward_prop(X[:batch], Y[:batch], params, dims, backend="numba")
    pool = threads._pool.slots
    calls = []  # (step % EVAL_EVERY, seconds, helpers woken, helpers joined)
    for step in range(steps):
        idx = rng.integers(0, len(X), batch)
        data, labels = X[idx], Y[idx]
        woken, joined = pool[slots.WAKE], pool[slots.JOINED]
        t = time.perf_counter()
        cost, grad = forward_backward_prop(data, labels, params, dims, backend="numba")
        seconds = time.perf_counter() - t
        calls.append((step % EVAL_EVERY, seconds, pool[slots.WAKE] - woken, pool[slots.JOINED] - joined))
        params -= LEARNING_RATE * grad
        if step % EVAL_EVERY == EVAL_EVERY - 1:  # the user's evaluation, as trainloop.run_steps
            W1, b1, W2, b2 = unpack_params(params, dims)
            (1 / (1 + np.exp(-(X_val @ W1 + b1))) @ W2 + b2).argmax(axis=1)
    calls = np.array(calls[warmup:])
    print(f"{shape} {batch} {dtype}, {len(calls)} calls; step after the evaluation: median us, woke, joined")
    for position in range(EVAL_EVERY):
        at = calls[calls[:, 0] == position]
        print(f"  {position}: {np.median(at[:, 1]) * 1e6:6.1f} us  {at[:, 2].mean():4.2f}  {at[:, 3].mean():4.2f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], *(int(a) for a in sys.argv[4:]))
