"""The training loop's step at small batches with the call on one thread, as shipped
(two threads, chunks of rows), with the column split, and in four chunks of rows (so
that a caller whose helper is slowed by fresh data can take three), against the NumPy
backend and the loop whose call returns a stored result, in turns in one process.

    python dev/loop_variants.py mnist:64:float64,sentiment:64:float64 [rounds]

Per variant, medians over the rounds: the step, the call's cost to the step, the call's
mean in the loop, its median alone (timed in the same round), and the per-round ratio.
"""

import statistics
import sys
import time

import numpy as np

import twolayer
import twolayer.fast as fast
from twolayer.benchmark import raise_mmap_threshold
from twolayer.fast import paths
from twolayer.trainloop import alone_times, make_loop, mean_without_stalls, run_steps, stored_call

SHIPPED_COLUMNS = dict(paths.COLUMNS_MAX_ROWS)
SHIPPED_CHUNKS = fast.blas_chunks


def four_chunks(n, Dx, H, Dy, itemsize):
    T, per_chunk, chunks = SHIPPED_CHUNKS(n, Dx, H, Dy, itemsize)
    return (min(T, n // 4), n // 4, 4) if chunks == 2 else (T, per_chunk, chunks)


def configure(variant):
    """Threads, column split and chunking for ``variant`` (the NumPy backend and the
    stored result run with the shipped ones)."""
    twolayer.set_num_threads(1 if variant == "1 thread" else 2)
    paths.COLUMNS_MAX_ROWS.update({4: 64, 8: 64} if variant == "columns" else SHIPPED_COLUMNS)
    fast.blas_chunks = four_chunks if variant == "4 chunks" else SHIPPED_CHUNKS


def main(points, rounds):
    raise_mmap_threshold()
    for shape, batch, dtype in points:
        problem = make_loop(shape, batch, dtype)

        def call_with(backend, dims=problem.dims):
            return lambda data, labels, params: twolayer.forward_backward_prop(
                data, labels, params, dims, backend=backend
            )

        ours = call_with("numba")
        variants = {
            "1 thread": ours,
            "shipped": ours,
            "columns": ours,
            "4 chunks": ours,
            "numpy": call_with("numpy"),
            "stored": stored_call(problem),
        }
        data, labels = problem.X[:batch].copy(), problem.Y[:batch].copy()
        for name in variants:  # compile each variant's kernels
            configure(name)
            variants[name](data, labels, problem.params.copy())
        configure("shipped")
        trial, _ = run_steps(ours, problem, problem.params.copy(), 20, np.random.default_rng(0))
        steps = max(50, int(0.2 / statistics.fmean(trial)) // 10 * 10)
        results = {name: ([], [], []) for name in variants}
        for r in range(rounds):
            for name, call in variants.items() if r % 2 == 0 else reversed(variants.items()):
                configure(name)
                time.sleep(0.05)
                step_times, call_times = run_steps(
                    call, problem, problem.params.copy(), steps, np.random.default_rng(r)
                )
                results[name][0].append(mean_without_stalls(step_times))
                results[name][1].append(mean_without_stalls(call_times))
                if name != "stored":
                    alone = alone_times(call, data, labels, problem.params.copy(), 0.05, 0.05)
                    results[name][2].append(statistics.median(alone))
        configure("shipped")
        stored = statistics.median(results["stored"][0])
        print(f"{shape} batch {batch} {dtype}, {rounds} rounds")
        for name in list(variants)[:-1]:
            steps_s, calls_s, alone_s = results[name]
            step, in_loop, alone = (statistics.median(x) for x in (steps_s, calls_s, alone_s))
            ratio = statistics.median(c / a for c, a in zip(calls_s, alone_s))
            print(
                f"  {name:8s} step {step * 1e6:7.1f} us, cost {(step - stored) * 1e6:6.1f}, call in loop"
                f" {in_loop * 1e6:6.1f}, alone {alone * 1e6:6.1f}, in loop / alone {ratio:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    points = [(s, int(b), d) for s, b, d in (p.split(":") for p in sys.argv[1].split(","))]
    main(points, int(sys.argv[2]) if len(sys.argv) > 2 else 10)
