"""Joint-task regularization in one learned space for all tasks (JTR).

Kento Nishi, Junsik Kim, Wanhua Li & Hanspeter Pfister, "Joint-Task Regularization for Partially Labeled
Multi-Task Learning", CVPR 2024, arXiv 2404.01976 (ref. code KentoNishi/JTR-CVPR-2024).

    Ŷ = [enc(ŷ_1), …, enc(ŷ_T)] ⊙ m          Y = [enc(y_t) if t labelled else enc(ŷ_t)]_t ⊙ m
    m = ∩ valid masks of the sample's labelled tasks;   E, D: one encoder/decoder over Σ C_t channels
    L = L_sup + λ_m d(E_sg(Ŷ'), E_sg(Y')) + λ_j d(E(sg Ŷ), E(sg Y)) + λ_r Σ_{X∈{Y,Ŷ}} rec(D(E(sg X)), sg X)

d = 1 − cos over channels, mean over positions. Gradient routing (as in the ref. code): the model-side term runs E
with frozen (detached) weights, and Ŷ' / Y' hold the *labelled* tasks' predictions detached — so it only moves the
predictions of unlabelled tasks (through both Ŷ' and Y', as in the ref.; ``detach_target`` stops the Y' path).
The joint-side terms see detached inputs and train only E, D. When both sides encode the same values (one view,
``fidelity: paper``), the batch [Ŷ'; Y'] goes through E once and ``two_routes`` splits the backward — the
model-side gradient reaches only the inputs, the joint-side gradient only E's weights — instead of the ref.'s
per-sample deep copy of the joint network and second encoder pass; otherwise the joint side is encoded in a second
pass. One backward for everything. E uses per-sample, per-channel normalization (the ref.'s BatchNorm at batch
size 1), so the batched terms equal the per-sample ones exactly (``per_sample_reference_losses``).

Normalization: the ref. sums per-sample terms and divides by the batch size; we average over samples — the same.
Views: ``views=3, photometric="randaugment"`` is the ref.'s protocol — the model runs once on three augmented views
of each batch (views 1 and 2 further scale-crops of view 0, a photometric RandAugment on each image), the supervised
losses read view 0, the model-side distance view 1, the joint network's distance and reconstruction view 2 (E then
runs twice). With ``views=1`` (default, cheaper) both sides read one view.

Fidelity (``fidelity``, see ``arch.py``): ``"paper"`` is the equations above read cleanly; ``"published_code"``
computes exactly what the ref. code computes (pinned by ``tests/test_reference_parity.py`` against a recording of
the ref. code, float64, to 1e-8). ``"auto"`` (default) is ``published_code`` with ``arch="reference"`` and
``paper`` with ``arch="compact"``: whoever asks for the published network gets its computation, and the compact
runs made before the switch existed keep their ids and numbers. Each difference is an option of its own (None:
as ``fidelity`` says; README "Published numbers" lists each one's measured effect):

    option                paper            published_code   what the ref. code does
    mask_before_encoding  False            True             masks depth / normal (/ edge) predictions *before*
                                                            Φ and (n+1)/2, so masked pixels hold Φ(0), 0.5
    mask_labels           True             False            never multiplies the labels by the joint mask: one-hot,
                                                            Φ(d), (n+1)/2 stay where another task is invalid
    gumbel_draws          "shared"         "independent"    every Gumbel one-hot of a segmentation prediction is a
                                                            draw of its own (Ŷ's and Y's of an unlabelled task,
                                                            and the reconstruction targets)
    joint_y_hat_seg       "encoding"       "softmax"        the joint side's Ŷ segmentation is a plain softmax
    recon_targets         "paper"          "reference_code" targets rebuilt from the raw predictions and labels: Φ
                                                            again on Ŷ's depth, Ŷ's normals in [0, 1] and Y's raw
                                                            normals compared by a dot product with the unit
                                                            reconstruction, one-hots (hard Gumbel even where Ŷ's
                                                            input was a softmax), labels unmasked
    recon_denominator     "valid_pixels"   "nonzero_targets"  each reconstruction term divided by the number of
                                                            non-zero entries of its target (all channels)
    depth_recon_squeeze   False            True             depth reconstruction (σ(r) − ½)(1 − 1e-5) + ½
    dot_normal_loss       False            True             supervised normal loss 1 − Σ pred·gt / valid pixels
                                                            (where ``normal_loss`` is the default cosine; equal for
                                                            unit ground truth, not for the refs' bilinear crops)

Not part of the switch: the protocol (``views``, ``photometric``) and the data (``normal_crop``, config), which
the benchmark sweeps set alongside it.

Image-level tasks (classification, regression; ``image_level_encoding``, see ``encodings.py``): ``"broadcast"``
(default) puts each one in Ŷ and Y as a C_t-channel map of the image size, constant over positions — the softmax
or Gumbel one-hot of the logits (``seg_encoding`` applies to classification as to segmentation) or Φ((y − loc) /
scale) — so E, D and both distances need no second branch. Its reconstruction term is that of a dense task on the
constant map (BCE summed over classes / |Φ-error|, mean over the joint mask's positions), i.e. the error of
reconstructing the one value everywhere. Its valid mask is the sample's (an undefined label masks every position,
as an ignore pixel masks one). ``"none"`` keeps image-level tasks out of Ŷ, Y and the mask: supervised loss only.
The ref. has no such tasks: under ``published_code`` they are masked after encoding and reconstructed against
their inputs (the denominators and ``mask_labels`` apply as to dense tasks).

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
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..core.ops import channel_cosine, channel_normalize
from ..data.views import PHOTOMETRIC, ViewSpec
from ..objectives.losses import LossOptions, with_dot_normals
from ..tasks.priors import related_strength, restricted
from .arch import check_arch, resolve_fidelity
from .base import LossTerms, Method, Step, register, step_rows
from .encodings import (
    DEPTH_MU,
    DEPTH_SIGMA,
    IMAGE_LEVEL_ENCODINGS,
    SEG_ENCODINGS,
    clean_target,
    depth_by_cdf,
    encode_label,
    encode_prediction,
    gumbel_noise,
    joint_task_indices,
    joint_valid_mask,
    segmentation_label,
    segmentation_prediction,
)
from .jtr_segnet import reference_joint_network

STRIDES = (1, 2)
DEPTH_SQUEEZE = 1e-5            # ref. code: depth reconstruction (σ(r) − ½)(1 − 1e-5) + ½


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


RECON_DENOMINATORS = ("valid_pixels", "nonzero_targets")


def reconstruction_loss(tasks, recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *,
                        target_form: str = "paper", denominator: str = "valid_pixels", squeeze: bool = False,
                        mu: float = DEPTH_MU, sigma: float = DEPTH_SIGMA,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample [N]: Σ_t w_t · rec_t(recon_t, target_t) over the joint mask (``weights`` [T], default all 1).

    ``target`` [N, ΣC_t, H, W] is what each task's reconstruction is compared with: the encoded inputs
    (``target_form="paper"``) or the ref. code's targets (``"reference_code"``, built by ``JTR.joint_inputs``: depth
    *before* the Φ applied here, normals unnormalized). Per task: BCE summed over channels (one-hot maps, edges),
    |σ(r) − t| (depth, t = Φ(target) for the ref.'s form; ``squeeze``: σ scaled by 1 − 1e-5 around ½, as the
    ref.), the mean |σ(r) − t| over a regression's values, and for normals 1 − cos(r, 2t − 1) (paper: t in the
    [0, 1] encoding) or 1 − r̂·t with t as given (ref.). ``denominator``: ``"valid_pixels"`` = the mean over the
    mask; ``"nonzero_targets"`` = the ref.'s sum over the mask divided by the number of non-zero entries of the
    task's target as given (all channels; at least 1), the normals' term then being 1 − Σ r̂·t·m / count as the
    ref. writes it.
    """
    code = target_form == "reference_code"
    total = recon.new_zeros(recon.shape[0])
    pixels = mask.flatten(1).sum(dim=1).clamp_min(1.0)                                  # [N]
    widths = [t.channels for t in tasks]
    for k, (t, r, y) in enumerate(zip(tasks, recon.split(widths, dim=1), target.split(widths, dim=1))):
        if weights is not None and weights[k] == 0:
            continue
        count = (y != 0).flatten(1).sum(dim=1).clamp_min(1).to(r.dtype) if denominator == "nonzero_targets" \
            else pixels
        space = t.kind_object.joint_space       # how the task's encoding is compared (its kind says)
        if space == "probabilities":            # one-hot maps, edges
            err = F.binary_cross_entropy_with_logits(r, y, reduction="none").sum(dim=1, keepdim=True)
        elif space == "values" and t.image_level:   # regression: Φ-encoded values, constant maps: mean over values
            err = (torch.sigmoid(r) - y).abs().mean(dim=1, keepdim=True)
        elif space == "values":                 # depth
            p = torch.sigmoid(r)
            goal = depth_by_cdf(y, mu, sigma) if code else y
            err = ((p - 0.5) * (1.0 - DEPTH_SQUEEZE) + 0.5 - goal).abs() if squeeze else (p - goal).abs()
        elif code:
            dot = (channel_normalize(r, eps=1e-8) * y).sum(dim=1, keepdim=True)
            if denominator == "nonzero_targets":
                term = 1.0 - (dot * mask).flatten(1).sum(dim=1) / count
                total = total + (term if weights is None else weights[k] * term)
                continue
            err = 1.0 - dot
        else:  # normals: compare directions in [-1, 1]
            err = 1.0 - channel_cosine(r, 2.0 * y - 1.0, eps=1e-8).unsqueeze(1)
        term = (err * mask).flatten(1).sum(dim=1) / count
        total = total + (term if weights is None else weights[k] * term)
    return total


# {option: (paper, published_code, allowed values)}; see the module docstring's table
FIDELITY_SWITCHES = {
    "mask_before_encoding": (False, True, (False, True)),
    "mask_labels": (True, False, (False, True)),
    "gumbel_draws": ("shared", "independent", ("shared", "independent")),
    "joint_y_hat_seg": ("encoding", "softmax", ("encoding", "softmax")),
    "recon_targets": ("paper", "reference_code", ("paper", "reference_code")),
    "recon_denominator": ("valid_pixels", "nonzero_targets", RECON_DENOMINATORS),
    "depth_recon_squeeze": (False, True, (False, True)),
    "dot_normal_loss": (False, True, (False, True)),
}


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
    arch: str = "compact"          # "reference": the published SegNet_JTR layout (jtr_segnet.py); width and
    #                                input_stride then stay at their defaults (they shape "compact")
    image_level_encoding: str = "broadcast"   # image-level tasks as constant maps in Ŷ, Y; "none": left out
    prior_weighting: bool = False  # with a task_prior: task t's channels in the joint space × w_t (see header)
    # the published code's computation (module docstring): one switch, and each difference on its own (None:
    # as fidelity says; "auto" = published_code with arch "reference", paper with "compact")
    fidelity: str = "auto"
    mask_before_encoding: bool | None = None
    mask_labels: bool | None = None
    gumbel_draws: str | None = None
    joint_y_hat_seg: str | None = None
    recon_targets: str | None = None
    recon_denominator: str | None = None
    depth_recon_squeeze: bool | None = None
    dot_normal_loss: bool | None = None

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
        if self.photometric not in PHOTOMETRIC:
            raise ValueError(f"jtr.photometric={self.photometric!r}: allowed {PHOTOMETRIC}")
        if self.input_stride not in STRIDES:
            raise ValueError(f"jtr.input_stride={self.input_stride}: allowed {STRIDES}")
        check_arch("jtr", self, {"width": 16, "input_stride": 2})
        if not isinstance(self.prior_weighting, bool):
            raise ValueError(f"jtr.prior_weighting={self.prior_weighting!r}: must be true or false")
        resolve_fidelity("jtr", self, FIDELITY_SWITCHES)

    @property
    def one_pass(self) -> bool:
        """Both sides encode the same values (one view, shared draws, targets = inputs): E runs once."""
        return (self.views == 1 and self.gumbel_draws == "shared" and self.joint_y_hat_seg == "encoding"
                and self.recon_targets == "paper")


def prior_task_weights(prior: torch.Tensor) -> torch.Tensor:
    """P [T, T] -> w [T] = m / max(m), m_t the mean prior strength between task t and the others."""
    m = related_strength(prior)
    return m / m.max()


Noise = dict[str, torch.Tensor]


@dataclass
class GumbelDraws:
    """The Gumbel noise of one side's categorical encodings, {task: [B, C, H, W] (or [B, C])} per use.

    ``y_hat``: Ŷ's one-hots (always drawn for hard encodings; the ref.-code targets reuse it where draws are
    shared). ``y``: Y's one-hots of unlabelled tasks, ``recon_y_hat`` / ``recon_y``: the ref.-code reconstruction
    targets' — each None where it shares ``y_hat``'s draw (``gumbel_draws="shared"``).
    """

    y_hat: Noise
    y: Noise | None = None
    recon_y_hat: Noise | None = None
    recon_y: Noise | None = None

    def rows(self, b: int) -> GumbelDraws:
        """Sample ``b``'s draws (batch size 1)."""
        def part(n: Noise | None) -> Noise | None:
            return None if n is None else {k: v[b:b + 1] for k, v in n.items()}
        return GumbelDraws(part(self.y_hat), part(self.y), part(self.recon_y_hat), part(self.recon_y))


class JointInputs(NamedTuple):
    """One side's inputs of the joint network: Ŷ', Y' [B, ΣC_t, H, W], the joint mask [B, 1, H, W], and the
    reconstruction targets of Ŷ and Y (None: the inputs themselves, detached)."""

    y_hat: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    recon_y_hat: torch.Tensor | None = None
    recon_y: torch.Tensor | None = None

    def targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        hat = self.y_hat if self.recon_y_hat is None else self.recon_y_hat
        y = self.y if self.recon_y is None else self.recon_y
        return hat.detach(), y.detach()


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

    def supervised_loss_options(self) -> LossOptions:
        """The config's, with the ref.'s dot-product normal loss under ``dot_normal_loss``."""
        return with_dot_normals(self.loss_options) if self.options.dot_normal_loss else self.loss_options

    def weigh_channels(self, x: torch.Tensor) -> torch.Tensor:
        """[N, ΣC_t, H, W] -> task t's channels × w_t (unchanged without prior weighting)."""
        w = self.joint_task_weights
        if w is None:
            return x
        per_channel = torch.repeat_interleave(w.to(x), torch.tensor([t.channels for t in self.joint_tasks],
                                                                    device=x.device))
        return x * per_channel.view(1, -1, 1, 1)

    def draw_noise(self, step: Step, generator: torch.Generator | None = None) -> GumbelDraws:
        """The Gumbel noise of one side (empty for soft encodings), drawn explicitly so two code paths can share it:
        Ŷ's draw, and with ``gumbel_draws="independent"`` Y's and the ref.-code targets' own draws."""
        o = self.options
        if o.seg_encoding != "hard":
            return GumbelDraws({})
        categorical = [t for t in self.joint_tasks if t.kind_object.categorical]

        def draw() -> Noise:
            return {t.name: gumbel_noise(step.predictions[t.name], generator) for t in categorical}

        draws = GumbelDraws(draw())
        if o.gumbel_draws == "independent":
            draws.y = draw()
            if o.recon_targets == "reference_code":
                draws.recon_y_hat, draws.recon_y = draw(), draw()
        return draws

    def _encode_prediction(self, task, pred: torch.Tensor, mask: torch.Tensor, noise: Noise | None,
                           seg: str | None = None) -> torch.Tensor:
        """A prediction's encoding under the joint mask: masked after encoding, or (``mask_before_encoding``, the
        ref.) a dense non-categorical prediction masked before it (masked pixels then hold Φ(0), 0.5, ½)."""
        o = self.options
        size = tuple(mask.shape[-2:])
        before = o.mask_before_encoding and not task.kind_object.categorical and not task.image_level
        enc = encode_prediction(task, pred * mask if before else pred, seg=seg or o.seg_encoding, depth="cdf",
                                tau=o.gumbel_tau, mu=o.depth_mu, sigma=o.depth_sigma,
                                noise=None if noise is None else noise.get(task.name), size=size)
        return enc if before else enc * mask

    def joint_inputs(self, step: Step, noise: GumbelDraws | Noise | None = None, joint: bool = False) -> JointInputs:
        """One side's (Ŷ', Y', mask, targets): labelled tasks' predictions detached; ``joint``: the joint network's
        side (its Ŷ segmentation a softmax under ``joint_y_hat_seg``, its reconstruction targets built)."""
        o = self.options
        draws = self.draw_noise(step) if noise is None else noise
        draws = draws if isinstance(draws, GumbelDraws) else GumbelDraws(dict(draws))
        labelled = step.labelled[:, self.joint_idx]                                           # [B, T_joint]
        mask = joint_valid_mask(self.joint_tasks, step.targets, labelled, step.images)
        size = tuple(mask.shape[-2:])
        hat_seg = "soft" if joint and o.joint_y_hat_seg == "softmax" else o.seg_encoding
        code_targets = joint and o.recon_targets == "reference_code"
        y_hat, y, t_hat, t_y = [], [], [], []
        for i, t in enumerate(self.joint_tasks):
            lab = labelled[:, i].bool().view(-1, 1, 1, 1)
            pred = step.predictions[t.name]
            target = clean_target(t, step.targets[t.name], labelled[:, i])
            enc_hat = self._encode_prediction(t, pred, mask, draws.y_hat, hat_seg)
            own_draw = t.kind_object.categorical and (draws.y is not None or hat_seg != o.seg_encoding)
            enc_y = self._encode_prediction(t, pred, mask, draws.y_hat if draws.y is None else draws.y) \
                if own_draw else enc_hat                                  # Y's one-hot: its own draw / encoding
            label = encode_label(t, target, depth="cdf", mu=o.depth_mu, sigma=o.depth_sigma, size=size)
            y_hat.append(torch.where(lab, enc_hat.detach(), enc_hat))
            y.append(torch.where(lab, label * mask if o.mask_labels else label,
                                 enc_y.detach() if o.detach_target else enc_y))
            if code_targets:
                hat_target, y_target = self._code_targets(t, pred, target, lab, mask, draws, y_hat[-1], y[-1])
                t_hat.append(hat_target)
                t_y.append(y_target)
        if not code_targets:
            return JointInputs(torch.cat(y_hat, dim=1), torch.cat(y, dim=1), mask)
        return JointInputs(torch.cat(y_hat, dim=1), torch.cat(y, dim=1), mask, torch.cat(t_hat, dim=1).detach(),
                           torch.cat(t_y, dim=1).detach())

    def _code_targets(self, task, pred: torch.Tensor, target: torch.Tensor, lab: torch.Tensor, mask: torch.Tensor,
                      draws: GumbelDraws, y_hat: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ref. code's reconstruction targets of one task, (Ŷ's, Y's), built from the raw prediction and label.

        Segmentation: one-hots of the prediction under the mask (hard Gumbel for Ŷ even where its input is a
        softmax; fresh draws with ``gumbel_draws="independent"``), the label's one-hot unmasked. Depth (before the
        Φ that ``reconstruction_loss`` applies, and by which the ref. counts its non-zero entries): Ŷ's encoded
        input, so Φ applies twice; the raw label / prediction for Y, unmasked. Normals: Ŷ's encoded input in
        [0, 1]; the raw label / prediction in [−1, 1] for Y. Other kinds (not in the ref.): the inputs.
        """
        o = self.options
        pred = pred.detach()
        kind = task.kind_object
        if task.image_level or not (kind.categorical or kind.joint_space in ("values", "directions")):
            return y_hat, y                                       # edges, image-level tasks
        if kind.categorical:
            hard = o.seg_encoding == "hard"

            def one_hot(n: Noise | None) -> torch.Tensor:
                noise = (n if n is not None else draws.y_hat).get(task.name) if hard else None
                return segmentation_prediction(pred, hard=hard, tau=o.gumbel_tau, noise=noise) * mask
            hat_target = one_hot(draws.recon_y_hat)
            y_pred = one_hot(draws.recon_y) if draws.recon_y is not None else y
            return hat_target, torch.where(lab, segmentation_label(target, task.channels).to(pred), y_pred)
        return y_hat, torch.where(lab, target, pred)              # depth: Φ in reconstruction_loss; normals

    def views(self, step: Step, noise: GumbelDraws | Noise | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        """(Ŷ', Y', mask) of the model side: [B, ΣC_t, H, W] × 2 with labelled tasks' predictions detached, mask
        [B, 1, H, W]."""
        return tuple(self.joint_inputs(step, noise)[:3])

    def jtr_terms(self, y_hat: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  joint_view: JointInputs | tuple | None = None) -> dict[str, torch.Tensor]:
        """Per-sample terms [B] (weighted): model side on frozen E, joint side on detached inputs.

        ``joint_view`` (a ``JointInputs``, or (Ŷ, Y, mask), of the joint side: another augmented view — the ref.'s
        view 2 — or the same view encoded as the ref.'s joint side does) feeds the joint-side terms; by default they
        read the same Ŷ', Y' as the model side, and E runs once for both.
        """
        o, B = self.options, y_hat.shape[0]
        inputs = torch.cat([y_hat, y])                                                         # [2B, ΣC, H, W]
        frozen_codes, codes = two_routes(self.encoder, self.weigh_channels(inputs))             # [2B, F, h, w]
        targets = inputs.detach()
        if joint_view is not None:
            joint_view = JointInputs(*joint_view)
            mask = joint_view.mask
            inputs = torch.cat([joint_view.y_hat, joint_view.y]).detach()
            codes = self.encoder(self.weigh_channels(inputs))                                   # second pass
            targets = torch.cat(joint_view.targets())
        terms = {"jtr_model": o.model_weight * cosine_distance(*frozen_codes.chunk(2)),
                 "jtr_joint": o.joint_weight * cosine_distance(*codes.chunk(2))}
        if o.reconstruction:
            recon = self.decoder(codes, inputs.shape[-2:])
            rec = self.reconstruction_terms(mask)
            terms["jtr_recon"] = o.recon_weight * (rec(recon[:B], targets[:B]) + rec(recon[B:], targets[B:]))
        return terms

    def reconstruction_terms(self, mask: torch.Tensor):
        """rec(recon, target) → [N] over ``mask`` under the options (normal form, denominator, squeeze, prior
        weights)."""
        o = self.options
        kw = {"target_form": o.recon_targets, "denominator": o.recon_denominator, "squeeze": o.depth_recon_squeeze,
              "mu": o.depth_mu, "sigma": o.depth_sigma, "weights": self.joint_task_weights}
        return lambda r, t: reconstruction_loss(self.joint_tasks, r, t, mask, **kw)

    @property
    def view_spec(self) -> ViewSpec:
        return ViewSpec(extra=self.options.views - 1, photometric=self.options.photometric)

    def sides(self, step: Step, noise: GumbelDraws | Noise | None = None,
              joint_noise: GumbelDraws | Noise | None = None) -> tuple[Step, GumbelDraws, Step | None,
                                                                      GumbelDraws | None]:
        """(model-side step, its draws, joint-side step or None when it is the model side's inputs, its draws)."""
        o = self.options
        model_step, joint_step = (step.views[0], step.views[1]) if o.views == 3 else (step, step)
        noise = self.draw_noise(model_step) if noise is None else noise
        if o.one_pass:
            return model_step, noise, None, None
        if joint_noise is None:     # one view, shared draws: the joint side reuses the model side's
            joint_noise = noise if o.views == 1 and o.gumbel_draws == "shared" else self.draw_noise(joint_step)
        return model_step, noise, joint_step, joint_noise

    def losses(self, step: Step, noise: GumbelDraws | Noise | None = None,
               joint_noise: GumbelDraws | Noise | None = None) -> LossTerms:
        """``noise`` / ``joint_noise``: Gumbel noise of the model-side / joint-side inputs (drawn when None)."""
        model_step, noise, joint_step, joint_noise = self.sides(step, noise, joint_noise)
        joint = None if joint_step is None else self.joint_inputs(joint_step, joint_noise, joint=True)
        terms = self.jtr_terms(*self.joint_inputs(model_step, noise)[:3], joint_view=joint)
        return LossTerms(self.supervised_losses(step), {k: v.mean() for k, v in terms.items()})

    @torch.no_grad()
    def joint_codes(self, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        """(code(Ŷ), code(Y)) [B, F, h, w] each, for visualization."""
        y_hat, y, _ = self.views(step)
        return self.encoder(self.weigh_channels(y_hat)), self.encoder(self.weigh_channels(y))


def _sample(step: Step, b: int) -> Step:
    """Sample ``b`` alone (batch size 1), as the reference code's loop sees it."""
    return step_rows(step, b, b + 1, step.labelled[b:b + 1])


def _rows(noise: GumbelDraws | Noise, b: int) -> GumbelDraws:
    return (noise if isinstance(noise, GumbelDraws) else GumbelDraws(dict(noise))).rows(b)


def per_sample_reference_losses(method: JTR, step: Step, noise: GumbelDraws | Noise | None = None,
                                joint_noise: GumbelDraws | Noise | None = None) -> dict[str, torch.Tensor]:
    """The ref. code's formulation, for tests and benchmarks: a Python loop over samples (batch size 1), the joint
    network (E and D) deep-copied per sample to freeze it for the model-side term, E run on each of Ŷ, Y separately,
    terms summed and divided by the batch size; with ``views=3`` the model side reads view 1 and the joint side
    view 2. Returns the JTR terms only (no supervised losses); equal to ``method.losses(...).auxiliary``."""
    o, B = method.options, step.labelled.shape[0]
    model_step, noise, joint_step, joint_noise = method.sides(step, noise, joint_noise)
    weigh = method.weigh_channels
    totals: dict[str, torch.Tensor] = {}
    for b in range(B):
        model = method.joint_inputs(_sample(model_step, b), _rows(noise, b))
        copied = copy.deepcopy(nn.ModuleList([method.encoder, method.decoder]))   # its gradients are discarded
        terms = {"jtr_model": o.model_weight * cosine_distance(copied[0](weigh(model.y_hat)),
                                                               copied[0](weigh(model.y)))}
        joint = model if joint_step is None else method.joint_inputs(_sample(joint_step, b), _rows(joint_noise, b),
                                                                     joint=True)
        code_hat, code_y = method.encoder(weigh(joint.y_hat.detach())), method.encoder(weigh(joint.y.detach()))
        terms["jtr_joint"] = o.joint_weight * cosine_distance(code_hat, code_y)
        if o.reconstruction:
            size = joint.y.shape[-2:]
            target_hat, target_y = joint.targets()
            rec = method.reconstruction_terms(joint.mask)
            terms["jtr_recon"] = o.recon_weight * (rec(method.decoder(code_y, size), target_y)
                                                   + rec(method.decoder(code_hat, size), target_hat))
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + v.sum() / B
    return totals

