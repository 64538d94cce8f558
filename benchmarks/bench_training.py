"""Training throughput (images/s) and peak memory per method: the cost of one full optimizer step.

A step is what the trainer does per batch: encode → method.refine → decode → method.losses → weighted sum →
backward → Adam step, on a synthetic batch (onelabel labels) so data loading is not part of it (bench_data measures
that). Settings: the default model (resnet_small) at 64×80, batch 16; SegNet at 288×384 when the backbone exists
(batch 2 on CPU, 8 on CUDA; tpkr's retrieval runs on SegNet's full-resolution feature pooled to 36×48 tokens, see
its ``attention_tokens``). CPU always, CUDA when available. Methods of one setting are timed round-robin, and
"× sup." is the ratio to the supervised step of the same run. tpkr runs in its default paper variant ("tpkr") and
in its first implementation ("tpkr first"), both at the compact size; at the published size ("tpkr paper size":
K 4096, D 1024, d 1024, two BasicBlocks per task) it is timed against supervised on the benchmark configurations'
four-stage ResNet-18 at NYUD's 288×384, batch 4 (the paper's NYUD batch) — on CUDA only, since one such step takes
minutes on one CPU thread.

Run as ``python benchmarks/bench_training.py [--quick]``.
"""

from __future__ import annotations

from collections.abc import Callable

import common  # noqa: I001  (sets thread env vars and sys.path before torch/mtlwb load)
import torch

from mtlwb.data.scenes import NUM_CLASSES
from mtlwb.methods import Step, build_method, forward_step
from mtlwb.models import BACKBONES, MultiTaskNet
from mtlwb.objectives.weighting import build_weighting
from mtlwb.tasks import make_tasks

METHODS = ("supervised", "mtpsl", "jtr", "tpkr", "tpkr first", "diffusionmtl")
# a row's label -> (method, method_options): tpkr's variants are rows of their own
ARMS = {"tpkr first": ("tpkr", {"variant": "first"}), "tpkr paper size": ("tpkr", {"size": "paper"})}
TASKS = ("semantic", "depth", "normal")


def make_train_step(method_name: str, backbone: str = "resnet_small", batch: int = 16, size: tuple[int, int] = (64, 80),
                    device: str = "cpu", setting: str = "onelabel", options: dict | None = None,
                    seed: int = 0) -> Callable[[], float]:
    """A closure running one training step on a fixed synthetic batch; returns the loss (a float)."""
    torch.manual_seed(seed)
    tasks = make_tasks(list(TASKS), NUM_CLASSES)
    model = MultiTaskNet(tasks, backbone).to(device)
    method = build_method(method_name, tasks, model.feature_channels, options).to(device)
    weighting = build_weighting("equal", [t.name for t in tasks]).to(device)
    groups = [{"params": list(model.parameters()), "lr": 1e-3}] + method.parameter_groups(1e-3)
    optimizer = torch.optim.Adam(groups, lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    h, w = size
    images = torch.rand(batch, 3, h, w, generator=g).to(device)
    targets = common.synthetic_targets(tasks, batch, h, w, g, device)
    labelled = common.label_table(batch, len(tasks), setting, device)
    active = {t.name: bool(labelled[:, i].any()) for i, t in enumerate(tasks)}
    model.train()
    method.train()

    def step() -> float:
        features, refined, preds, bottleneck = forward_step(model, method, images)
        terms = method.losses(Step(images, features, refined, preds, targets, labelled, bottleneck))
        loss = weighting.combine(terms.supervised, active=active)
        loss = loss + sum(terms.auxiliary.values(), torch.zeros((), device=device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def _arm_step(label: str, backbone: str, batch: int, size: tuple[int, int], device: str) -> Callable[[], float]:
    method, options = ARMS.get(label, (label, None))
    return make_train_step(method, backbone, batch, size, device, options=options)


def _setting_rows(device: str, backbone: str, size: tuple[int, int], batch: int, methods: tuple[str, ...],
                  repeats: int) -> list[dict]:
    steps = {m: _arm_step(m, backbone, batch, size, device) for m in methods}
    memory = {}
    for m, step in steps.items():
        step()                                    # warm-up: allocates Adam state and autograd buffers
        with common.PeakMemory(device) as mem:
            step()
        memory[m] = mem
    if device == "cuda":
        seconds = {m: common.median_seconds(s, repeats, warmup=1, device=device) for m, s in steps.items()}
    else:
        seconds = common.interleaved_medians(steps, repeats, warmup=0)
    base = seconds.get("supervised")
    rows = []
    for m in methods:
        rows.append({"device": device, "backbone": backbone, "size": f"{size[0]}x{size[1]}", "batch": batch,
                     "method": m, "ms/step": 1000 * seconds[m], "images/s": batch / seconds[m],
                     "x sup.": seconds[m] / base if base else float("nan"),
                     "peak MiB": memory[m].peak, "step MiB": memory[m].delta})
    return rows


def run(quick: bool = False) -> list[dict]:
    """Rows per (device, backbone, size, method); skipped settings come back as rows with a ``note``."""
    common.pin_threads()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    repeats = 2 if quick else 7
    rows: list[dict] = []
    for device in devices:
        rows += _setting_rows(device, "resnet_small", (64, 80), 16, METHODS, repeats)
        if "segnet" not in BACKBONES:
            rows.append({"device": device, "backbone": "segnet", "note": "skipped: 'segnet' not in BACKBONES"})
            continue
        cpu = device == "cpu"
        methods = ("supervised",) if quick and cpu else METHODS
        batch = (1 if quick else 2) if cpu else 8
        rows += _setting_rows(device, "segnet", (288, 384), batch, methods, 1 if quick and cpu else (3 if cpu else 7))
        if cpu:
            rows.append({"device": device, "backbone": "resnet18_multiscale", "method": "tpkr paper size",
                         "note": "skipped: the published size (≈190 M parameters) is timed on CUDA only"})
        else:
            rows += _setting_rows(device, "resnet18_multiscale", (288, 384), 4, ("supervised", "tpkr paper size"), 7)
    return rows


COLUMNS = ["device", "backbone", "size", "batch", "method", "ms/step", "images/s", "x sup.", "peak MiB", "step MiB"]


def report(rows: list[dict]) -> str:
    measured = [r for r in rows if "note" not in r]
    lines = [common.table(measured, COLUMNS), ""]
    lines += [f"- {r['device']} {r['backbone']} {r.get('method', '')}: {r['note']}" for r in rows if "note" in r]
    for r in measured:   # the targets: MTPSL's and JTR's overhead over the supervised step
        if r["backbone"] == "resnet_small" and r["method"] in ("mtpsl", "jtr"):
            lines.append(common.check(f"{r['device']} {r['method']} step ≤ 2.5× supervised", r["x sup."] <= 2.5,
                                      f"{r['x sup.']:.2f}×"))
    lines.append("- tpkr's extra cost is mostly its reconstruction decoder (three conv stages up to the image size, "
                 "``decoder_width``) and the retrieval blocks (paper variant: two self → cross → FFN blocks; first: "
                 "one cross → FFN block); at the published size the per-task BasicBlocks at width 1024 dominate. "
                 "Reported, not held to a target.")
    lines.append("\n_peak MiB_: the process's peak resident set (CPU, VmHWM) or CUDA max_memory_allocated during one "
                 "step; _step MiB_: that peak minus the memory in use before the step.")
    return "\n".join(lines)


if __name__ == "__main__":
    common.main(__doc__, run, report)
