"""What waking a sleeping helper costs the caller, and whether a lowest-priority watcher
thread can take that cost off it (dev/wake_cost.c).

    OPENBLAS_THREAD_TIMEOUT=18 python dev/wake_cost.py

For each way (the caller signals; a SCHED_IDLE watcher signals; a SCHED_IDLE thread
keeps the worker's CPU busy and the caller signals), prints the user's evaluation beside
it, then the medians of 200 round trips after the evaluation, after 1 ms asleep and after
0.1 ms: the time until the worker answers, and the caller's own cost (the time until it
can go on with its work). Linux only.
"""

import ctypes
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np

WAYS = {"caller wakes": 0, "watcher wakes": 1, "keeper, caller wakes": 2}


def build():
    out = os.path.join(tempfile.mkdtemp(), "wake_cost.so")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wake_cost.c")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", out, src, "-lpthread"], check=True)
    lib = ctypes.CDLL(out)
    lib.round_trip.restype = lib.last_caller_cost.restype = ctypes.c_double
    return lib


def main():
    lib = build()
    rng = np.random.default_rng(0)
    X_val = rng.standard_normal((2000, 784))
    W1, W2 = 0.02 * rng.standard_normal((784, 128)), rng.standard_normal((128, 10))

    def evaluation():
        return (1 / (1 + np.exp(-(X_val @ W1))) @ W2).argmax(axis=1)

    def medians(before, times=200):
        answers, costs = [], []
        for _ in range(times):
            before()
            answers.append(lib.round_trip())
            costs.append(lib.last_caller_cost())
        return statistics.median(answers) * 1e6, statistics.median(costs) * 1e6

    def evaluation_ms(times=100):
        samples = []
        for _ in range(times):
            t = time.perf_counter()
            evaluation()
            samples.append(time.perf_counter() - t)
        return statistics.median(samples) * 1e3

    print(f"evaluation alone {evaluation_ms():.2f} ms")
    for name, way in WAYS.items():
        lib.start(way)
        time.sleep(0.01)
        cells = [f"evaluation {evaluation_ms():.2f} ms"]
        for label, before in (
            ("after the evaluation", evaluation),
            ("after 1 ms", lambda: time.sleep(0.001)),
            ("after 0.1 ms", lambda: time.sleep(0.0001)),
        ):
            answer, cost = medians(before)
            cells.append(f"{label}: answer {answer:.1f} us, caller {cost:.1f} us")
        lib.finish()
        print(f"{name:20s}  " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
