"""Task-prototype knowledge retrieval (tpkr) and its vector quantizer, at toy sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtlwb.methods import tpkr  # noqa: F401  (registers "tpkr")
from mtlwb.methods.base import METHODS, Step, build_method, forward_step
from mtlwb.methods.tpkr import TaskPrototypeRetrieval, TPKROptions, attention_stride, prototype_affinity, tke_loss
from mtlwb.methods.vq import VectorQuantizer
from mtlwb.tasks import TaskSpec, make_tasks

C, H, W, B = 16, 16, 16, 3
SMALL = dict(codebook_size=16, proto_dim=8, heads=2, decoder_width=8)
KINDS = [("segmentation", 5), ("depth", 1), ("normal", 3), ("edge", 1)]


def toy_tasks(n: int) -> list[TaskSpec]:
    return [TaskSpec(f"t{i}", KINDS[i % 4][0], KINDS[i % 4][1], "m", False) for i in range(n)]


class TinyNet(nn.Module):
    """Stand-in for MultiTaskNet: stride-8 conv encoder, 1x1 heads upsampled to the image."""

    def __init__(self, tasks: list[TaskSpec]) -> None:
        super().__init__()
        self.tasks = tasks
        self.encoder = nn.Sequential(nn.Conv2d(3, C, 8, stride=8), nn.ReLU())
        self.heads = nn.ModuleDict({t.name: nn.Conv2d(C, t.channels, 1) for t in tasks})

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode(self, feats: dict[str, torch.Tensor], size) -> dict[str, torch.Tensor]:
        out = {}
        for t in self.tasks:
            p = F.interpolate(self.heads[t.name](feats[t.name]), size=size, mode="bilinear", align_corners=False)
            out[t.name] = F.normalize(p, dim=1) if t.kind == "normal" else p
        return out


def targets_for(tasks: list[TaskSpec], b: int = B) -> dict[str, torch.Tensor]:
    out = {}
    for t in tasks:
        if t.kind == "segmentation":
            out[t.name] = torch.randint(0, t.channels, (b, H, W))
        elif t.kind == "depth":
            out[t.name] = torch.rand(b, 1, H, W) + 0.1
        elif t.kind == "normal":
            out[t.name] = F.normalize(torch.randn(b, 3, H, W), dim=1)
        else:
            out[t.name] = (torch.rand(b, 1, H, W) > 0.8).float()
    return out


def make_step(net, method, images, targets, labelled) -> Step:
    features, refined, preds = forward_step(net, method, images)
    return Step(images, features, refined, preds, targets, labelled)


def build(tasks, **kw) -> TaskPrototypeRetrieval:
    return TaskPrototypeRetrieval(tasks, C, TPKROptions(**{**SMALL, **kw}))


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_shapes_and_affinity_rows(n):
    torch.manual_seed(0)
    tasks = toy_tasks(n)
    net, method = TinyNet(tasks), build(tasks)
    images = torch.rand(B, 3, H, W)
    features = net.encode(images)
    refined = method.refine(features, images)
    assert set(refined.task_features) == {t.name for t in tasks}
    for f in refined.task_features.values():
        assert f.shape == features.shape
    a = refined.extras["affinity"]
    assert a.shape == (B, n, n)
    assert torch.allclose(a.sum(-1), torch.ones(B, n), atol=1e-5)
    assert refined.extras["reconstruction"].shape == images.shape
    method.eval()
    assert method.task_affinity(features, images).shape == (B, n, n)
    assert method.prototype_slots().shape == (n, SMALL["proto_dim"])


def test_position_pooling_rows_sum_to_one_and_unshared_transformer():
    tasks = toy_tasks(3)
    method = build(tasks, affinity_pool="position", share_transformer=False, query_from="knowledge", layers=2)
    feats = torch.rand(2, C, 2, 2)
    refined = method.refine(feats, torch.rand(2, 3, H, W))
    assert torch.allclose(refined.extras["affinity"].sum(-1), torch.ones(2, 3), atol=1e-5)
    assert refined.task_features["t0"].shape == feats.shape


def test_vq_straight_through_reaches_encoder_and_codebook_gets_its_own_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizer(C, 8)
    f_e = torch.randn(2, C, 2, 2, requires_grad=True)
    f_q, codes, loss = vq(f_e)
    assert codes.shape == (2, 2, 2) and f_q.shape == f_e.shape
    # the quantized values are codebook entries
    assert torch.allclose(f_q, vq.codebook[codes].permute(0, 3, 1, 2), atol=1e-6)
    (f_q * torch.randn_like(f_q)).sum().backward(retain_graph=True)
    assert f_e.grad is not None and f_e.grad.abs().sum() > 0          # straight-through, f_q path alone
    assert vq.codebook.grad is None                                   # the f_q path gives the codebook nothing
    loss.backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0


def test_unlabelled_ground_truth_changes_nothing():
    torch.manual_seed(0)
    tasks = toy_tasks(4)
    net, method = TinyNet(tasks), build(tasks, akg_on="labelled", tc_mode="refined")
    images = torch.rand(B, 3, H, W)
    labelled = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    targets = targets_for(tasks)
    changed = {k: v.clone() for k, v in targets.items()}
    for i, t in enumerate(tasks):
        rows = labelled[:, i] == 0
        if t.kind == "segmentation":
            changed[t.name][rows] = 0
        else:
            changed[t.name][rows] = float("nan")
    net.eval()  # deterministic BN, same codebook
    method.eval()
    method.vq.initted.fill_(True)
    results = []
    for tgt in (targets, changed):
        net.zero_grad()
        method.zero_grad()
        losses = method.losses(make_step(net, method, images, tgt, labelled))
        sum(losses.values()).backward()
        results.append(({k: v.detach() for k, v in losses.items()}, method.slots.grad.clone(),
                        net.encoder[0].weight.grad.clone()))
    (l0, s0, e0), (l1, s1, e1) = results
    assert l0.keys() == l1.keys()
    for k in l0:
        assert torch.equal(l0[k], l1[k]), k
    assert torch.equal(s0, s1) and torch.equal(e0, e1)


@pytest.mark.parametrize("switches,expected", [
    ({}, {"vq", "tae", "tke", "tc"}),
    ({"use_vq": False}, {"tae", "tke", "tc"}),
    ({"use_tae": False}, {"vq", "tke", "tc"}),
    ({"use_akg": False}, {"vq", "tae"}),
    ({"use_tc": False}, {"vq", "tae", "tke"}),
    ({"use_retrieval": False}, {"vq", "tae", "tke", "tc"}),
])
def test_switches_remove_exactly_their_terms(switches, expected):
    torch.manual_seed(0)
    tasks = toy_tasks(3)
    net, method = TinyNet(tasks), build(tasks, **switches)
    images = torch.rand(B, 3, H, W)
    losses = method.losses(make_step(net, method, images, targets_for(tasks), torch.ones(B, 3)))
    assert set(losses) == {t.name for t in tasks} | expected
    if switches.get("use_vq") is False:
        assert method.vq is None and "codes" not in make_step(net, method, images, {}, None).refined.extras
    if switches.get("use_retrieval") is False:
        feats = net.encode(images)
        refined = method.refine(feats, images)
        ft = method._task_features(method._integrate(feats)[0])
        assert torch.allclose(refined.task_features["t1"], ft[:, 1])


def test_vq_off_means_integrated_feature_is_the_encoder_feature():
    method = build(toy_tasks(2), use_vq=False)
    feats = torch.rand(2, C, 2, 2)
    f_i, loss, codes = method._integrate(feats)
    assert f_i is feats and codes is None and loss.item() == 0.0


def test_tke_is_minimized_when_each_task_matches_its_own_slot():
    torch.manual_seed(0)
    slots = torch.randn(4, 8)
    weight = torch.ones(1, 4)
    own = tke_loss(prototype_affinity(slots[None], slots, 0.1), weight)
    swapped = tke_loss(prototype_affinity(slots.roll(1, 0)[None], slots, 0.1), weight)
    noise = tke_loss(prototype_affinity(torch.randn(1, 4, 8), slots, 0.1), weight)
    assert own < swapped and own < noise
    # and gradient descent on free task keys lands each key on its own slot
    keys = torch.randn(1, 4, 8, requires_grad=True)
    opt = torch.optim.SGD([keys], lr=1.0)
    for _ in range(200):
        opt.zero_grad()
        tke_loss(prototype_affinity(keys, slots, 0.1), weight).backward()
        opt.step()
    a = prototype_affinity(keys.detach(), slots, 0.1)[0]
    assert torch.equal(a.argmax(-1), torch.arange(4))


@pytest.mark.parametrize("tc_mode", ["batch", "refined"])
def test_no_nan_over_a_few_steps_with_multitasknet(tc_mode):
    from mtlwb.models.mtl_net import MultiTaskNet

    torch.manual_seed(0)
    tasks = make_tasks(["semantic", "depth", "normal"], num_classes=5)
    net = MultiTaskNet(tasks, backbone="resnet_small")
    method = TaskPrototypeRetrieval(tasks, net.feature_channels, TPKROptions(**{**SMALL, "tc_mode": tc_mode}))
    opt = torch.optim.Adam(list(net.parameters()) + [p for g in method.parameter_groups(1e-3) for p in g["params"]],
                           lr=1e-3)
    labelled = torch.tensor([[1, 0, 0], [0, 1, 1]])
    for _ in range(3):
        images = torch.rand(2, 3, H, W)
        losses = method.losses(make_step(net, method, images, targets_for(tasks, b=2), labelled))
        total = sum(losses.values())
        assert torch.isfinite(total), losses
        opt.zero_grad()
        total.backward()
        for p in list(net.parameters()) + list(method.parameters()):
            assert p.grad is None or torch.isfinite(p.grad).all()
        opt.step()


def test_registered_and_options_validated():
    assert METHODS["tpkr"] is TaskPrototypeRetrieval
    m = build_method("tpkr", toy_tasks(2), C, {**SMALL, "lambda_akg": 0.5})
    assert m.options.lambda_akg == 0.5
    for bad, field in [({"temperature": 0}, "temperature"), ({"tc_mode": "x"}, "tc_mode"),
                       ({"codebook_size": 0}, "codebook_size"), ({"lambda_tae": -1}, "lambda_tae"),
                       ({"proj_kernel": 2}, "proj_kernel"), ({"affinity_pool": "max"}, "affinity_pool")]:
        with pytest.raises(ValueError, match=field):
            TPKROptions(**bad)
    with pytest.raises(ValueError, match="heads"):
        TaskPrototypeRetrieval(toy_tasks(2), C, TPKROptions(heads=3))
    with pytest.raises(ValueError, match="unknown"):
        build_method("tpkr", toy_tasks(2), C, {"nope": 1})


def test_attention_stride_fits_the_token_budget():
    assert attention_stride(36, 48, 4096) == 1                 # stride-8 backbone at NYUv2 size: exact
    assert attention_stride(288, 384, 4096) == 8               # SegNet's full-resolution feature: 36×48 tokens
    assert attention_stride(5, 7, 4) == 4                      # ceil(5/4)·ceil(7/4) = 4
    with pytest.raises(ValueError, match="attention_tokens"):
        TPKROptions(attention_tokens=0)


def test_full_resolution_feature_retrieves_on_a_pooled_grid():
    """A full-resolution shared feature (SegNet): retrieval on a pooled grid, added back as an upsampled residual;
    with a budget that covers every position it is the exact attention."""
    torch.manual_seed(0)
    tasks = toy_tasks(3)
    feats = torch.randn(2, C, H, W, requires_grad=True)        # stride 1: H·W = 256 positions
    images = torch.randn(2, 3, H, W)
    exact = TaskPrototypeRetrieval(tasks, C, TPKROptions(**SMALL, attention_tokens=H * W)).eval()
    pooled = TaskPrototypeRetrieval(tasks, C, TPKROptions(**SMALL, attention_tokens=16)).eval()
    pooled.load_state_dict(exact.state_dict())
    ft = exact._task_features(exact._integrate(feats)[0])
    affinity = exact._affinity(ft)
    torch.testing.assert_close(exact._retrieve(ft, affinity), exact._attend(ft, affinity))
    out = pooled._retrieve(ft, affinity)
    small = F.avg_pool2d(ft.flatten(0, 1), 4).unflatten(0, (2, 3))                 # 4×4 = 16 tokens
    residual = pooled._attend(small, affinity) - small
    up = F.interpolate(residual.flatten(0, 1), size=(H, W), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ft + up.unflatten(0, (2, 3)))                  # f^t + up(R(pool f^t) − pool f^t)
    assert (out - ft).abs().amax() > 0
    refined = pooled.refine(feats, images)
    assert refined.extras["reconstruction"].shape == images.shape                # no upsampling at stride 1
    sum(v.sum() for v in refined.task_features.values()).backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
