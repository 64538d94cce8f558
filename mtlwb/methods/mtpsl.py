"""Cross-task consistency in a task-pair-conditioned joint space (MTPSL).

Wei-Hong Li, Xialei Liu & Hakan Bilen, "Learning Multiple Dense Prediction Tasks from Partially Annotated Data",
CVPR 2022 (ref. code VICO-UoE/MTPSL). For a sample with source task s unlabelled and target task t labelled:

    m_s = M(stem_s(enc(ŷ_s)) | s→t),    m_t = M(stem_t(enc(y_t)) | s→t)
    L_st = (1 − cos(m_s, m_t)) + α · [(1 − cos(m_s, sg[f])) + (1 − cos(m_t, sg[f]))]

M is one shared mapping network whose every conv is followed by a norm and a FiLM (γ, β) read from learned tables
with one column per ordered pair (T(T−1) columns); f is the backbone feature (detached). The α bracket anchors the
joint space to the backbone's so the mapping cannot collapse to a constant. Cosine over channels, mean over
positions. All (sample, s, t) triples of a batch go through M in one call.

Normalization: the ref. code sums L_st over the pairs of a sample and divides by the batch size
(``reduction="batch"``); the default here (``"pairs"``) averages over the triples of the batch, so the term's scale
does not grow with the number of tasks. A segmentation prediction gets one Gumbel draw per sample, shared by its
pairs (the ref. redraws per pair); the ref.'s optional linear ramp-up of the weight is not reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, Step, register
from .encodings import clean_target, encode_label, encode_prediction


def _norm(kind: str, channels: int) -> nn.Module:
    # ref. code: BatchNorm at batch size 1, i.e. per-map statistics ("instance"); "batch" pools all triples
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(channels, channels)


class FiLMConv(nn.Module):
    """conv → norm → FiLM(γ[:, pair], β[:, pair]) → ReLU; tables start at the identity (γ = 1, β = 0)."""

    def __init__(self, cin: int, cout: int, num_pairs: int, norm: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = _norm(norm, cout)
        self.gamma = nn.Parameter(torch.ones(cout, num_pairs))
        self.beta = nn.Parameter(torch.zeros(cout, num_pairs))

    def forward(self, x: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))                                   # [N, cout, h, w]
        gamma = self.gamma[:, pair].t()[:, :, None, None]             # [N, cout, 1, 1]
        beta = self.beta[:, pair].t()[:, :, None, None]
        return F.relu(x * gamma + beta)


class MappingNet(nn.Module):
    """Shared, pair-conditioned encoder: [N, width, H, W] → [N, out_channels, H/8, W/8]."""

    def __init__(self, width: int, out_channels: int, num_pairs: int, norm: str) -> None:
        super().__init__()
        chans = [width, width, 2 * width, 4 * width]
        self.blocks = nn.ModuleList([FiLMConv(a, b, num_pairs, norm) for a, b in zip(chans[:-1], chans[1:])])
        self.out = FiLMConv(chans[-1], out_channels, num_pairs, norm)

    def forward(self, x: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = F.max_pool2d(block(x, pair), 2)                       # stride ×2 per block, ×8 in all
        return self.out(x, pair)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, C, h, w] × 2 → [N]: 1 − cos over channels, mean over positions."""
    return (1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-12)).flatten(1).mean(dim=1)


@dataclass
class MTPSLOptions:
    weight: float = 1.0            # ref. con_weight = 1
    reg_weight: float = 0.5        # α, ref. default
    width: int = 32                # ref. 64 → 512 (SegNet); small for CPU
    gumbel_tau: float = 1.0
    full_label_pairs: bool = True  # fully labelled samples use all pairs s ≠ t (ref. 'full' setting)
    mapping_lr: float | None = None  # ref. 1e-3 (10× its model lr 1e-4); None = the model's lr
    norm: str = "batch"
    reduction: str = "pairs"

    def __post_init__(self) -> None:
        for name in ("weight", "reg_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"mtpsl.{name}={getattr(self, name)}: must be >= 0")
        if self.width < 1:
            raise ValueError(f"mtpsl.width={self.width}: must be >= 1")
        if self.gumbel_tau <= 0:
            raise ValueError(f"mtpsl.gumbel_tau={self.gumbel_tau}: must be > 0")
        if self.mapping_lr is not None and self.mapping_lr <= 0:
            raise ValueError(f"mtpsl.mapping_lr={self.mapping_lr}: must be > 0 or None")
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"mtpsl.norm={self.norm!r}: allowed 'batch', 'instance'")
        if self.reduction not in ("pairs", "batch"):
            raise ValueError(f"mtpsl.reduction={self.reduction!r}: allowed 'pairs', 'batch'")


@register
class MTPSL(Method):
    name = "mtpsl"
    Options = MTPSLOptions

    def __init__(self, tasks, feature_channels: int, options: MTPSLOptions | None = None) -> None:
        super().__init__(tasks, feature_channels, options)
        o, T = self.options, len(self.tasks)
        if T < 2:
            raise ValueError(f"mtpsl needs at least 2 tasks, got {T}")
        self.stems = nn.ModuleList([nn.Sequential(nn.Conv2d(t.channels, o.width, 3, padding=1),
                                                  _norm(o.norm, o.width), nn.ReLU()) for t in self.tasks])
        self.mapping = MappingNet(o.width, feature_channels, T * (T - 1), o.norm)

    def pairs(self, labelled: torch.Tensor) -> torch.Tensor:
        """labelled [B, T] → [P, 3] long (sample, source s, target t): s unlabelled, t labelled, s ≠ t.

        A fully labelled sample contributes all T(T−1) pairs when ``full_label_pairs`` (every source is then a
        prediction checked against another task's label); a sample with no label contributes none.
        """
        lab = labelled.bool()
        B, T = lab.shape
        source = ~lab
        if self.options.full_label_pairs:
            source = source | lab.all(dim=1, keepdim=True)
        ok = source[:, :, None] & lab[:, None, :] & ~torch.eye(T, dtype=torch.bool, device=lab.device)
        return ok.nonzero()                                           # [P, 3], row-major: sample, s, t

    @staticmethod
    def pair_column(s: torch.Tensor, t: torch.Tensor, num_tasks: int) -> torch.Tensor:
        """Ordered pair (s, t), s ≠ t → column of the FiLM tables: row-major T×T with the diagonal removed."""
        return s * (num_tasks - 1) + t - (t > s).long()

    def _stems(self, enc: list[torch.Tensor], task: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Task-specific stems over the triples: each (sample, task) map is stemmed once, then gathered."""
        out = None
        for k, stem in enumerate(self.stems):
            sel = (task == k).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            rows, inverse = sample[sel].unique(return_inverse=True)
            y = stem(enc[k][rows])[inverse]                           # [n_k, width, H, W]
            if out is None:
                out = y.new_zeros(task.shape[0], *y.shape[1:])
            out = out.index_put((sel,), y)
        return out

    def losses(self, step: Step) -> dict[str, torch.Tensor]:
        out = self.supervised_losses(step)
        o, T = self.options, len(self.tasks)
        triples = self.pairs(step.labelled)
        if triples.shape[0] == 0:
            out["mtpsl"] = step.features.sum() * 0.0
            return out
        b, s, t = triples.unbind(dim=1)
        pred_enc = [encode_prediction(k, step.predictions[k.name], seg="hard", depth="max", tau=o.gumbel_tau)
                    for k in self.tasks]
        label_enc = [encode_label(k, clean_target(k, step.targets[k.name], step.labelled[:, i]), depth="max")
                     for i, k in enumerate(self.tasks)]
        pair = self.pair_column(s, t, T)
        x = torch.cat([self._stems(pred_enc, s, b), self._stems(label_enc, t, b)])   # [2P, width, H, W]
        m_s, m_t = self.mapping(x, torch.cat([pair, pair])).chunk(2)                  # [P, C, h', w'] each
        f = step.features.detach()[b]                                                 # [P, C, h, w]
        if m_s.shape[-2:] != f.shape[-2:]:
            m_s = F.interpolate(m_s, size=f.shape[-2:], mode="bilinear", align_corners=False)
            m_t = F.interpolate(m_t, size=f.shape[-2:], mode="bilinear", align_corners=False)
        per_pair = cosine_distance(m_s, m_t) + o.reg_weight * (cosine_distance(m_s, f) + cosine_distance(m_t, f))
        total = per_pair.mean() if o.reduction == "pairs" else per_pair.sum() / step.labelled.shape[0]
        out["mtpsl"] = o.weight * total
        return out

    def parameter_groups(self, lr: float) -> list[dict]:
        lr = self.options.mapping_lr if self.options.mapping_lr is not None else lr
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]
