"""A/B of the numba backend's path settings (twolayer/fast/paths.py), against the NumPy
backend, in one process, timed as `twolayer bench` times: turns of back-to-back calls.

    python dev/ab_paths.py wide float32 16,64 numpy,base,COLUMNS_MAX_ROWS_BEYOND_CACHE=31
    python dev/ab_paths.py 784x128x10 float64 64,96 numpy,base,COLUMN_BLOCK_COLUMNS=64

A variant is "numpy", "base" (the settings on disk) or NAME=VALUE[;NAME=VALUE...] for
paths' module constants (an int, or one int for every itemsize of a dict). Prints each
variant's median time per call and NumPy's time over it. Turns, not single calls: our
call holds OpenBLAS at one thread, whose workers then fall asleep, and a NumPy call right
after it pays for waking them, which flattered us by a few percent at (1024^3).
"""

import sys
import time

import numpy as np

import twolayer
from twolayer import benchmark
from twolayer.fast import paths
from twolayer.layout import SHAPES, param_count

TURN_SECONDS = 0.3


def apply(variant, defaults):
    for name, value in defaults.items():
        setattr(paths, name, value)
    if variant in ("numpy", "base"):
        return
    for setting in variant.split(";"):
        name, value = setting.split("=")
        old = defaults.setdefault(name, getattr(paths, name))
        setattr(paths, name, _every(old, int(value)))


def _every(old, value):
    # value in every place of a (nested) dict of old, or value
    return {k: _every(v, value) for k, v in old.items()} if isinstance(old, dict) else value


def main(shape, dtype, batch_sizes, variants, rounds=6):
    dims = SHAPES.get(shape) or tuple(int(v) for v in shape.split("x"))
    dtype = np.dtype(dtype)
    benchmark.raise_mmap_threshold()
    rng = np.random.default_rng(0)
    defaults = {}
    for n in batch_sizes:
        data = rng.standard_normal((n, dims[0])).astype(dtype)
        labels = np.eye(dims[2], dtype=dtype)[rng.integers(0, dims[2], n)]
        params = (0.02 * rng.standard_normal(param_count(dims))).astype(dtype)

        def call(variant):
            apply(variant, defaults)
            backend = "numpy" if variant == "numpy" else "numba"
            return twolayer.forward_backward_prop(data, labels, params, dims, backend=backend)

        times = {v: [] for v in variants}
        for v in variants:
            call(v)
        for turn in range(rounds):
            for v in variants if turn % 2 else variants[::-1]:
                time.sleep(0.02)
                call(v)
                calls, start = 0, time.perf_counter()
                while (now := time.perf_counter()) < start + TURN_SECONDS or calls == 0:
                    call(v)
                    calls += 1
                times[v].append((now - start) / calls)
        apply("base", defaults)
        numpy_time = np.median(times["numpy"]) if "numpy" in times else None
        cells = []
        for v in variants:
            t = np.median(times[v])
            cells.append(f"{v} {t * 1e6:,.0f} us" + (f" ({numpy_time / t:.3f}x)" if numpy_time else ""))
        print(shape, dtype.name, n, "  ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3].split(",")], sys.argv[4].split(","))
