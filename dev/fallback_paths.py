"""The paths a wide layer can take where NumPy's BLAS is not bound (fast/fallback.py),
forced, against the NumPy backend: how much the BLAS under NumPy matters to each (the
row path uses none).

    python dev/fallback_paths.py mnist float64 64,256

Run it in a venv whose NumPy sits on the BLAS in question (docs/performance.md, "On a
BLAS that is not an OpenBLAS", says how each was set up). Prints each variant's median
time per call over turns of back-to-back calls and the NumPy backend's time over it;
"auto" is what the backend chose; then what `twolayer info` says of it.
"""

import sys
import time

import numpy as np

import twolayer
from twolayer import benchmark, fast
from twolayer.layout import SHAPES, param_count

VARIANTS = ("numpy", "auto", "portable", "narrow", "row")
TURN_SECONDS = 0.3


def main(shape, dtype, batch_sizes, rounds=4):
    dims = SHAPES[shape]
    benchmark.raise_mmap_threshold()
    rng = np.random.default_rng(0)
    for n in batch_sizes:
        data = rng.standard_normal((n, dims[0])).astype(dtype)
        labels = np.eye(dims[2], dtype=dtype)[rng.integers(0, dims[2], n)]
        params = (0.02 * rng.standard_normal(param_count(dims))).astype(dtype)

        def call(variant):
            if variant == "numpy":
                return twolayer.forward_backward_prop(data, labels, params, dims, backend="numpy")
            return fast.forward_backward(data, labels, params, dims, path=None if variant == "auto" else variant)

        times = {v: [] for v in VARIANTS}
        for v in VARIANTS:
            call(v)
        for turn in range(rounds):
            for v in VARIANTS if turn % 2 else VARIANTS[::-1]:
                time.sleep(0.02)
                calls, start = 0, time.perf_counter()
                while (now := time.perf_counter()) < start + TURN_SECONDS or calls == 0:
                    call(v)
                    calls += 1
                times[v].append((now - start) / calls)
        numpy_time = np.median(times["numpy"])
        cells = [f"{v} {np.median(t) * 1e6:,.0f} us ({numpy_time / np.median(t):.2f}x)" for v, t in times.items()]
        print(shape, dtype, n, "  ".join(cells), flush=True)
    print(fast.runtime_info()["wide layers"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3].split(",")])
