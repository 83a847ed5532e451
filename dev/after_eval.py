"""The call right after the user's own NumPy code, against the call after it: what a
thread pool's idle workers cost a training loop (docs/design.md, "Threads in a user's
program"). The "evaluation" is sigmoid(Xval W1) on 2,000 rows, a few milliseconds.

    python dev/after_eval.py mnist 64 float32 [backend]

Prints the medians of 300 rounds: the call after the evaluation, the next call, and
the evaluation itself. Run it with NUMBA_NUM_THREADS=1 to see what the cache alone costs.
"""

import sys
import time

import numpy as np

from twolayer import forward_backward_prop
from twolayer.layout import SHAPES, param_count, unpack_params


def main(shape, n, dtype, backend=None, rounds=300):
    dims, dtype = SHAPES[shape], np.dtype(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dims[0])).astype(dtype)
    y = np.eye(dims[2], dtype=dtype)[rng.integers(0, dims[2], n)]
    x_val = rng.standard_normal((2000, dims[0])).astype(dtype)
    params = (rng.standard_normal(param_count(dims)) * 0.1).astype(dtype)
    W1 = unpack_params(params, dims)[0]
    for _ in range(50):
        forward_backward_prop(x, y, params, dims, backend=backend)
    after, next_call, evaluation = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        (1 / (1 + np.exp(-(x_val @ W1)))).sum()
        t1 = time.perf_counter()
        forward_backward_prop(x, y, params, dims, backend=backend)
        t2 = time.perf_counter()
        forward_backward_prop(x, y, params, dims, backend=backend)
        t3 = time.perf_counter()
        evaluation.append(t1 - t0)
        after.append(t2 - t1)
        next_call.append(t3 - t2)
    print(
        f"{shape} {n} {dtype} {backend or 'auto'}: after the evaluation {_us(after)}, "
        f"next {_us(next_call)}, evaluation {_us(evaluation)}"
    )


def _us(times):
    return f"{np.median(times) * 1e6:.0f} us"


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
