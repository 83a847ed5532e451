"""Compile entry kernels ahead of use, in parallel processes, into Numba's cache.

A first-ever compile is the wait a new user meets: each entry kernel takes 0.1-10 s,
one after another in one process. They are independent, so ``warm`` shares them out
over processes (one per usable core), each writing to the cache; this process then loads
them from there. Already cached kernels only load.

Run as ``python -m twolayer.fast.warmup [--callbacks] name:dtype ...`` it compiles (or
loads) those kernels in order, printing "name dtype compiled|cached seconds" per kernel;
with --callbacks, first the pool's two C callbacks (its helpers' start routine, and the
one that runs NumPy's products on it), which every parallel call needs: 4 s cold.
"""

import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np

from .compile import cache_stats, helper_address, kernel, run_pieces_address

# Rough cold-compile seconds of each entry kernel on a 2-core AMD EPYC, for sharing out
# the work evenly; the rest take under a second.
COST = {
    "row": 3.5,
    "tile": 1,
    "narrow_tiles": 5,
    "narrow_tiles_hinted": 5,
    "blas_tiles": 6,
    "blocks_job": 1,
    "blas_columns_job": 4,
    "row_split_job": 4,
}


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def share_out(pairs, processes):
    """pairs split into ``processes`` lists of about equal expected cost, longest first."""
    loads = [[0.0, []] for _ in range(processes)]
    for pair in sorted(pairs, key=lambda p: -COST.get(p[0], 0.5)):
        least = min(loads, key=lambda load: load[0])
        least[0] += COST.get(pair[0], 0.5)
        least[1].append(pair)
    return [names for _, names in loads if names]


def warm(pairs, processes=None, progress=None):
    """Compile (or load) each (entry kernel, dtype name) of ``pairs``, in up to
    ``processes`` processes (default: the usable cores), then load them here.
    ``progress(done, total, label)`` after each. Returns [(name, dtype, how, seconds)],
    how being "compiled" or "cached"."""
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        return []
    groups = share_out(pairs, max(1, min(processes or _usable_cores(), len(pairs))))
    # the pool's callbacks with the group expected to finish first, if a parallel call is among them
    callbacks = any(name.endswith("_job") for name, _ in pairs)
    first = min(range(len(groups)), key=lambda i: sum(COST.get(name, 0.5) for name, _ in groups[i]))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                __name__,
                *(["--callbacks"] if callbacks and i == first else []),
                *(f"{n}:{d}" for n, d in group),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, group in enumerate(groups)
    ]
    lines, errors = queue.Queue(), []

    def read(proc):
        for line in proc.stdout:
            lines.put(line)
        errors.append(proc.stderr.read())
        lines.put(None)

    readers = [threading.Thread(target=read, args=(proc,), daemon=True) for proc in procs]
    for reader in readers:
        reader.start()
    done, finished = [], 0
    while finished < len(procs):  # each kernel reported as it finishes, whichever process
        line = lines.get()
        if line is None:
            finished += 1
            continue
        name, dtype, how, seconds = line.split()
        done.append((name, dtype, how, float(seconds)))
        if progress is not None:
            progress(len(done), len(pairs), f"{name} {dtype} ({how}, {float(seconds):.1f} s)")
    if any(proc.wait() != 0 for proc in procs):
        raise RuntimeError("compiling kernels in a subprocess failed:\n" + "\n".join(errors))
    for name, dtype in pairs:
        kernel(name, np.dtype(dtype))  # from the cache now
    return done


def main(args):
    if args and args[0] == "--callbacks":
        helper_address()
        run_pieces_address()
        args = args[1:]
    for arg in args:
        name, dtype = arg.split(":")
        hits = cache_stats(name)[0]
        start = time.perf_counter()
        kernel(name, np.dtype(dtype))
        how = "cached" if cache_stats(name)[0] > hits else "compiled"
        print(name, dtype, how, f"{time.perf_counter() - start:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
