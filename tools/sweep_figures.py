"""The README's copy of a finished sweep: ``docs/results/<name>_summary.md`` and its figures in ``docs/img``.

Why a tool: every table and chart the README shows of a sweep should be remade by one command from the sweep's
folder, not by hand. It writes the sweep's ``summary.md`` (claims and verdicts first), the paired-change chart
of Δ_MTL (and of any task asked for) and the learning curves of the tasks asked for (validation metric and
training loss per group: what shows the over-fitting regime).

    python tools/sweep_figures.py reports/sweeps/regime --change delta_mtl --curves normal --curves semantic
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mtlwb.analysis.stats import DELTA
from mtlwb.analysis.summary import write_summary
from mtlwb.analysis.tables import learning_curves, load_table
from mtlwb.figures.change import change_chart
from mtlwb.figures.export import write_png
from mtlwb.figures.sweep_curves import sweep_learning_curves

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a finished sweep, e.g. reports/sweeps/regime")
    parser.add_argument("--name", default=None, help="file prefix (default: the sweep folder's name)")
    parser.add_argument("--change", action="append", default=None, help="delta_mtl or a task (repeatable)")
    parser.add_argument("--curves", action="append", default=[], help="a task whose learning curves to draw")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="holds results/ and img/")
    args = parser.parse_args(argv)
    name = args.name or args.sweep_dir.name
    table = load_table(args.sweep_dir)
    tasks = [t.name for t in table.tasks]
    changes = args.change or [DELTA]
    bad = [f"--change {k}" for k in changes if k not in (DELTA, *tasks)] + [
        f"--curves {t}" for t in args.curves if t not in tasks]
    if bad:                                   # before anything is written
        parser.error(f"{', '.join(bad)}: allowed --change {[DELTA, *tasks]}, --curves {tasks}")
    summary = write_summary(args.sweep_dir, table=table)
    (args.out / "results").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(summary, args.out / "results" / f"{name}_summary.md")
    written = [args.out / "results" / f"{name}_summary.md"]
    for key in changes:
        written.append(write_png(change_chart(table, key), args.out / "img" / f"{name}_change_{key}.png",
                                 width=1000, height=480))   # room for long group labels and the title
    curves = learning_curves(args.sweep_dir, table) if args.curves else None
    for task in args.curves:
        fig = sweep_learning_curves(curves, task, table.tasks[tasks.index(task)].primary_metric)
        written.append(write_png(fig, args.out / "img" / f"{name}_curves_{task}.png"))
    for path in written:
        print(path or "(a PNG was not written: see the warning above)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
