"""Throughput of the procedural scene generator on one core: render-only and render+write.

Run as ``python benchmarks/bench_scenes.py``; ``run()`` returns the table rows for an aggregator.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # must precede the numpy import to pin BLAS to one thread

import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without installing the package

from mtlwb.data.generate import generate_dataset  # noqa: E402
from mtlwb.data.scenes import render_scene  # noqa: E402

SIZES = ((64, 80, 200), (128, 160, 60), (288, 384, 10))  # height, width, scenes per repeat
REPEATS = 5


def _median_rate(fn, n: int, repeats: int) -> float:
    """Median over repeats of n/seconds; the median shrugs off noise from other users of the machine."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _render_row(height: int, width: int, n: int, repeats: int) -> dict:
    render_scene(0, height, width)  # warm caches (pixel grid)

    def work() -> None:
        for s in range(n):
            render_scene(s, height, width)

    return {"what": "render", "size": f"{height}x{width}", "scenes": n, "scenes_per_s": _median_rate(work, n, repeats)}


def _write_rows(n: int, repeats: int) -> list[dict]:
    """Disk cost alone (np.save of five arrays per scene) and the full generate_dataset path."""
    scene = render_scene(0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "w"
        out.mkdir()

        def write_only() -> None:
            for i in range(n):
                for key, value in scene.items():
                    np.save(out / f"{key}_{i}.npy", value)

        counter = iter(range(10**6))

        def generate() -> None:
            generate_dataset(Path(tmp) / f"ds{next(counter)}", n_train=n - n // 5, n_val=n // 5, progress=False)

        return [
            {"what": "write only", "size": "64x80", "scenes": n, "scenes_per_s": _median_rate(write_only, n, repeats)},
            {"what": "generate_dataset", "size": "64x80", "scenes": n,
             "scenes_per_s": _median_rate(generate, n, repeats)},
        ]  # fmt: skip


def run(repeats: int = REPEATS) -> list[dict]:
    """Benchmark rows: what was timed, image size, scenes per repeat, median scenes/s."""
    rows = [_render_row(h, w, n, repeats) for h, w, n in SIZES]
    return rows + _write_rows(200, repeats)


def _markdown(rows: list[dict]) -> str:
    lines = ["| what | size | scenes/repeat | median scenes/s |", "|---|---|---:|---:|"]
    lines += [f"| {r['what']} | {r['size']} | {r['scenes']} | {r['scenes_per_s']:.1f} |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(_markdown(run()))
