"""The training loop taken apart: the numba backend's call timed alone, then with each
piece of the user's loop added back (a fresh fancy-indexed batch, the update, the
evaluation every tenth step), on ``threads`` threads. Shows what the call's "in loop /
alone" ratio of `twolayer bench --loop` is made of.

    python dev/loop_parts.py sentiment 64 float64 [threads]

Prints each variant's mean call time (the slowest 1% left out, as the loop table does),
the median over four rounds, and its ratio to "alone".
"""

import sys
import time

import numpy as np

import twolayer
from twolayer.benchmark import raise_mmap_threshold
from twolayer.layout import unpack_params
from twolayer.trainloop import EVAL_EVERY, LEARNING_RATE, make_loop, mean_without_stalls

VARIANTS = {  # name: (fresh batch, update, evaluation)
    "alone": (False, False, False),
    "batch": (True, False, False),
    "batch+update": (True, True, False),
    "loop": (True, True, True),
}


def call_times(problem, fresh_batch, update, evaluate, steps=400, seed=0):
    rng = np.random.default_rng(seed)
    params = problem.params.copy()
    data, labels = problem.X[: problem.batch].copy(), problem.Y[: problem.batch].copy()
    times = []
    for step in range(steps):
        if fresh_batch:
            idx = rng.integers(0, len(problem.X), problem.batch)
            data, labels = problem.X[idx], problem.Y[idx]
        t = time.perf_counter()
        _, grad = twolayer.forward_backward_prop(data, labels, params, problem.dims, backend="numba")
        times.append(time.perf_counter() - t)
        if update:
            params -= LEARNING_RATE * grad
        if evaluate and step % EVAL_EVERY == EVAL_EVERY - 1:
            W1, b1, W2, b2 = unpack_params(params, problem.dims)
            (1 / (1 + np.exp(-(problem.X_val @ W1 + b1))) @ W2 + b2).argmax(axis=1)
    return mean_without_stalls(times)


def main(shape, batch, dtype, threads=2, rounds=4):
    raise_mmap_threshold()
    twolayer.set_num_threads(threads)
    problem = make_loop(shape, batch, dtype)
    results = {name: [] for name in VARIANTS}
    for r in range(rounds):
        for name, pieces in VARIANTS.items():
            time.sleep(0.05)
            results[name].append(call_times(problem, *pieces, seed=r))
    alone = np.median(results["alone"])
    cells = [f"{name} {np.median(t) * 1e6:.0f} us ({np.median(t) / alone:.2f})" for name, t in results.items()]
    print(shape, batch, dtype, f"threads={threads}", "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], *(int(a) for a in sys.argv[4:]))
