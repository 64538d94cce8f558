"""Where a training step of the published protocols spends its time: phases, component floors, top operators.

The trainer's path (views made per step, one forward pass on the concatenated views, ``split_views``, the method's
losses, backward, Adam) for supervised, MTPSL (``arch: reference``, 2 views) and JTR (``arch: reference``, 3 views +
photometric RandAugment), both ``fidelity: published_code`` with the options of ``sweeps/benchmarks/nyuv2.yaml``:
SegNet, NYUv2's three tasks, batch 4, 64×96, onelabel labels, one thread.

Times are **CPU seconds of this process** (``time.process_time``; one thread, so CPU time is the work done), median
over repeats: on a shared machine other users' load stretches wall time by 2–3× and unevenly, while the CPU time of
a one-thread process moves by a few per cent. Ratios are within one process.

Part 1 — phases of one step (views, forward, method losses, backward, optimizer) per protocol; JTR twice: with one
graph over all three views' heads (``forward_step(views=1)``, the path before ``detached_views``) and with view 2's
heads run without a graph (``forward_step(views=3)``, the trainer's path); each protocol again in channels-last
(model, method networks and images, as ``channels_last: true``) and, where the CPU has native bfloat16, under bf16
autocast (the ``precision: bf16`` path) with its largest relative loss-term difference from fp32 on the same
weights, batch and Gumbel draws.
Part 2 — the floors: SegNet + heads forward + backward on 4, 8 and 12 images (the backbone work of 1, 2 and 3
views), and each method's own terms (forward + backward, predictions as leaves) alone.
Part 3 — ``torch.profiler``: the operators with the most self CPU time over two steps of each protocol.

Run as ``python benchmarks/bench_profile.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

import common  # noqa: I001  (sets thread env vars and sys.path before torch/mtlwb load)
import torch

from mtlwb.data.scenes import NUM_CLASSES
from mtlwb.data.views import make_views
from mtlwb.methods import Refined, Step, build_method, forward_step, split_views
from mtlwb.models import MultiTaskNet
from mtlwb.objectives.losses import LossOptions
from mtlwb.objectives.weighting import build_weighting
from mtlwb.tasks import make_tasks

TASKS = ("semantic", "depth", "normal")
SWEEP = "sweeps/benchmarks/nyuv2.yaml"          # the published protocols' options live there, nowhere else
PROTOCOLS = {"supervised": "supervised", "mtpsl reference, 2 views": "mtpsl",
             "jtr reference, 3 views + RandAugment": "jtr"}
PHASES = ("views", "forward", "method losses", "backward", "optimizer")
LOSS_OPTIONS = LossOptions(reduction="batch", normal="dot")


def bf16_supported() -> bool:
    """Native bfloat16 on this CPU (avx512_bf16 / AMX), where bf16 autocast is a speed-up rather than an emulation."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_median(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        c = time.process_time()
        fn()
        times.append(time.process_time() - c)
    return statistics.median(times)


class ProtocolStep:
    """One optimizer step of the trainer's path, timed per phase in CPU seconds (``phases`` accumulates)."""

    def __init__(self, name: str, batch: int, size: tuple[int, int], precision: str = "fp32",
                 split_detached: bool = True, channels_last: bool = False, seed: int = 0) -> None:
        method_name = PROTOCOLS[name]
        options = common.protocol_options(SWEEP).get(method_name, {})
        torch.manual_seed(seed)
        self.tasks = make_tasks(list(TASKS), NUM_CLASSES)
        self.model = MultiTaskNet(self.tasks, "segnet").train()
        self.method = build_method(method_name, self.tasks, self.model.feature_channels, options, LOSS_OPTIONS).train()
        if channels_last:       # as the trainer with channels_last: model, method and images in NHWC
            self.model = self.model.to(memory_format=torch.channels_last)
            self.method = self.method.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.weighting = build_weighting("equal", [t.name for t in self.tasks])
        self.optimizer = torch.optim.Adam([{"params": list(self.model.parameters()), "lr": 1e-4}]
                                          + self.method.parameter_groups(1e-4))
        g = torch.Generator().manual_seed(seed)
        h, w = size
        self.batch = {"image": torch.rand(batch, 3, h, w, generator=g), "index": torch.arange(batch),
                      **common.synthetic_targets(self.tasks, batch, h, w, g)}
        self.labelled = common.label_table(batch, len(self.tasks), "onelabel")
        self.aug = torch.Generator().manual_seed(seed + 1)
        self.precision = precision
        self.split_detached = split_detached
        self.phases: dict[str, list[float]] = {p: [] for p in PHASES}
        self.terms: dict[str, float] = {}

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16" else contextlib.nullcontext()

    def __call__(self, seed: int | None = None) -> None:
        spec, names = self.method.view_spec, [t.name for t in self.tasks]
        clock = time.process_time()

        def lap(phase: str) -> None:
            nonlocal clock
            now = time.process_time()
            self.phases[phase].append(now - clock)
            clock = now

        views = make_views(self.batch, self.tasks, spec, self.aug, normal_mode="bilinear") if spec.active \
            else [self.batch]
        images = torch.cat([v["image"] for v in views])
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        lap("views")
        if seed is not None:
            torch.manual_seed(seed)                                   # the methods' Gumbel draws
        with self._autocast():
            features, refined, preds, bottleneck = forward_step(self.model, self.method, images,
                                                    views=len(views) if self.split_detached else 1)
            preds = {k: v.float() for k, v in preds.items()}
            lap("forward")
            targets = {n: torch.cat([v[n] for v in views]) for n in names}
            step = split_views(Step(images, features, refined, preds, targets, self.labelled,
                                    bottleneck), len(views))
            out = self.method.losses(step)
        active = {n: bool(self.labelled[:, i].any()) for i, n in enumerate(names)}
        loss = self.weighting.combine(out.supervised, active=active) + sum(out.auxiliary.values(), torch.zeros(()))
        lap("method losses")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lap("backward")
        self.optimizer.step()
        lap("optimizer")
        self.terms = {k: float(v.detach()) for k, v in out.all().items()}

    def clear(self) -> None:
        self.phases = {p: [] for p in PHASES}


def _loss_difference(name: str, batch: int, size: tuple[int, int]) -> float:
    """Largest relative difference of a loss term under bf16 autocast from fp32: same weights, batch, views, draws."""
    terms = {}
    for precision in ("fp32", "bf16"):
        step = ProtocolStep(name, batch, size, precision)
        step(seed=7)
        terms[precision] = step.terms
    return max(abs(terms["bf16"][k] - terms["fp32"][k]) / max(abs(terms["fp32"][k]), 1e-12) for k in terms["fp32"])


def phase_rows(batch: int, size: tuple[int, int], repeats: int) -> list[dict]:
    variants = {(name, "fp32"): ProtocolStep(name, batch, size) for name in PROTOCOLS}
    jtr = "jtr reference, 3 views + RandAugment"
    variants[(jtr + " (one graph over all views' heads)", "fp32")] = ProtocolStep(jtr, batch, size,
                                                                                  split_detached=False)
    variants.update({(name, "fp32 channels-last"): ProtocolStep(name, batch, size, channels_last=True)
                     for name in PROTOCOLS})
    if bf16_supported():
        variants.update({(name, "bf16"): ProtocolStep(name, batch, size, "bf16") for name in PROTOCOLS})
    for step in variants.values():
        step()                                       # warm-up: Adam state, allocator
        step.clear()
    for _ in range(max(1, repeats)):                  # round-robin
        for step in variants.values():
            step()
    rows, base = [], {}
    for (name, precision), step in variants.items():
        phases = {p: statistics.median(v) for p, v in step.phases.items()}
        total = sum(phases.values())
        base.setdefault(precision, total)             # supervised comes first in each setting
        rows.append({"part": "phases", "protocol": name, "precision": precision,
                     **{f"{p} ms": 1000 * phases[p] for p in PHASES}, "step ms": 1000 * total,
                     "x sup.": total / base[precision]})
    if bf16_supported():
        for r in rows:
            if r["precision"] == "bf16":      # the trainer's bf16 path: autocast on an NCHW model
                r["max rel. Δloss vs fp32"] = _loss_difference(r["protocol"], batch, size)
    return rows


def floor_rows(batch: int, size: tuple[int, int], repeats: int) -> list[dict]:
    """Backbone + heads forward + backward on 1, 2, 3 views' images; each method's own terms alone."""
    h, w = size
    tasks = make_tasks(list(TASKS), NUM_CLASSES)
    torch.manual_seed(0)
    model = MultiTaskNet(tasks, "segnet").train()
    rows = []
    for views in (1, 2, 3):
        x = torch.rand(views * batch, 3, h, w)

        def backbone(x: torch.Tensor = x) -> None:
            preds, _ = model(x)
            sum(p.mean() for p in preds.values()).backward()
        rows.append({"part": "floors", "what": f"SegNet + heads, forward + backward, {views * batch} images "
                     f"({views} view{'s' if views > 1 else ''})", "ms": 1000 * cpu_median(backbone, repeats)})
    g = torch.Generator().manual_seed(3)
    labelled = common.label_table(batch, len(tasks), "onelabel")

    def one_view() -> Step:
        preds = {}
        for t in tasks:
            p = torch.randn(batch, t.channels, h, w, generator=g)
            preds[t.name] = (torch.nn.functional.normalize(p, dim=1) if t.kind == "normal" else p).requires_grad_()
        return Step(torch.zeros(batch, 3, h, w), torch.zeros(batch, 64, h, w), Refined({}), preds,
                    common.synthetic_targets(tasks, batch, h, w, g), labelled,
                    torch.randn(batch, 512, h // 32, w // 32))
    options = common.protocol_options(SWEEP)
    for name, method_name in PROTOCOLS.items():
        if method_name == "supervised":
            continue
        method = build_method(method_name, tasks, 64, options[method_name], LOSS_OPTIONS).train()
        step = one_view()
        step.views = [one_view() for _ in range(method.view_spec.extra)]

        def terms(method=method, step: Step = step) -> None:
            sum(method.losses(step).auxiliary.values()).backward()
        rows.append({"part": "floors", "what": f"{name}: the method's own terms alone, forward + backward",
                     "ms": 1000 * cpu_median(terms, repeats)})
    return rows


def operator_rows(batch: int, size: tuple[int, int], top: int) -> list[dict]:
    rows = []
    for name in PROTOCOLS:
        step = ProtocolStep(name, batch, size)
        step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
            step()
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        for e in events[:top]:
            rows.append({"part": "operators", "protocol": name, "operator": e.key, "calls": e.count // 2,
                         "self CPU %": 100 * e.self_cpu_time_total / total})
    return rows


def run(quick: bool = False, batch: int | None = None, size: tuple[int, int] | None = None,
        repeats: int | None = None, top: int | None = None) -> list[dict]:
    """Parts 1–3 at batch 4, 64×96 (the like-for-like table's setting); ``quick``: batch 2, 32×64, one repeat."""
    common.pin_threads()
    batch = batch or (2 if quick else 4)
    size = size or ((32, 64) if quick else (64, 96))
    repeats = repeats or (1 if quick else 5)
    return (phase_rows(batch, size, repeats) + floor_rows(batch, size, repeats if quick else 3)
            + operator_rows(batch, size, top or (4 if quick else 8)))


def report(rows: list[dict]) -> str:
    phases = [r for r in rows if r["part"] == "phases"]
    floors = [r for r in rows if r["part"] == "floors"]
    ops = [r for r in rows if r["part"] == "operators"]
    cols = ["protocol", "precision", *[f"{p} ms" for p in PHASES], "step ms", "x sup."]
    if any("max rel. Δloss vs fp32" in r for r in phases):
        cols.append("max rel. Δloss vs fp32")
    lines = ["CPU ms per step (one thread, median), by phase:", "", common.table(phases, cols), "",
             "The floors (CPU ms, one thread):", "", common.table(floors, ["what", "ms"]), "",
             "Top operators by self CPU time (two steps):", "",
             common.table(ops, ["protocol", "operator", "calls", "self CPU %"])]
    return "\n".join(lines)


if __name__ == "__main__":
    common.main(__doc__, run, report)
