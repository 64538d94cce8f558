"""DiffusionMTL: multi-task denoising diffusion for partially annotated dense prediction.

Hanrong Ye & Dan Xu, "DiffusionMTL: Learning Multi-Task Denoising Diffusion Model from Partially Annotated Data",
CVPR 2024, arXiv 2403.15389; public code prismformore/DiffusionMTL (read for the facts below; this is our own code).

Why: with partial labels, the predictions of a task are noisy where it was rarely supervised. DiffusionMTL treats
them as a corrupted signal: it diffuses a task's preliminary map and trains a denoiser, conditioned on *all* tasks'
preliminary predictions, to recover a clean map that the task's labels supervise. The condition carries the other
tasks' evidence into each task's denoising (multi-task conditioning), so an image labelled for one task still
trains the denoiser to use the others.

The model (f the backbone feature, T tasks, S diffusion steps; ``diffusionmtl_net.py`` for the networks):

    x    = φ(f)                                  3×3 conv to the width E
    F_t  = D_t(x),  P_t = H_t(F_t)               preliminary decoder (BasicBlocks) and 1×1 head, every task
    c    = C([sg(P_1), …, sg(P_T)])              multi-task condition: all preliminary predictions, detached
    x_0  = F_t  (feature diffusion)  |  P_t  (prediction diffusion)
    x_{S−1} = √ᾱ_{S−1} x_0 + √(1 − ᾱ_{S−1}) ε    diffusion to the last step
    for s = S−1, …, 0:
        h_s = ε_θ(x_s, s, c; t)                  the denoiser: per-task input conv + timestep embedding,
                                                 cross-attention of c (queries) on x_s (keys/values), readout
        x̂_0 = h_s  (feature)  |  R_t(h_s)  (prediction)
        x_{s−1} ~ q(x_{s−1} | x_s, x̂_0)          DDPM posterior (s ≥ 1)
    Ŷ_t  = up(R_t(h_0))                          readout head R_t (1×1 conv), bilinear to the image size

Training denoises only the labelled tasks of each sample (the code loops over samples and their labelled tasks;
here each task's labelled rows are one batch, the same numbers: nothing in the denoiser mixes samples). The loss,
per the code's ``SemiSupervisedMultiTaskLoss``:

    L = Σ_b (T / k_b) Σ_{t labelled in b} λ_t [ ℓ_t(Ŷ_bt) + 0.5 · ℓ_t(up(P_bt)) ] / B

k_b the number of tasks labelled in sample b (``label_balance``; a sample with one label weighs as much as a
fully labelled one), 0.5 the preliminary predictions' weight (``preliminary_weight``), λ_t the task weights
(``task_weights``; the loss-weighting scheme multiplies each task's term as for every method). Inference samples
all tasks from fresh noise; the reported predictions are the Ŷ_t. At training time ``decode`` returns the
preliminary predictions up(P_t) (the final ones exist only for labelled pairs and are formed inside ``losses``).

Released config (``configs/pascal/config.yml``): S = ``num_timesteps`` = 2, β from 1e-3 to 1e-2 (linear in √β);
ResNet-18 (all four stages, resized to stride 8 and concatenated: ``backbone: resnet18_multiscale``), E = 512.

``diffusion_target`` — the paper describes two variants; the released code implements one (its issue 2):
  * ``"feature"`` (default) follows the **code**: the preliminary feature F_t is diffused, the denoiser's readout
    feature is x̂_0, and R_t reads out the prediction at the last step.
  * ``"prediction"`` follows the **paper's text** (its Fig. 2, "Prediction Diffusion"): the preliminary prediction
    P_t (raw logits / values) is diffused, and x̂_0 = R_t(h_s) is a prediction at every step. Not in the code: the
    input convolution reads C_t channels, everything else is shared with the feature variant.

Image-level tasks (classification, regression) take part like dense ones: their preliminary and readout heads
pool the map (``ImageLevelHead``), and their [B, C] predictions enter the condition (and, for prediction diffusion,
the diffused map) broadcast over the grid. Normal predictions are returned and supervised as unit vectors, as the
model's own heads do; the condition and the diffused predictions use the raw head outputs, as the code does.

Noise comes from the global generator (the trainer seeds it every epoch); ``losses`` and ``predict`` take the
noise explicitly for checks against the reference (one list per task: the forward noise, then S − 1 posterior
draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.heads import ImageLevelHead
from ..models.resnet import BasicBlock
from ..objectives.losses import task_loss
from ..tasks import TaskSpec
from .arch import check_arch
from .base import LossTerms, Method, Refined, Step, register
from .diffusionmtl_net import REFERENCE_LAYOUT, Condition, Denoiser, DiffusionSchedule

TARGETS = ("feature", "prediction")
_COMPACT_LAYOUT = {"width": 64, "depth": 2, "heads": 4, "mlp_ratio": 4.0, "token_stride": 1, "readout_width": 64,
                   "readout_convs": 1, "preliminary_blocks": 1}

Noise = dict[str, list[torch.Tensor]]   # task -> [forward noise, posterior noise for s = S−1 … 1]


@dataclass
class DiffusionMTLOptions:
    diffusion_target: str = "feature"   # "feature": the released code; "prediction": the paper's other variant
    num_timesteps: int = 2              # S (released config)
    beta_start: float = 1e-3            # β_0 and β_{S−1}; linear in √β (the code's "linear" schedule)
    beta_end: float = 1e-2
    preliminary_weight: float = 0.5     # weight of the preliminary predictions' loss
    label_balance: bool = True          # × T / k_b per sample (k_b labelled tasks), as the released loss
    arch: str = "compact"               # "reference": the published layout (diffusionmtl_net.REFERENCE_LAYOUT)
    # layout of arch="compact" (fixed by "reference")
    width: int = 64                     # E
    depth: int = 2                      # cross-attention blocks
    heads: int = 4
    mlp_ratio: float = 4.0
    token_stride: int = 1               # attention runs on the feature grid resized by 1/token_stride
    readout_width: int = 64
    readout_convs: int = 1              # 3×3 conv-ReLU stages of the denoiser's per-task readout
    preliminary_blocks: int = 1         # BasicBlocks per preliminary decoder

    def __post_init__(self) -> None:
        if self.diffusion_target not in TARGETS:
            raise ValueError(f"diffusionmtl.diffusion_target={self.diffusion_target!r}: allowed {list(TARGETS)}")
        for name in ("num_timesteps", "width", "depth", "heads", "token_stride", "readout_width", "readout_convs",
                     "preliminary_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"diffusionmtl.{name}={value!r}: must be an integer >= 1")
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError(f"diffusionmtl.beta_start={self.beta_start}, beta_end={self.beta_end}: need "
                             "0 < beta_start <= beta_end < 1")
        if not self.preliminary_weight >= 0:
            raise ValueError(f"diffusionmtl.preliminary_weight={self.preliminary_weight}: must be >= 0")
        if not self.mlp_ratio > 0:
            raise ValueError(f"diffusionmtl.mlp_ratio={self.mlp_ratio}: must be > 0")
        if not isinstance(self.label_balance, bool):
            raise ValueError(f"diffusionmtl.label_balance={self.label_balance!r}: must be true or false")
        check_arch("diffusionmtl", self, _COMPACT_LAYOUT)
        if self.width % self.heads:
            raise ValueError(f"diffusionmtl.heads={self.heads}: must divide width={self.width}")

    @property
    def layout(self) -> dict:
        return dict(REFERENCE_LAYOUT) if self.arch == "reference" else {k: getattr(self, k) for k in _COMPACT_LAYOUT}


def _head(task: TaskSpec, cin: int) -> nn.Module:
    """A 1×1 conv for a dense task (the code's MLP head), a pooled MLP for an image-level one."""
    if task.image_level:
        return ImageLevelHead(cin, task.channels, loc=task.loc, scale=task.scale)
    return nn.Conv2d(cin, task.channels, 1)


@register
class DiffusionMTL(Method):
    name = "diffusionmtl"
    Options = DiffusionMTLOptions
    owns_heads = True

    def __init__(self, tasks: Sequence[TaskSpec], feature_channels: int,
                 options: DiffusionMTLOptions | None = None) -> None:
        super().__init__(tasks, feature_channels, options)
        o: DiffusionMTLOptions = self.options
        L = o.layout
        E = L["width"]
        self.embed = nn.Conv2d(feature_channels, E, 3, padding=1)
        self.preliminary = nn.ModuleDict({t.name: nn.Sequential(*[BasicBlock(E, E)
                                                                  for _ in range(L["preliminary_blocks"])])
                                          for t in self.tasks})
        self.preliminary_head = nn.ModuleDict({t.name: _head(t, E) for t in self.tasks})
        self.condition = Condition(sum(t.channels for t in self.tasks), E)
        diffused = {t.name: E if o.diffusion_target == "feature" else t.channels for t in self.tasks}
        out = E if o.arch == "reference" else L["readout_width"]     # the code: ResNet-18's last width = E
        self.denoiser = Denoiser(diffused, E, L["depth"], L["heads"], L["mlp_ratio"], L["token_stride"],
                                 L["readout_width"], L["readout_convs"], out)
        self.readout_head = nn.ModuleDict({t.name: _head(t, out) for t in self.tasks})
        self.schedule = DiffusionSchedule(o.num_timesteps, o.beta_start, o.beta_end)

    # --- the preliminary predictions and the multi-task condition ---------------------------------------------------
    def refine(self, features: torch.Tensor, images: torch.Tensor) -> Refined:
        """task_features: F_t [B, E, h, w]; extras: the condition c [B, E, h, w] and each P_t ("preliminary/<t>",
        [B, C_t, h, w] dense, [B, C_t] image-level)."""
        x = self.embed(features)                                                     # [B, E, h, w]
        feats = {t.name: self.preliminary[t.name](x) for t in self.tasks}
        prelim = {t.name: self.preliminary_head[t.name](feats[t.name]) for t in self.tasks}
        grid = x.shape[-2:]
        condition = self.condition(torch.cat([_as_map(prelim[t.name], grid).detach() for t in self.tasks], 1))
        extras = {"condition": condition, **{f"preliminary/{n}": p for n, p in prelim.items()}}
        return Refined(feats, extras)

    # --- the denoising chain -----------------------------------------------------------------------------------------
    def _x_start(self, task: TaskSpec, refined: Refined) -> torch.Tensor:
        if self.options.diffusion_target == "feature":
            return refined.task_features[task.name]
        grid = refined.task_features[task.name].shape[-2:]
        return _as_map(refined.extras[f"preliminary/{task.name}"], grid)

    def draw_noise(self, like: torch.Tensor) -> list[torch.Tensor]:
        """[forward ε, posterior ε for s = S−1 … 1], each shaped like the diffused map."""
        return [torch.randn_like(like) for _ in range(self.schedule.steps)]

    def denoise(self, task: TaskSpec, x_start: torch.Tensor, condition: torch.Tensor,
                noise: Sequence[torch.Tensor]) -> torch.Tensor:
        """x_0 [N, C, h, w] -> diffuse to s = S−1 -> S denoiser calls -> the last readout feature h_0."""
        S = self.schedule.steps
        x = self.schedule.q_sample(x_start, S - 1, noise[0])
        for s in reversed(range(S)):
            steps = torch.full((x.shape[0],), s, dtype=torch.long, device=x.device)
            h = self.denoiser(task.name, x, steps, condition)
            if s == 0:
                return h
            x0_hat = h if self.options.diffusion_target == "feature" else \
                _as_map(self.readout_head[task.name](h), x.shape[-2:])
            x = self.schedule.posterior_sample(x0_hat, x, s, noise[S - s])
        raise AssertionError("unreachable: S >= 1")

    def _prediction(self, task: TaskSpec, raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """A head's output -> the task's prediction: dense maps bilinear to the image size, normals unit vectors."""
        if task.image_level:
            return raw
        if tuple(raw.shape[-2:]) != tuple(size):
            raw = F.interpolate(raw, size=size, mode="bilinear", align_corners=False)
        return task.kind_object.activate(raw)

    def preliminary_predictions(self, refined: Refined, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """up(P_t) for every task (supervised with weight ``preliminary_weight``)."""
        return {t.name: self._prediction(t, refined.extras[f"preliminary/{t.name}"], size) for t in self.tasks}

    def predict(self, refined: Refined, size: tuple[int, int], noise: Noise | None = None) -> dict[str, torch.Tensor]:
        """Ŷ_t of every task: the sampling loop from fresh (or the given) noise."""
        out = {}
        condition = refined.extras["condition"]
        for t in self.tasks:
            x0 = self._x_start(t, refined)
            h = self.denoise(t, x0, condition, noise[t.name] if noise else self.draw_noise(x0))
            out[t.name] = self._prediction(t, self.readout_head[t.name](h), size)
        return out

    def decode(self, refined: Refined, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Evaluation: Ŷ_t of every task. Training: up(P_t) (the final predictions of the labelled pairs are made in
        ``losses``; the unlabelled pairs never run the denoiser, as in the code)."""
        return self.preliminary_predictions(refined, size) if self.training else self.predict(refined, size)

    # --- losses ----------------------------------------------------------------------------------------------------
    def denoised_labelled(self, step: Step, noise: Noise | None = None) -> dict[str, torch.Tensor]:
        """Ŷ_t on the rows labelled for t, zeros elsewhere ([B, …] per task); ``noise[t]`` covers those rows."""
        size = tuple(step.images.shape[-2:])
        condition = step.refined.extras["condition"]
        out = {}
        for i, t in enumerate(self.tasks):
            rows = step.labelled[:, i].nonzero().squeeze(1)                               # [k]
            x0 = self._x_start(t, step.refined)
            shape = (x0.shape[0], t.channels) + (() if t.image_level else size)
            if not rows.numel():
                out[t.name] = x0.new_zeros(shape)
                continue
            x0 = x0[rows]
            h = self.denoise(t, x0, condition[rows], noise[t.name] if noise else self.draw_noise(x0))
            pred = self._prediction(t, self.readout_head[t.name](h), size)               # [k, …]
            out[t.name] = pred.new_zeros(shape).index_put((rows,), pred)
        return out

    def _task_loss(self, task: TaskSpec, i: int, pred: torch.Tensor, step: Step) -> torch.Tensor:
        labelled = step.labelled[:, i]
        if not self.options.label_balance:
            return task_loss(task, pred, step.targets[task.name], labelled, self.loss_options)
        T = len(self.tasks)
        count = step.labelled.sum(1)                                                  # k_b [B]
        # one term per label count k, so that every reduction (and every rank under torchrun) sees the same calls
        return sum((T / k) * task_loss(task, pred, step.targets[task.name], labelled * (count == k),
                                       self.loss_options) for k in range(1, T + 1))

    def losses(self, step: Step, noise: Noise | None = None) -> LossTerms:
        final = self.denoised_labelled(step, noise)
        prelim = self.preliminary_predictions(step.refined, tuple(step.images.shape[-2:]))
        w = self.options.preliminary_weight
        return LossTerms({t.name: self._task_loss(t, i, final[t.name], step)
                          + w * self._task_loss(t, i, prelim[t.name], step) for i, t in enumerate(self.tasks)})


def _as_map(pred: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A dense map as it is; an image-level prediction [B, C] broadcast over the grid -> [B, C, h, w]."""
    return pred if pred.dim() == 4 else pred[:, :, None, None].expand(-1, -1, *grid)
