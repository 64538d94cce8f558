"""Joint-task regularization in one learned space for all tasks (JTR).

Kento Nishi, Junsik Kim, Wanhua Li & Hanspeter Pfister, "Joint-Task Regularization for Partially Labeled
Multi-Task Learning", CVPR 2024, arXiv 2404.01976 (ref. code KentoNishi/JTR-CVPR-2024).

    Ŷ = [enc(ŷ_1), …, enc(ŷ_T)] ⊙ m          Y = [enc(y_t) if t labelled else enc(ŷ_t)]_t ⊙ m
    m = ∩ valid masks of the sample's labelled tasks;   E, D: one encoder/decoder over Σ C_t channels
    L = L_sup + λ_m d(E_sg(Ŷ'), E_sg(Y')) + λ_j d(E(sg Ŷ), E(sg Y)) + λ_r Σ_{X∈{Y,Ŷ}} rec(D(E(sg X)), sg X)

d = 1 − cos over channels, mean over positions. Gradient routing (as in the ref. code): the model-side term runs E
with frozen (detached) weights, and Ŷ' / Y' hold the *labelled* tasks' predictions detached — so it only moves the
predictions of unlabelled tasks (through both Ŷ' and Y', as in the ref.; ``detach_target`` stops the Y' path).
The joint-side terms see detached inputs and train only E, D. Both sides encode the same values, so the batch
[Ŷ'; Y'] goes through E once and ``two_routes`` splits the backward — the model-side gradient reaches only the
inputs, the joint-side gradient only E's weights — instead of the ref.'s per-sample deep copy of the joint network
and second encoder pass; one backward for everything. E uses per-sample, per-channel normalization (the ref.'s
BatchNorm at batch size 1), so the batched terms equal the per-sample ones exactly (``per_sample_reference_losses``).

Normalization: the ref. sums per-sample terms and divides by the batch size; we average over samples — the same.
Views: ``views=3, photometric="randaugment"`` is the ref.'s protocol — the model runs once on three augmented views
of each batch (views 1 and 2 further scale-crops of view 0, a photometric RandAugment on each image), the supervised
losses read view 0, the model-side distance view 1, the joint network's distance and reconstruction view 2 (E then
runs twice). With ``views=1`` (default, cheaper) both sides read one view and E runs once.
Differences from the ref.: with one view, Ŷ and Y share one Gumbel draw and one encoding for both terms; masks
multiply the encodings (the ref. masks depth before Φ and normals before (n+1)/2); reconstruction targets are
exactly the detached inputs (the ref. redraws Gumbel noise, re-applies Φ to Ŷ's depth and compares Y's normals in
[−1, 1]).

Image-level tasks (classification, regression; ``image_level_encoding``, see ``encodings.py``): ``"broadcast"``
(default) puts each one in Ŷ and Y as a C_t-channel map of the image size, constant over positions — the softmax
or Gumbel one-hot of the logits (``seg_encoding`` applies to classification as to segmentation) or Φ((y − loc) /
scale) — so E, D and both distances need no second branch. Its reconstruction term is that of a dense task on the
constant map (BCE summed over classes / |Φ-error|, mean over the joint mask's positions), i.e. the error of
reconstructing the one value everywhere. Its valid mask is the sample's (an undefined label masks every position,
as an ignore pixel masks one). ``"none"`` keeps image-level tasks out of Ŷ, Y and the mask: supervised loss only.

Prior knowledge of task relations (``ExperimentConfig.task_prior``, P [T, T], not in the paper): with
``prior_weighting``, task t's channels of Ŷ and Y are multiplied by w_t = m_t / max_s m_s before E (both sides, both
terms), m_t = the mean prior strength between t and the other tasks (P and Pᵀ averaged); D still reconstructs the
unweighted encodings, task t's reconstruction error weighted by w_t. Why: E then measures agreement mostly on the
tasks the prior calls related, and a task the prior relates to none (w_t = 0) leaves the joint space (its prediction
gets no JTR gradient); dividing by the max keeps the most related task at its usual scale. Without a prior, or with
``prior_weighting`` false, nothing changes.

Cost (CPU default): E and D mirror the backbone's profile — stride-2 convs instead of full-resolution conv + max-pool,
the decoder's last block at 1/2 resolution with its logits upsampled to the input size, width 16 —
so the step costs ~2× the supervised one instead of ~7–9×. ``input_stride=1, width=32`` restores the former
full-resolution networks exactly (same losses and gradient routing either way).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.views import PHOTOMETRIC, ViewSpec
from ..ops import channel_cosine, channel_normalize
from ..priors import related_strength, restricted
from .arch import check_arch
from .base import LossTerms, Method, Step, register, step_rows
from .encodings import (
    DEPTH_MU,
    DEPTH_SIGMA,
    IMAGE_LEVEL_ENCODINGS,
    SEG_ENCODINGS,
    clean_target,
    encode_label,
    encode_prediction,
    gumbel_noise,
    joint_task_indices,
    joint_valid_mask,
)
from .jtr_segnet import reference_joint_network

STRIDES = (1, 2)


def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """conv-norm-ReLU; GroupNorm(c, c) = BatchNorm at batch size 1 in training mode (ref.), per sample."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(cout, cout), nn.ReLU())


class JointEncoder(nn.Module):
    """[N, ΣC_t, H, W] → code [N, code_channels, H/8, W/8]: three blocks that each halve the resolution, then one.

    ``input_stride`` 1 is the ref.'s layout (stride-1 convs, each followed by 2×2 max-pooling, the first block at
    full resolution); 2 halves with stride-2 convs instead, like the backbone's stem, so no conv runs at full
    resolution and no max-pool runs at all (NCHW max-pooling alone cost ~20 ms per call on CPU). Same depth,
    widths and code resolution either way.
    """

    def __init__(self, in_channels: int, width: int, code_channels: int, input_stride: int = 2) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width]
        self.pool = input_stride == 1
        stride = 1 if self.pool else 2
        self.blocks = nn.ModuleList([block(a, b, stride) for a, b in zip(chans[:-1], chans[1:])])
        self.out = block(chans[-1], code_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = F.max_pool2d(b(x), 2) if self.pool else b(x)
        return self.out(x)


class JointDecoder(nn.Module):
    """code [N, code_channels, h, w] → reconstruction logits [N, ΣC_t, H, W].

    Mirrors the encoder: blocks at 1/8, 1/4, 1/2 resolution with ×2 bilinear upsampling between them, and a last
    block at 1/``output_stride``. With ``output_stride`` 2 the logits of that block are upsampled bilinearly to
    (H, W), so the loss still compares against the full-resolution inputs under the full-resolution mask; 1 is
    the ref. (last block at full resolution).
    """

    def __init__(self, out_channels: int, width: int, code_channels: int, output_stride: int = 2) -> None:
        super().__init__()
        chans = [code_channels, 4 * width, 2 * width, width]
        self.blocks = nn.ModuleList([block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.out = nn.Sequential(block(width, width), nn.Conv2d(width, out_channels, 1))
        self.output_stride = output_stride

    def forward(self, code: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = code
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i + 1 < len(self.blocks) or self.output_stride == 1:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if self.output_stride == 1:
            return self.out(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=False)


class _TwoRoutes(torch.autograd.Function):
    """y = module(x) computed once, returned twice: the first copy's gradient goes to x only (weights frozen), the
    second's to the weights only (x detached). Equals module-with-detached-weights(x) and module(x.detach())."""

    @staticmethod
    def forward(ctx, module: nn.Module, x: torch.Tensor, *weights: torch.Tensor):
        ctx.set_materialize_grads(False)     # an unused route stays None: no zero gradients on its side
        ctx.x = x.detach().requires_grad_()
        with torch.enable_grad():
            ctx.y = module(ctx.x)
        ctx.weights = weights
        return ctx.y.detach(), ctx.y.detach().clone()

    @staticmethod
    def backward(ctx, grad_for_x: torch.Tensor | None, grad_for_weights: torch.Tensor | None):
        grad_x = None
        if grad_for_x is not None and ctx.needs_input_grad[1]:
            grad_x, = torch.autograd.grad(ctx.y, ctx.x, grad_for_x, retain_graph=True)
        grad_w = [None] * len(ctx.weights)
        if grad_for_weights is not None:
            grad_w = torch.autograd.grad(ctx.y, ctx.weights, grad_for_weights, allow_unused=True)
        del ctx.x, ctx.y, ctx.weights
        return (None, grad_x, *grad_w)


def two_routes(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(module(x) for gradients into x, module(x) for gradients into module's weights) from one forward pass."""
    if not torch.is_grad_enabled():
        y = module(x)
        return y, y
    return _TwoRoutes.apply(module, x, *module.parameters())


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, C, h, w] × 2 → [N]: 1 − cos over channels, mean over positions."""
    return (1.0 - channel_cosine(a, b, eps=1e-12)).flatten(1).mean(dim=1)


def reconstruction_loss(tasks, recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        targets: str = "paper", is_y_hat: bool = False, mu: float = DEPTH_MU,
                        sigma: float = DEPTH_SIGMA, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample [N]: Σ_t w_t · mean over valid pixels of the task's reconstruction error (target = encoded input;
    an image-level task's is its constant map, so its term is the error of reconstructing that value everywhere;
    ``weights`` [T], default all 1).

    ``targets="reference_code"`` reproduces two quirks of the JTR code's reconstruction targets for Ŷ (the
    prediction stack): its depth target is Φ applied once more to the already Φ-encoded prediction, and its normal
    target stays in the encoded [0, 1] range (compared unnormalized with the unit reconstruction) where Y's normals
    are compared in [−1, 1]. ``"paper"`` (default) compares every input with exactly what went in.
    """
    total = recon.new_zeros(recon.shape[0])
    denom = mask.flatten(1).sum(dim=1).clamp_min(1.0)
    widths = [t.channels for t in tasks]
    quirks = targets == "reference_code" and is_y_hat
    for k, (t, r, y) in enumerate(zip(tasks, recon.split(widths, dim=1), target.split(widths, dim=1))):
        if weights is not None and weights[k] == 0:
            continue
        if t.kind in ("segmentation", "edge", "classification"):
            err = F.binary_cross_entropy_with_logits(r, y, reduction="none").sum(dim=1, keepdim=True)
        elif t.kind == "depth":
            goal = torch.special.ndtr((y - mu) / sigma) if quirks else y
            err = (torch.sigmoid(r) - goal).abs()
        elif t.kind == "regression":    # Φ-encoded values in (0, 1), constant maps: mean over the task's values
            err = (torch.sigmoid(r) - y).abs().mean(dim=1, keepdim=True)
        elif quirks:  # normals against the [0, 1] encoding, as the ref. code does for Ŷ
            err = 1.0 - (channel_normalize(r, eps=1e-8) * y).sum(dim=1, keepdim=True)
        else:  # normals: compare directions in [-1, 1]
            err = 1.0 - channel_cosine(r, 2.0 * y - 1.0, eps=1e-8).unsqueeze(1)
        term = (err * mask).flatten(1).sum(dim=1) / denom
        total = total + (term if weights is None else weights[k] * term)
    return total


@dataclass
class JTROptions:
    model_weight: float = 4.0      # ref. dist_mtl_weight
    joint_weight: float = 8.0      # ref. dist_mtl_weight × recon_weight (joint-side distance)
    recon_weight: float = 2.0      # ref. recon_weight
    reconstruction: bool = True
    seg_encoding: str = "hard"     # straight-through Gumbel one-hot; "soft" = softmax (deterministic)
    gumbel_tau: float = 1.0
    depth_mu: float = DEPTH_MU
    depth_sigma: float = DEPTH_SIGMA
    width: int = 16                # ref. SegNet 64 → 512; small for CPU (was 32)
    input_stride: int = 2          # 2: stride-2 convs, recon. at 1/2 then upsampled; 1: ref. layout (see nets)
    detach_target: bool = False    # ref.: False (unlabelled predictions get gradient through Y as well)
    views: int = 1                 # ref. 3: view 0 supervised, view 1 model side, view 2 joint network
    photometric: str = "none"      # ref. "randaugment": photometric RandAugment on every view (data/randaugment.py)
    recon_targets: str = "paper"   # "reference_code": Ŷ's depth target Φ(Φ(d)), Ŷ's normals compared in [0, 1]
    arch: str = "compact"          # "reference": the published SegNet_JTR layout (jtr_segnet.py); width and
    #                                input_stride then stay at their defaults (they shape "compact")
    image_level_encoding: str = "broadcast"   # image-level tasks as constant maps in Ŷ, Y; "none": left out
    prior_weighting: bool = False  # with a task_prior: task t's channels in the joint space × w_t (see header)

    def __post_init__(self) -> None:
        if self.image_level_encoding not in IMAGE_LEVEL_ENCODINGS:
            raise ValueError(f"jtr.image_level_encoding={self.image_level_encoding!r}: allowed {IMAGE_LEVEL_ENCODINGS}")
        for name in ("model_weight", "joint_weight", "recon_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"jtr.{name}={getattr(self, name)}: must be >= 0")
        if self.seg_encoding not in SEG_ENCODINGS:
            raise ValueError(f"jtr.seg_encoding={self.seg_encoding!r}: allowed {SEG_ENCODINGS}")
        if self.gumbel_tau <= 0:
            raise ValueError(f"jtr.gumbel_tau={self.gumbel_tau}: must be > 0")
        if self.depth_sigma <= 0:
            raise ValueError(f"jtr.depth_sigma={self.depth_sigma}: must be > 0")
        if self.width < 1:
            raise ValueError(f"jtr.width={self.width}: must be >= 1")
        if self.views not in (1, 3):
            raise ValueError(f"jtr.views={self.views}: allowed 1 (one view) or 3 (ref.: supervised / model / joint)")
        if self.recon_targets not in ("paper", "reference_code"):
            raise ValueError(f"jtr.recon_targets={self.recon_targets!r}: allowed 'paper', 'reference_code'")
        if self.photometric not in PHOTOMETRIC:
            raise ValueError(f"jtr.photometric={self.photometric!r}: allowed {PHOTOMETRIC}")
        if self.input_stride not in STRIDES:
            raise ValueError(f"jtr.input_stride={self.input_stride}: allowed {STRIDES}")
        check_arch("jtr", self, {"width": 16, "input_stride": 2})
        if not isinstance(self.prior_weighting, bool):
            raise ValueError(f"jtr.prior_weighting={self.prior_weighting!r}: must be true or false")


def prior_task_weights(prior: torch.Tensor) -> torch.Tensor:
    """P [T, T] -> w [T] = m / max(m), m_t the mean prior strength between task t and the others."""
    m = related_strength(prior)
    return m / m.max()


@register
class JTR(Method):
    name = "jtr"
    Options = JTROptions

    def __init__(self, tasks, feature_channels: int, options: JTROptions | None = None) -> None:
        super().__init__(tasks, feature_channels, options)
        o = self.options
        self.joint_idx = joint_task_indices(self.tasks, o.image_level_encoding)   # tasks in Ŷ, Y (label columns)
        self.joint_tasks = [self.tasks[i] for i in self.joint_idx]
        if not self.joint_tasks:
            raise ValueError(f"jtr: image_level_encoding='none' leaves no task in the joint space (tasks "
                             f"{[t.name for t in self.tasks]} are all image-level); use 'broadcast'")
        self.in_channels = sum(t.channels for t in self.joint_tasks)   # the only place T enters: linear cost
        if o.arch == "reference":
            self.encoder, self.decoder = reference_joint_network(self.in_channels)
        else:
            self.encoder = JointEncoder(self.in_channels, o.width, feature_channels, o.input_stride)
            self.decoder = JointDecoder(self.in_channels, o.width, feature_channels, o.input_stride)

    @classmethod
    def check_task_prior(cls, options: JTROptions, prior: torch.Tensor | None) -> None:
        if prior is not None and options.prior_weighting and not (related_strength(prior) > 0).any():
            raise ValueError("jtr.prior_weighting: the task_prior relates no two tasks, so every task's weight in "
                             "the joint space would be 0")

    @property
    def joint_task_weights(self) -> torch.Tensor | None:
        """w [T_joint] of the joint space, in ``joint_tasks`` order (``prior_weighting`` with a prior), else None."""
        if self.task_prior is None or not self.options.prior_weighting:
            return None
        return prior_task_weights(restricted(self.task_prior, self.joint_idx))

    def use_task_prior(self, prior: torch.Tensor | None) -> None:
        super().use_task_prior(prior)
        if self.task_prior is not None and self.options.prior_weighting:
            if not (related_strength(restricted(self.task_prior, self.joint_idx)) > 0).any():
                raise ValueError("jtr.prior_weighting: the task_prior relates none of the tasks in the joint space "
                                 f"{[t.name for t in self.joint_tasks]} to another")

    def weigh_channels(self, x: torch.Tensor) -> torch.Tensor:
        """[N, ΣC_t, H, W] -> task t's channels × w_t (unchanged without prior weighting)."""
        w = self.joint_task_weights
        if w is None:
            return x
        per_channel = torch.repeat_interleave(w.to(x), torch.tensor([t.channels for t in self.joint_tasks],
                                                                    device=x.device))
        return x * per_channel.view(1, -1, 1, 1)

    def draw_noise(self, step: Step, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Gumbel noise per segmentation task (empty for soft encodings), so two code paths can share it."""
        if self.options.seg_encoding != "hard":
            return {}
        return {t.name: gumbel_noise(step.predictions[t.name], generator) for t in self.joint_tasks
                if t.kind in ("segmentation", "classification")}

    def views(self, step: Step, noise: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                        torch.Tensor]:
        """(Ŷ', Y', mask): [B, ΣC_t, H, W] × 2 with labelled tasks' predictions detached, mask [B, 1, H, W]."""
        o = self.options
        noise = self.draw_noise(step) if noise is None else noise
        labelled = step.labelled[:, self.joint_idx]                                           # [B, T_joint]
        mask = joint_valid_mask(self.joint_tasks, step.targets, labelled, step.images)
        size = tuple(mask.shape[-2:])
        y_hat, y = [], []
        for i, t in enumerate(self.joint_tasks):
            lab = labelled[:, i].bool().view(-1, 1, 1, 1)
            pred = encode_prediction(t, step.predictions[t.name], seg=o.seg_encoding, depth="cdf", tau=o.gumbel_tau,
                                     mu=o.depth_mu, sigma=o.depth_sigma, noise=noise.get(t.name), size=size)
            label = encode_label(t, clean_target(t, step.targets[t.name], labelled[:, i]), depth="cdf",
                                 mu=o.depth_mu, sigma=o.depth_sigma, size=size)
            y_hat.append(torch.where(lab, pred.detach(), pred) * mask)
            y.append(torch.where(lab, label, pred.detach() if o.detach_target else pred) * mask)
        return torch.cat(y_hat, dim=1), torch.cat(y, dim=1), mask

    def jtr_terms(self, y_hat: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  joint_view: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Per-sample terms [B] (weighted): model side on frozen E, joint side on detached inputs.

        ``joint_view`` (Ŷ, Y, mask of another augmented view; the ref.'s view 2) feeds the joint-side terms; by
        default they read the same Ŷ', Y' as the model side, and E runs once for both.
        """
        o, B = self.options, y_hat.shape[0]
        inputs = torch.cat([y_hat, y])                                                         # [2B, ΣC, H, W]
        frozen_codes, codes = two_routes(self.encoder, self.weigh_channels(inputs))             # [2B, F, h, w]
        if joint_view is not None:
            mask = joint_view[2]
            inputs = torch.cat(joint_view[:2]).detach()
            codes = self.encoder(self.weigh_channels(inputs))                                   # second pass
        terms = {"jtr_model": o.model_weight * cosine_distance(*frozen_codes.chunk(2)),
                 "jtr_joint": o.joint_weight * cosine_distance(*codes.chunk(2))}
        inputs = inputs.detach()
        if o.reconstruction:
            recon = self.decoder(codes, inputs.shape[-2:])
            kw = {"targets": o.recon_targets, "mu": o.depth_mu, "sigma": o.depth_sigma,
                  "weights": self.joint_task_weights}
            rec_hat = reconstruction_loss(self.joint_tasks, recon[:B], inputs[:B], mask, is_y_hat=True, **kw)
            rec_y = reconstruction_loss(self.joint_tasks, recon[B:], inputs[B:], mask, **kw)
            terms["jtr_recon"] = o.recon_weight * (rec_hat + rec_y)
        return terms

    @property
    def view_spec(self) -> ViewSpec:
        return ViewSpec(extra=self.options.views - 1, photometric=self.options.photometric)

    def losses(self, step: Step, noise: dict[str, torch.Tensor] | None = None,
               joint_noise: dict[str, torch.Tensor] | None = None) -> LossTerms:
        """``noise`` / ``joint_noise``: Gumbel noise of the model-side / joint-side view (drawn when None)."""
        if self.options.views == 3:     # ref.: view 1 model side, view 2 joint network (each its own Gumbel draw)
            terms = self.jtr_terms(*self.views(step.views[0], noise),
                                   joint_view=self.views(step.views[1], joint_noise))
        else:
            terms = self.jtr_terms(*self.views(step, noise))
        return LossTerms(self.supervised_losses(step), {k: v.mean() for k, v in terms.items()})

    @torch.no_grad()
    def joint_codes(self, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        """(code(Ŷ), code(Y)) [B, F, h, w] each, for visualization."""
        y_hat, y, _ = self.views(step)
        return self.encoder(self.weigh_channels(y_hat)), self.encoder(self.weigh_channels(y))


def _sample(step: Step, b: int) -> Step:
    """Sample ``b`` alone (batch size 1), as the reference code's loop sees it."""
    return step_rows(step, b, b + 1, step.labelled[b:b + 1])


def per_sample_reference_losses(method: JTR, step: Step, noise: dict[str, torch.Tensor] | None = None,
                                joint_noise: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The ref. code's formulation, for tests and benchmarks: a Python loop over samples (batch size 1), the joint
    network (E and D) deep-copied per sample to freeze it for the model-side term, E run on each of Ŷ, Y separately,
    terms summed and divided by the batch size; with ``views=3`` the model side reads view 1 and the joint side
    view 2. Returns the JTR terms only (no supervised losses); equal to ``method.losses(...).auxiliary``."""
    o, B = method.options, step.labelled.shape[0]
    model_step, joint_step = (step.views[0], step.views[1]) if o.views == 3 else (step, step)
    noise = method.draw_noise(model_step) if noise is None else noise
    if joint_step is model_step:
        joint_noise = noise
    elif joint_noise is None:
        joint_noise = method.draw_noise(joint_step)
    totals: dict[str, torch.Tensor] = {}
    for b in range(B):
        y_hat, y, mask = method.views(_sample(model_step, b), {k: v[b:b + 1] for k, v in noise.items()})
        copied = copy.deepcopy(nn.ModuleList([method.encoder, method.decoder]))   # its gradients are discarded
        weigh = method.weigh_channels
        terms = {"jtr_model": o.model_weight * cosine_distance(copied[0](weigh(y_hat)), copied[0](weigh(y)))}
        y_hat, y, mask = method.views(_sample(joint_step, b), {k: v[b:b + 1] for k, v in joint_noise.items()})
        code_hat, code_y = method.encoder(weigh(y_hat.detach())), method.encoder(weigh(y.detach()))
        terms["jtr_joint"] = o.joint_weight * cosine_distance(code_hat, code_y)
        if o.reconstruction:
            size = y.shape[-2:]
            kw = {"targets": o.recon_targets, "mu": o.depth_mu, "sigma": o.depth_sigma,
                  "weights": method.joint_task_weights}
            terms["jtr_recon"] = o.recon_weight * (
                reconstruction_loss(method.joint_tasks, method.decoder(code_y, size), y.detach(), mask, **kw)
                + reconstruction_loss(method.joint_tasks, method.decoder(code_hat, size), y_hat.detach(), mask,
                                      is_y_hat=True, **kw))
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + v.sum() / B
    return totals
