"""The published layouts and protocols: cost of a training step, and JTR batched vs the ref. code's per-sample loop.

Part 1 — one full optimizer step (SegNet backbone + heads, the trainer's path: views made by ``data/views.py``, one
forward pass on the concatenated views, ``split_views``, method losses, backward, Adam) on a synthetic batch with
onelabel labels, at batch 4 and 64×96 on CPU (288×384 on CUDA when present): supervised; MTPSL and JTR compact
(one view); MTPSL reference (``arch="reference"``: the published Mapfns, 2 views, FiLM optimizer) and JTR reference
(the published SegNet_JTR, 3 views, photometric RandAugment). Peak memory as in ``bench_training``.

Part 2 — the JTR terms of the reference layout with three views: ``JTR.losses`` (batched, ``two_routes``) vs
``per_sample_reference_losses`` (a loop over samples at batch size 1 with the whole 25 M-parameter joint network
deep-copied per sample to freeze it, as the ref. code does), forward + backward, same inputs and Gumbel draws;
losses and gradients compared; with one view (both sides read it: E runs once for both routes) and with three
(the model side reads view 1, the joint side view 2: E must run on each, so the batched form saves only the deep
copies, the batch-1 overhead and the frozen route's weight gradients). Target: batched ≥ 3× at batch 4 on CPU,
equal losses (max |Δ| ≤ 1e-4 in fp32).

Run as ``python benchmarks/bench_reference.py [--quick]``.
"""

from __future__ import annotations

from collections.abc import Callable

import common  # noqa: I001  (sets thread env vars and sys.path before torch/mtlwb load)
import torch

from mtlwb.data.scenes import NUM_CLASSES
from mtlwb.data.views import make_views
from mtlwb.methods import Refined, Step, build_method, forward_step, split_views
from mtlwb.methods.jtr import per_sample_reference_losses
from mtlwb.models import MultiTaskNet
from mtlwb.objectives.weighting import build_weighting
from mtlwb.tasks import make_tasks

TASKS = ("semantic", "depth", "normal")
VARIANTS = (
    ("supervised", "supervised", {}),
    ("mtpsl compact, 1 view", "mtpsl", {}),
    ("mtpsl reference, 2 views", "mtpsl", {"arch": "reference", "views": 2, "film_lr": 1e-3, "film_lr_step": 30}),
    ("jtr compact, 1 view", "jtr", {}),
    ("jtr reference, 3 views + RandAugment", "jtr", {"arch": "reference", "views": 3, "photometric": "randaugment"}),
)


def training_step(model, method, tasks, optimizer, labelled: torch.Tensor, views: Callable[[], list[dict]],
                  device: str = "cpu") -> Callable[[], float]:
    """One optimizer step of the trainer's path on the views ``views()`` returns (made anew per step, or fixed):
    one forward pass on the concatenated views, ``split_views``, method losses, equal weighting, backward, Adam."""
    weighting = build_weighting("equal", [t.name for t in tasks])
    active = {t.name: bool(labelled[:, i].any()) for i, t in enumerate(tasks)}
    model.train()
    method.train()

    def step() -> float:
        vs = [{k: v.to(device) for k, v in view.items()} for view in views()]
        images = torch.cat([v["image"] for v in vs])
        features, refined, preds, bottleneck = forward_step(model, method, images)
        targets = {t.name: torch.cat([v[t.name] for v in vs]) for t in tasks}
        s = split_views(Step(images, features, refined, preds, targets, labelled, bottleneck), len(vs))
        out = method.losses(s)
        loss = weighting.combine(out.supervised, active=active) + sum(out.auxiliary.values(), torch.zeros(()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def make_step(method_name: str, options: dict, batch: int, size: tuple[int, int], device: str, seed: int = 0):
    torch.manual_seed(seed)
    tasks = make_tasks(list(TASKS), NUM_CLASSES)
    model = MultiTaskNet(tasks, "segnet").to(device)
    method = build_method(method_name, tasks, model.feature_channels, options).to(device)
    optimizer = torch.optim.Adam([{"params": list(model.parameters()), "lr": 1e-4}] + method.parameter_groups(1e-4))
    g = torch.Generator().manual_seed(seed)
    h, w = size
    batch_data = {"image": torch.rand(batch, 3, h, w, generator=g), "index": torch.arange(batch),
                  **common.synthetic_targets(tasks, batch, h, w, g)}
    labelled = common.label_table(batch, len(tasks), "onelabel", device)
    aug = torch.Generator().manual_seed(seed + 1)
    spec = method.view_spec

    def views() -> list[dict]:
        return make_views(batch_data, tasks, spec, aug) if spec.active else [batch_data]

    n_aux = sum(p.numel() for p in method.parameters())
    return training_step(model, method, tasks, optimizer, labelled, views, device), n_aux


def step_rows(device: str, size: tuple[int, int], batch: int, repeats: int) -> list[dict]:
    steps = {name: make_step(m, o, batch, size, device) for name, m, o in VARIANTS}
    memory = {}
    for name, (step, _) in steps.items():
        step()                                    # warm-up: Adam state, autograd buffers
        with common.PeakMemory(device) as mem:
            step()
        memory[name] = mem
    seconds = common.interleaved_medians({k: v[0] for k, v in steps.items()}, repeats, warmup=0)
    base = seconds["supervised"]
    return [{"part": "step", "device": device, "size": f"{size[0]}x{size[1]}", "batch": batch, "variant": name,
             "aux. params": steps[name][1], "ms/step": 1000 * seconds[name], "x sup.": seconds[name] / base,
             "peak MiB": memory[name].peak, "step MiB": memory[name].delta} for name in steps]


def _jtr_reference_setup(batch: int, size: tuple[int, int], dtype: torch.dtype, views: int, seed: int = 0):
    torch.manual_seed(seed)
    tasks = make_tasks(list(TASKS), NUM_CLASSES)
    method = build_method("jtr", tasks, 64, {"arch": "reference", "views": views}).to(dtype)
    g = torch.Generator().manual_seed(seed)
    h, w = size
    labelled = common.label_table(batch, len(tasks), "onelabel")

    def one_view() -> Step:
        preds = {}
        for t in tasks:
            p = torch.randn(batch, t.channels, h, w, generator=g, dtype=dtype)
            preds[t.name] = (torch.nn.functional.normalize(p, dim=1) if t.kind == "normal" else p).requires_grad_()
        targets = {k: v.to(dtype) if v.is_floating_point() else v
                   for k, v in common.synthetic_targets(tasks, batch, h, w, g).items()}
        return Step(torch.zeros(batch, 3, h, w, dtype=dtype), torch.zeros(batch, 64, h, w, dtype=dtype),
                    Refined({}), preds, targets, labelled)

    step = one_view()
    step.views = [one_view(), one_view()] if views == 3 else []
    model_view, joint_view = (step.views[0], step.views[1]) if views == 3 else (step, step)
    noise = method.draw_noise(model_view, torch.Generator().manual_seed(seed + 1))
    joint_noise = method.draw_noise(joint_view, torch.Generator().manual_seed(seed + 2)) if views == 3 else None
    leaves = [p for v in (step.views or [step]) for p in v.predictions.values()] + list(method.parameters())
    return method, step, noise, joint_noise, leaves


def _jtr_pass(method, step, noise, joint_noise, leaves, batched: bool) -> tuple[dict, list[torch.Tensor]]:
    for p in leaves:
        p.grad = None
    terms = (method.losses(step, noise, joint_noise).auxiliary if batched
             else per_sample_reference_losses(method, step, noise, joint_noise))
    sum(terms.values()).backward()
    return ({k: float(v.detach()) for k, v in terms.items()},
            [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in leaves])


def jtr_rows(batch: int, size: tuple[int, int], repeats: int, views: int) -> list[dict]:
    method, step, noise, joint_noise, leaves = _jtr_reference_setup(batch, size, torch.float32, views)
    seconds = common.interleaved_medians({
        "batched": lambda: _jtr_pass(method, step, noise, joint_noise, leaves, True),
        "per-sample": lambda: _jtr_pass(method, step, noise, joint_noise, leaves, False)}, repeats, warmup=1)
    with common.PeakMemory() as mem_b:
        loss_b, grad_b = _jtr_pass(method, step, noise, joint_noise, leaves, True)
    with common.PeakMemory() as mem_p:
        loss_p, grad_p = _jtr_pass(method, step, noise, joint_noise, leaves, False)
    return [{"part": "jtr terms", "device": "cpu", "size": f"{size[0]}x{size[1]}", "batch": batch,
             "variant": f"jtr reference, {views} view{'s' if views > 1 else ''}",
             "per-sample ms": 1000 * seconds["per-sample"],
             "batched ms": 1000 * seconds["batched"], "speed-up": seconds["per-sample"] / seconds["batched"],
             "per-sample step MiB": mem_p.delta, "batched step MiB": mem_b.delta,
             "max abs Δloss": max(abs(loss_b[k] - loss_p[k]) for k in loss_b),
             "max abs Δgrad": max(float((a - b).abs().max()) for a, b in zip(grad_b, grad_p))}]


def run(quick: bool = False) -> list[dict]:
    repeats = 2 if quick else 5
    rows = step_rows("cpu", (64, 96), 4, repeats)
    if torch.cuda.is_available():
        rows += step_rows("cuda", (288, 384), 4, repeats)
    rows += jtr_rows(4, (64, 96), repeats, views=1) + jtr_rows(4, (64, 96), repeats, views=3)
    return rows


def report(rows: list[dict]) -> str:
    steps = [r for r in rows if r["part"] == "step"]
    jtr = [r for r in rows if r["part"] == "jtr terms"]
    cols = ["device", "size", "batch", "variant", "aux. params", "ms/step", "x sup.", "peak MiB", "step MiB"]
    lines = [common.table(steps, cols), "", common.table(jtr, [c for c in jtr[0] if c != "part"]), ""]
    for r in jtr:
        lines.append(common.check(f"{r['variant']}, batch {r['batch']}: batched ≥ 3× per-sample", r["speed-up"] >= 3,
                                  f"{r['speed-up']:.2f}×"))
        lines.append(common.check("equal losses (max |Δ| ≤ 1e-4, fp32)", r["max abs Δloss"] <= 1e-4,
                                  f"{r['max abs Δloss']:.1e}; max |Δgrad| {r['max abs Δgrad']:.1e}"))
    return "\n".join(lines)


if __name__ == "__main__":
    common.main(__doc__, run, report)
