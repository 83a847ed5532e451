"""How an idle worker thread should wait in a user's training loop: what each way costs
the user's own NumPy code, and how soon the worker answers our next call.

    OPENBLAS_THREAD_TIMEOUT=18 python dev/idle_wait.py

(18: OpenBLAS's idle spin as twolayer shortens it.) Builds dev/idle_wait.c with the
system's cc into a temporary directory. For each way of waiting (a sched_yield() spin, a
pause-instruction spin as GNU OpenMP's, a condition variable), prints the user's
evaluation (the training loop's: 2000 x 784 x 128 on NumPy's BLAS threads) with that
worker waiting beside it, and the worker's answer time after 1 ms of idle, right after
the evaluation, and back to back (medians of 200).
"""

import ctypes
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np

WAYS = {"yield spin": 0, "pause spin": 1, "sleep": 2}


def build(name="idle_wait"):
    """dev/NAME.c built with the system's cc into a temporary directory, loaded; its
    round_trip returns a double."""
    out = os.path.join(tempfile.mkdtemp(), f"{name}.so")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.c")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", out, src, "-lpthread"], check=True)
    lib = ctypes.CDLL(out)
    lib.round_trip.restype = ctypes.c_double
    return lib


def user_evaluation():
    """The training loop's evaluation: 2000 x 784 x 128 on NumPy's BLAS threads."""
    rng = np.random.default_rng(0)
    X_val = rng.standard_normal((2000, 784))
    W1, W2 = 0.02 * rng.standard_normal((784, 128)), rng.standard_normal((128, 10))
    return lambda: (1 / (1 + np.exp(-(X_val @ W1))) @ W2).argmax(axis=1)


def main():
    lib = build()
    evaluation = user_evaluation()

    def median_us(fn, before=lambda: None, times=200):
        samples = []
        for _ in range(times):
            before()
            t = time.perf_counter()
            r = fn()
            samples.append(r if isinstance(r, float) else time.perf_counter() - t)
        return statistics.median(samples) * 1e6

    print(f"evaluation, no worker: {median_us(evaluation) / 1e3:.2f} ms")
    for name, way in WAYS.items():
        lib.start(way)
        time.sleep(0.01)
        cells = [f"evaluation {median_us(evaluation) / 1e3:.2f} ms"]
        for label, before in (("after 1 ms idle", lambda: time.sleep(0.001)), ("after the evaluation", evaluation)):
            cells.append(f"answer {label} {median_us(lib.round_trip, before):.1f} us")
        cells.append(f"back to back {median_us(lib.round_trip):.1f} us")
        lib.finish()
        print(f"{name:10s}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
