"""Run every benchmark, print a markdown section per benchmark and write them all to reports/benchmarks.md.

``make bench`` runs this; ``--quick`` is a fast smoke check (fewer repeats, smaller sizes, no 10k t-SNE, no SegNet
sweep over methods). Every figure is a median over repeats on one thread; comparisons are ratios measured in the
same process run. The report is written atomically, so an interrupted run leaves the previous one intact.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import traceback

import bench_data
import bench_jtr_batched
import bench_profile
import bench_published
import bench_reference
import bench_regularizers
import bench_sweep_overhead
import bench_training
import bench_tsne
import common  # noqa: I001  (sets thread env vars and sys.path before torch/mtlwb load)

from mtlwb.core.io import atomic_write_text

SECTIONS = (
    ("Training throughput and peak memory per method", bench_training),
    ("Regularizer cost vs number of tasks", bench_regularizers),
    ("JTR: per-sample reference vs batched", bench_jtr_batched),
    ("Reference layouts and protocols: step cost; JTR batched vs per-sample", bench_reference),
    ("Published code vs mtlwb, like for like", bench_published),
    ("Where a reference-layout step spends its time (profile)", bench_profile),
    ("Data: generator, loader, evaluation", bench_data),
    ("t-SNE", bench_tsne),
    ("Sweep overhead: papermill vs in-process", bench_sweep_overhead),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke check: fewer repeats, smaller sizes")
    parser.add_argument("--out", default=str(common.ROOT / "reports" / "benchmarks.md"))
    parser.add_argument("--only", nargs="*", help="run only the modules with these names (e.g. bench_tsne)")
    args = parser.parse_args(argv)
    if not args.only or "bench_published" in args.only:
        error = bench_published.check_env()      # a wrong code path: one line before any work
        if error:
            print(f"run_all: {error}", file=sys.stderr)
            return 2
    common.pin_threads()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [f"# Benchmarks{' (quick)' if args.quick else ''}", "",
             f"{stamp} — {common.machine()}. Medians over repeats; ratios from the same run.", ""]
    failed = 0
    for title, module in SECTIONS:
        name = module.__name__
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            body = module.report(module.run(quick=args.quick))
        except Exception:  # one broken benchmark must not lose the others' numbers
            failed += 1
            body = "FAILED:\n\n```\n" + traceback.format_exc() + "```"
        section = f"## {title}\n\n_`benchmarks/{name}.py`, {time.perf_counter() - t0:.0f} s_\n\n{body}\n"
        print(section, flush=True)
        parts.append(section)
    atomic_write_text(args.out, "\n".join(parts))
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
