"""Streaming evaluation meters, one class per task kind's metrics (``TaskKind.meter`` picks the class).

Metrics are accumulated over every batch of a split and only turned into numbers at ``compute()``: averaging
per-batch scores would weight batches (and images) equally instead of pixels, and mIoU is not even decomposable
per batch. Accumulators live on the prediction's device and are turned into Python floats (``.item()``) once, in
``compute()``; only the normal meter's exact median needs a per-batch copy of its angles to the CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.ops import channel_argmax
from .labels import IGNORE_INDEX, valid_pixels, valid_samples
from .task import Task

NAN = float("nan")


class TaskMeter:
    """Accumulates one task's statistics over a split; subclasses per task kind."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far (start of a new evaluation pass)."""
        self._state: dict[str, torch.Tensor] = {}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: ``pred`` is the raw head output, ``target`` as loaded."""
        with torch.no_grad():
            self._update(pred.detach(), target.detach())

    def compute(self) -> dict[str, float]:
        """Metrics over everything seen since the last reset (NaN if nothing valid was seen)."""
        raise NotImplementedError

    def _update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def _add(self, name: str, value: torch.Tensor) -> None:
        """Running sum kept on the device of the first batch."""
        if name in self._state:
            self._state[name] += value.to(self._state[name].device)
        else:
            self._state[name] = value.clone()

    def _get(self, name: str) -> float:
        return float(self._state[name].item()) if name in self._state else 0.0


class SegmentationMeter(TaskMeter):
    """Confusion matrix over the split; mIoU and pixel accuracy.

    mIoU averages TP / (TP + FP + FN) over the classes whose union is non-zero,
    i.e. classes that occur in the ground truth or in the predictions of the
    split. This follows MTAN's evaluation code: a class absent from both would
    otherwise be 0/0, and counting it as 0 (or 1) would move the score for
    reasons unrelated to the model. A class present only in predictions counts
    with IoU 0, so hallucinating a class is still penalised.
    """

    def _update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        c = self.task.channels
        if pred.dim() != 4 or pred.shape[1] != c:
            raise ValueError(f"{self.task.name}: pred shape {tuple(pred.shape)}, expected [B, {c}, H, W]")
        label = channel_argmax(pred)
        valid = target != IGNORE_INDEX
        gt = target[valid].long()
        if gt.numel() and (gt.min() < 0 or gt.max() >= c):
            raise ValueError(f"{self.task.name}: target classes must be in [0, {c}) or {IGNORE_INDEX}")
        idx = gt * c + label[valid]
        self._add("confusion", torch.bincount(idx, minlength=c * c).view(c, c))

    def compute(self) -> dict[str, float]:
        if "confusion" not in self._state:
            return {"miou": NAN, "pixel_acc": NAN}
        conf = self._state["confusion"].double()  # rows: ground truth, cols: prediction
        tp = conf.diag()
        union = conf.sum(0) + conf.sum(1) - tp
        present = union > 0
        total = conf.sum()
        miou = (tp[present] / union[present]).mean() if present.any() else conf.new_tensor(NAN)
        acc = tp.sum() / total if total > 0 else conf.new_tensor(NAN)
        return {"miou": float(miou.item()), "pixel_acc": float(acc.item())}


class DepthMeter(TaskMeter):
    """Depth errors on pixels with gt ≠ 0.

    Every metric is pixel-weighted over the whole split (sum over all valid
    pixels / number of valid pixels), not a mean of per-image scores, so an
    image with more valid depth counts more; RMSE is sqrt of the split-wide
    mean squared error.
    """

    def _update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = valid_pixels(self.task, target)
        p, g = pred[valid].double(), target[valid].double()
        err = (p - g).abs()
        self._add("count", torch.tensor(float(g.numel()), dtype=torch.float64, device=pred.device))
        self._add("abs", err.sum())
        self._add("rel", (err / g.abs()).sum())
        self._add("sq", (err * err).sum())

    def compute(self) -> dict[str, float]:
        n = self._get("count")
        if n == 0:
            return {"abs_err": NAN, "rel_err": NAN, "rmse": NAN}
        return {
            "abs_err": self._get("abs") / n,
            "rel_err": self._get("rel") / n,
            "rmse": math.sqrt(self._get("sq") / n),
        }


class NormalMeter(TaskMeter):
    """Angular error of surface normals on pixels whose gt is not all-zero.

    Both prediction and gt are L2-normalised before the dot product (a no-op for
    unit gt; it keeps angles meaningful if a loader's gt drifts from unit
    length). The median is exact: every valid angle is kept as float32 on the
    CPU (4 bytes/pixel, ~290 MB for the full NYUv2 test split) and the middle
    order statistic(s) are taken with ``kthvalue``; for an even count it is the
    mean of the two middle values, as ``numpy.median``. Mean and threshold
    percentages are running sums on the device.
    """

    THRESHOLDS = (("within_11_25", 11.25), ("within_22_5", 22.5), ("within_30", 30.0))

    def reset(self) -> None:
        super().reset()
        self._angles: list[torch.Tensor] = []

    def _update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = valid_pixels(self.task, target)[:, 0]
        cos = (F.normalize(pred.double(), dim=1) * F.normalize(target.double(), dim=1)).sum(1)
        angle = torch.rad2deg(torch.arccos(cos[valid].clamp(-1.0, 1.0)))
        self._add("count", torch.tensor(float(angle.numel()), dtype=torch.float64, device=pred.device))
        self._add("sum", angle.sum())
        for key, thr in self.THRESHOLDS:
            self._add(key, (angle < thr).sum().double())
        self._angles.append(angle.float().cpu())

    def compute(self) -> dict[str, float]:
        n = self._get("count")
        keys = ["mean_angle", "median_angle"] + [k for k, _ in self.THRESHOLDS]
        if n == 0:
            return dict.fromkeys(keys, NAN)
        out = {"mean_angle": self._get("sum") / n, "median_angle": _exact_median(torch.cat(self._angles))}
        for key, _ in self.THRESHOLDS:
            out[key] = 100.0 * self._get(key) / n
        return out


def _exact_median(values: torch.Tensor) -> float:
    """numpy-style median (mean of the two middle values for even counts), O(n)."""
    n = values.numel()
    upper = float(values.kthvalue(n // 2 + 1).values.item())
    if n % 2:
        return upper
    lower = float(values.kthvalue(n // 2).values.item())
    return (lower + upper) / 2.0


class EdgeMeter(TaskMeter):
    """Precision, recall and F-score of edges thresholded at sigmoid(pred) >= 0.5.

    This is an approximation: the field reports the ODS F-measure (best fixed
    threshold over the dataset) with a spatial matching tolerance between
    predicted and gt boundaries, as computed by the SEISM toolbox used by
    MTI-Net. A fixed threshold and exact pixel matching give lower, not directly
    comparable numbers; use it to compare runs within this workbench only.

    ``ods_f`` comes closer to the field's number: the F-measure at the best single threshold over the split
    (ODS; 19 thresholds in [0.05, 0.95]) with a matching tolerance of r = max(1, round(0.0075 · diagonal))
    pixels (the BSDS benchmark's default maxDist), approximated by dilation: a predicted edge pixel is correct
    if a gt edge lies within r (square neighbourhood), a gt pixel is recalled if a prediction does. No NMS and
    no one-to-one matching, so it leans high; still for comparisons within the workbench.
    """

    THRESHOLDS = torch.linspace(0.05, 0.95, 19)

    def _update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = valid_pixels(self.task, target)
        prob = torch.sigmoid(pred.float())
        hit = prob >= 0.5
        gt = target > 0.5
        self._add("tp", (hit & gt & valid).sum())
        self._add("fp", (hit & ~gt & valid).sum())
        self._add("fn", (~hit & gt & valid).sum())
        h, w = target.shape[-2:]
        r = max(1, round(0.0075 * math.hypot(h, w)))
        hits = prob > self.THRESHOLDS.to(prob.device).view(1, -1, 1, 1)               # [B, K, H, W]
        near_gt = F.max_pool2d((gt & valid).float(), 2 * r + 1, stride=1, padding=r) > 0
        near_hit = F.max_pool2d(hits.float(), 2 * r + 1, stride=1, padding=r) > 0
        self._add("ods_correct", (hits & near_gt & valid).sum(dim=(0, 2, 3)))
        self._add("ods_predicted", (hits & valid).sum(dim=(0, 2, 3)))
        self._add("ods_recalled", (near_hit & gt & valid).sum(dim=(0, 2, 3)))
        self._add("ods_gt", (gt & valid).sum())

    def compute(self) -> dict[str, float]:
        if "tp" not in self._state:
            return {"fscore": NAN, "precision": NAN, "recall": NAN, "ods_f": NAN}
        tp, fp, fn = self._get("tp"), self._get("fp"), self._get("fn")
        # 0/0 (nothing predicted / no gt edge) counts as 0, as sklearn's zero_division=0.
        precision = tp / (tp + fp) if tp + fp > 0 else 0.0
        recall = tp / (tp + fn) if tp + fn > 0 else 0.0
        denom = precision + recall
        fscore = 2 * precision * recall / denom if denom > 0 else 0.0
        p = self._state["ods_correct"].double() / self._state["ods_predicted"].double().clamp_min(1)
        r = self._state["ods_recalled"].double() / self._state["ods_gt"].double().clamp_min(1)
        ods = (2 * p * r / (p + r).clamp_min(1e-12)).max()
        return {"fscore": fscore, "precision": precision, "recall": recall, "ods_f": float(ods.item())}


class SaliencyMeter(SegmentationMeter):
    """Saliency as 2-class segmentation (mIoU, pixel accuracy) plus the ASTMT / MTI-Net protocol the PASCAL-Context
    tables report (Multi-Task-Learning-PyTorch ``evaluation/eval_sal.py``): the salient-class probability is
    thresholded at 15 values in [0.2, 0.9]; per image, precision, recall and IoU (1 when prediction and ground
    truth are both empty); averaged over images per threshold; ``maxf`` = max over thresholds of
    2·P·R / (P + R), ``max_miou`` = max over thresholds of the mean IoU."""

    THRESHOLDS = torch.linspace(0.2, 0.9, 15)

    def _update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        super()._update(pred, target)
        prob = pred.float().softmax(dim=1)[:, 1:2]                                   # [B, 1, H, W]
        hit = prob > self.THRESHOLDS.to(prob.device).view(1, -1, 1, 1)              # [B, 15, H, W]
        valid = (target != IGNORE_INDEX).unsqueeze(1)
        gt = (target == 1).unsqueeze(1) & valid
        tp = (hit & gt).sum(dim=(2, 3)).double()
        fp = (hit & ~gt & valid).sum(dim=(2, 3)).double()
        fn = (~hit & gt).sum(dim=(2, 3)).double()
        union = tp + fp + fn
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.ones_like(union))
        self._add("precision_sum", (tp / (tp + fp + 1e-12)).sum(dim=0))
        self._add("recall_sum", (tp / (tp + fn + 1e-12)).sum(dim=0))
        self._add("iou_sum", iou.sum(dim=0))
        self._add("images", torch.tensor(float(pred.shape[0]), device=pred.device))

    def compute(self) -> dict[str, float]:
        out = super().compute()
        if "images" not in self._state:
            return {**out, "maxf": NAN, "max_miou": NAN}
        n = self._state["images"]
        p, r = self._state["precision_sum"] / n, self._state["recall_sum"] / n
        f = 2 * p * r / (p + r + 1e-12)
        return {**out, "maxf": float(f.max().item()), "max_miou": float((self._state["iou_sum"] / n).max().item())}


class ClassificationMeter(TaskMeter):
    """Image-level classification: ``accuracy`` = correct / images with a defined label (argmax of the logits;
    label −1 = undefined, skipped) over the split."""

    def _update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        c = self.task.channels
        if pred.dim() != 2 or pred.shape[1] != c:
            raise ValueError(f"{self.task.name}: pred shape {tuple(pred.shape)}, expected [B, {c}]")
        valid = valid_samples(self.task, target)
        self._add("correct", (pred.argmax(dim=1)[valid] == target[valid]).sum().double())
        self._add("count", valid.sum().double())

    def compute(self) -> dict[str, float]:
        n = self._get("count")
        return {"accuracy": self._get("correct") / n if n else NAN}


class RegressionMeter(TaskMeter):
    """Image-level regression, in the task's unit: ``mae`` (mean absolute error; lower is better) and ``rmse``
    over every value of the images with a defined label."""

    def _update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.dim() != 2 or pred.shape != target.shape:
            raise ValueError(f"{self.task.name}: pred shape {tuple(pred.shape)}, target {tuple(target.shape)}; "
                             f"expected both [B, {self.task.channels}]")
        valid = valid_samples(self.task, target)
        err = (pred[valid].double() - target[valid].double())
        self._add("count", torch.tensor(float(err.numel()), dtype=torch.float64, device=pred.device))
        self._add("abs", err.abs().sum())
        self._add("sq", (err * err).sum())

    def compute(self) -> dict[str, float]:
        n = self._get("count")
        if n == 0:
            return {"mae": NAN, "rmse": NAN}
        return {"mae": self._get("abs") / n, "rmse": math.sqrt(self._get("sq") / n)}
