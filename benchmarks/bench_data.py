"""Data path: scene generator, loader and evaluation throughput, and the loader's margin over training.

* generator: ``bench_scenes.run`` (render only at three sizes, write only, full ``generate_dataset``);
* loader: ``MultiTaskFolder`` + ``DataLoader`` (batch 16, shuffled, num_workers 0 as the trainer's default) over
  data/scenes-64x80 when it exists, else over a small set generated into a temporary directory;
* evaluation: ``mtlwb.experiment.loop.evaluate`` (inference mode, loading + forward + metrics) on the default model;
* the loader must deliver ≥ 5× the images/s of a supervised training step (timed in the same run), so that
  loading never bounds training.

Run as ``python benchmarks/bench_data.py [--quick]``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import bench_scenes
import bench_training
import common  # noqa: I001  (sets thread env vars and sys.path before torch/mtlwb load)
import torch
from torch.utils.data import DataLoader

from mtlwb.config import ExperimentConfig
from mtlwb.data import generate_dataset
from mtlwb.data.folder import MultiTaskFolder
from mtlwb.data.scenes import NUM_CLASSES
from mtlwb.experiment.loop import build_experiment, evaluate
from mtlwb.tasks import make_tasks

DATA = common.ROOT / "data" / "scenes-64x80"
BATCH = 16


def _loader_rate(root: Path, images: int, repeats: int) -> float:
    tasks = make_tasks(["semantic", "depth", "normal"], NUM_CLASSES)
    dataset = MultiTaskFolder(root, "train", tasks, limit=images)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(0))

    def epoch() -> None:
        for _ in loader:
            pass

    return len(dataset) / common.median_seconds(epoch, repeats, warmup=1)


def _eval_rate(root: Path, images: int, repeats: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = ExperimentConfig(data_root=str(root), epochs=0, train_samples=16, eval_samples=images,
                                  device="cpu", progress=False, run_dir=tmp)
        exp = build_experiment(config)
        return len(exp.eval_set) / common.median_seconds(lambda: evaluate(exp), repeats, warmup=1)


def run(quick: bool = False) -> list[dict]:
    common.pin_threads()
    repeats = 2 if quick else 5
    rows = [{"section": "generator", **r} for r in bench_scenes.run(repeats=1 if quick else 3)]
    with tempfile.TemporaryDirectory() as tmp:
        if (DATA / "train" / "image").is_dir() and (DATA / "val" / "image").is_dir():
            root, source = DATA, str(DATA.relative_to(common.ROOT))
        else:
            root = generate_dataset(Path(tmp) / "scenes", n_train=128, n_val=64, progress=False)
            source = "generated (128 train / 64 val) in a temporary directory"
        n_load, n_eval = (128, 64) if quick else (512, 256)
        load = _loader_rate(root, n_load, repeats)
        evals = _eval_rate(root, n_eval, repeats)
    step = bench_training.make_train_step("supervised")
    train = BATCH / common.median_seconds(step, repeats, warmup=1)
    rows += [
        {"section": "throughput", "what": "loader (MultiTaskFolder + DataLoader, workers 0)", "images/s": load,
         "source": source},
        {"section": "throughput", "what": "evaluation (train.evaluate, inference mode)", "images/s": evals,
         "source": source},
        {"section": "throughput", "what": "training step, supervised (synthetic batch)", "images/s": train,
         "source": "bench_training"},
        {"section": "check", "what": "loader / training", "ratio": load / train},
    ]
    return rows


def report(rows: list[dict]) -> str:
    gen = [{k: v for k, v in r.items() if k != "section"} for r in rows if r["section"] == "generator"]
    thr = [{k: v for k, v in r.items() if k != "section"} for r in rows if r["section"] == "throughput"]
    ratio = next(r["ratio"] for r in rows if r["section"] == "check")
    return "\n".join(["Scene generator (one core):", "", bench_scenes._markdown(gen), "",
                      "Loader, evaluation and training (64×80, batch 16, one thread):", "", common.table(thr), "",
                      common.check("loader ≥ 5× training throughput", ratio >= 5, f"{ratio:.1f}×")])


if __name__ == "__main__":
    common.main(__doc__, run, report)
