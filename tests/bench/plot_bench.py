#!/usr/bin/python3
"""Plots of the benchmarks in tests/bench/ for docs/performance.md (PNG files).

    tests/bench/plot_bench.py --run build/bench/tests --out docs/img [--repetitions 3]
        runs bench_core_bench and bench_contended_bench (Google Benchmark,
        medians of the repetitions, JSON saved next to the plots as
        core_bench.json / contended_bench.json), then plots them;
    tests/bench/plot_bench.py --core core.json [--core more.json] \\
        --contended contended.json [--publish publish.md] --out docs/img [--tables]
        plots saved Google Benchmark JSON output (--benchmark_out=FILE
        --benchmark_out_format=json) and, with --publish, the markdown table
        that tests/bench/publish_compare.py prints (RESPOOL_STAGES=publish tests/run).

Needs Debian's python3-matplotlib; nothing else in the build or the tests does.
Plots written (those whose input was given):
    contended_throughput.png  acquisitions/s against threads, per pool, one panel per (L, work)
    contended_p99.png         p99 acquire latency against threads, same panels
    contended_share.png       the busiest thread's acquisitions over the idlest's
    core_uncontended.png      ns per acquire + release against threads (no waiting)
    core_async.png            async acquire round trips: respool against the strand pool
    publish.png               publish ratios (respool / redis-benchmark, respool / kombu)
"""
import argparse
import collections
import json
import pathlib
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

POOL_STYLE = {  # contended_bench's pools, in legend order
    "Resource": dict(color="tab:blue", marker="o", linewidth=2.2),
    "ResourceStrictFifo": dict(color="tab:cyan", marker="v", linestyle="--"),
    "Naive": dict(color="tab:red", marker="s"),
    "FairFifo": dict(color="tab:green", marker="^", linestyle="--"),
    "Poco": dict(color="tab:orange", marker="D"),
}


def run(binary, out, args):
    subprocess.run([str(binary), f"--benchmark_out={out}", "--benchmark_out_format=json"] + args,
                   check=True, stdout=sys.stderr)


def medians(path):
    """name (without the aggregate suffix) -> the benchmark entry of its median,
    or of its only run when the file has no aggregates. `path` may be a list of
    files: a benchmark in a later file replaces the same one in an earlier file."""
    if isinstance(path, list):
        found, ctx = {}, {}
        for one in path:
            more, ctx = medians(one)
            found.update(more)
        return found, ctx
    doc = json.loads(pathlib.Path(path).read_text())
    found, singles = {}, {}
    for b in doc["benchmarks"]:
        if b.get("error_occurred"):
            continue
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                found[b["run_name"]] = b
        else:
            singles.setdefault(b.get("run_name", b["name"]), b)
    for name, b in singles.items():
        found.setdefault(name, b)
    for b in found.values():
        b["_context"] = doc.get("context", {})  # which run it came from
    return found, doc.get("context", {})


def context_line(ctx):
    load = ctx.get("load_avg") or []
    text = f"{ctx.get('date', '')}, {ctx.get('num_cpus', '?')} CPUs"
    if load:
        text += ", load " + "/".join(f"{x:.1f}" for x in load)
    return text


def plot_contended(path, out):
    runs, ctx = medians(path)
    # name: Pool/L:1/work_ns:0/iterations:1/real_time/threads:4
    rows = collections.defaultdict(dict)  # (L, work) -> pool -> [(T, bench)]
    for name, b in runs.items():
        m = re.match(r"(\w+)/L:(\d+)/work_ns:(\d+)/.*threads:(\d+)", name)
        if not m:
            continue
        pool, limit, work, threads = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
        rows[(limit, work)].setdefault(pool, []).append((threads, b))
    panels = sorted(rows)
    if not panels:
        raise SystemExit(f"{path}: no contended_bench results")
    metrics = [
        ("contended_throughput.png", "acquisitions/s (all threads)", lambda b: b["items_per_second"], "log"),
        ("contended_p99.png", "p99 acquire latency (µs)", lambda b: b["p99_us"], "symlog"),
        ("contended_share.png", "busiest / idlest thread's acquisitions", lambda b: b["share_max_min"], "linear"),
    ]
    works = sorted({w for _, w in panels})
    limits = sorted({l for l, _ in panels})
    for filename, ylabel, value, scale in metrics:
        fig, axes = plt.subplots(len(works), len(limits), figsize=(4.2 * len(limits), 3.4 * len(works)),
                                 squeeze=False, sharex=True)
        for i, work in enumerate(works):
            for j, limit in enumerate(limits):
                ax = axes[i][j]
                for pool, style in POOL_STYLE.items():
                    points = sorted(rows.get((limit, work), {}).get(pool, []), key=lambda p: p[0])
                    if points:
                        ax.plot([t for t, _ in points], [value(b) for _, b in points], label=pool, **style)
                ax.set_xscale("log", base=2)
                ax.set_xticks([2, 4, 8, 16], ["2", "4", "8", "16"])
                if scale == "symlog":  # latencies: from 0 µs, logarithmic above 1 µs
                    ax.set_yscale("symlog", linthresh=1)
                    ax.set_ylim(bottom=0)
                else:
                    ax.set_yscale(scale)
                ax.set_title(f"L={limit} resources, work {work} ns", fontsize=10)
                ax.grid(True, which="both", alpha=0.3)
                if i == len(works) - 1:
                    ax.set_xlabel("threads (T)")
                if j == 0:
                    ax.set_ylabel(ylabel)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"tests/bench/contended_bench.cpp — {ylabel} (median; {context_line(ctx)})", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / filename, dpi=90)
        plt.close(fig)
        print(out / filename)


def plot_core(path, out):
    runs, ctx = medians(path)
    series = {
        "BM_Floor": ("floor: shared mutex, 2 lock pairs", dict(color="gray", linestyle=":", marker=".")),
        "BM_Resource": ("respool Resource<int>", dict(color="tab:blue", marker="o", linewidth=2.2)),
        "BM_NaiveCvPool": ("naive mutex + cv pool", dict(color="tab:red", marker="s")),
        "BM_PocoObjectPool": ("Poco::ObjectPool", dict(color="tab:orange", marker="D")),
    }
    fig, ax = plt.subplots(figsize=(6, 4))
    for prefix, (label, style) in series.items():
        points = []
        for name, b in runs.items():
            m = re.match(re.escape(prefix) + r"/real_time/threads:(\d+)$", name)
            if m:
                points.append((int(m.group(1)), b["real_time"]))
        points.sort()
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], label=label, **style)
    ax.set_xticks([1, 2, 4])
    ax.set_xlabel("threads (pool size = threads: nobody waits)")
    ax.set_ylabel("ns per acquire + release (wall / all ops)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    some = runs.get("BM_Resource/real_time/threads:1")
    ax.set_title(f"uncontended, median\n({context_line(some['_context'] if some else ctx)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "core_uncontended.png", dpi=90)
    plt.close(fig)
    print(out / "core_uncontended.png")

    bars = [
        ("sync acquire", "BM_AsyncAcquire_SyncBaseline"),
        ("async callback\nrespool", "BM_AsyncAcquire"),
        ("async callback\nstrand pool", "BM_AsyncAcquire_StrandBaseline"),
        ("coroutine\nrespool", "BM_AsyncAcquire_Coroutine"),
        ("coroutine\nstrand pool", "BM_AsyncAcquire_Coroutine_StrandBaseline"),
    ]
    async_ctx = runs.get("BM_AsyncAcquire", {}).get("_context", ctx)
    bars = [(label, runs[name]["cpu_time"]) for label, name in bars if name in runs]
    if bars:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        colors = ["gray"] + ["tab:blue" if "respool" in l else "tab:red" for l, _ in bars[1:]]
        ax.bar([l for l, _ in bars], [v for _, v in bars], color=colors)
        for k, (_, v) in enumerate(bars):
            ax.annotate(f"{v:.0f}", (k, v), ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("CPU ns per acquire + release")
        ax.set_title(f"async acquire, one io_context thread, median\n({context_line(async_ctx)})", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        fig.savefig(out / "core_async.png", dpi=90)
        plt.close(fig)
        print(out / "core_async.png")


def plot_publish(path, out):
    rows = []
    for line in pathlib.Path(path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or not cells[1].isdigit():
            continue
        broker, threads = cells[0], int(cells[1])

        def rate(text):  # "18,134" -> 18134.0, "—" -> None
            try:
                return float(text.replace(",", ""))
            except ValueError:
                return None

        ours, ceiling, peer = rate(cells[2]), rate(cells[3]), rate(cells[5])
        rows.append((broker, threads, ours / ceiling if ours and ceiling else None,
                     ours / peer if ours and peer else None))
    if not rows:
        raise SystemExit(f"{path}: no publish_compare.py table")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, k, title in ((axes[0], 2, "respool / redis-benchmark -P 1 -t lpush (same clients)"),
                         (axes[1], 3, "respool / kombu (kombu: no confirms)")):
        labels, values = [], []
        for r in rows:
            if r[k] is not None:
                labels.append(f"{r[0]}\n{r[1]} thr")
                values.append(r[k])
        ax.bar(range(len(values)), values, color="tab:blue")
        ax.axhline(1.0, color="black", linewidth=0.8)
        if k == 2:
            ax.axhline(0.9, color="tab:red", linestyle="--", linewidth=0.8, label="target 0.9×")
            ax.legend(fontsize=8)
        else:
            ax.set_yscale("log")
        ax.set_xticks(range(len(values)), labels, fontsize=7, rotation=60)
        for x, v in enumerate(values):
            ax.annotate(f"{v:.2f}", (x, v), ha="center", va="bottom", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("ratio of msgs/s")
    fig.tight_layout()
    fig.savefig(out / "publish.png", dpi=90)
    plt.close(fig)
    print(out / "publish.png")


def tables(core, contended):
    """Markdown tables of the medians (for docs/performance.md)."""
    if core:
        runs, ctx = medians(core)
        print(f"uncontended, ns per op, wall (CPU), median; {context_line(ctx)}\n")
        print("| benchmark | 1 thread | 2 threads | 4 threads |\n|---|--:|--:|--:|")
        for prefix in ("BM_Floor", "BM_Floor_PrivateMutex", "BM_Resource", "BM_NaiveCvPool", "BM_PocoObjectPool"):
            cells = []
            for t in (1, 2, 4):
                b = runs.get(f"{prefix}/real_time/threads:{t}")
                cells.append(f"{b['real_time']:.1f} ({b['cpu_time']:.1f})" if b else "–")
            print(f"| {prefix} | " + " | ".join(cells) + " |")
        print("\n| ratio of times | 1 thread | 2 threads | 4 threads |\n|---|--:|--:|--:|")
        for peer in ("BM_NaiveCvPool", "BM_PocoObjectPool", "BM_Floor"):
            cells = []
            for t in (1, 2, 4):
                a, b = runs.get(f"BM_Resource/real_time/threads:{t}"), runs.get(f"{peer}/real_time/threads:{t}")
                cells.append(f"{a['real_time'] / b['real_time']:.2f}" if a and b else "–")
            print(f"| Resource / {peer} | " + " | ".join(cells) + " |")
        print("\n| async benchmark | wall ns/op | CPU ns/op |\n|---|--:|--:|")
        for name in ("BM_AsyncAcquire_SyncBaseline", "BM_AsyncAcquire", "BM_AsyncAcquire_StrandBaseline",
                     "BM_AsyncAcquire_Coroutine", "BM_AsyncAcquire_Coroutine_StrandBaseline"):
            if name in runs:
                print(f"| {name} | {runs[name]['real_time']:.0f} | {runs[name]['cpu_time']:.0f} |")
        print()
    if contended:
        runs, ctx = medians(contended)
        print(f"contended, median; {context_line(ctx)}\n")
        print("| L | work | T | pool | acquisitions/s | vs Naive | share max/min | p50 µs | p99 µs | max µs |")
        print("|---|---|---|---|--:|--:|--:|--:|--:|--:|")
        for limit, threads in ((1, 4), (2, 8)):
            for work in (0, 200):
                naive = runs.get(f"Naive/L:{limit}/work_ns:{work}/iterations:1/real_time/threads:{threads}")
                for pool in POOL_STYLE:
                    b = runs.get(f"{pool}/L:{limit}/work_ns:{work}/iterations:1/real_time/threads:{threads}")
                    if not b:
                        continue
                    ratio = f"{b['items_per_second'] / naive['items_per_second']:.2f}×" if naive else "–"
                    print(f"| {limit} | {work} ns | {threads} | {pool} | {b['items_per_second']:,.0f} | {ratio} | "
                          f"{b['share_max_min']:.2f} | {b['p50_us']:.2f} | {b['p99_us']:.1f} | {b['max_us']:,.0f} |")
        print()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="BENCH_DIR", help="run bench_core_bench and bench_contended_bench from here first")
    p.add_argument("--repetitions", type=int, default=3)
    p.add_argument("--core", action="append",
                   help="bench_core_bench JSON output (repeatable: later files replace the same benchmarks)")
    p.add_argument("--contended", help="bench_contended_bench JSON output")
    p.add_argument("--publish", help="publish_compare.py's markdown table, saved")
    p.add_argument("--out", default="docs/img", help="directory of the PNG files (default docs/img)")
    p.add_argument("--tables", action="store_true", help="also print markdown tables of the medians")
    a = p.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.run:
        bench = pathlib.Path(a.run)
        reps = [f"--benchmark_repetitions={a.repetitions}", "--benchmark_report_aggregates_only=true",
                "--benchmark_enable_random_interleaving=true"]
        a.core = a.core or [str(out / "core_bench.json")]
        a.contended = a.contended or str(out / "contended_bench.json")
        run(bench / "bench_core_bench", a.core[0], ["--benchmark_min_time=0.2"] + reps)
        run(bench / "bench_contended_bench", a.contended, reps)
    if not (a.core or a.contended or a.publish):
        p.error("nothing to plot: give --run, --core, --contended or --publish")
    if a.tables:
        tables(a.core, a.contended)
    if a.contended:
        plot_contended(a.contended, out)
    if a.core:
        plot_core(a.core, out)
    if a.publish:
        plot_publish(a.publish, out)


if __name__ == "__main__":
    main()
