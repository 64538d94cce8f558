"""arch='reference': the published MTPSL mapping network and JTR joint network, inside the methods."""

from __future__ import annotations

import pytest
import torch

from mtlwb.config import ExperimentConfig
from mtlwb.experiment.loop import train
from mtlwb.methods.base import Step, build_method, forward_step
from mtlwb.methods.jtr import JTROptions, per_sample_reference_losses
from mtlwb.methods.mtpsl import MTPSLOptions
from mtlwb.models.mtl_net import MultiTaskNet
from mtlwb.tasks import TaskSpec, make_tasks
from tests.helpers import steps
from tests.helpers.steps import mixed_tasks

H = W = 32

# counted with the public reference code (sum of p.numel()): MTPSL Mapfns, JTR SegNet_JTR
REFERENCE_COUNTS = {("mtpsl", 13): 14_819_328, ("mtpsl", 7): 14_780_160,
                    ("jtr", 13): 24_989_427, ("jtr", 7): 24_983_640}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("method,classes", list(REFERENCE_COUNTS))
def test_parameter_counts_equal_the_reference_code(method, classes):
    names = ["semantic", "depth", "normal"] if classes == 13 else ["semantic", "depth"]
    m = build_method(method, make_tasks(names, classes), 64, {"arch": "reference"})
    assert n_params(m) == REFERENCE_COUNTS[(method, classes)]
    assert n_params(build_method(method, make_tasks(names, classes), 64)) < 200_000     # compact stays default


def test_segnet_backbone_and_heads_equal_segnet_mtl():
    assert n_params(MultiTaskNet(make_tasks(["semantic", "depth", "normal"], 13), "segnet")) == 25_055_185


def test_arch_option_is_checked():
    with pytest.raises(ValueError, match=r"jtr\.arch='big'.*allowed"):
        JTROptions(arch="big")
    with pytest.raises(ValueError, match=r"jtr\.arch='reference'.*width=8"):
        JTROptions(arch="reference", width=8)
    with pytest.raises(ValueError, match=r"mtpsl\.arch='reference'.*norm='batch'"):
        MTPSLOptions(arch="reference", norm="batch")    # the published layout normalizes each map alone


def make_step(tasks: list[TaskSpec], labelled: torch.Tensor, dtype: torch.dtype = torch.float64) -> Step:
    """The shared random batch at the reference networks' sizes: full-size 64-channel features, a SegNet bottleneck."""
    return steps.make_step(tasks, labelled, dtype=dtype, size=H, feature_channels=64, feature_stride=1,
                           bottleneck=True)


@pytest.mark.parametrize("fidelity", ["paper", "published_code"])
def test_jtr_reference_batched_equals_per_sample_reference(fidelity):
    # float64: the same math; the reference joint network normalizes per sample, so batching changes nothing
    tasks = mixed_tasks(4)
    lab = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0]])
    m = build_method("jtr", tasks, 64, {"arch": "reference", "fidelity": fidelity}).double()
    step = make_step(tasks, lab)
    noise = m.draw_noise(step, torch.Generator().manual_seed(1))
    joint_noise = m.draw_noise(step, torch.Generator().manual_seed(2))     # published_code: the joint side's own
    leaves = list(step.predictions.values()) + list(m.parameters())
    batched = {k: v for k, v in m.losses(step, noise, joint_noise).items() if k.startswith("jtr")}
    sum(batched.values()).backward()
    g_batched = [torch.zeros_like(t) if t.grad is None else t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    reference = per_sample_reference_losses(m, step, noise, joint_noise)
    sum(reference.values()).backward()
    g_reference = [torch.zeros_like(t) if t.grad is None else t.grad.clone() for t in leaves]
    assert batched.keys() == reference.keys() == {"jtr_model", "jtr_joint", "jtr_recon"}
    for k in batched:
        torch.testing.assert_close(batched[k], reference[k])
    for a, b in zip(g_batched, g_reference):
        torch.testing.assert_close(a, b)
    assert all(g.abs().sum() > 0 for g in g_batched[:len(tasks)] if g is not None)
    code, _ = m.joint_codes(step)
    assert code.shape == (2, 512, 1, 1)


def test_jtr_reference_decoder_needs_its_encoder_pass():
    m = build_method("jtr", mixed_tasks(4), 64, {"arch": "reference"})
    m.encoder(torch.rand(1, m.in_channels, H, W))
    with pytest.raises(RuntimeError, match="max-pool indices"):
        m.decoder(torch.rand(1, 512, 1, 1), (H, W))


def test_mtpsl_reference_mapping_is_per_map_and_compares_with_the_bottleneck():
    tasks = make_tasks(["semantic", "depth", "normal"], 13)
    m = build_method("mtpsl", tasks, 64, {"arch": "reference"})
    pair = torch.tensor([0, 3, 5])
    x = torch.rand(3, 64, H, W, dtype=torch.float64)
    with torch.no_grad():                               # float64: float32 only reorders the convolutions' sums
        together = m.mapping.double()(x, pair)
        alone = torch.cat([m.mapping(x[i:i + 1], pair[i:i + 1]) for i in range(3)])
        m.float()
    assert together.shape == (3, 512, H // 32, W // 32)
    torch.testing.assert_close(together, alone)        # the ref.'s BatchNorm at batch size 1, batched
    mtasks = [TaskSpec("semantic", "segmentation", 13, "m", False), TaskSpec("depth", "depth", 1, "m", True),
              TaskSpec("normal", "normal", 3, "m", True)]
    step = make_step(mtasks, torch.tensor([[1, 0, 0], [0, 1, 1]]), torch.float32)
    torch.manual_seed(0)
    base = m.losses(step)["mtpsl"]
    other = Step(step.images, step.features * -3.0, step.refined, step.predictions, step.targets, step.labelled,
                 step.bottleneck)
    torch.manual_seed(0)
    torch.testing.assert_close(m.losses(other)["mtpsl"], base)      # the 64-channel decoder feature is not used
    moved = Step(*[getattr(step, f) for f in ("images", "features", "refined", "predictions", "targets",
                                              "labelled")], -step.bottleneck)
    torch.manual_seed(0)
    assert not torch.allclose(m.losses(moved)["mtpsl"], base)
    no_bottleneck = Step(step.images, torch.randn(2, 128, 4, 4), step.refined, step.predictions, step.targets,
                         step.labelled)
    with pytest.raises(ValueError, match="arch='reference'.*128 channels"):
        m.losses(no_bottleneck)


def test_mtpsl_reference_trains_with_the_segnet_backbone(tmp_path):
    config = ExperimentConfig(method="mtpsl", method_options={"arch": "reference"}, backbone="segnet",
                              train_samples=3, eval_samples=2, batch_size=3, epochs=1, lr=1e-4, device="cpu",
                              progress=False, run_dir=str(tmp_path / "run"))
    record = train(config)
    terms = record["history"][-1]["train"]
    assert terms["mtpsl"] > 0 and all(torch.isfinite(torch.tensor(v)) for v in terms.values())


def test_jtr_reference_end_to_end_with_model():
    tasks = make_tasks(["semantic", "depth", "normal"], 4)
    model = MultiTaskNet(tasks)
    m = build_method("jtr", tasks, model.feature_channels, {"arch": "reference"})
    feats, refined, preds, _ = forward_step(model, m, torch.randn(2, 3, H, W))
    step = make_step(tasks, torch.tensor([[1, 0, 0], [0, 1, 1]]), torch.float32)
    step = Step(step.images, feats, refined, preds, step.targets, step.labelled)
    sum(m.losses(step).values()).backward()
    assert all(p.grad is not None for p in m.encoder.parameters())
    assert m.decoder.batchnorm.weight.grad is None          # built by the ref., never used in its forward
