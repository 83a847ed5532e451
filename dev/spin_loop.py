"""The training loop's step with the helpers' idle spin set to different times, against
the same loop whose call returns a stored result (trainloop.py), in one process.

    python dev/spin_loop.py [rounds] [spins in ms: 20,0.5] [points: mnist:64:float64,...]

Variants take turns (about 0.25 s of steps each); per variant: the median over the rounds
of the mean step, the call's cost to the step (step minus the stored-result loop's) and
the call's own mean time.
"""

import statistics
import sys
import time

import numpy as np

import twolayer
from twolayer.benchmark import raise_mmap_threshold
from twolayer.fast import threads
from twolayer.kernels import pool as slots
from twolayer.trainloop import POINTS, make_loop, run_steps, stored_call


def main(rounds=8, spins=(20, 0.5), points=POINTS):
    raise_mmap_threshold()
    for shape, batch, dtype in points:
        problem = make_loop(shape, batch, dtype)

        def ours(data, labels, params, dims=problem.dims):
            return twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")

        trial, _ = run_steps(ours, problem, problem.params.copy(), 20, np.random.default_rng(0))
        steps = max(50, int(0.25 / statistics.fmean(trial)) // 10 * 10)
        variants = [(f"{ms:g} ms", ours, ms) for ms in spins] + [("stored", stored_call(problem), None)]
        results = {name: [] for name, _, _ in variants}
        for r in range(rounds):
            for name, call, ms in variants if r % 2 == 0 else variants[::-1]:
                if ms is not None:
                    threads._pool.slots[slots.IDLE_NS] = int(ms * 1e6)
                time.sleep(0.1)
                step_times, call_times = run_steps(
                    call, problem, problem.params.copy(), steps, np.random.default_rng(r)
                )
                results[name].append((statistics.fmean(step_times), statistics.fmean(call_times)))
        stored = np.median([s for s, _ in results.pop("stored")])
        cells = []
        for name, v in results.items():
            step, call = np.median([s for s, _ in v]), np.median([c for _, c in v])
            cells.append(f"{name}: step {step * 1e6:.0f} us, cost {(step - stored) * 1e6:.0f}, call {call * 1e6:.0f}")
        print(f"{shape} {batch} {dtype}: stored-result step {stored * 1e6:.0f} us | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    rounds = int(args[0]) if args else 8
    spins = tuple(float(v) for v in args[1].split(",")) if len(args) > 1 else (20, 0.5)
    points = [(s, int(n), d) for s, n, d in (p.split(":") for p in args[2].split(","))] if len(args) > 2 else POINTS
    main(rounds, spins, points)
