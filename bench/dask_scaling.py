"""Dask against the single-process kernel: samples/s over 10^6..10^7 rows of (50, 100, 5),
with 1 and 2 local worker processes, and the overhead each chunk adds.

    python bench/dask_scaling.py                 # 10^6 rows
    python bench/dask_scaling.py --rows 1e6 1e7  # adds 10^7 rows (4.4 GB per copy)

The data is generated on the workers and persisted there, so the timings are of the
computation and the tree sum, not of shipping the dataset.
"""

import argparse
import os
import time

import dask.array as da
import numpy as np

import twolayer
from twolayer import distributed
from twolayer.layout import SHAPES, param_count


def one_hot_block(idx, Dy):
    return np.eye(Dy)[idx]


def dataset(n, dims, chunk_rows, seed=0):
    Dx, H, Dy = dims
    rng = da.random.default_rng(seed)
    data = rng.standard_normal((n, Dx), chunks=(chunk_rows, Dx))
    classes = rng.integers(0, Dy, size=n, chunks=chunk_rows)
    labels = classes.map_blocks(one_hot_block, Dy, new_axis=1, chunks=(classes.chunks[0], (Dy,)), dtype=np.float64)
    return data, labels


def best_of(f, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", type=float, default=[1e6])
    parser.add_argument("--chunks", nargs="+", type=int, default=[16_384, 65_536, 262_144, 1_048_576])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    dims = SHAPES["sentiment"]
    params = 0.1 * np.random.default_rng(1).standard_normal(param_count(dims))
    cores = os.cpu_count()
    print(f"(Dx, H, Dy) = {dims}; {cores} cores; twolayer {twolayer.__version__}")
    print(f"{'rows':>10} {'where':>22} {'chunk rows':>10} {'chunks':>6} {'seconds':>8} {'samples/s':>10}")
    for n in map(int, args.rows):
        data, labels = dataset(n, dims, max(args.chunks))
        d_np, y_np = data.compute(), labels.compute()
        single = best_of(lambda: twolayer.forward_backward_prop(d_np, y_np, params, dims))
        print(f"{n:>10} {'single process':>22} {n:>10} {1:>6} {single:8.3f} {n / single:10.3g}")
        del d_np, y_np
        for workers in args.workers:
            with (
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                client.run(twolayer.set_num_threads, max(1, cores // workers))
                points = []
                for chunk_rows in args.chunks:
                    d, y = dataset(n, dims, chunk_rows)
                    d, y = client.persist([d, y])
                    chunks = len(d.chunks[0])
                    distributed.forward_backward_prop(d, y, params, dims)  # warm-up: imports, caches
                    t = best_of(lambda: distributed.forward_backward_prop(d, y, params, dims))
                    points.append((chunks, t))
                    print(
                        f"{n:>10} {f'dask, {workers} worker(s)':>22} {chunk_rows:>10} {chunks:>6} {t:8.3f} "
                        f"{n / t:10.3g}"
                    )
                    del d, y
                # seconds = fixed + per_chunk * chunks, fitted where every worker has work
                balanced = [(c, t) for c, t in points if c >= 2 * workers]
                per_chunk, fixed = np.polyfit(*zip(*balanced), 1)
                rate = n / max(fixed, 1e-9)  # rows/s once chunk overheads are paid
                amortized = int(10 * per_chunk * rate)  # chunk rows at which overhead is 10% of the work
                print(
                    f"{'':>10} {f'dask, {workers} worker(s)':>22}  overhead {1e3 * per_chunk:.2f} ms per chunk; "
                    f"chunks of >= {amortized:,} rows keep it under 10%"
                )


if __name__ == "__main__":
    main()
