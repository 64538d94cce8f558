"""JTR: the batched formulation vs the ref. code's per-sample loop — speed and gradient agreement.

``per_sample_reference_losses`` loops over samples at batch size 1, deep-copies the joint network per sample for
the model-side term (the ref. code's way to freeze it) and encodes Ŷ and Y twice each (frozen copy, trained net);
``JTR.losses`` encodes the whole batch once (``two_routes`` splits the backward into the frozen and the trained
route) and decodes it at once. Timed on one thread and on all cores (batch-1 convolutions parallelize worse).
Same inputs and the same Gumbel draw (batch 8,
64×80, semantic/depth/normal, onelabel-like labels plus one fully labelled sample), forward + backward of the JTR
terms (the batched side is ``jtr_terms`` averaged over the batch — ``losses`` minus the supervised terms, which
the reference does not compute). Gradients are compared on the predictions and the joint network's parameters, in
float32 (the two sum in different orders) and float64 (where only the math is compared).
Targets: speed-up ≥ 3×, max |Δgrad| ≤ 1e-5.

Run as ``python benchmarks/bench_jtr_batched.py [--quick]``.
"""

from __future__ import annotations

import os

import common  # noqa: I001  (sets thread env vars and sys.path before torch/mtlwb load)
import torch

from mtlwb.data.scenes import NUM_CLASSES
from mtlwb.methods import Refined, Step
from mtlwb.methods.jtr import JTR, JTROptions, per_sample_reference_losses
from mtlwb.tasks import make_tasks

HEIGHT, WIDTH, FEATURE_CHANNELS, BATCH = 64, 80, 128, 8


def _setup(dtype: torch.dtype, options: dict, seed: int = 0) -> tuple[JTR, Step, dict, list[torch.Tensor]]:
    torch.manual_seed(seed)
    tasks = make_tasks(["semantic", "depth", "normal"], NUM_CLASSES)
    method = JTR(tasks, FEATURE_CHANNELS, JTROptions(**options)).to(dtype)
    g = torch.Generator().manual_seed(seed)
    targets = {k: v.to(dtype) if v.is_floating_point() else v
               for k, v in common.synthetic_targets(tasks, BATCH, HEIGHT, WIDTH, g).items()}
    preds = {}
    for t in tasks:
        p = torch.randn(BATCH, t.channels, HEIGHT, WIDTH, generator=g, dtype=dtype)
        preds[t.name] = (torch.nn.functional.normalize(p, dim=1) if t.kind == "normal" else p).requires_grad_()
    labelled = common.label_table(BATCH, len(tasks), "onelabel")
    labelled[-1] = 1
    step = Step(torch.zeros(BATCH, 3, HEIGHT, WIDTH, dtype=dtype), torch.zeros(BATCH, FEATURE_CHANNELS, 1, 1,
                dtype=dtype), Refined({}), preds, targets, labelled)
    noise = method.draw_noise(step, torch.Generator().manual_seed(seed + 1))
    return method, step, noise, list(preds.values()) + list(method.parameters())


def _grads(method: JTR, step: Step, noise: dict, leaves: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
    for p in leaves:
        p.grad = None
    if batched:   # what JTR.losses adds to the supervised terms: the batch means of jtr_terms
        terms = {k: v.mean() for k, v in method.jtr_terms(*method.views(step, noise)).items()}
    else:
        terms = per_sample_reference_losses(method, step, noise)
    sum(terms.values()).backward()
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in leaves]


def _max_grad_diff(dtype: torch.dtype, options: dict) -> float:
    method, step, noise, leaves = _setup(dtype, options)
    a = _grads(method, step, noise, leaves, batched=True)
    b = _grads(method, step, noise, leaves, batched=False)
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def run(quick: bool = False) -> list[dict]:
    repeats = 2 if quick else 7
    variants = [("default (width 16, input_stride 2)", {}, 1),
                ("default (width 16, input_stride 2)", {}, os.cpu_count() or 1)]
    if not quick:
        variants.append(("ref. layout (width 32, input_stride 1)", {"width": 32, "input_stride": 1}, 1))
    rows = []
    for name, options, threads in variants:
        torch.set_num_threads(threads)
        method, step, noise, leaves = _setup(torch.float32, options)
        seconds = common.interleaved_medians({
            "batched": lambda m=method, s=step, n=noise, lv=leaves: _grads(m, s, n, lv, batched=True),
            "per-sample": lambda m=method, s=step, n=noise, lv=leaves: _grads(m, s, n, lv, batched=False),
        }, repeats, warmup=1)
        rows.append({"networks": name, "threads": threads, "batch": BATCH,
                     "per-sample ms": 1000 * seconds["per-sample"],
                     "batched ms": 1000 * seconds["batched"], "speed-up": seconds["per-sample"] / seconds["batched"],
                     "max abs Δgrad fp32": _max_grad_diff(torch.float32, options),
                     "max abs Δgrad fp64": _max_grad_diff(torch.float64, options)})
    common.pin_threads()     # the next benchmark in run_all runs on one thread again
    return rows


def report(rows: list[dict]) -> str:
    lines = [common.table(rows), ""]
    for r in rows:
        name = f"{r['networks']}, {r['threads']} thread(s)"
        lines.append(common.check(f"{name}: speed-up ≥ 3×", r["speed-up"] >= 3, f"{r['speed-up']:.2f}×"))
        lines.append(common.check(f"{name}: max |Δgrad| ≤ 1e-5 (fp64)", r["max abs Δgrad fp64"] <= 1e-5,
                                  f"{r['max abs Δgrad fp64']:.1e} (fp32: {r['max abs Δgrad fp32']:.1e})"))
    return "\n".join(lines)


if __name__ == "__main__":
    common.main(__doc__, run, report)
