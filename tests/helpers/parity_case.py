"""The seeded case on which mtlwb's JTR and MTPSL are compared with a recording of the published code.

Imported by ``tests/test_reference_parity.py`` (which checks mtlwb against the recording in
``tests/fixtures/reference_parity.json``) and by ``tools/record_reference_parity.py`` (which runs the published
modules, from a checkout given on its command line, on this same case and writes that recording). Everything is
derived from ``SEED``: the networks' weights (drawn here in mtlwb's layouts and handed to the published modules
through mtlwb's own checkpoint key maps), three augmented views of a batch of five (predictions, ground truth with
invalid pixels, the SegNet bottleneck), and every Gumbel draw. So the recording holds only numbers that pin the
computation — losses, and gradients sketched by their norm and their projections on seeded random directions —
never weights or code.

The case (NYUv2's tasks and channels, float64): label table [[1,0,0],[0,1,0],[0,0,1],[1,1,0],[0,1,1]] (semantic,
depth, normal), so a segmentation is unlabelled in rows 1, 2 and 4 (row 4's is the source of two MTPSL pairs, one
Gumbel draw each in the published code); ignore pixels (−1), zero depth and zero normals in
different places, so the joint mask of a sample differs from each task's; normals of length 0.6–1 (what the
references' bilinear crop makes); 32 × 64 maps, the smallest the published SegNet layouts take with two positions
at their bottleneck.

Invalid pixels are scattered (15 % per task), not in blocks: a block holds the same encoding at every masked
pixel, the networks' activations tie there, and which of two equal values a max-pool keeps then depends on the
rounding of the convolution (a batch of ten here, of one in the published loop) — the unpooled decoder moves a
value to another position and the losses differ at 1e-4, on both implementations alike. Scattered holes make no
such ties, so the comparison is exact.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtlwb.methods.base import Refined, Step, build_method
from mtlwb.methods.jtr import GumbelDraws
from mtlwb.objectives.losses import LossOptions
from mtlwb.tasks import make_tasks

SEED = 20
CLASSES = 13
CHANNELS = (CLASSES, 1, 3)
TASKS = ("semantic", "depth", "normal")
LABEL_TABLE = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]]
B, H, W = len(LABEL_TABLE), 32, 64
PROBES = 8
INVALID = 0.15      # share of invalid pixels per task, scattered (see the module docstring)
# parameter tensors whose gradients are recorded (mtlwb names; the published names follow from the key maps)
JTR_PARAMS = ("encoder.stages.0.0.0.weight", "encoder.stages.0.0.1.weight", "encoder.stages.4.2.1.bias",
              "decoder.stages.4.1.0.weight", "decoder.head.1.weight", "decoder.head.1.bias")
MTPSL_PARAMS = ("stems.0.0.weight", "stems.2.1.weight", "mapping.stages.0.0.gamma", "mapping.stages.0.0.beta",
                "mapping.stages.2.1.conv.weight", "mapping.stages.4.2.norm.weight", "mapping.stages.4.2.gamma")


def tasks():
    return make_tasks(list(TASKS), CLASSES)


def derive_weights(module: nn.Module, seed: int = SEED) -> None:
    """Every floating entry of ``module``'s state, in sorted key order, from one generator: convs He-normal,
    norm weights / FiLM γ around 1, biases / FiLM β around 0 (not the identity, so each matters)."""
    g = torch.Generator().manual_seed(seed)
    state = module.state_dict()
    with torch.no_grad():
        for name in sorted(state):
            x = state[name]
            if not x.is_floating_point():
                continue
            r = torch.randn(x.shape, generator=g, dtype=torch.float64)
            if x.dim() >= 2 and not name.endswith(("gamma", "beta")):
                value = r * math.sqrt(2.0 / (x[0].numel()))
            elif name.endswith(("gamma", "weight")):
                value = 1.0 + 0.2 * r
            else:
                value = 0.2 * r
            x.copy_(value)


def make_view(g: torch.Generator) -> dict[str, Any]:
    """One augmented view: predictions (leaves), ground truth with invalid pixels, the SegNet bottleneck."""
    seg_logits = 2.0 * torch.randn(B, CLASSES, H, W, generator=g, dtype=torch.float64)
    depth_pred = 0.5 + 4.0 * torch.rand(B, 1, H, W, generator=g, dtype=torch.float64)
    normal_pred = F.normalize(torch.randn(B, 3, H, W, generator=g, dtype=torch.float64), dim=1)
    seg = torch.randint(CLASSES, (B, H, W), generator=g)
    depth = 0.3 + 5.0 * torch.rand(B, 1, H, W, generator=g, dtype=torch.float64)
    length = 0.6 + 0.4 * torch.rand(B, 1, H, W, generator=g, dtype=torch.float64)
    normal = F.normalize(torch.randn(B, 3, H, W, generator=g, dtype=torch.float64), dim=1) * length
    seg[torch.rand(B, H, W, generator=g, dtype=torch.float64) < INVALID] = -1
    depth[torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) < INVALID] = 0.0
    normal[(torch.rand(B, 1, H, W, generator=g, dtype=torch.float64) < INVALID).expand(-1, 3, -1, -1)] = 0.0
    bottleneck = torch.randn(B, 512, H // 32, W // 32, generator=g, dtype=torch.float64)
    return {"predictions": {"semantic": seg_logits.requires_grad_(), "depth": depth_pred.requires_grad_(),
                            "normal": normal_pred.requires_grad_()},
            "targets": {"semantic": seg, "depth": depth, "normal": normal}, "bottleneck": bottleneck}


def gumbel(g: torch.Generator, n: int) -> torch.Tensor:
    """[n, C, H, W] standard Gumbel noise, −log(−log u)."""
    u = torch.rand(n, CLASSES, H, W, generator=g, dtype=torch.float64).clamp(1e-12, 1.0 - 1e-12)
    return -torch.log(-torch.log(u))


def mtpsl_triples() -> list[tuple[int, int, int]]:
    """(sample, source s, target t) in the published loop's order: samples, then unlabelled s, then labelled t."""
    return [(b, s, t) for b, row in enumerate(LABEL_TABLE) for s in range(3) if not row[s]
            for t in range(3) if row[t] and s != t]


def make_case(seed: int = SEED) -> dict[str, Any]:
    """Views 0–2 and the Gumbel draws (JTR: the model side's Ŷ and Y, the joint side's Y and both reconstruction
    targets, [B, C, H, W] each; MTPSL: one per triple, [P, C, H, W])."""
    g = torch.Generator().manual_seed(seed)
    views = [make_view(g) for _ in range(3)]
    jtr = {k: gumbel(g, B) for k in ("model_y_hat", "model_y", "joint_y_hat", "joint_y", "recon_y_hat", "recon_y")}
    return {"views": views, "jtr_noise": jtr, "mtpsl_noise": gumbel(g, len(mtpsl_triples()))}


def step_of(case: dict[str, Any], views: list[int]) -> Step:
    """A Step of view ``views[0]`` whose further views are ``views[1:]`` (the trainer's ``Step.views``)."""
    labelled = torch.tensor(LABEL_TABLE)

    def one(v: dict[str, Any]) -> Step:
        images = torch.zeros(B, 3, H, W, dtype=torch.float64)
        return Step(images, v["bottleneck"], Refined({}), v["predictions"], v["targets"], labelled, v["bottleneck"])
    first = one(case["views"][views[0]])
    first.views = [one(case["views"][i]) for i in views[1:]]
    return first


def build(name: str, options: dict[str, Any] | None = None):
    """The method with ``arch: reference`` in float64 with the case's weights (``options`` on top)."""
    method = build_method(name, tasks(), 64, {"arch": "reference", **(options or {})}, LossOptions()).double()
    derive_weights(method)
    return method


def _grads(case: dict[str, Any], method: nn.Module, views: int, params: tuple[str, ...]) -> dict[str, torch.Tensor]:
    named = dict(method.named_parameters())
    out = {}
    for v in range(views):
        for t in TASKS:
            p = case["views"][v]["predictions"][t]
            out[f"view{v}.{t}"] = torch.zeros_like(p) if p.grad is None else p.grad.clone()
    for k in params:
        out[f"param.{k}"] = torch.zeros_like(named[k]) if named[k].grad is None else named[k].grad.clone()
    return out


def _zero(case: dict[str, Any], method: nn.Module) -> None:
    for v in case["views"]:
        for p in v["predictions"].values():
            p.grad = None
    method.zero_grad(set_to_none=True)


def run_jtr(case: dict[str, Any], options: dict[str, Any] | None = None) -> dict[str, Any]:
    """mtlwb's JTR (``arch: reference``, three views, ``options`` over ``fidelity: published_code``) on the case:
    {"losses": {name: float}, "grads": {name: tensor}} named as the recording."""
    method = build("jtr", {"views": 3, "fidelity": "published_code", **(options or {})})
    _zero(case, method)
    n = {k: {"semantic": v} for k, v in case["jtr_noise"].items()}
    if method.options.gumbel_draws == "independent":
        model = GumbelDraws(n["model_y_hat"], n["model_y"])
        joint = GumbelDraws(n["joint_y_hat"], n["joint_y"], n["recon_y_hat"], n["recon_y"])
    else:                    # one draw per side, for Ŷ, Y and the targets alike
        model, joint = GumbelDraws(n["model_y_hat"]), GumbelDraws(n["joint_y_hat"])
    out = method.losses(step_of(case, [0, 1, 2]), model, joint)
    losses = {f"supervised.{t}": out.supervised[t] for t in TASKS}
    losses.update({"jtr.distance": out.auxiliary["jtr_model"] + out.auxiliary["jtr_joint"],
                   "jtr.recon": out.auxiliary["jtr_recon"]})
    losses["total"] = sum(out.supervised.values()) + sum(out.auxiliary.values())
    losses["total"].backward()
    return {"losses": {k: float(v) for k, v in losses.items()}, "grads": _grads(case, method, 3, JTR_PARAMS)}


def run_mtpsl(case: dict[str, Any], options: dict[str, Any] | None = None) -> dict[str, Any]:
    """mtlwb's MTPSL (``arch: reference``, two views, ``options`` over ``fidelity: published_code``) on the case."""
    method = build("mtpsl", {"views": 2, "fidelity": "published_code", **(options or {})})
    _zero(case, method)
    noise = case["mtpsl_noise"]                                    # one draw per triple, as the published code
    if not method.options.gumbel_per_pair:                         # one per sample: its first triple's
        first = {b: k for k, (b, _, _) in reversed(list(enumerate(mtpsl_triples())))}
        noise = torch.stack([noise[first.get(b, 0)] for b in range(B)])
    out = method.losses(step_of(case, [0, 1]), {"semantic": noise})
    losses = {f"supervised.{t}": out.supervised[t] for t in TASKS}
    losses["mtpsl"] = out.auxiliary["mtpsl"]
    losses["total"] = sum(out.supervised.values()) + out.auxiliary["mtpsl"]
    losses["total"].backward()
    return {"losses": {k: float(v) for k, v in losses.items()}, "grads": _grads(case, method, 2, MTPSL_PARAMS)}


def sketch(grad: torch.Tensor, name: str, seed: int = SEED) -> dict[str, Any]:
    """A gradient pinned in a few numbers: its norm and its inner products with ``PROBES`` seeded Gaussian
    directions (a different gradient matches them all only by accident)."""
    g = torch.Generator().manual_seed(seed * 1000 + sum(map(ord, name)))
    probes = [float((torch.randn(grad.shape, generator=g, dtype=torch.float64) * grad).sum()) for _ in range(PROBES)]
    return {"shape": list(grad.shape), "norm": float(grad.norm()), "probes": probes}
