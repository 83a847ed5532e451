"""The numba backend's own choice of path against the portable path forced (products
through NumPy on its BLAS's threads), and the NumPy backend, in one process, in turns.

    TWOLAYER_BLAS=cblas python dev/ab_portable.py mnist 8,16,24,32 float64,float32

Prints each one's median time per call (six turns of 0.15 s) and NumPy's time over it.
"""

import sys
import time

import numpy as np

import twolayer
from twolayer import benchmark
from twolayer.fast import forward_backward
from twolayer.layout import SHAPES, param_count


def main(shape, batch_sizes, dtypes, turns=6):
    dims = SHAPES.get(shape) or tuple(int(v) for v in shape.split("x"))
    benchmark.raise_mmap_threshold()
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        for n in batch_sizes:
            data = rng.standard_normal((n, dims[0])).astype(dtype)
            labels = np.eye(dims[2], dtype=dtype)[rng.integers(0, dims[2], n)]
            params = (0.02 * rng.standard_normal(param_count(dims))).astype(dtype)
            calls = {
                "numpy": lambda: twolayer.forward_backward_prop(data, labels, params, dims, backend="numpy"),
                "auto": lambda: forward_backward(data, labels, params, dims),
                "portable": lambda: forward_backward(data, labels, params, dims, path="portable"),
            }
            times = {name: [] for name in calls}
            for call in calls.values():
                call()
            for turn in range(turns):
                for name, call in calls.items() if turn % 2 else list(calls.items())[::-1]:
                    time.sleep(0.02)
                    call()
                    samples, end = [], time.perf_counter() + 0.15
                    while time.perf_counter() < end:
                        t = time.perf_counter()
                        call()
                        samples.append(time.perf_counter() - t)
                    times[name].append(np.median(samples))
            m = {name: np.median(t) for name, t in times.items()}
            print(
                f"{shape} {n:5d} {dtype}: numpy {m['numpy'] * 1e6:6.0f} us"
                f" | auto {m['auto'] * 1e6:6.0f} ({m['numpy'] / m['auto']:.2f}x)"
                f" | portable {m['portable'] * 1e6:6.0f} ({m['numpy'] / m['portable']:.2f}x)",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1], [int(v) for v in sys.argv[2].split(",")], sys.argv[3].split(","))
