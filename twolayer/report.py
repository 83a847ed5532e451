"""Tables and plots from saved runs, and the portable regression gate.

A run is the JSON of ``twolayer bench --json`` (throughput records, or with ``--loop``
training-loop records) or of pytest-benchmark (``--benchmark-json`` or
``--benchmark-autosave``; the records live in each benchmark's extra_info). Absolute
times do not carry across machines; speedups over the NumPy backend measured in the
same run mostly do, so the gate compares those, the training loop's step speedups too.
"""

import json
import re

from .benchmark import Record, format_table
from .layout import SHAPES, flop_count
from .trainloop import LoopRecord, format_loop_table


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_loop(path):
    """The training-loop records of a saved run (``twolayer bench --loop --json`` or
    pytest-benchmark's bench/test_training_loop.py)."""
    doc = _read(path)
    if isinstance(doc, dict) and "benchmarks" in doc:
        records = []
        for bench in doc["benchmarks"]:
            info = bench.get("extra_info", {})
            if info.get("scenario") == "training loop" and "step_seconds" in info:
                records.append(
                    LoopRecord(
                        info["shape"],
                        tuple(info["dims"]),
                        info["n"],
                        info["dtype"],
                        info["backend"],
                        info["step_seconds"],
                        info["call_seconds"],
                        info["alone_seconds"],
                        info.get("step_speedup"),
                        info.get("step_cost_seconds"),
                    )
                )
        return records
    fields = set(LoopRecord.__dataclass_fields__)
    return [
        LoopRecord(**{k: v for k, v in r.items() if k in fields} | {"dims": tuple(r["dims"])})
        for r in (doc.get("loop_records", []) if isinstance(doc, dict) else [])
    ]


def load(path):
    """The throughput records of a saved run."""
    doc = _read(path)
    if isinstance(doc, dict) and "benchmarks" in doc:  # pytest-benchmark
        records = []
        for bench in doc["benchmarks"]:
            info = bench.get("extra_info", {})
            if "samples_per_s" not in info or info.get("scenario"):
                continue  # not timed (--benchmark-disable), or not a throughput point
            records.append(
                Record(
                    info["shape"],
                    tuple(info["dims"]),
                    info["n"],
                    info["dtype"],
                    info["backend"],
                    bench["stats"]["median"],
                    info["samples_per_s"],
                    info["gflops"],
                    info["peak_fraction"],
                    info.get("speedup"),
                )
            )
        return records
    if isinstance(doc, dict):
        doc = doc.get("records", [])
    return [Record(**{**r, "dims": tuple(r["dims"])}) for r in doc]


def table(path, markdown=False):
    """The tables of a saved run: throughput, training loop, or both; text or Markdown."""
    parts = []
    records, loop = load(path), load_loop(path)
    if records:
        parts.append(format_table(records, markdown=markdown))
    if loop:
        parts.append(format_loop_table(loop, markdown=markdown))
    return "\n\n".join(parts) or f"{path}: no records"


def gate(baseline_path, current_path, tolerance=0.15):
    """Compare same-run speedups over numpy; returns (ok, report lines).

    Fails when a speedup present in both runs dropped by more than ``tolerance``
    (0.15: the current speedup is below 85% of the baseline's).
    """

    def speedups(path):
        out = {(r.shape, r.n, r.dtype, r.backend): r.speedup for r in load(path) if r.speedup and r.backend != "numpy"}
        out.update(
            {
                (r.shape, r.n, r.dtype, r.backend + " loop"): r.step_speedup
                for r in load_loop(path)
                if r.step_speedup and r.backend != "numpy"
            }
        )
        return out

    base, current = speedups(baseline_path), speedups(current_path)
    common = sorted(set(base) & set(current), key=lambda k: (k[0], k[2], k[1], k[3]))
    if not common:
        return False, ["no point of the grid has a speedup in both runs: nothing to compare"]
    lines, ok = [], True
    for k in common:
        ratio = current[k] / base[k]
        bad = ratio < 1 - tolerance
        ok &= not bad
        lines.append(
            f"{'FAIL' if bad else 'ok  '} {k[0]:9s} N={k[1]:<6d} {k[2]:7s} {k[3]:11s} "
            f"speedup {base[k]:7.2f}x -> {current[k]:7.2f}x ({100 * (ratio - 1):+.0f}%)"
        )
    lines.append(f"{len(common)} points compared, tolerance {100 * tolerance:.0f}%: {'passed' if ok else 'FAILED'}")
    return ok, lines


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'twolayer[plot]'") from err
    return plt


def plot(path, out_png, speedup_png=None):
    """The figures of ``plot_records`` for the saved run at ``path``."""
    plot_records(load(path), out_png, speedup_png)


_STYLES = {"float64": "-", "float32": "--"}


def _panels(plt, shapes, title):
    """A figure with a panel per shape, two per row."""
    cols = min(2, len(shapes))
    rows = -(-len(shapes) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    fig.suptitle(title)
    return fig, [ax for row in axes for ax in row]


def _finish(plt, fig, axes, shapes, ylabel, out, legend_size=7):
    """Log-log axes titled by shape, unused panels hidden, the figure written to ``out``."""
    for ax, shape in zip(axes, shapes):
        ax.set(xscale="log", yscale="log", xlabel="batch size N", ylabel=ylabel, title=f"{shape} {SHAPES[shape]}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=legend_size)
    for ax in axes[len(shapes) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_records(records, out_png, speedup_png=None):
    """samples/s against N (log-log), a panel per shape, a line per backend and dtype,
    with the GEMM-peak roofline; and, if asked, the speedup over numpy as a second figure."""
    plt = _pyplot()
    shapes = [s for s in SHAPES if any(r.shape == s for r in records)]

    def lines(ax, mine, value):
        """One line per (backend, dtype) of ``value(record)`` against N."""
        for backend in dict.fromkeys(r.backend for r in mine):
            for dtype in dict.fromkeys(r.dtype for r in mine):
                pts = sorted((r.n, value(r)) for r in mine if r.backend == backend and r.dtype == dtype)
                if pts:
                    ax.plot(*zip(*pts), _STYLES.get(dtype, "-"), marker="o", ms=3, label=f"{backend} {dtype}")

    fig, axes = _panels(plt, shapes, "throughput against batch size (roofline: GEMM peak of this machine)")
    for ax, shape in zip(axes, shapes):
        mine = [r for r in records if r.shape == shape]
        lines(ax, mine, lambda r: r.samples_per_s)
        ns = sorted({r.n for r in mine})
        for dtype in dict.fromkeys(r.dtype for r in mine):
            peak = max((r.gflops / r.peak_fraction for r in mine if r.dtype == dtype and r.peak_fraction), default=0)
            if peak:
                roof = peak * 1e9 / flop_count(1, SHAPES[shape])  # samples/s at the GEMM peak
                ax.plot(
                    [ns[0], ns[-1]],
                    [roof, roof],
                    _STYLES.get(dtype, "-"),
                    color="gray",
                    lw=1,
                    label=f"GEMM peak {dtype}",
                )
    _finish(plt, fig, axes, shapes, "samples/s", out_png)

    if speedup_png:
        fig, axes = _panels(plt, shapes, "speedup over the NumPy backend, same run")
        for ax, shape in zip(axes, shapes):
            lines(
                ax, [r for r in records if r.shape == shape and r.speedup and r.backend != "numpy"], lambda r: r.speedup
            )
            ax.axhline(1, color="gray", lw=1)
        _finish(plt, fig, axes, shapes, "x NumPy", speedup_png)


def machine_label(path):
    """A run's machine in a few words: CPU, cores, BLAS (from the run's own record)."""
    doc = _read(path)
    info = doc.get("machine") or {}
    if not info and "machine_info" in doc:  # pytest-benchmark
        cpu = doc["machine_info"].get("cpu", {})
        return f"{cpu.get('brand_raw', 'unknown CPU')}, {cpu.get('count', '?')} cores"
    blas = info.get("blas") or ["unknown BLAS"]
    blas = blas[0] if isinstance(blas, list) else blas
    cores = info.get("usable cores", info.get("cores", "?"))
    return f"{info.get('cpu', 'unknown CPU')}, {cores} cores, {blas.split(' (')[0]}"


def table_many(paths, fast="numba", markdown=False):
    """Several runs side by side: per (shape, N, dtype), each run's time per call of
    ``fast`` and its speedup over numpy in that run. A legend names each run's machine."""
    from .benchmark import _fmt_time, render_table

    runs = [{(r.shape, r.n, r.dtype): r for r in load(p) if r.backend == fast} for p in paths]
    keys = list(dict.fromkeys(k for run in runs for k in run))
    unit = "µs" if markdown else "us"
    lines = [["shape", "N", "dtype", *(h for i in range(len(runs)) for h in (f"run {i + 1} {unit}", f"run {i + 1} x"))]]
    for key in keys:
        row = [key[0], str(key[1]), key[2]]
        for run in runs:
            r = run.get(key)
            row += [_fmt_time(r.seconds), f"{r.speedup:.1f}x" if r.speedup else "-"] if r else ["-", "-"]
        lines.append(row)
    legend = [f"run {i + 1}: {p} ({machine_label(p)})" for i, p in enumerate(paths)]
    return "\n".join(legend) + "\n\n" + render_table(lines, markdown)


def plot_many(paths, out_png, fast="numba"):
    """Each run's throughput of ``fast`` against batch size, a panel per shape, one color
    per run labelled with its machine, float64 solid and float32 dashed."""
    plt = _pyplot()
    runs = [(machine_label(p), [r for r in load(p) if r.backend == fast]) for p in paths]
    shapes = [s for s in SHAPES if any(r.shape == s for _, recs in runs for r in recs)]
    fig, axes = _panels(plt, shapes, f"{fast} throughput against batch size, one color per run")
    for ax, shape in zip(axes, shapes):
        for i, (label, records) in enumerate(runs):
            for dtype, style in _STYLES.items():
                pts = sorted((r.n, r.samples_per_s) for r in records if r.shape == shape and r.dtype == dtype)
                if pts:
                    ax.plot(*zip(*pts), style, color=f"C{i}", marker="o", ms=3, label=f"{label} {dtype}")
    _finish(plt, fig, axes, shapes, "samples/s", out_png, legend_size=6)


# Tables in Markdown documents are generated from saved runs: between
#   <!-- report: RUN.json [loop] [dtype=float64] [n=1,16] -->   and   <!-- end report -->
# ``update_tables`` writes the table that ``twolayer report --markdown`` gives for RUN.
_TABLE = re.compile(r"(<!-- report: (\S+)((?: [\w=,]+)*) -->\n)(.*?)(<!-- end report -->)", re.S)


def update_tables(doc_path):
    """Regenerate every marked table of the Markdown file at ``doc_path`` from its saved
    run (paths relative to the file's repository root, the current directory). Returns
    whether the file changed."""
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()

    def table_for(match):
        head, run, options, _, tail = match.groups()
        options = dict(o.split("=", 1) if "=" in o else (o, True) for o in options.split())
        sizes = {int(n) for n in options["n"].split(",")} if "n" in options else None

        def wanted(r):
            return options.get("dtype") in (None, r.dtype) and (sizes is None or r.n in sizes)

        if options.get("loop"):
            body = format_loop_table([r for r in load_loop(run) if wanted(r)], markdown=True)
        else:
            body = format_table([r for r in load(run) if wanted(r)], markdown=True)
        return f"{head}{body}\n{tail}"

    updated = _TABLE.sub(table_for, text)
    if updated != text:
        with open(doc_path, "w", encoding="utf-8") as f:
            f.write(updated)
    return updated != text
