"""Supervised losses: an unlabelled target never reaches a loss, value or gradient."""

from __future__ import annotations

import pytest
import torch

from mtlwb.objectives.losses import LossOptions, task_loss
from mtlwb.tasks import DEPTH, EDGE, NORMAL, semantic

SEG = semantic(5)


def _batch(task, b=4, h=6, w=7):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(b, task.channels, h, w, generator=g, requires_grad=True)
    if task.kind == "segmentation":
        target = torch.randint(-1, task.channels, (b, h, w), generator=g)
    elif task.kind == "depth":
        target = torch.rand(b, 1, h, w, generator=g) * 3
        target[:, :, 0] = 0
    elif task.kind == "normal":
        target = torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1)
    else:
        target = (torch.rand(b, 1, h, w, generator=g) > 0.8).float()
    return pred, target


@pytest.mark.parametrize("task", [SEG, DEPTH, NORMAL, EDGE], ids=lambda t: t.name)
def test_masked_sample_gets_zero_gradient_and_no_influence(task):
    pred, target = _batch(task)
    labelled = torch.tensor([1.0, 0.0, 1.0, 0.0])
    task_loss(task, pred, target, labelled).backward()
    assert pred.grad[[1, 3]].abs().sum() == 0
    assert pred.grad[[0, 2]].abs().sum() > 0
    # garbage (even NaN) in the unlabelled targets changes nothing
    poisoned = target.clone().float()
    poisoned[[1, 3]] = float("nan")
    if task.kind == "segmentation":
        poisoned = target.clone()
        poisoned[[1, 3]] = 3
    before = task_loss(task, pred, target, labelled)
    after = task_loss(task, pred, poisoned.to(target.dtype), labelled)
    assert torch.equal(before, after)


@pytest.mark.parametrize("task", [SEG, DEPTH, NORMAL, EDGE], ids=lambda t: t.name)
def test_no_labelled_sample_gives_attached_zero(task):
    pred, target = _batch(task)
    loss = task_loss(task, pred, target, torch.zeros(4))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert pred.grad.abs().sum() == 0


def test_depth_loss_is_l1_on_valid_pixels():
    pred = torch.full((1, 1, 1, 3), 2.0)
    target = torch.tensor([[[[0.0, 1.0, 4.0]]]])     # first pixel invalid: mean(|2-1|, |2-4|) = 1.5
    assert task_loss(DEPTH, pred, target, torch.ones(1)).item() == pytest.approx(1.5)


def test_normal_loss_is_one_minus_cosine():
    pred = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    target = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)   # orthogonal: 1 - 0 = 1
    assert task_loss(NORMAL, pred, target, torch.ones(1)).item() == pytest.approx(1.0)


def test_segmentation_ignores_minus_one():
    pred = torch.zeros(1, 5, 1, 2)
    target = torch.tensor([[[-1, 2]]])                # one valid pixel, uniform logits: ln 5
    assert task_loss(SEG, pred, target, torch.ones(1)).item() == pytest.approx(torch.log(torch.tensor(5.0)).item())


def _depth_batch():
    """4 samples of 1×3 pixels, pred 0: |error| = target; pixel value 0 = invalid."""
    target = torch.tensor([[1.0, 3.0, 0.0], [5.0, 5.0, 5.0], [4.0, 0.0, 0.0], [7.0, 7.0, 7.0]]).view(4, 1, 1, 3)
    pred = torch.zeros(4, 1, 1, 3, requires_grad=True)
    return pred, target, torch.tensor([1.0, 0.0, 1.0, 0.0])


def test_batch_reduction_is_the_published_per_sample_sum_over_batch_size():
    pred, target, labelled = _depth_batch()
    # sample 0: mean(1, 3) = 2; sample 2: 4; samples 1, 3 unlabelled -> 0; (2 + 0 + 4 + 0) / B=4 = 1.5
    assert task_loss(DEPTH, pred, target, labelled, "batch").item() == pytest.approx(1.5)
    assert task_loss(DEPTH, pred, target, labelled).item() == pytest.approx(1.5)        # the default


def test_labelled_reduction_is_the_mean_over_labelled_pixels():
    pred, target, labelled = _depth_batch()
    # pixels 1, 3 (sample 0) and 4 (sample 2): 8 / 3
    assert task_loss(DEPTH, pred, target, labelled, "labelled").item() == pytest.approx(8 / 3)


def test_segmentation_batch_reduction_by_hand():
    pred = torch.zeros(2, 5, 1, 2)
    pred[0, 2, 0, 1] = 10.0                                 # sample 0: pixel 1 nearly certain, pixel 0 ignored
    target = torch.tensor([[[-1, 2]], [[1, 3]]])            # sample 1: uniform logits, loss ln 5 per pixel
    per0 = torch.nn.functional.cross_entropy(pred[0:1, :, :, 1:], target[0:1, :, 1:]).item()
    expected = (per0 + torch.log(torch.tensor(5.0)).item()) / 2
    assert task_loss(SEG, pred, target, torch.ones(2), "batch").item() == pytest.approx(expected)


def test_unknown_reduction_is_refused_by_name():
    pred, target, labelled = _depth_batch()
    with pytest.raises(ValueError, match="loss_reduction='mean'.*allowed"):
        task_loss(DEPTH, pred, target, labelled, "mean")


def test_loss_terms_refuse_a_name_that_is_both_supervised_and_auxiliary():
    from mtlwb.methods import LossTerms

    one = torch.ones(())
    terms = LossTerms({"depth": one}, {"jtr_model": one})
    assert set(terms) == {"depth", "jtr_model"} and terms["jtr_model"] is one
    with pytest.raises(ValueError, match="depth"):
        LossTerms({"depth": one}, {"depth": one})


def test_mtl_pytorch_edge_loss_is_fixed_weight_bce_over_pixels():

    pred = torch.tensor([0.0, 2.0, -1.0, 0.5]).view(1, 1, 1, 4)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 1, 4)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(pred, target, reduction="none").flatten()
    expected = (0.95 * (bce[0] + bce[3]) + 0.05 * (bce[1] + bce[2])) / 4
    got = task_loss(EDGE, pred, target, torch.ones(1), LossOptions(edge="mtl_pytorch"))
    assert got.item() == pytest.approx(expected.item())
    assert task_loss(EDGE, pred, target, torch.ones(1)).item() != pytest.approx(expected.item())   # default differs


def test_l1_normal_loss_is_mean_abs_difference_of_unit_vectors():

    pred = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    target = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)      # |1| + |−1| + 0 over 3 channels = 2/3
    got = task_loss(NORMAL, pred, target, torch.ones(1), LossOptions(normal="l1"))
    assert got.item() == pytest.approx(2 / 3)


def test_loss_options_are_validated_by_config_name():

    with pytest.raises(ValueError, match="edge_loss='bce'"):
        LossOptions(edge="bce")
    with pytest.raises(ValueError, match="normal_loss='l2'"):
        LossOptions(normal="l2")


def test_dot_normal_loss_is_the_references_on_non_unit_ground_truth():
    # the refs' bilinear crops shorten normals: the dot product then weighs a pixel by its label's length
    pred = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), dim=1).T.reshape(1, 3, 1, 2)
    target = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.8]]).T.reshape(1, 3, 1, 2)       # lengths 0.5 and 0.8
    dot = task_loss(NORMAL, pred, target, torch.ones(1), LossOptions(normal="dot"))
    assert dot.item() == pytest.approx(1.0 - (0.5 / 2 ** 0.5 + 0.8) / 2)                 # 1 − Σ p·g / valid pixels
    cosine = task_loss(NORMAL, pred, target, torch.ones(1))
    assert cosine.item() == pytest.approx(1.0 - (1 / 2 ** 0.5 + 1.0) / 2)                # direction only
    unit = torch.nn.functional.normalize(target, dim=1)
    assert task_loss(NORMAL, pred, unit, torch.ones(1), LossOptions(normal="dot")).item() == pytest.approx(
        cosine.item())                                                                     # equal on unit labels
