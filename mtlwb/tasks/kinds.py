"""Task kinds: everything that depends on *what* a task predicts, one object per kind.

A ``TaskSpec`` names a task (``semantic``, ``depth``, …); its ``kind`` names one of the objects below, which owns
the rules every layer needs for that kind of prediction, so that adding a kind is one class and ``register_kind``:

- labels: which entries of a target are valid (``valid``), the placeholder of an unlabelled item
  (``placeholder``), the neutral value an unlabelled target is replaced by (``clean``);
- the head: whether the prediction is one vector per image (``image_level``), a fixed width (``fixed_channels``), what
  is applied to the head's raw output (``activate``: normals become unit vectors);
- the supervised loss (``loss_terms``: per-pixel loss and weight, reduced by ``mtlwb.objectives.losses``);
- the metrics (``meter``) and their direction (``metric_directions``, read by Δ_MTL);
- the joint spaces of MTPSL and JTR (``encode_prediction``, ``encode_label``; ``categorical``: labels are class
  indices, encoded one-hot; ``joint_space``: how an encoding is compared — probabilities, values in (0, 1) or
  directions);
- augmentation (``rescaled``, ``flipped``; ``directional``: values are unit vectors);
- figures (``to_rgb``, ``error_map``, ``error_unit``, ``error_range``, ``error_ticks``);
- the diagnostics' ground truth as a prediction (``target_forms``).

Each kind computes exactly what the string branches it replaces computed, in the same order (same numbers).
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..core.ops import channel_cosine, channel_normalize
from . import meters
from .encoding import (
    DEPTH_MU,
    DEPTH_SIGMA,
    depth_by_cdf,
    depth_by_max,
    normal_unit,
    regression_unit,
    segmentation_label,
    segmentation_prediction,
)
from .labels import IGNORE_INDEX, valid_samples
from .target_forms import TargetForms, classes_forms, edge_forms, normal_forms, value_forms
from .task import Task


class LossForms(Protocol):
    """The loss options a kind reads (``mtlwb.objectives.losses.LossOptions`` is one)."""

    reduction: str
    edge: str
    normal: str
    edge_pos_weight: float
    regression: str


def _palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.uniform(0.15, 1.0, (max(n, 1), 3)) * 255).astype(np.uint8)


class TaskKind:
    """One kind of prediction. Subclasses set the class attributes and override what differs from a dense map of
    real values (the defaults: every pixel valid, zeros as placeholder, the raw output as prediction, a grey figure,
    |ŷ − y| as error)."""

    name: ClassVar[str]
    image_level: ClassVar[bool] = False        # one prediction per image [B, C], not a map [B, C, H, W]
    fixed_channels: ClassVar[int | None] = None    # the prediction's width if the kind fixes it (normals 3)
    categorical: ClassVar[bool] = False        # labels are class indices (−1 = ignore); encoded one-hot
    directional: ClassVar[bool] = False        # values are unit vectors (normals): resampled and flipped as such
    joint_space: ClassVar[str] = "probabilities"   # encodings compared as "probabilities", "values" or "directions"
    meter_class: ClassVar[type[meters.TaskMeter]]
    metric_directions: ClassVar[dict[str, bool]] = {}     # metric key -> lower is better
    error_unit: ClassVar[str] = "|error|"      # what the error panel of a figure measures
    error_range: ClassVar[tuple[float, float] | None] = None   # a fixed colour range of the error (None: by data)
    error_ticks: ClassVar[tuple[tuple[float, ...], tuple[str, ...]] | None] = None
    target_forms: ClassVar[TargetForms | None] = None

    # -- labels ---------------------------------------------------------------------------------------------------
    def valid(self, task: Task, target: torch.Tensor) -> torch.Tensor:
        """Where the ground truth is defined: dense [B, 1, H, W] bool, image-level [B] bool."""
        return torch.ones_like(target, dtype=torch.bool)

    def neutral(self, target: torch.Tensor) -> torch.Tensor:
        """The value an unlabelled target is replaced by before any arithmetic (ignore index or zeros)."""
        return torch.full_like(target, IGNORE_INDEX) if self.categorical else torch.zeros_like(target)

    def clean(self, task: Task, target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """``target`` with the rows of unlabelled samples (``labelled`` [B] in {0, 1}) set to ``neutral``."""
        keep = labelled.bool().view(-1, *([1] * (target.dim() - 1)))
        return torch.where(keep, target, self.neutral(target))

    def placeholder(self, task: Task, size: tuple[int, int]) -> torch.Tensor:
        """The target of an item whose source does not label the task (the label table says unlabelled)."""
        return torch.zeros(task.channels, *size)                                        # [C, H, W]

    def random_target(self, task: Task, batch: int, size: tuple[int, int],
                      generator: torch.Generator | None) -> torch.Tensor:
        """A random ground truth shaped and typed as a loader gives it, for benchmarks and tests (no dataset
        needed): here real values in [0, 1) [B, C, H, W]."""
        return torch.rand(batch, task.channels, *size, generator=generator)

    # -- the head -------------------------------------------------------------------------------------------------
    def check(self, task: Task) -> None:
        """Refuse a task this kind cannot predict (one line naming the field)."""
        if self.fixed_channels is not None and task.channels != self.fixed_channels:
            raise ValueError(f"TaskSpec.channels={task.channels} for {task.name!r}: a {self.name} task has "
                             f"{self.fixed_channels}")

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        """The head's raw output -> the task's prediction (the loss and the meters read this)."""
        return raw

    # -- the supervised loss --------------------------------------------------------------------------------------
    def loss_terms(self, task: Task, pred: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor,
                   options: LossForms) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-pixel loss, weight), both [B, 1, H, W], weight 0 on invalid pixels and unlabelled samples.

        Unlabelled targets may hold anything (even NaN in a loader's placeholder): they are replaced by zeros
        before they touch arithmetic, so nothing leaks; ``pixel_loss`` then sees a clean target.
        """
        sample_w = labelled.to(pred.dtype).view(-1, 1, 1, 1)
        keep = sample_w.bool()
        tgt = torch.where(keep, target, torch.zeros_like(target))
        weight = self.valid(task, tgt).to(pred.dtype) * sample_w
        return self.pixel_loss(task, pred, tgt, weight, options)

    def pixel_loss(self, task: Task, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                   options: LossForms) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense kinds: (per-pixel loss, weight) of a cleaned target; default |ŷ − y|."""
        return (pred - target).abs(), weight

    # -- metrics --------------------------------------------------------------------------------------------------
    def meter(self, task: Task) -> meters.TaskMeter:
        """A fresh meter of the task's metrics over a split."""
        return self.meter_class(task)

    def lower_is_better(self, metric: str) -> bool | None:
        """Direction of one of this kind's metrics (None: not one of them)."""
        return self.metric_directions.get(metric)

    # -- joint spaces (MTPSL, JTR) --------------------------------------------------------------------------------
    def encode_prediction(self, task: Task, pred: torch.Tensor, *, seg: str = "hard", depth: str = "max",
                          tau: float = 1.0, mu: float = DEPTH_MU, sigma: float = DEPTH_SIGMA,
                          noise: torch.Tensor | None = None) -> torch.Tensor:
        """Raw head output -> its encoding, same shape (image-level [B, C]; the methods broadcast it).
        ``seg``, ``tau``, ``noise``: categorical kinds (hard Gumbel one-hot or softmax); ``depth``, ``mu``,
        ``sigma``: depth (by max or Φ)."""
        raise NotImplementedError(f"task kind {self.name!r} has no joint-space encoding")

    def encode_label(self, task: Task, target: torch.Tensor, *, depth: str = "max", mu: float = DEPTH_MU,
                     sigma: float = DEPTH_SIGMA) -> torch.Tensor:
        """A cleaned target (see ``clean``) -> its encoding, shaped like ``encode_prediction``'s."""
        raise NotImplementedError(f"task kind {self.name!r} has no joint-space encoding")

    # -- augmentation ---------------------------------------------------------------------------------------------
    def rescaled(self, target: torch.Tensor, scale: float) -> torch.Tensor:
        """A target resized by a scale-crop of factor ``scale`` (values that measure distance change)."""
        return target

    def flipped(self, target: torch.Tensor) -> torch.Tensor:
        """A target already mirrored left-right: the values that change with the mirror (a normal's x)."""
        return target

    # -- figures --------------------------------------------------------------------------------------------------
    def to_rgb(self, task: Task, array: np.ndarray) -> np.ndarray:
        """A map [C, H, W] (or [H, W] labels) as an RGB uint8 image [H, W, 3]; default: grey to the 99th pct."""
        x = self.display_values(array[0])
        hi = np.percentile(x, 99) if x.max() > 0 else 1.0
        gray = (np.clip(x / max(hi, 1e-6), 0, 1) * 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, -1)

    def display_values(self, x: np.ndarray) -> np.ndarray:
        """One channel [H, W] as the grey figure shows it."""
        return x

    def error_map(self, task: Task, pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        """Per-pixel error [H, W] in the task's unit, of one prediction [C, H, W] and its target."""
        return (pred[0] - target[0]).abs().numpy()


# -- the registry ---------------------------------------------------------------------------------------------------
_KINDS: dict[str, TaskKind] = {}


def register_kind(kind: TaskKind) -> TaskKind:
    """Make ``kind`` known by its ``name`` (a ``TaskSpec`` of that kind then resolves to it). Refuses a name
    already taken by another kind."""
    if not getattr(kind, "name", ""):
        raise ValueError(f"register_kind: {type(kind).__name__} has no name")
    held = _KINDS.get(kind.name)
    if held is not None and type(held) is not type(kind):
        raise ValueError(f"register_kind: kind {kind.name!r} is already {type(held).__name__}")
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> TaskKind:
    """The registered kind ``name`` (a clear error naming the allowed ones otherwise)."""
    if name not in _KINDS:
        raise ValueError(f"TaskSpec.kind={name!r}: allowed {tuple(_KINDS)}")
    return _KINDS[name]


def registered_kinds() -> dict[str, TaskKind]:
    """Every registered kind by name (a copy)."""
    return dict(_KINDS)


# -- the built-in kinds ---------------------------------------------------------------------------------------------
class Segmentation(TaskKind):
    """Per-pixel classes: target [B, H, W] long (−1 = ignore), prediction C logits; cross-entropy; mIoU."""

    name = "segmentation"
    categorical = True
    meter_class = meters.SegmentationMeter
    metric_directions = {"miou": False, "pixel_acc": False}
    error_unit = "wrong class"
    error_range = (0.0, 1.0)
    error_ticks = ((0.25, 0.75), ("right", "wrong"))
    target_forms = classes_forms()

    def valid(self, task, target):
        return (target != IGNORE_INDEX).unsqueeze(1)

    def placeholder(self, task, size):
        return torch.full(size, IGNORE_INDEX, dtype=torch.int64)                       # [H, W]

    def random_target(self, task, batch, size, generator):
        return torch.randint(IGNORE_INDEX, task.channels, (batch, *size), generator=generator)    # [B, H, W], −1 ignore

    def loss_terms(self, task, pred, target, labelled, options):
        keep = labelled.to(pred.dtype).view(-1, 1, 1, 1).bool()
        tgt = torch.where(keep[:, 0], target, torch.full_like(target, IGNORE_INDEX))
        per_pixel = F.cross_entropy(pred, tgt.clamp_min(0), reduction="none").unsqueeze(1)
        return per_pixel, (tgt != IGNORE_INDEX).unsqueeze(1).to(pred.dtype)

    def encode_prediction(self, task, pred, *, seg="hard", depth="max", tau=1.0, mu=DEPTH_MU, sigma=DEPTH_SIGMA,
                          noise=None):
        return segmentation_prediction(pred, hard=seg == "hard", tau=tau, noise=noise)

    def encode_label(self, task, target, *, depth="max", mu=DEPTH_MU, sigma=DEPTH_SIGMA):
        return segmentation_label(target, task.channels)

    def to_rgb(self, task, array):
        labels = array if array.ndim == 2 else array.argmax(0)
        rgb = _palette(task.channels)[np.clip(labels, 0, None).astype(int) % task.channels]
        rgb[labels < 0] = 0
        return rgb

    def error_map(self, task, pred, target):
        return (pred.argmax(0) != target).float().numpy()


class Saliency(Segmentation):
    """Salient / background as a 2-class segmentation, also scored by the thresholded maxF of ASTMT / MTI-Net."""

    name = "saliency"
    fixed_channels = 2
    meter_class = meters.SaliencyMeter
    metric_directions = {**Segmentation.metric_directions, "maxf": False, "max_miou": False}


class Depth(TaskKind):
    """Metric depth [B, 1, H, W], 0 = no measurement; L1; absolute / relative error, RMSE."""

    name = "depth"
    fixed_channels = 1
    joint_space = "values"
    meter_class = meters.DepthMeter
    metric_directions = {"abs_err": True, "rel_err": True, "rmse": True}
    target_forms = value_forms(0.1, multiplicative=True)

    def valid(self, task, target):
        return target != 0

    def random_target(self, task, batch, size, generator):
        return torch.rand(batch, 1, *size, generator=generator) * 5.0                   # metres, [B, 1, H, W]

    def encode_prediction(self, task, pred, *, seg="hard", depth="max", tau=1.0, mu=DEPTH_MU, sigma=DEPTH_SIGMA,
                          noise=None):
        return depth_by_max(pred) if depth == "max" else depth_by_cdf(pred, mu, sigma)

    def encode_label(self, task, target, *, depth="max", mu=DEPTH_MU, sigma=DEPTH_SIGMA):
        return depth_by_max(target) if depth == "max" else depth_by_cdf(target, mu, sigma)

    def rescaled(self, target, scale):
        return target / scale                    # zooming in by s brings the scene s times closer


class Normal(TaskKind):
    """Surface normals [B, 3, H, W], unit vectors (all-zero = invalid); cosine / dot / L1 loss; angular errors."""

    name = "normal"
    fixed_channels = 3
    directional = True
    joint_space = "directions"
    meter_class = meters.NormalMeter
    metric_directions = {"mean_angle": True, "median_angle": True, "within_11_25": False, "within_22_5": False,
                         "within_30": False}
    error_unit = "angle °"
    error_range = (0.0, 90.0)      # above 90° a normal points away: as wrong as it gets, the colour saturates
    error_ticks = ((0, 30, 60, 90), ("0°", "30°", "60°", "≥90°"))
    target_forms = normal_forms()

    def valid(self, task, target):
        return (target.abs().sum(1, keepdim=True) > 0)

    def random_target(self, task, batch, size, generator):
        return F.normalize(torch.randn(batch, 3, *size, generator=generator), dim=1)     # unit vectors [B, 3, H, W]

    def activate(self, raw):
        return channel_normalize(raw, eps=1e-6)

    def pixel_loss(self, task, pred, target, weight, options):
        if options.normal == "l1":
            return (pred - target).abs().mean(dim=1, keepdim=True), weight
        if options.normal == "dot":     # the refs': 1 − Σ pred·gt / valid pixels; gt not normalized
            return 1.0 - (pred * target).sum(dim=1, keepdim=True), weight
        cos = channel_cosine(pred, target).unsqueeze(1)
        return 1.0 - cos, weight

    def encode_prediction(self, task, pred, *, seg="hard", depth="max", tau=1.0, mu=DEPTH_MU, sigma=DEPTH_SIGMA,
                          noise=None):
        return normal_unit(pred)

    def encode_label(self, task, target, *, depth="max", mu=DEPTH_MU, sigma=DEPTH_SIGMA):
        return normal_unit(target)

    def flipped(self, target):
        return torch.cat([-target[:1], target[1:]], 0)      # mirrored left-right: the x component changes sign

    def to_rgb(self, task, array):
        return ((np.clip(array.transpose(1, 2, 0), -1, 1) + 1) * 127.5).astype(np.uint8)

    def error_map(self, task, pred, target):
        cos = torch.nn.functional.cosine_similarity(pred, target, dim=0).clamp(-1, 1)
        return torch.rad2deg(torch.arccos(cos)).numpy()


class Edge(TaskKind):
    """Boundaries [B, 1, H, W] in {0, 1}, prediction one logit; balanced or fixed-weight BCE; F-score, ODS F."""

    name = "edge"
    fixed_channels = 1
    meter_class = meters.EdgeMeter
    metric_directions = {"fscore": False, "precision": False, "recall": False, "ods_f": False}
    error_unit = "|p − y|"
    error_range = (0.0, 1.0)
    target_forms = edge_forms()

    def random_target(self, task, batch, size, generator):
        return (torch.rand(batch, 1, *size, generator=generator) > 0.8).float()         # 0/1, [B, 1, H, W]

    def pixel_loss(self, task, pred, target, weight, options):
        per_pixel = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
        if options.edge == "mtl_pytorch":
            w = options.edge_pos_weight
            return per_pixel * (target * w + (1 - target) * (1 - w)), weight
        # "balanced": class-balanced BCE, positives are rare (the balance is computed per sample under "batch").
        dims = (1, 2, 3) if options.reduction == "batch" else (0, 1, 2, 3)
        pos = (target * weight).sum(dim=dims, keepdim=True)
        neg = ((1 - target) * weight).sum(dim=dims, keepdim=True)
        total = (pos + neg).clamp_min(1.0)
        w_pos, w_neg = neg / total, pos / total
        return per_pixel, (target * w_pos + (1 - target) * w_neg) * weight

    def encode_prediction(self, task, pred, *, seg="hard", depth="max", tau=1.0, mu=DEPTH_MU, sigma=DEPTH_SIGMA,
                          noise=None):
        return torch.sigmoid(pred)

    def encode_label(self, task, target, *, depth="max", mu=DEPTH_MU, sigma=DEPTH_SIGMA):
        return target if target.is_floating_point() else target.float()

    def display_values(self, x):
        return 1 / (1 + np.exp(-x)) if x.min() < 0 else x          # logits -> probabilities

    def error_map(self, task, pred, target):
        return (torch.sigmoid(pred[0]) - target[0]).abs().numpy()


class ImageLevelKind(TaskKind):
    """One prediction per image [B, C]; each sample's loss is its own term (the image is its only "pixel")."""

    image_level = True

    def loss_terms(self, task, pred, target, labelled, options):
        per_sample, valid = self.sample_loss(task, pred, target, labelled.bool(), options)         # [B], [B]
        weight = valid.to(pred.dtype)
        return per_sample.view(-1, 1, 1, 1), weight.view(-1, 1, 1, 1)

    def sample_loss(self, task: Task, pred: torch.Tensor, target: torch.Tensor, keep: torch.Tensor,
                    options: LossForms) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss per sample [B], defined and labelled [B] bool)."""
        raise NotImplementedError


class Classification(ImageLevelKind):
    """Image-level classes: target [B] long (−1 = undefined), prediction C logits; cross-entropy; accuracy."""

    name = "classification"
    categorical = True
    meter_class = meters.ClassificationMeter
    metric_directions = {"accuracy": False}
    error_unit = "1 − p(true class)"
    target_forms = classes_forms()

    def valid(self, task, target):
        return target != IGNORE_INDEX

    def random_target(self, task, batch, size, generator):
        return torch.randint(IGNORE_INDEX, task.channels, (batch,), generator=generator)    # [B], −1 ignore

    def placeholder(self, task, size):
        return torch.tensor(IGNORE_INDEX, dtype=torch.int64)                             # []

    def sample_loss(self, task, pred, target, keep, options):
        tgt = torch.where(keep, target, torch.full_like(target, IGNORE_INDEX))
        valid = tgt != IGNORE_INDEX
        return F.cross_entropy(pred, tgt.clamp_min(0), reduction="none"), valid                  # [B]

    def encode_prediction(self, task, pred, *, seg="hard", depth="max", tau=1.0, mu=DEPTH_MU, sigma=DEPTH_SIGMA,
                          noise=None):
        return segmentation_prediction(pred[:, :, None, None], hard=seg == "hard", tau=tau,
                                       noise=None if noise is None else noise[:, :, None, None])[:, :, 0, 0]

    def encode_label(self, task, target, *, depth="max", mu=DEPTH_MU, sigma=DEPTH_SIGMA):
        valid = (target != IGNORE_INDEX).unsqueeze(1)
        return F.one_hot(target.clamp(0, task.channels - 1), task.channels).float() * valid     # [B, C]


class Regression(ImageLevelKind):
    """Image-level values [B, C] in the task's unit (NaN = undefined); L1 / smooth-L1 of standardized values
    (ŷ − y) / scale; MAE, RMSE. Encoded Φ((y − loc) / scale) in the joint spaces."""

    name = "regression"
    joint_space = "values"
    meter_class = meters.RegressionMeter
    metric_directions = {"mae": True, "rmse": True}
    error_unit = "|ŷ − y|"
    target_forms = value_forms(0.25, multiplicative=False)

    def valid(self, task, target):
        return torch.isfinite(target).all(dim=1)

    def clean(self, task, target, labelled):
        keep = labelled.bool().view(-1, *([1] * (target.dim() - 1)))
        keep = keep & torch.isfinite(target)            # undefined values would survive a product with a zero mask
        return torch.where(keep, target, self.neutral(target))

    def random_target(self, task, batch, size, generator):
        return torch.randn(batch, task.channels, generator=generator) * task.scale + task.loc   # [B, C]

    def placeholder(self, task, size):
        return torch.zeros(task.channels)                                                # [C]

    def sample_loss(self, task, pred, target, keep, options):
        valid = keep & torch.isfinite(target).all(dim=1)
        tgt = torch.where(valid[:, None], target, pred.detach())             # NaN / unlabelled never touch arithmetic
        diff = (pred - tgt) / task.scale                                                           # [B, C]
        err = F.smooth_l1_loss(diff, torch.zeros_like(diff), reduction="none", beta=1.0) \
            if options.regression == "smooth_l1" else diff.abs()
        return err.mean(dim=1), valid                                                              # [B]

    def encode_prediction(self, task, pred, *, seg="hard", depth="max", tau=1.0, mu=DEPTH_MU, sigma=DEPTH_SIGMA,
                          noise=None):
        return regression_unit(task, pred)

    def encode_label(self, task, target, *, depth="max", mu=DEPTH_MU, sigma=DEPTH_SIGMA):
        return regression_unit(task, target) * valid_samples(task, target).unsqueeze(1)


for _kind in (Segmentation(), Saliency(), Depth(), Normal(), Edge(), Classification(), Regression()):
    register_kind(_kind)

__all__ = ["Classification", "Depth", "Edge", "ImageLevelKind", "LossForms", "Normal", "Regression", "Saliency",
           "Segmentation", "TaskKind", "get_kind", "register_kind", "registered_kinds"]
