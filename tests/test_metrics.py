"""Metrics against values worked out by hand on tiny 2x3 images."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtlwb.objectives.metrics import LOWER_IS_BETTER, MultiTaskMeter, delta_mtl, make_meter
from mtlwb.tasks import DEPTH, DOMINANT_CLASS, EDGE, NORMAL, NUM_OBJECTS, SALIENCY, semantic


def seg_logits(labels: list[list[int]], num_classes: int) -> torch.Tensor:
    """[1, C, H, W] logits whose argmax is ``labels``."""
    return F.one_hot(torch.tensor(labels), num_classes).permute(2, 0, 1).unsqueeze(0).float()


# --- segmentation ---------------------------------------------------------------

# gt                pred (argmax)      last pixel is ignored (-1), its pred 2 must not count
SEG_GT = [[0, 0, 1], [1, 2, -1]]
SEG_PRED = [[0, 1, 1], [1, 0, 2]]
# Confusion (rows gt, cols pred) over the 5 valid pixels:
#   gt0: pred0=1 pred1=1 ; gt1: pred1=2 ; gt2: pred0=1
# class0: TP1 FP1 (gt2->0) FN1 (0->1)  IoU 1/3
# class1: TP2 FP1 (gt0->1) FN0         IoU 2/3
# class2: TP0 FP0 FN1                  IoU 0
# class3 (C=4): never in gt nor pred -> union 0 -> excluded
# mIoU = (1/3 + 2/3 + 0) / 3 = 1/3 ; pixel acc = 3 correct / 5 valid = 0.6


def test_segmentation_hand_computed_with_ignore_and_absent_class():
    meter = make_meter(semantic(4))
    meter.update(seg_logits(SEG_PRED, 4), torch.tensor([SEG_GT]))
    out = meter.compute()
    assert out["miou"] == pytest.approx(1 / 3)
    assert out["pixel_acc"] == pytest.approx(0.6)


def test_segmentation_streaming_over_two_batches():
    # Second image: all six pixels class 3, all correct -> class3 IoU 1.
    # Totals: mIoU = (1/3 + 2/3 + 0 + 1) / 4 = 0.5 ; pixel acc = (3 + 6) / (5 + 6) = 9/11
    gt2, pred2 = [[3, 3, 3], [3, 3, 3]], [[3, 3, 3], [3, 3, 3]]
    streamed = make_meter(semantic(4))
    streamed.update(seg_logits(SEG_PRED, 4), torch.tensor([SEG_GT]))
    streamed.update(seg_logits(pred2, 4), torch.tensor([gt2]))
    whole = make_meter(semantic(4))
    whole.update(torch.cat([seg_logits(SEG_PRED, 4), seg_logits(pred2, 4)]), torch.tensor([SEG_GT, gt2]))
    assert streamed.compute()["miou"] == pytest.approx(0.5)
    assert streamed.compute()["pixel_acc"] == pytest.approx(9 / 11)
    assert streamed.compute() == pytest.approx(whole.compute())


def test_segmentation_rejects_out_of_range_target():
    meter = make_meter(semantic(3))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        meter.update(seg_logits(SEG_PRED, 3), torch.tensor([[[0, 0, 5], [1, 2, -1]]]))


# --- depth ----------------------------------------------------------------------

# gt [[1, 2, 0], [4, 0, 2]] (0 = invalid), pred [[2, 2, 5], [3, 7, 1]]
# valid errors: |2-1|=1, |2-2|=0, |3-4|=1, |1-2|=1 ; relative: 1/1, 0, 1/4, 1/2
# abs = 3/4 = 0.75 ; rel = 1.75/4 = 0.4375 ; rmse = sqrt(3/4)
DEPTH_GT = torch.tensor([[[[1.0, 2.0, 0.0], [4.0, 0.0, 2.0]]]])
DEPTH_PRED = torch.tensor([[[[2.0, 2.0, 5.0], [3.0, 7.0, 1.0]]]])


def test_depth_hand_computed_excludes_invalid():
    meter = make_meter(DEPTH)
    meter.update(DEPTH_PRED, DEPTH_GT)
    out = meter.compute()
    assert out["abs_err"] == pytest.approx(0.75)
    assert out["rel_err"] == pytest.approx(0.4375)
    assert out["rmse"] == pytest.approx(math.sqrt(0.75))


def test_depth_is_pixel_weighted_across_batches():
    # Second image: one valid pixel, gt 1 pred 3 -> err 2, rel 2, sq 4.
    # Pixel-weighted: abs (3+2)/5 = 1.0 (a per-image mean would give (0.75+2)/2 = 1.375)
    # rel (1.75+2)/5 = 0.75 ; rmse sqrt((3+4)/5) = sqrt(1.4)
    gt2 = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]])
    pred2 = torch.full_like(gt2, 3.0)
    streamed = make_meter(DEPTH)
    streamed.update(DEPTH_PRED, DEPTH_GT)
    streamed.update(pred2, gt2)
    out = streamed.compute()
    assert out["abs_err"] == pytest.approx(1.0)
    assert out["rel_err"] == pytest.approx(0.75)
    assert out["rmse"] == pytest.approx(math.sqrt(1.4))
    whole = make_meter(DEPTH)
    whole.update(torch.cat([DEPTH_PRED, pred2]), torch.cat([DEPTH_GT, gt2]))
    assert whole.compute() == pytest.approx(out)


# --- normals --------------------------------------------------------------------


def normal_image(vectors: list[tuple[float, float, float]]) -> torch.Tensor:
    """[1, 3, 2, 3] image from six vectors in row-major order."""
    return torch.tensor(vectors).T.reshape(1, 3, 2, 3)


def tilted(deg: float) -> tuple[float, float, float]:
    """Unit vector at ``deg`` degrees from +z."""
    r = math.radians(deg)
    return (math.sin(r), 0.0, math.cos(r))


UP = (0.0, 0.0, 1.0)
# gt: +z everywhere except the last pixel, which is invalid (all zero).
NORMAL_GT = normal_image([UP, UP, UP, UP, UP, (0.0, 0.0, 0.0)])
# preds: +z (0°), +x (90°), unnormalised (1,0,1) (45°), (0,0,-2) (180°), tilted 20° (20°), anything on the invalid pixel
NORMAL_PRED = normal_image([UP, (1.0, 0.0, 0.0), (1.0, 0.0, 1.0), (0.0, 0.0, -2.0), tilted(20), (1.0, 0.0, 0.0)])
# angles {0, 90, 45, 180, 20}: mean 335/5 = 67 ; sorted 0,20,45,90,180 -> median 45
# <11.25: {0} 20% ; <22.5: {0, 20} 40% ; <30: {0, 20} 40%


def test_normals_hand_computed_odd_count():
    meter = make_meter(NORMAL)
    meter.update(NORMAL_PRED, NORMAL_GT)
    out = meter.compute()
    assert out["mean_angle"] == pytest.approx(67.0, abs=1e-4)
    assert out["median_angle"] == pytest.approx(45.0, abs=1e-4)
    assert out["within_11_25"] == pytest.approx(20.0)
    assert out["within_22_5"] == pytest.approx(40.0)
    assert out["within_30"] == pytest.approx(40.0)


def test_normals_even_count_median_and_streaming():
    # Second image: one valid pixel at 10°. Angles {0,10,20,45,90,180}:
    # mean 345/6 = 57.5 ; median (20+45)/2 = 32.5 ; <11.25: 2/6 ; <22.5: 3/6 ; <30: 3/6
    zero = (0.0, 0.0, 0.0)
    gt2 = normal_image([UP, zero, zero, zero, zero, zero])
    pred2 = normal_image([tilted(10)] * 6)
    streamed = make_meter(NORMAL)
    streamed.update(NORMAL_PRED, NORMAL_GT)
    streamed.update(pred2, gt2)
    out = streamed.compute()
    assert out["mean_angle"] == pytest.approx(57.5, abs=1e-4)
    assert out["median_angle"] == pytest.approx(32.5, abs=1e-4)
    assert out["within_11_25"] == pytest.approx(100 / 3)
    assert out["within_22_5"] == pytest.approx(50.0)
    assert out["within_30"] == pytest.approx(50.0)
    whole = make_meter(NORMAL)
    whole.update(torch.cat([NORMAL_PRED, pred2]), torch.cat([NORMAL_GT, gt2]))
    assert whole.compute() == pytest.approx(out, abs=1e-4)


# --- edges ----------------------------------------------------------------------

# gt [[1, 0, 1], [0, 1, 0]] ; logits [[2, -1, -3], [0, 1, 3]]
# sigmoid >= 0.5  <=> logit >= 0 (logit 0 counts as an edge): hits [[1, 0, 0], [1, 1, 1]]
# TP: (0,0), (1,1) = 2 ; FP: (1,0), (1,2) = 2 ; FN: (0,2) = 1
# precision 2/4 = 0.5 ; recall 2/3 ; F = 2 * 0.5 * 2/3 / (0.5 + 2/3) = (2/3) / (7/6) = 4/7


def test_edge_hand_computed():
    meter = make_meter(EDGE)
    gt = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]])
    logits = torch.tensor([[[[2.0, -1.0, -3.0], [0.0, 1.0, 3.0]]]])
    meter.update(logits, gt)
    out = meter.compute()
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["fscore"] == pytest.approx(4 / 7)


# --- plumbing -------------------------------------------------------------------


def test_empty_meter_gives_nan_and_no_autograd_graph_kept():
    assert all(math.isnan(v) for v in make_meter(DEPTH).compute().values())
    pred = DEPTH_PRED.clone().requires_grad_(True)
    meter = make_meter(DEPTH)
    meter.update(pred, DEPTH_GT)
    assert not any(t.requires_grad for t in meter._state.values())


def test_multitask_meter_collects_all_and_requires_every_task():
    meter = MultiTaskMeter([DEPTH, EDGE])
    edge_gt = torch.zeros(1, 1, 2, 3)
    meter.update({"depth": DEPTH_PRED, "edge": torch.zeros(1, 1, 2, 3), "extra": torch.zeros(1)},
                 {"depth": DEPTH_GT, "edge": edge_gt})
    out = meter.compute()
    assert set(out) == {"depth", "edge"}
    assert out["depth"]["abs_err"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="edge"):
        meter.update({"depth": DEPTH_PRED}, {"depth": DEPTH_GT, "edge": edge_gt})


def test_lower_is_better_table_covers_every_emitted_key():
    keys = set()
    for task, pred, gt in [(DEPTH, DEPTH_PRED, DEPTH_GT), (NORMAL, NORMAL_PRED, NORMAL_GT),
                           (EDGE, torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 2, 3)),
                           (semantic(4), seg_logits(SEG_PRED, 4), torch.tensor([SEG_GT])),
                           (SALIENCY, torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, 3, dtype=torch.long)),
                           (DOMINANT_CLASS, torch.zeros(1, 4), torch.zeros(1, dtype=torch.long)),
                           (NUM_OBJECTS, torch.zeros(1, 1), torch.ones(1, 1))]:
        meter = make_meter(task)
        meter.update(pred, gt)
        keys |= set(meter.compute())
    assert keys == set(LOWER_IS_BETTER)


def _saliency_logits(prob: torch.Tensor) -> torch.Tensor:
    """[B, H, W] salient-class probabilities -> 2-class logits with exactly that softmax."""
    return torch.stack([torch.zeros_like(prob), torch.log(prob / (1 - prob))], dim=1)


def test_saliency_maxf_follows_the_astmt_protocol():
    """Image 1: gt salient on the left half, prob 0.8 there and 0.3 on the right (a 0.3 < t < 0.8 threshold is
    perfect). Image 2: nothing salient and prob 0.1 everywhere: IoU 1 (both empty), precision and recall 0."""
    gt = torch.tensor([[[1, 1, 0, 0]] * 2, [[0, 0, 0, 0]] * 2])
    prob = torch.tensor([[[0.8, 0.8, 0.3, 0.3]] * 2, [[0.1, 0.1, 0.1, 0.1]] * 2])
    meter = make_meter(SALIENCY)
    meter.update(_saliency_logits(prob[:1]), gt[:1])
    meter.update(_saliency_logits(prob[1:]), gt[1:])             # streaming: per-image averages over batches
    out = meter.compute()
    assert out["maxf"] == pytest.approx(2 * 0.5 * 0.5 / (0.5 + 0.5), abs=1e-6)   # P = R = (1 + 0) / 2
    assert out["max_miou"] == pytest.approx(1.0)                   # (1 + 1) / 2 at 0.3 < t < 0.8
    thresholds = torch.linspace(0.2, 0.9, 15)
    assert ((thresholds > 0.3) & (thresholds < 0.8)).any() and out["miou"] == pytest.approx(1.0)


def test_edge_ods_f_tolerates_a_one_pixel_shift_only():
    """gt edge in column 10 of a 40×40 map (tolerance r = round(0.0075·56.6) -> 1 px); a confident prediction one
    column off is a perfect match under the tolerance but zero at exact matching; three columns off is a miss."""
    gt = torch.zeros(1, 1, 40, 40)
    gt[..., 10] = 1
    for column, ods in ((11, 1.0), (13, 0.0)):
        logits = torch.full((1, 1, 40, 40), -6.0)
        logits[..., column] = 6.0
        meter = make_meter(EDGE)
        meter.update(logits, gt)
        out = meter.compute()
        assert out["fscore"] == 0.0 and out["ods_f"] == pytest.approx(ods)


# --- Δ_MTL ----------------------------------------------------------------------

TASKS = [semantic(13), DEPTH, NORMAL]
BASE = {"semantic": {"miou": 0.40}, "depth": {"abs_err": 0.50}, "normal": {"mean_angle": 20.0, "within_30": 60.0}}
MODEL = {"semantic": {"miou": 0.44}, "depth": {"abs_err": 0.55}, "normal": {"mean_angle": 19.0, "within_30": 66.0}}


def test_delta_mtl_mixed_directions():
    # miou +10% (higher better -> +10) ; abs_err +10% (lower better -> -10) ; mean_angle -5% (-> +5)
    # Δ = (10 - 10 + 5) / 3 = 5/3
    assert delta_mtl(MODEL, BASE, TASKS, baseline_name="single-task") == pytest.approx(5 / 3)


def test_delta_mtl_metric_override_uses_table_direction():
    # normal on within_30: 60 -> 66 is +10% and higher is better -> +10 ; Δ = (10 - 10 + 10) / 3
    got = delta_mtl(MODEL, BASE, TASKS, baseline_name="sup-only", metric_keys={"normal": "within_30"})
    assert got == pytest.approx(10 / 3)


@pytest.mark.parametrize("name", ["", "   "])
def test_delta_mtl_requires_baseline_name(name):
    with pytest.raises(ValueError, match="baseline_name"):
        delta_mtl(MODEL, BASE, TASKS, baseline_name=name)


def test_delta_mtl_missing_task_or_metric_is_named():
    with pytest.raises(ValueError, match="'normal'"):
        delta_mtl({k: v for k, v in MODEL.items() if k != "normal"}, BASE, TASKS, baseline_name="st")
    with pytest.raises(ValueError, match="'abs_err'"):
        delta_mtl(MODEL, {**BASE, "depth": {"rmse": 0.7}}, TASKS, baseline_name="st")
    with pytest.raises(ValueError, match="'bogus'"):
        delta_mtl(MODEL, BASE, TASKS, baseline_name="st", metric_keys={"depth": "bogus"})
    with pytest.raises(ValueError, match="edge"):
        delta_mtl(MODEL, BASE, TASKS, baseline_name="st", metric_keys={"edge": "fscore"})
