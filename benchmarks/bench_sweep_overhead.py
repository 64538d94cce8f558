"""Sweep overhead: a papermill run of notebooks/train.ipynb vs the same training in-process.

Both sides train for 0 epochs on 16 training / 8 evaluation images (so the work is: build the experiment, evaluate
once, write the record; the in-process side warmed up once); the notebook side also starts a kernel, injects
parameters, imports the package and draws the notebook's figures — that difference is what each sweep point pays
for being a notebook. Target: < 5 s. The per-cell durations papermill records show where the overhead goes.

Run as ``python benchmarks/bench_sweep_overhead.py [--quick]``.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import common  # noqa: I001  (sets thread env vars and sys.path before torch/mtlwb load)
import nbformat

import mtlwb
from mtlwb.sweeps.notebooks import execute

NOTEBOOK = common.ROOT / "notebooks" / "train.ipynb"
PARAMS = {"epochs": 0, "train_samples": 16, "eval_samples": 8, "progress": False}


def run(quick: bool = False) -> list[dict]:
    common.pin_threads()
    repeats = 1 if quick else 3
    counter = itertools.count()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)

        outputs: list[Path] = []

        def notebook() -> None:
            i = next(counter)
            outputs.append(tmp_path / f"nb{i}.ipynb")
            execute(NOTEBOOK, outputs[-1], dict(PARAMS, run_dir=str(tmp_path / f"nb-run{i}")),
                    cwd=common.ROOT, progress=False)

        def in_process() -> None:
            mtlwb.train(mtlwb.ExperimentConfig(**PARAMS, run_dir=str(tmp_path / f"ip-run{next(counter)}")))

        in_process()   # once untimed: a sweep process pays first-call costs (lazy imports, init) only once
        seconds = common.interleaved_medians({"notebook": notebook, "in-process": in_process}, repeats, warmup=0)
        cells = _cell_seconds(outputs[0])
    rows = [{"what": "papermill notebooks/train.ipynb", "repeats": repeats, "seconds": seconds["notebook"]},
            {"what": "mtlwb.train in-process", "repeats": repeats, "seconds": seconds["in-process"]}]
    rows += [{"what": f"  of which notebook cell: {name}", "repeats": 1, "seconds": sec} for name, sec in cells]
    rows.append({"what": "  of which kernel start + papermill (wall − Σ cells)", "repeats": 1,
                 "seconds": seconds["notebook"] - sum(sec for _, sec in cells)})
    rows.append({"what": "overhead", "repeats": repeats, "seconds": seconds["notebook"] - seconds["in-process"]})
    return rows


def _cell_seconds(path: Path) -> list[tuple[str, float]]:
    """Per-cell durations papermill records in the output notebook (first run): where the overhead goes."""
    nb = nbformat.read(path, as_version=4)
    out = []
    for cell in nb.cells:
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell.cell_type == "code" and duration is not None:
            first = next((ln for ln in cell.source.splitlines() if ln and not ln.startswith("#")), "")
            out.append((f"`{first[:48]}`", float(duration)))
    return out


def report(rows: list[dict]) -> str:
    overhead = rows[-1]["seconds"]
    return "\n".join([common.table(rows), "", common.check("notebook overhead < 5 s", overhead < 5,
                                                           f"{overhead:.1f} s")])


if __name__ == "__main__":
    common.main(__doc__, run, report)
