"""The training loop with the BLAS path's small batches in two chunks of rows (as
shipped) against a column split (threads reading half of W1 each), in one process: the
numba backend's step speedup over the NumPy backend, and its call alone and in the loop.

    python dev/loop_split.py mnist 64 float64
"""

import sys

from twolayer.fast import paths
from twolayer.trainloop import measure_loop_point

shape, batch, dtype = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = dict(paths.COLUMNS_MAX_ROWS)
for _ in range(2):
    for name, rows in (("chunks", base), ("split", {4: 64, 8: 64})):
        paths.COLUMNS_MAX_ROWS.update(rows)
        r = {x.backend: x for x in measure_loop_point(shape, batch, dtype, ["numpy", "numba"], budget=1.2)}
        nb, npb = r["numba"], r["numpy"]
        print(
            f"{name:6s} step {npb.step_seconds / nb.step_seconds:.2f}x alone {nb.alone_seconds * 1e6:.0f} us"
            f" in loop {nb.call_seconds * 1e6:.0f} us ratio {nb.in_loop_ratio:.2f} (numpy {npb.in_loop_ratio:.2f})",
            flush=True,
        )
