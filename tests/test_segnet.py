"""Backbones at the benchmarks' sizes (shape-level) and loading torchvision-layout weights."""

from __future__ import annotations

import pytest
import torch

import mtlwb.methods.tpkr  # noqa: F401  (registers "tpkr")
from mtlwb.methods import Step, build_method, forward_step
from mtlwb.models import MultiTaskNet
from mtlwb.models.resnet import resnet18
from mtlwb.models.segnet import SegNet
from mtlwb.tasks import make_tasks

TASKS = make_tasks(["semantic", "depth", "normal"], 13)


def _check(model: MultiTaskNet, h: int, w: int, device: str = "cpu") -> torch.Tensor:
    with torch.no_grad():
        preds, features = model.eval()(torch.zeros(1, 3, h, w, device=device))
    assert preds["semantic"].shape == (1, 13, h, w)
    assert preds["depth"].shape == (1, 1, h, w) and preds["normal"].shape == (1, 3, h, w)
    return features


def test_segnet_shapes_and_bottleneck():
    net = SegNet()
    assert sum(p.numel() for p in net.parameters()) > 20_000_000     # VGG-16-sized, as in MTAN
    model = MultiTaskNet(TASKS, "segnet")
    features = _check(model, 64, 80)
    assert features.shape == (1, 64, 64, 80) and model.feature_channels == 64
    image = torch.zeros(1, 3, 64, 80)
    parts = model.eval().encode_parts(image)
    assert parts.bottleneck.shape == (1, 512, 2, 2) and torch.equal(parts.features, model.encode(image))
    assert not hasattr(model.encoder, "last_bottleneck")                # returned, never kept on the module
    features = _check(model, 36, 52)                               # sizes not divisible by 32
    assert features.shape == (1, 64, 36, 52)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", "segnet"])
def test_backbones_at_benchmark_sizes(backbone):
    """64x80 computed for real; 288x384 (NYUv2) on the meta device: shapes without the CPU cost."""
    model = MultiTaskNet(TASKS, backbone)
    if backbone != "segnet":
        assert _check(model, 64, 80).shape[-2:] == (8, 10)           # output stride 8
    with torch.device("meta"):
        meta = MultiTaskNet(TASKS, backbone)
    try:
        features = _check(meta, 288, 384, device="meta")
    except (NotImplementedError, RuntimeError) as e:                  # an op without a meta kernel
        pytest.skip(f"meta device: {e}")
    assert features.shape[-2:] == ((288, 384) if backbone == "segnet" else (36, 48))


def test_backbone_weights_torchvision_layout(tmp_path):
    src = resnet18(dilated=True)
    for p in src.parameters():
        torch.nn.init.normal_(p)
    state = dict(src.state_dict(), **{"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)})
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = MultiTaskNet(TASKS, "resnet18", backbone_weights=str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    torch.save({"fc.weight": torch.zeros(3)}, path)                  # nothing of the encoder in it
    with pytest.raises(ValueError, match="does not match"):
        MultiTaskNet(TASKS, "resnet18", backbone_weights=str(path))
    torch.save({"conv1.weight": torch.zeros(3)}, path)                # a tensor of the wrong shape
    with pytest.raises((ValueError, RuntimeError), match="conv1.weight"):
        MultiTaskNet(TASKS, "resnet18", backbone_weights=str(path))


def test_segnet_with_task_prototype_retrieval_trains_a_step():
    """SegNet's full-resolution feature: tpkr retrieves on a pooled grid and reconstructs without upsampling."""
    torch.manual_seed(0)
    model = MultiTaskNet(TASKS, "segnet")
    method = build_method("tpkr", TASKS, model.feature_channels, {"attention_tokens": 64, "codebook_size": 32})
    images = torch.rand(2, 3, 32, 40)
    features, refined, preds, _ = forward_step(model, method, images)
    assert features.shape == (2, 64, 32, 40) and refined.extras["reconstruction"].shape == images.shape
    targets = {"semantic": torch.randint(0, 13, (2, 32, 40)), "depth": torch.rand(2, 1, 32, 40) + 0.1,
               "normal": torch.nn.functional.normalize(torch.randn(2, 3, 32, 40), dim=1)}
    losses = method.losses(Step(images, features, refined, preds, targets, torch.tensor([[1, 0, 0], [0, 1, 1]])))
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert method.retrieval[0][0].attn.in_proj_weight.grad.abs().sum() > 0


def test_imagenet_normalization_when_backbone_weights_are_given():
    from mtlwb.config import ExperimentConfig
    from mtlwb.models import MultiTaskNet
    from mtlwb.tasks import make_tasks

    assert ExperimentConfig().resolved_image_norm == "none"
    assert ExperimentConfig(image_norm="imagenet").resolved_image_norm == "imagenet"
    tasks = make_tasks(["depth"], 3)
    torch.manual_seed(0)
    plain = MultiTaskNet(tasks, "resnet_small")
    normed = MultiTaskNet(tasks, "resnet_small", image_norm="imagenet")
    normed.load_state_dict(plain.state_dict())                 # the statistics are not saved in checkpoints
    plain.eval()
    normed.eval()
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(normed.encode(x), plain.encode((x - mean) / std))
    with pytest.raises(ValueError, match="image_norm='auto'"):
        MultiTaskNet(tasks, "resnet_small", image_norm="auto")
