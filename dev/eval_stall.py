"""The user's evaluation right after our call, beside helpers that spin for different
times: does our idle pool take the core from the user's BLAS threads?

    python dev/eval_stall.py mnist 64 float64 [rounds] [spins in ms: 20,0.5,0]

Each variant: 100 times, our call (or a call that returns a stored result: no helper
spinning) and then the loop's evaluation (trainloop.py), timed; variants in turns, the
helpers' idle time set through the pool's slot. Prints the evaluation's median, mean,
99th percentile, and how many took over twice the median.
"""

import sys
import time

import numpy as np

import twolayer
from twolayer.benchmark import raise_mmap_threshold
from twolayer.fast import threads
from twolayer.kernels import pool as slots
from twolayer.layout import unpack_params
from twolayer.trainloop import make_loop, stored_call


def main(shape, batch, dtype, rounds=8, spins=(20, 0.5, 0)):
    raise_mmap_threshold()
    problem = make_loop(shape, batch, dtype)

    def ours(data, labels, params):
        return twolayer.forward_backward_prop(data, labels, params, problem.dims, backend="numba")

    def evaluate(params):
        W1, b1, W2, b2 = unpack_params(params, problem.dims)
        (1 / (1 + np.exp(-(problem.X_val @ W1 + b1))) @ W2 + b2).argmax(axis=1)

    data, labels = problem.X[:batch].copy(), problem.Y[:batch].copy()
    ours(data, labels, problem.params.copy())
    variants = [("stored", stored_call(problem), None)] + [(f"spin {ms:g} ms", ours, ms) for ms in spins]
    times = {name: [] for name, _, _ in variants}
    for r in range(rounds):
        for name, call, ms in variants if r % 2 == 0 else variants[::-1]:
            if ms is not None:
                threads._pool.slots[slots.IDLE_NS] = int(ms * 1e6)
            params = problem.params.copy()
            time.sleep(0.05)
            for _ in range(100):
                call(data, labels, params)
                t = time.perf_counter()
                evaluate(params)
                times[name].append(time.perf_counter() - t)
    for name, t in times.items():
        t = np.array(t) * 1e6
        m = np.median(t)
        print(
            f"{shape} {batch} {dtype} {name:12s} evaluation: median {m:7.0f} us, mean {t.mean():7.0f},"
            f" p99 {np.percentile(t, 99):7.0f}; over 2x the median: {(t > 2 * m).sum()} of {len(t)}"
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    spins = tuple(float(v) for v in args[4].split(",")) if len(args) > 4 else (20, 0.5, 0)
    main(args[0], int(args[1]), args[2], int(args[3]) if len(args) > 3 else 8, spins)
