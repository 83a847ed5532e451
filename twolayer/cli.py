"""The ``twolayer`` command (also ``python -m twolayer``)."""

import argparse
import json
import sys
import time

import numpy as np

from . import peers
from .api import BACKENDS, resolve_backend, set_num_threads
from .benchmark import BUDGET_SECONDS, ROUNDS, SETTLE_SECONDS
from .helpers import sanity_check
from .layout import SHAPES
from .machine import describe, gemm_peak


def available_backends():
    """The concrete backends that load here, fastest first."""
    names = []
    for name in BACKENDS[1:]:
        try:
            resolve_backend(name)
        except ImportError:
            continue
        names.append(name)
    return names


def cmd_check(args):
    failed = []
    for name in args.backends or available_backends():
        ok = sanity_check(backend=name, seed=args.seed)
        print(f"{name}: {'passed' if ok else 'FAILED'}")
        if not ok:
            failed.append(name)
    return 1 if failed else 0


def cmd_info(args):
    _print_info(describe())
    return 0


def _print_info(info, out=sys.stdout):
    for key, value in info.items():
        for i, line in enumerate(value if isinstance(value, list) else [value]):
            print(f"{key}: {line}" if i == 0 else " " * (len(key) + 2) + str(line), file=out)


def cmd_bench(args):
    backends = args.backends or [*available_backends()[::-1], *peers.available()]
    for name in backends:
        if name in peers.PEERS:
            try:
                peers.require(name)
            except ImportError as err:
                print(f"twolayer bench: {err}", file=sys.stderr)
                return 2
    if args.plot and not _have_matplotlib():  # before any timing, not after
        print("twolayer bench: --plot needs matplotlib: pip install 'twolayer[plot]'", file=sys.stderr)
        return 2
    if "numpy" not in backends:
        backends = ["numpy", *backends]  # speedups are over numpy, measured in the same run
    limits = None
    if args.threads is not None:
        set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(args.threads)
        except ImportError:
            pass
    try:
        return _bench(args, backends)
    finally:
        if limits is not None:
            limits.restore_original_limits()


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _bench(args, backends):
    from .benchmark import DEFAULT_BATCH_SIZES, format_table, grid, raise_mmap_threshold, sweep

    raise_mmap_threshold()
    shapes, batch_sizes = args.shapes_given or list(SHAPES), args.batch_sizes or DEFAULT_BATCH_SIZES
    points = _loop_points(args) if args.loop else grid(shapes, batch_sizes, args.dtypes)
    _compile_phase(backends, points)
    info = describe()
    info["gemm peak"] = ", ".join(f"{dt} {gemm_peak(dt):.1f} GFLOP/s" for dt in args.dtypes)
    _print_info(info)
    print(flush=True)
    if args.loop:
        return _bench_loop(args, backends, info, points)
    progress = Progress("timing")
    records = sweep(
        shapes,
        batch_sizes,
        args.dtypes,
        backends,
        budget=args.budget,
        progress=progress,
        settle=args.settle,
        rounds=args.rounds,
    )
    progress.close(f"timed {len(points)} points x {len(backends)} backends in {progress.elapsed():.0f} s")
    print(format_table(records))
    info = _paths_taken(info)
    if args.json:
        _save_run(args.json, info, "records", records)
    if args.plot:
        from .report import plot_records

        speedup_png = args.plot.rsplit(".", 1)[0] + "-speedup.png"
        plot_records(records, args.plot, speedup_png)
        print(f"wrote {args.plot} and {speedup_png}")
    return 0


def _paths_taken(info):
    """info with its "wide layers" line read again after the timing: where NumPy's BLAS is
    not bound, each layer size has chosen its path by now (printed when it changed)."""
    if "wide layers" not in info:
        return info
    from . import fast

    now = fast.runtime_info()["wide layers"]
    if now != info["wide layers"]:
        print(f"\nwide layers: {now}")
    return {**info, "wide layers": now}


def _save_run(path, info, key, records):
    """A saved run: the machine it ran on and its records (what `twolayer report` reads)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"machine": info, key: [r.as_dict() for r in records]}, f, indent=1, default=str)
    print(f"\nwrote {path}")


def _compile_phase(backends, points):
    """Compile (or load from the cache) every kernel the timing will run, before any of
    it, saying so; and shorten OpenBLAS's idle spin as a first parallel call would, so that
    the first backend timed meets the state the rest do."""
    numba_backends = [b for b in backends if b == "numba" or b.startswith("numba:")]
    if not numba_backends:
        return
    from .fast import numpy_blas

    _warm(kernels_for(numba_backends, points))
    numpy_blas.shorten_idle_spin()


def _warm(pairs, processes=None):
    """Compile ``pairs`` in one process per core (fast/warmup.py) on a progress line."""
    import llvmlite.binding as ll

    from .fast import warmup

    cpu = ll.get_host_cpu_name()
    progress = Progress(f"compiling {len(pairs)} kernels for {cpu}")
    done = warmup.warm(pairs, processes=processes, progress=progress)
    compiled = sum(how == "compiled" for *_, how, _ in done)
    progress.close(
        f"{len(pairs)} kernels for {cpu}: {compiled} compiled, {len(pairs) - compiled} from the cache, "
        f"in {progress.elapsed():.1f} s"
    )
    return done


def kernels_for(numba_backends, points):
    """(entry kernel, dtype name) pairs that these numba backends run at these points."""
    from . import fast

    pairs = []
    for backend in numba_backends:
        for shape, n, dtype in points:
            dims, itemsize = SHAPES[shape], np.dtype(dtype).itemsize
            path = (
                backend.split(":")[1]
                if ":" in backend
                else fast.choose_path(n, *dims, itemsize, fast.numpy_blas.direct_gemm)
            )
            pairs += [(name, np.dtype(dtype).name) for name in fast.entry_kernels(path, n, dims, itemsize)]
    return list(dict.fromkeys(pairs))


def _loop_points(args):
    from .trainloop import POINTS

    points = [
        (s, n, d)
        for s, n, d in POINTS
        if (args.shapes_given is None or s in args.shapes_given)
        and d in args.dtypes
        and (args.batch_sizes is None or n in args.batch_sizes)
    ]
    if args.batch_sizes is not None:  # batches asked for that the table does not hold
        shapes = args.shapes_given or list(dict.fromkeys(s for s, _, _ in POINTS))
        points += [(s, n, d) for s in shapes for n in args.batch_sizes for d in args.dtypes if (s, n, d) not in points]
    return points


def _bench_loop(args, backends, info, points):
    from .trainloop import format_loop_table, measure_loop_point

    progress = Progress("timing the training loop")
    budget = max(args.budget, 0.05) * 2.4  # the loop needs steps enough to reach an evaluation
    records = []
    for i, (shape, n, dtype) in enumerate(points):
        records += measure_loop_point(shape, n, dtype, backends, budget=budget)
        progress(i + 1, len(points), f"{shape} batch={n} {dtype}")
    progress.close(f"timed {len(points)} loops x {len(backends)} backends in {progress.elapsed():.0f} s")
    print(format_loop_table(records))
    info = _paths_taken(info)
    if args.json:
        _save_run(args.json, info, "loop_records", records)
    return 0


class Progress:
    """A progress line on stderr: progress(done, total, label), in any unit whose share of
    the total is a share of the time (the sweep counts estimated seconds), and the time
    left at the pace so far. Live on a terminal only; close(summary) prints the summary."""

    def __init__(self, what):
        self.what = what
        self.start = time.perf_counter()
        self.live = sys.stderr.isatty()

    def elapsed(self):
        return time.perf_counter() - self.start

    def __call__(self, done, total, label):
        if not self.live:
            return
        share = done / total if total else 1.0
        left = self.elapsed() * (1 - share) / share if share > 0 else 0
        line = f"{self.what} [{'#' * int(20 * share):20s}] {100 * share:3.0f}%  {label}  (about {left:.0f} s left)"
        print(f"\r{line[:99]:99s}", end="", file=sys.stderr, flush=True)

    def close(self, summary):
        if self.live:
            print("\r" + " " * 99 + "\r", end="", file=sys.stderr)
        print(summary, file=sys.stderr, flush=True)


def cmd_compile(args):
    from .benchmark import DEFAULT_BATCH_SIZES, grid
    from .fast import compile as kernels

    if args.all:
        pairs = [(name, dt) for dt in args.dtypes for name in kernels.ENTRY_KERNELS]
    else:
        pairs = kernels_for(["numba"], grid(list(SHAPES), DEFAULT_BATCH_SIZES, args.dtypes))
    for name, dtype, how, seconds in sorted(_warm(pairs, args.processes), key=lambda d: -d[3]):
        print(f"{name:28s} {dtype:8s} {how:9s} {seconds:6.2f} s")
    return 0


def cmd_report(args):
    from . import report

    if args.update:
        for path in args.runs:
            print(f"{path}: {'tables regenerated' if report.update_tables(path) else 'tables already up to date'}")
        return 0
    if args.plot and not _have_matplotlib():
        print("twolayer report: --plot needs matplotlib: pip install 'twolayer[plot]'", file=sys.stderr)
        return 2
    if len(args.runs) > 1:
        print(report.table_many(args.runs, markdown=args.markdown))
        if args.plot:
            report.plot_many(args.runs, args.plot)
            print(f"wrote {args.plot}")
        return 0
    print(report.table(args.runs[0], markdown=args.markdown))
    if args.plot:
        speedup_png = args.plot.rsplit(".", 1)[0] + "-speedup.png"
        report.plot(args.runs[0], args.plot, speedup_png)
        print(f"wrote {args.plot} and {speedup_png}")
    return 0


def cmd_gate(args):
    from .report import gate

    ok, lines = gate(args.baseline, args.current, args.tolerance)
    print("\n".join(lines))
    return 0 if ok else 1


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _seconds(text):
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="twolayer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="CS224n's sanity check (gradcheck, N=20, dims (10,5,10)) on every backend")
    check.add_argument("--backends", nargs="+", choices=BACKENDS[1:], help="default: every available backend")
    check.add_argument("--seed", type=int, default=0, help="random seed of the check's data (default 0)")
    check.set_defaults(handler=cmd_check)

    info = sub.add_parser("info", help="versions, CPU, cores, BLAS and threading layer")
    info.set_defaults(handler=cmd_info)

    bench = sub.add_parser("bench", help="how fast is it here: a sweep over shapes, batch sizes and dtypes")
    bench.add_argument(
        "--shapes",
        nargs="+",
        choices=list(SHAPES),
        dest="shapes_given",
        help="default: all (with --loop: mnist, sentiment, cs224n)",
    )
    bench.add_argument(
        "--batch-sizes",
        nargs="+",
        type=_positive_int,
        metavar="N",
        help="default: 1 16 256 4096 65536 (the wide shape stops at 4096)",
    )
    bench.add_argument("--dtypes", nargs="+", choices=["float64", "float32"], default=["float64", "float32"])
    bench.add_argument(
        "--backends",
        nargs="+",
        choices=[*BACKENDS[1:], *peers.PEERS],
        help="default: numpy, numba and every installed optional peer (torch, jax); "
        "textbook (the assignment's NumPy code) on request",
    )
    bench.add_argument("--threads", type=_positive_int, help="threads for Numba, BLAS and the peers (default: all)")
    bench.add_argument(
        "--budget",
        type=_seconds,
        default=BUDGET_SECONDS,
        help=f"seconds of timing per point, shared by the backends (default {BUDGET_SECONDS})",
    )
    bench.add_argument(
        "--settle",
        type=_seconds,
        default=SETTLE_SECONDS,
        help=f"idle seconds before each turn of a backend, for the previous backend's threads "
        f"to stop spinning (default {SETTLE_SECONDS})",
    )
    bench.add_argument(
        "--rounds",
        type=_positive_int,
        default=ROUNDS,
        help=f"turns each backend takes at each point, sharing the budget (default {ROUNDS})",
    )
    bench.add_argument(
        "--loop",
        action="store_true",
        help="the training-loop scenario instead of the sweep: each backend's SGD step time, with "
        "the user's own NumPy code between calls, and the call's time in the loop and alone",
    )
    bench.add_argument("--json", metavar="PATH", help="write one record per measurement")
    bench.add_argument("--plot", metavar="PNG", help="write the scaling plot (and PNG-speedup.png); needs matplotlib")
    bench.set_defaults(handler=cmd_bench)

    compile_ = sub.add_parser(
        "compile",
        help="compile the kernels ahead of use, in one process per core, into "
        "Numba's cache (what `twolayer bench` runs, by default)",
    )
    compile_.add_argument("--dtypes", nargs="+", choices=["float64", "float32"], default=["float64", "float32"])
    compile_.add_argument("--all", action="store_true", help="every entry kernel, the single-threaded ones too")
    compile_.add_argument("--processes", type=_positive_int, help="default: one per usable core")
    compile_.set_defaults(handler=cmd_compile)

    report = sub.add_parser(
        "report",
        help="tables (and plots) of saved runs: twolayer bench --json or "
        "pytest-benchmark; several runs side by side, labelled by machine",
    )
    report.add_argument("runs", nargs="+", metavar="run", help="JSON of a run")
    report.add_argument("--plot", metavar="PNG", help="write the scaling plot (and PNG-speedup.png)")
    report.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    report.add_argument(
        "--update",
        action="store_true",
        help="the arguments are Markdown files: regenerate their marked tables from the saved runs "
        "they name (<!-- report: RUN.json [loop] [dtype=...] --> ... <!-- end report -->)",
    )
    report.set_defaults(handler=cmd_report)

    gate = sub.add_parser("gate", help="exit 1 if a speedup over numpy dropped by more than the tolerance")
    gate.add_argument("baseline", help="JSON of the baseline run")
    gate.add_argument("current", help="JSON of the run to check")
    gate.add_argument("--tolerance", type=float, default=0.15, help="largest accepted relative drop (default 0.15)")
    gate.set_defaults(handler=cmd_gate)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
