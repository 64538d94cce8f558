"""Cross-task consistency in a task-pair-conditioned joint space (MTPSL).

Wei-Hong Li, Xialei Liu & Hakan Bilen, "Learning Multiple Dense Prediction Tasks from Partially Annotated Data",
CVPR 2022 (ref. code VICO-UoE/MTPSL). For a sample with source task s unlabelled and target task t labelled:

    m_s = M(stem_s(enc(ŷ_s)) | s→t),    m_t = M(stem_t(enc(y_t)) | s→t)
    L_st = (1 − cos(m_s, m_t)) + α · [(1 − cos(m_s, sg[f])) + (1 − cos(m_t, sg[f]))]

M is one shared mapping network whose every conv is followed by a norm and a FiLM (γ, β) read from learned tables
with one column per ordered pair (T(T−1) columns); f is the backbone feature (detached). The α bracket anchors the
joint space to the backbone's so the mapping cannot collapse to a constant. Cosine over channels, mean over
positions. All (sample, s, t) triples of a batch go through M in one call.

Normalization and weights (defaults = the ref. code, ``nyu_mtl_xtc.py``): L_st is summed over the pairs of a
sample and divided by the batch size (``reduction="batch"``; ``"pairs"`` averages over the triples of the batch
instead, so the term's scale does not grow with the number of tasks), with ``weight`` 2.0 (``--con-weight``) and
α = 0.5 (``--reg-weight``). The ref. runs the mapping network on one map at a time, so its BatchNorm normalizes each
map alone: ``norm="instance"`` (per-map statistics, the default) is that; ``"batch"`` pools all triples of the batch.
``views=2`` is the ref.'s protocol: the consistency term reads a second view (a further random scale-crop of the
first: predictions, labels and backbone feature of view 1), the supervised losses view 0. The ref. optimizes the
FiLM γ/β tables alone with Adam lr 1e-3 and StepLR(30, 0.5) (``film_lr``, ``film_lr_step``, ``film_lr_gamma``), the
rest of the mapping network with the model (lr 1e-4, StepLR(100, 0.5)). The ref.'s optional linear ramp-up of the
weight (``--rampup up``; off in its commands) is not reproduced.

Fidelity (``fidelity``, see ``arch.py``): ``"published_code"`` computes exactly what the ref. code computes (pinned
by ``tests/test_reference_parity.py`` against a recording of it, float64, to 1e-8); ``"paper"`` differs only where
the ref.'s choices are incidental. ``"auto"`` (default) is ``published_code`` with ``arch="reference"`` and
``paper`` with ``arch="compact"`` (the compact runs made before the switch keep their ids and numbers). The
differences, each an option of its own (None: as ``fidelity`` says):

    option            paper     published_code  what the ref. code does
    gumbel_per_pair   False     True            a segmentation prediction gets a fresh Gumbel draw for every pair
                                                it is the source of (paper: one per sample, shared by its pairs;
                                                same expected loss, lower variance, stems run once per map)
    full_label_pairs  "full_run" "full_run"     a fully labelled sample takes part in no pair, unless every row of
                                                the run's label table is fully labelled (the ref.'s ``full``
                                                setting, all T(T−1) pairs); True: all pairs always, False: never.
                                                (The ref. even fails on such a row in a partial run, its loss being
                                                the integer 0; no row of its published label files is full.) The
                                                published behaviour under both fidelities (the paper pairs an
                                                unlabelled task with a labelled one); True was the default until
                                                issue 20 and is an option.
    dot_normal_loss   False     True            supervised normal loss 1 − Σ pred·gt / valid pixels (see
                                                ``jtr.py``; where ``normal_loss`` is the default cosine)

Image-level tasks (classification, regression; ``image_level_encoding``, see ``encodings.py``): ``"broadcast"``
(default) makes each one a map like any other — the Gumbel one-hot of its logits (a label: one-hot) or Φ((y − loc)
/ scale), constant over the image — with its own stem and its own FiLM pair columns, so an unlabelled dense task
is checked against a labelled image-level one and the other way round, through the same mapping network. The
stems see constant maps (their border padding is the only spatial structure), which is the price of needing no
vector branch. ``"none"``: image-level tasks take part in no pair (T counts the dense tasks only; supervised loss
for them), the ablation of the choice.

Prior knowledge of task relations (``ExperimentConfig.task_prior``, P [T, T], not in the paper): only the ordered
pairs the prior marks as related, P[s, t] > ``prior_threshold`` (default 0: any stated relation), enter the loss,
so a sparse prior also cuts the quadratic cost (a chain prior, each task related to its neighbours, leaves
2(T−1) of the T(T−1) pairs of a fully labelled sample). With ``prior_weighting`` each pair's term L_st is multiplied
by P[s, t]; the "batch" reduction then sums the weighted terms / B, "pairs" takes their weighted mean (Σ w L / Σ w).
Without a prior, nothing changes.

Cost (CPU default): the stems have stride 2 and M downsamples with stride-2 convs (like the backbone), width 16;
the stems and M's first conv run once per distinct (sample, task) map, not once per triple. ``input_stride=1,
width=32`` restores the former full-resolution layout exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.ops import channel_cosine
from ..data.views import ViewSpec
from ..objectives.losses import LossOptions, with_dot_normals
from ..tasks.priors import restricted
from .arch import check_arch, resolve_fidelity
from .base import LossTerms, Method, Step, register
from .encodings import (
    IMAGE_LEVEL_ENCODINGS,
    clean_target,
    encode_label,
    encode_prediction,
    gumbel_noise,
    joint_task_indices,
)
from .mtpsl_mapfns import ReferenceMappingNet, reference_anchor, reference_stems


def _norm(kind: str, channels: int) -> nn.Module:
    # ref. code: BatchNorm at batch size 1, i.e. per-map statistics ("instance"); "batch" pools all triples
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(channels, channels)


class FiLMConv(nn.Module):
    """conv → norm → FiLM(γ[:, pair], β[:, pair]) → ReLU; tables start at the identity (γ = 1, β = 0)."""

    def __init__(self, cin: int, cout: int, num_pairs: int, norm: str, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.norm = _norm(norm, cout)
        self.gamma = nn.Parameter(torch.ones(cout, num_pairs))
        self.beta = nn.Parameter(torch.zeros(cout, num_pairs))

    def forward(self, x: torch.Tensor, pair: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """x [M, cin, h, w]; ``rows`` [N] picks each triple's map from x after the conv (None: M = N, in order).

        The conv does not depend on the pair, so a map shared by several triples is convolved once.
        """
        x = self.conv(x)
        if rows is not None:
            x = x[rows]
        x = self.norm(x)                                              # [N, cout, h, w]
        gamma = self.gamma[:, pair].t()[:, :, None, None]             # [N, cout, 1, 1]
        beta = self.beta[:, pair].t()[:, :, None, None]
        return F.relu(torch.addcmul(beta, x, gamma))


class MappingNet(nn.Module):
    """Shared, pair-conditioned encoder: stem maps [M, width, H/s, W/s] → [N, out_channels, H/8, W/8].

    ``input_stride`` s is the stems' stride. 1 is the ref. layout (stems and first block at full resolution, 2×2
    max-pooling after each block); 2 (stems with stride 2) downsamples with stride-2 convs in the second and third
    blocks instead of pooling: no conv at full resolution, no max-pool (slow over NCHW on CPU), same depth, widths
    and output resolution.
    """

    def __init__(self, width: int, out_channels: int, num_pairs: int, norm: str, input_stride: int = 2) -> None:
        super().__init__()
        chans = [width, width, 2 * width, 4 * width]
        self.pool = input_stride == 1
        strides = [1, 1, 1] if self.pool else [1, 2, 2]
        self.blocks = nn.ModuleList([FiLMConv(a, b, num_pairs, norm, st)
                                     for a, b, st in zip(chans[:-1], chans[1:], strides)])
        self.out = FiLMConv(chans[-1], out_channels, num_pairs, norm)

    def forward(self, x: torch.Tensor, pair: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, pair, rows if i == 0 else None)
            if self.pool:
                x = F.max_pool2d(x, 2)                                # stride ×2 per block, ×8 in all
        return self.out(x, pair)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, C, h, w] × 2 → [N]: 1 − cos over channels, mean over positions."""
    return (1.0 - channel_cosine(a, b, eps=1e-12)).flatten(1).mean(dim=1)


# {option: (paper, published_code, allowed values)}; see the module docstring's table
FIDELITY_SWITCHES = {
    "gumbel_per_pair": (False, True, (False, True)),
    "full_label_pairs": ("full_run", "full_run", (True, False, "full_run")),
    "dot_normal_loss": (False, True, (False, True)),
}


@dataclass
class MTPSLOptions:
    weight: float = 2.0            # ref. --con-weight 2.0
    reg_weight: float = 0.5        # α, ref. --reg-weight 0.5
    width: int = 16                # ref. 64 → 512 (SegNet); small for CPU (was 32)
    input_stride: int = 2          # stems' stride: 2 = backbone-like, 1 = ref. layout at full resolution
    gumbel_tau: float = 1.0
    full_label_pairs: bool | str | None = None  # fully labelled samples: all pairs (True), none (False), all only
    #                                in a fully labelled run ("full_run", the ref.); None: as fidelity says
    mapping_lr: float | None = None  # the mapping network's convs and norms; ref. = the model's lr (None)
    film_lr: float | None = None   # FiLM γ/β tables; ref. 1e-3 (10× its model lr 1e-4); None = mapping_lr
    film_lr_step: int = 0          # ref. 30: their own StepLR(film_lr_step, film_lr_gamma); 0 = the model's schedule
    film_lr_gamma: float = 0.5
    norm: str = "instance"         # ref.: each map normalized alone; "batch" pools the batch's triples
    reduction: str = "batch"       # ref.: pairs summed per sample, / B; "pairs" = mean over the batch's triples
    views: int = 1                 # ref. 2: the consistency term on a further scale-crop of the supervised view
    arch: str = "compact"          # "reference": the published Mapfns layout (mtpsl_mapfns.py); width,
    #                                input_stride and norm then stay at their defaults (they shape "compact")
    image_level_encoding: str = "broadcast"   # image-level tasks as constant maps in the pairs; "none": no pairs
    prior_threshold: float = 0.0   # with a task_prior: only pairs with P[s, t] > threshold enter the loss
    prior_weighting: bool = False  # with a task_prior: each pair's term × P[s, t]
    fidelity: str = "auto"         # paper | published_code | auto (published_code with arch "reference")
    gumbel_per_pair: bool | None = None    # ref.: a fresh Gumbel draw per pair; None: as fidelity says
    dot_normal_loss: bool | None = None    # ref.: supervised normal loss 1 − pred·gt; None: as fidelity says

    def __post_init__(self) -> None:
        if self.image_level_encoding not in IMAGE_LEVEL_ENCODINGS:
            raise ValueError(f"mtpsl.image_level_encoding={self.image_level_encoding!r}: allowed "
                             f"{IMAGE_LEVEL_ENCODINGS}")
        for name in ("weight", "reg_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"mtpsl.{name}={getattr(self, name)}: must be >= 0")
        if self.width < 1:
            raise ValueError(f"mtpsl.width={self.width}: must be >= 1")
        if self.input_stride not in (1, 2):
            raise ValueError(f"mtpsl.input_stride={self.input_stride}: allowed (1, 2)")
        if self.gumbel_tau <= 0:
            raise ValueError(f"mtpsl.gumbel_tau={self.gumbel_tau}: must be > 0")
        for name in ("mapping_lr", "film_lr"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"mtpsl.{name}={getattr(self, name)}: must be > 0 or None")
        if self.film_lr_step < 0 or self.film_lr_gamma <= 0:
            raise ValueError(f"mtpsl.film_lr_step={self.film_lr_step}, film_lr_gamma={self.film_lr_gamma}: "
                             "need step >= 0 and gamma > 0")
        if self.views not in (1, 2):
            raise ValueError(f"mtpsl.views={self.views}: allowed 1 (one view) or 2 (ref.: consistency on view 1)")
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"mtpsl.norm={self.norm!r}: allowed 'batch', 'instance'")
        if self.reduction not in ("pairs", "batch"):
            raise ValueError(f"mtpsl.reduction={self.reduction!r}: allowed 'pairs', 'batch'")
        check_arch("mtpsl", self, {"width": 16, "input_stride": 2, "norm": "instance"})
        if isinstance(self.prior_threshold, bool) or not 0 <= self.prior_threshold < 1:
            raise ValueError(f"mtpsl.prior_threshold={self.prior_threshold}: must be a number in [0, 1)")
        if not isinstance(self.prior_weighting, bool):
            raise ValueError(f"mtpsl.prior_weighting={self.prior_weighting!r}: must be true or false")
        resolve_fidelity("mtpsl", self, FIDELITY_SWITCHES)


@register
class MTPSL(Method):
    name = "mtpsl"
    Options = MTPSLOptions

    def __init__(self, tasks, feature_channels: int, options: MTPSLOptions | None = None) -> None:
        super().__init__(tasks, feature_channels, options)
        o = self.options
        self.joint_idx = joint_task_indices(self.tasks, o.image_level_encoding)     # tasks in the pairs
        self.joint_tasks = [self.tasks[i] for i in self.joint_idx]
        T = len(self.joint_tasks)
        if T < 2:
            raise ValueError(f"mtpsl needs at least 2 tasks in its pairs, got {T} of tasks "
                             f"{[t.name for t in self.tasks]} (image_level_encoding={o.image_level_encoding!r})")
        if o.arch == "reference":
            self.stems = reference_stems([t.channels for t in self.joint_tasks])
            self.mapping = ReferenceMappingNet(T * (T - 1))
        else:
            self.stems = nn.ModuleList([nn.Sequential(nn.Conv2d(t.channels, o.width, 3, stride=o.input_stride,
                                                                padding=1), _norm(o.norm, o.width), nn.ReLU())
                                        for t in self.joint_tasks])
            self.mapping = MappingNet(o.width, feature_channels, T * (T - 1), o.norm, o.input_stride)
        self.full_run = False      # every row of the run's label table fully labelled (``use_label_table``)

    def use_label_table(self, labelled: torch.Tensor) -> None:
        """Whether the run is fully labelled: ``full_label_pairs="full_run"`` (the ref.) pairs full rows only then."""
        table = labelled[:, self.joint_idx] if labelled.dim() == 2 else labelled
        self.full_run = bool(table.numel()) and bool(table.bool().all())

    def supervised_loss_options(self) -> LossOptions:
        """The config's, with the ref.'s dot-product normal loss under ``dot_normal_loss``."""
        return with_dot_normals(self.loss_options) if self.options.dot_normal_loss else self.loss_options

    @classmethod
    def check_task_prior(cls, options: MTPSLOptions, prior: torch.Tensor | None) -> None:
        if prior is None:
            return
        off = prior.masked_fill(torch.eye(prior.shape[0], dtype=torch.bool), 0.0)
        if not (off > options.prior_threshold).any():
            raise ValueError(f"task_prior relates no pair of tasks above mtpsl.prior_threshold="
                             f"{options.prior_threshold}: the consistency term would never run")

    @property
    def joint_prior(self) -> torch.Tensor | None:
        """The task_prior over the tasks in the pairs ([T, T] in ``joint_tasks`` order), None without one."""
        return None if self.task_prior is None else restricted(self.task_prior, self.joint_idx)

    def pairs(self, labelled: torch.Tensor) -> torch.Tensor:
        """labelled [B, T] → [P, 3] long (sample, source s, target t): s unlabelled, t labelled, s ≠ t.

        A fully labelled sample contributes all T(T−1) pairs when ``full_label_pairs`` is True, or is "full_run"
        in a fully labelled run (every source is then a prediction checked against another task's label), none
        otherwise; a sample with no label contributes none. With a ``task_prior``, only pairs with P[s, t] >
        ``prior_threshold`` remain.
        """
        lab = labelled.bool()
        B, T = lab.shape
        source = ~lab
        full = self.options.full_label_pairs
        if full is True or (full == "full_run" and self.full_run):
            source = source | lab.all(dim=1, keepdim=True)
        ok = source[:, :, None] & lab[:, None, :] & ~torch.eye(T, dtype=torch.bool, device=lab.device)
        if self.joint_prior is not None:
            ok = ok & (self.joint_prior > self.options.prior_threshold).to(lab.device)[None]
        return ok.nonzero()                                           # [P, 3], row-major: sample, s, t

    @staticmethod
    def pair_column(s: torch.Tensor, t: torch.Tensor, num_tasks: int) -> torch.Tensor:
        """Ordered pair (s, t), s ≠ t → column of the FiLM tables: row-major T×T with the diagonal removed."""
        return s * (num_tasks - 1) + t - (t > s).long()

    def _stems(self, enc: list[torch.Tensor], task: torch.Tensor, sample: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
        """Stem each distinct (sample, task) map of the triples once: (maps [M, width, h, w], rows [P] into them).

        A prediction is the source of up to T−1 pairs and a label the target of up to T−1; the stems and the
        mapping net's first conv are pair-independent, so they run on the M distinct maps and the triples gather
        their rows afterwards (``MappingNet(rows=…)``): their cost grows with B·T, not with the pairs. ``sample``
        [P] is each triple's row in ``enc[task]`` (the sample, or the triple's own row for per-pair encodings).
        """
        T = len(self.joint_tasks)
        keys, rows = (sample * T + task).unique(return_inverse=True)      # keys sorted: grouped by row
        key_sample, key_task = keys // T, keys % T
        out, order = [], []
        for k, stem in enumerate(self.stems):
            sel = (key_task == k).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            out.append(stem(enc[k][key_sample[sel]]))
            order.append(sel)
        order_all = torch.cat(order)
        maps = torch.cat(out)                                             # rows in `order_all` order
        position = torch.empty_like(order_all)
        position[order_all] = torch.arange(order_all.numel(), device=order_all.device)
        return maps, position[rows]

    @property
    def view_spec(self) -> ViewSpec:
        return ViewSpec(extra=self.options.views - 1)

    def consistency_view(self, step: Step) -> Step:
        """The view the consistency term reads: view 1 with ``views=2`` (the ref.'s), else the supervised one."""
        return step.views[0] if self.options.views == 2 else step

    def draw_noise(self, step: Step, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Gumbel noise of the categorical predictions, {task: [B, C, H, W]} (one draw per sample) or, with
        ``gumbel_per_pair``, {task: [P, C, H, W]} (one per triple of ``pairs``, in its order), so that two code
        paths can share it; ``losses`` draws its own when given none."""
        view = self.consistency_view(step)
        b = self.pairs(view.labelled[:, self.joint_idx])[:, 0]
        return {k.name: gumbel_noise(view.predictions[k.name][b] if self.options.gumbel_per_pair
                                     else view.predictions[k.name], generator)
                for k in self.joint_tasks if k.kind_object.categorical}

    def _source_encodings(self, step: Step, b: torch.Tensor, s: torch.Tensor,
                          noise: dict[str, torch.Tensor] | None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encoded source predictions per task and each triple's row in its task's tensor: [B, C, H, W] and the
        sample, or (``gumbel_per_pair``, categorical tasks) [P_k, C, H, W], one Gumbel draw per triple."""
        o = self.options
        size = tuple(step.images.shape[-2:])                                          # dense predictions' size
        index, encodings = b.clone(), []
        for k, task in enumerate(self.joint_tasks):
            pred = step.predictions[task.name]
            n = None if noise is None else noise.get(task.name)
            if o.gumbel_per_pair and task.kind_object.categorical:
                sel = (s == k).nonzero().squeeze(1)
                index[sel] = torch.arange(sel.numel(), device=b.device)
                pred, n = pred[b[sel]], None if n is None else n[sel]
            encodings.append(encode_prediction(task, pred, seg="hard", depth="max", tau=o.gumbel_tau, noise=n,
                                               size=size))
        return encodings, index

    def losses(self, step: Step, noise: dict[str, torch.Tensor] | None = None) -> LossTerms:
        """``noise``: the Gumbel noise of the consistency view's categorical predictions (``draw_noise``; drawn
        when None)."""
        supervised = self.supervised_losses(step)
        step = self.consistency_view(step)
        o, T = self.options, len(self.joint_tasks)
        labelled = step.labelled[:, self.joint_idx]                                   # [B, T] pair columns
        triples = self.pairs(labelled)
        if triples.shape[0] == 0:
            return LossTerms(supervised, {"mtpsl": step.features.sum() * 0.0})
        b, s, t = triples.unbind(dim=1)
        size = tuple(step.images.shape[-2:])                                          # dense predictions' size
        pred_enc, source_index = self._source_encodings(step, b, s, noise)
        label_enc = [encode_label(k, clean_target(k, step.targets[k.name], labelled[:, i]), depth="max", size=size)
                     .to(pred_enc[i].dtype) for i, k in enumerate(self.joint_tasks)]      # one-hots are float32
        pair = self.pair_column(s, t, T)
        maps_s, rows_s = self._stems(pred_enc, s, source_index)                       # [M_s, width, h, w], [P]
        maps_t, rows_t = self._stems(label_enc, t, b)
        rows = torch.cat([rows_s, rows_t + maps_s.shape[0]])                          # [2P]
        m_s, m_t = self.mapping(torch.cat([maps_s, maps_t]), torch.cat([pair, pair]), rows).chunk(2)
        f = (reference_anchor(step) if o.arch == "reference" else step.features).detach()[b]  # [P, C, h, w]
        if m_s.shape[-2:] != f.shape[-2:]:
            m_s = F.interpolate(m_s, size=f.shape[-2:], mode="bilinear", align_corners=False)
            m_t = F.interpolate(m_t, size=f.shape[-2:], mode="bilinear", align_corners=False)
        per_pair = cosine_distance(m_s, m_t) + o.reg_weight * (cosine_distance(m_s, f) + cosine_distance(m_t, f))
        if self.joint_prior is not None and o.prior_weighting:
            w = self.joint_prior[s, t].to(per_pair.dtype)                             # [P], > threshold >= 0
            total = (w * per_pair).sum() / (w.sum() if o.reduction == "pairs" else labelled.shape[0])
        else:
            total = per_pair.mean() if o.reduction == "pairs" else per_pair.sum() / labelled.shape[0]
        return LossTerms(supervised, {"mtpsl": o.weight * total})

    def parameter_groups(self, lr: float) -> list[dict]:
        """Mapping network at ``mapping_lr``; the FiLM tables at ``film_lr`` with their own decay if set (ref.)."""
        o = self.options
        net_lr = o.mapping_lr if o.mapping_lr is not None else lr
        film, rest = [], []
        for n, p in self.named_parameters():
            if p.requires_grad:
                (film if n.rsplit(".", 1)[-1] in ("gamma", "beta") else rest).append(p)
        film_group = {"params": film, "lr": o.film_lr if o.film_lr is not None else net_lr}
        if o.film_lr_step:
            film_group.update(lr_step=o.film_lr_step, lr_gamma=o.film_lr_gamma)
        return [{"params": rest, "lr": net_lr}, film_group]
