"""Supervised losses: an unlabelled target never reaches a loss, value or gradient."""

from __future__ import annotations

import pytest
import torch

from mtlwb.losses import task_loss
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
