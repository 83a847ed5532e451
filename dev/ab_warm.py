"""A/B of the warm-up of OpenBLAS's buffers at binding (twolayer/fast/numpy_blas.py:
_warm_buffers), one process per variant: NumPy's time over ours at a few points.

    for w in off on off on; do python dev/ab_warm.py $w float32; done

"off" binds the GEMM without the warm-up. Run the variants in turns: the VM moves more
between minutes than between two processes started back to back.
"""

import sys
import time

import numpy as np

from twolayer.fast import numpy_blas

if sys.argv[1] == "off":
    numpy_blas._warm_buffers = lambda *args: None

import twolayer  # noqa: E402  (after the switch: binding happens at the first wide call)
from twolayer.layout import SHAPES, param_count  # noqa: E402

TURN_SECONDS = 0.25
POINTS = [("mnist", 64), ("mnist", 256), ("mnist", 4096), ("wide", 256)]


def main(variant, dtype):
    dtype, rng, cells = np.dtype(dtype), np.random.default_rng(0), []
    for shape, n in POINTS:
        dims = SHAPES[shape]
        data = rng.standard_normal((n, dims[0])).astype(dtype)
        labels = np.eye(dims[2], dtype=dtype)[rng.integers(0, dims[2], n)]
        params = (0.02 * rng.standard_normal(param_count(dims))).astype(dtype)
        times = {backend: [] for backend in ("numba", "numpy")}
        for backend in times:
            twolayer.forward_backward_prop(data, labels, params, dims, backend=backend)
        for _ in range(4):
            for backend in times:
                calls, start = 0, time.perf_counter()
                while (now := time.perf_counter()) < start + TURN_SECONDS or calls == 0:
                    twolayer.forward_backward_prop(data, labels, params, dims, backend=backend)
                    calls += 1
                times[backend].append((now - start) / calls)
        cells.append(f"{shape} {n} {np.median(times['numpy']) / np.median(times['numba']):.2f}x")
    print(variant, dtype.name, " | ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
