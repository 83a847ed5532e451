"""One row of a wide layer: the row kernel (one thread) against the column split (both
threads) and the NumPy backend, in turns of back-to-back calls. Memory-bound, so it moves
with the VM's state: run it several times.

    python dev/n1_paths.py float64

Prints each variant's median time per call and NumPy's time over it; "auto" is what the
backend chooses (twolayer/fast/paths.py: ROW_MAX_ROWS_DIRECT).
"""

import sys
import time

import numpy as np

import twolayer
from twolayer.benchmark import raise_mmap_threshold
from twolayer.fast import forward_backward
from twolayer.layout import SHAPES, param_count

TURN_SECONDS = 0.3


def main(dtype, shape="wide", turns=8):
    raise_mmap_threshold()
    dims, dtype = SHAPES[shape], np.dtype(dtype)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((1, dims[0])).astype(dtype)
    labels = np.eye(dims[2], dtype=dtype)[rng.integers(0, dims[2], 1)]
    params = (0.02 * rng.standard_normal(param_count(dims))).astype(dtype)
    variants = {
        "numpy": lambda: twolayer.forward_backward_prop(data, labels, params, dims, backend="numpy"),
        "auto": lambda: forward_backward(data, labels, params, dims),
        "row": lambda: forward_backward(data, labels, params, dims, path="row"),
        "split": lambda: forward_backward(data, labels, params, dims, path="blas"),
    }
    for call in variants.values():
        call()
    times = {name: [] for name in variants}
    for turn in range(turns):
        for name, call in variants.items() if turn % 2 else list(variants.items())[::-1]:
            time.sleep(0.02)
            calls, start = 0, time.perf_counter()
            while (now := time.perf_counter()) < start + TURN_SECONDS or calls == 0:
                call()
                calls += 1
            times[name].append((now - start) / calls)
    numpy_time = np.median(times["numpy"])
    cells = [f"{k} {np.median(t) * 1e6:,.0f} us ({numpy_time / np.median(t):.2f}x)" for k, t in times.items()]
    print(shape, dtype.name, "N = 1", "  ".join(cells), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
