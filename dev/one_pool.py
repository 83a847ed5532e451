"""NumPy's threaded products on our pool or on OpenBLAS's own workers, in turns in one
process (kernels/openblas_pieces.py): products back to back, then the training loop.

    python dev/one_pool.py [rounds] [points: sentiment:64:float64,...]

Prints each product's median time with each, and per loop point the step time, our
call's mean in the loop over its time alone, and its cost to the step over its time
alone, for the numba backend (and the NumPy backend's step) with each.
"""

import statistics
import sys
import time

import numpy as np

import twolayer
from twolayer.benchmark import raise_mmap_threshold
from twolayer.fast import threads
from twolayer.trainloop import POINTS, make_loop, mean_without_stalls, run_steps, stored_call, time_alone

PRODUCTS = [((2000, 50), (50, 100)), ((2000, 784), (784, 128)), ((64, 784), (784, 128)), ((500, 500), (500, 500))]


def share(on):
    if on and not threads._pool.shares_blas:
        threads._pool.share_with_openblas()
    elif not on and threads._pool.shares_blas:
        threads._stop_sharing()
        threads._pool.shares_blas = False


def products(rounds=4, n=200):
    rng = np.random.default_rng(0)
    for shape_a, shape_b in PRODUCTS:
        a, b = rng.random(shape_a), rng.random(shape_b)
        times = {False: [], True: []}
        for r in range(rounds):
            on = r % 2 == 1
            share(on)
            a @ b
            t = []
            for _ in range(n):
                start = time.perf_counter()
                a @ b
                t.append(time.perf_counter() - start)
            times[on].append(np.median(t) * 1e6)
        own, pool = (" ".join(f"{x:.0f}" for x in times[k]) for k in (False, True))
        print(f"product {shape_a}x{shape_b[1]}: OpenBLAS's workers {own} us, our pool {pool} us", flush=True)


def loop(points, rounds):
    for shape, batch, dtype in points:
        problem = make_loop(shape, batch, dtype)

        def api_call(backend, dims=problem.dims):
            return lambda data, labels, params: twolayer.forward_backward_prop(
                data, labels, params, dims, backend=backend
            )

        ours, theirs = api_call("numba"), api_call("numpy")
        variants = {
            "ours": (ours, False),
            "ours, one pool": (ours, True),
            "numpy": (theirs, False),
            "numpy, one pool": (theirs, True),
            "stored": (stored_call(problem), False),
        }
        for call, on in variants.values():
            share(on)
            run_steps(call, problem, problem.params.copy(), 20, np.random.default_rng(0))
        trial, _ = run_steps(ours, problem, problem.params.copy(), 20, np.random.default_rng(0))
        steps = max(50, int(0.15 / statistics.fmean(trial)) // 10 * 10)
        results = {k: ([], []) for k in variants}
        for r in range(rounds):
            for name in list(variants) if r % 2 == 0 else list(variants)[::-1]:
                call, on = variants[name]
                share(on)
                time.sleep(0.1)
                step_times, call_times = run_steps(
                    call, problem, problem.params.copy(), steps, np.random.default_rng(r)
                )
                results[name][0].extend(step_times)
                results[name][1].extend(call_times)
        share(False)
        data, labels = problem.X[:batch].copy(), problem.Y[:batch].copy()
        alone = time_alone(ours, data, labels, problem.params.copy(), 0.2, 0.15)
        base = mean_without_stalls(results["stored"][0])
        cells = []
        for name in ("ours", "ours, one pool"):
            step, call = mean_without_stalls(results[name][0]), mean_without_stalls(results[name][1])
            cells.append(f"{name}: step {step * 1e6:.0f} us, call {call / alone:.2f}, cost {(step - base) / alone:.2f}")
        for name in ("numpy", "numpy, one pool"):
            cells.append(f"{name}: step {mean_without_stalls(results[name][0]) * 1e6:.0f} us")
        print(f"{shape} {batch} {dtype}, alone {alone * 1e6:.1f} us | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    raise_mmap_threshold()
    first = make_loop("sentiment", 64, "float64")
    twolayer.forward_backward_prop(first.X[:64], first.Y[:64], first.params, first.dims, backend="numba")
    if not threads._pool.shares_blas:
        sys.exit("NumPy's products cannot run on our pool here (twolayer info says why)")
    products()
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    points = (
        [(s, int(n), d) for s, n, d in (p.split(":") for p in sys.argv[2].split(","))] if len(sys.argv) > 2 else POINTS
    )
    loop(points, rounds)
