"""Task-prototype knowledge retrieval (tpkr), its vector quantizer and its shipped sweeps, at toy sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtlwb.methods import tpkr  # noqa: F401  (registers "tpkr")
from mtlwb.methods.base import METHODS, Step, build_method, forward_step
from mtlwb.methods.tpkr import (
    VARIANTS,
    TaskPrototypeRetrieval,
    TPKROptions,
    prototype_affinity,
    slot_knowledge,
    tke_loss,
    triplet_tc_loss,
)
from mtlwb.methods.tpkr_blocks import CrossFFNBlock, SelfCrossFFNBlock, attention_stride
from mtlwb.methods.vq import VectorQuantizer
from mtlwb.models import Encoded
from mtlwb.tasks import TaskSpec, make_tasks

REPO = Path(__file__).resolve().parents[1]
C, H, W, B = 16, 16, 16, 3
SMALL = dict(codebook_size=16, proto_dim=8, heads=2, decoder_width=8)
KINDS = [("segmentation", 5), ("depth", 1), ("normal", 3), ("edge", 1)]
FIRST = {"variant": "first"}


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

    def encode_parts(self, images: torch.Tensor) -> Encoded:
        return Encoded(self.encode(images))

    def decode(self, feats: dict[str, torch.Tensor], size) -> dict[str, torch.Tensor]:
        out = {}
        for t in self.tasks:
            p = F.interpolate(self.heads[t.name](feats[t.name]), size=size, mode="bilinear", align_corners=False)
            out[t.name] = t.kind_object.activate(p)
        return out


def targets_for(tasks: list[TaskSpec], b: int = B) -> dict[str, torch.Tensor]:
    out = {}
    for t in tasks:
        out[t.name] = t.kind_object.random_target(t, b, (H, W), None)
    return out


def make_step(net, method, images, targets, labelled) -> Step:
    features, refined, preds, _ = forward_step(net, method, images)
    return Step(images, features, refined, preds, targets, labelled)


def build(tasks, **kw) -> TaskPrototypeRetrieval:
    return TaskPrototypeRetrieval(tasks, C, TPKROptions(**{**SMALL, **kw}))


# -- the variants and sizes -----------------------------------------------------------------------------------------

def test_paper_variant_is_the_default_and_first_keeps_the_first_choices():
    paper, first = TPKROptions(), TPKROptions(variant="first")
    assert (paper.variant, paper.size) == ("paper", "compact")
    for name, value in VARIANTS["paper"].items():
        assert getattr(paper, name) == value
    assert (paper.tc_mode, paper.knowledge, paper.block, paper.vq_gradient) == \
        ("triplet", "slots", "self_cross_ffn", "codebook")
    assert (first.tc_mode, first.knowledge, first.block, first.vq_gradient, first.temperature, first.layers) == \
        ("batch", "features", "cross_ffn", "straight_through", 0.1, 1)
    # the compact size is the first implementation's (K 512, d 128, the backbone's width); paper = published
    assert (paper.codebook_size, paper.proto_dim, paper.embed_dim) == (512, 128, 0)
    big = TPKROptions(size="paper")
    assert (big.codebook_size, big.embed_dim, big.proto_dim) == (4096, 1024, 1024)
    # an option given explicitly wins over the variant and the size
    mixed = TPKROptions(variant="first", tc_mode="triplet", size="paper", proto_dim=64)
    assert (mixed.tc_mode, mixed.knowledge, mixed.proto_dim, mixed.codebook_size) == ("triplet", "features", 64, 4096)
    method = build_method("tpkr", toy_tasks(2), C, SMALL)
    assert isinstance(method.retrieval[0][0], SelfCrossFFNBlock) and len(method.retrieval[0]) == 2
    assert isinstance(build_method("tpkr", toy_tasks(2), C, {**SMALL, **FIRST}).retrieval[0][0], CrossFFNBlock)


def test_width_embedding_and_output_projection_only_when_d_differs():
    tasks = toy_tasks(2)
    same = build(tasks)
    assert same.embed is None and same.output is None and same.width == C
    wide = build(tasks, embed_dim=24, heads=4)
    assert wide.embed.out_channels == 24 and wide.vq.codebook.shape == (16, 24) and wide.width == 24
    feats = torch.rand(2, C, 2, 2)
    refined = wide.refine(feats, torch.rand(2, 3, H, W))
    assert refined.task_features["t0"].shape == feats.shape                     # back to the heads' width
    f_i = wide._integrate(feats)[0]
    assert f_i.shape == (2, 24, 2, 2)


@pytest.mark.parametrize("variant", ["paper", "first"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_shapes_and_affinity_rows(n, variant):
    torch.manual_seed(0)
    tasks = toy_tasks(n)
    net, method = TinyNet(tasks), build(tasks, variant=variant)
    images = torch.rand(B, 3, H, W)
    features = net.encode(images)
    refined = method.refine(features, images)
    assert set(refined.task_features) == {t.name for t in tasks}
    for f in refined.task_features.values():
        assert f.shape == features.shape
    a = refined.extras["affinity"]
    assert a.shape == (B, n, n)
    assert torch.allclose(a.sum(-1), torch.ones(B, n), atol=1e-5)
    positions = 1 if variant == "first" else features.shape[-2] * features.shape[-1]
    assert refined.extras["affinity_map"].shape == (B, n, positions, n)
    assert refined.extras["reconstruction"].shape == images.shape
    method.eval()
    assert method.task_affinity(features, images).shape == (B, n, n)
    assert method.task_keys(features).shape == (B, n, SMALL["proto_dim"])
    assert method.prototype_slots().shape == (n, SMALL["proto_dim"])


def test_first_variant_position_pooling_unshared_transformer_and_knowledge_queries():
    tasks = toy_tasks(3)
    method = build(tasks, variant="first", affinity_pool="position", share_transformer=False,
                   query_from="knowledge", layers=2)
    feats = torch.rand(2, C, 2, 2)
    refined = method.refine(feats, torch.rand(2, 3, H, W))
    assert torch.allclose(refined.extras["affinity"].sum(-1), torch.ones(2, 3), atol=1e-5)
    assert refined.task_features["t0"].shape == feats.shape
    with pytest.raises(ValueError, match="query_from"):
        TPKROptions(query_from="knowledge")                 # f^ta = A·V is no map of positions to query from


# -- f^ta: a mixture of the slots ----------------------------------------------------------------------------------

def test_task_affinity_knowledge_is_the_convex_combination_of_the_slots_weighted_by_the_affinity():
    torch.manual_seed(0)
    slots = torch.randn(4, 8)
    affinity = torch.rand(2, 4, 5, 4).softmax(-1)                              # rows: weights over the slots
    f_ta = slot_knowledge(affinity, slots)
    manual = sum(affinity[..., s, None] * slots[s] for s in range(4))
    torch.testing.assert_close(f_ta, manual)
    one_hot = F.one_hot(torch.tensor([2]), 4).float().view(1, 1, 1, 4)
    torch.testing.assert_close(slot_knowledge(one_hot, slots)[0, 0, 0], slots[2])   # a vertex: the slot itself
    # inside the method: what the retrieval reads as key/value is the projection of A_t · V, A_t = its affinity
    tasks = toy_tasks(3)
    method = build(tasks).eval()
    seen = {}
    method.knowledge_proj.register_forward_hook(lambda mod, inp, out: seen.update(f_ta=inp[0], kv=out))
    refined = method.refine(torch.rand(2, C, 2, 2), torch.rand(2, 3, H, W))
    a = refined.extras["affinity_map"]                                          # [B, T, P, T]
    assert (a >= 0).all() and torch.allclose(a.sum(-1), torch.ones_like(a[..., 0]))
    torch.testing.assert_close(seen["f_ta"], torch.einsum("btps,sd->btpd", a, method.slots))


# -- L_tke ------------------------------------------------------------------------------------------------------------

def test_tke_target_is_the_task_own_slot():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 3, requires_grad=True)                       # [B, T, P, slots]
    affinity = logits.softmax(-1)
    weight = torch.ones(2, 3)
    loss = tke_loss(affinity, weight)
    target = torch.arange(3).view(1, 3, 1).expand(2, 3, 4)                      # task t -> slot t
    expected = F.cross_entropy(logits.reshape(-1, 3), target.reshape(-1))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    own = torch.eye(3, dtype=torch.bool).view(1, 3, 1, 3).expand_as(logits)
    assert (logits.grad[own] < 0).all() and (logits.grad[~own] > 0).all()     # descent raises exactly slot t
    # an image-level affinity [B, T, T] is the one-position case
    a = torch.rand(2, 3, 3).softmax(-1)
    torch.testing.assert_close(tke_loss(a, weight), tke_loss(a.unsqueeze(2), weight))


def test_tke_is_minimized_when_each_task_matches_its_own_slot():
    torch.manual_seed(0)
    slots = torch.randn(4, 8)
    weight = torch.ones(1, 4)
    own = tke_loss(prototype_affinity(slots[None], slots, 0.1), weight)
    swapped = tke_loss(prototype_affinity(slots.roll(1, 0)[None], slots, 0.1), weight)
    noise = tke_loss(prototype_affinity(torch.randn(1, 4, 8), slots, 0.1), weight)
    assert own < swapped and own < noise
    keys = torch.randn(1, 4, 8, requires_grad=True)
    opt = torch.optim.SGD([keys], lr=1.0)
    for _ in range(200):
        opt.zero_grad()
        tke_loss(prototype_affinity(keys, slots, 0.1), weight).backward()
        opt.step()
    a = prototype_affinity(keys.detach(), slots, 0.1)[0]
    assert torch.equal(a.argmax(-1), torch.arange(4))


# -- L_tc: triplet ----------------------------------------------------------------------------------------------------

def _clustered(seed: int, spread: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(1, 3, 8, generator=g)
    return centers + spread * torch.randn(6, 3, 8, generator=g)                 # [B, T, d]


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("aggregate", ["mean", "pairs"])
def test_triplet_falls_when_a_task_gathers_and_rises_when_two_tasks_coincide(distance, aggregate):
    weight = torch.ones(6, 3)
    margin = 0.5 if distance == "cosine" else 2.0

    def loss(x):
        return triplet_tc_loss(x, weight, margin, distance, aggregate).item()

    for seed in range(3):
        x = _clustered(seed)
        base = loss(x)
        assert base > 0
        mean = x.mean(0, keepdim=True)
        gathered = mean + 0.3 * (x - mean)                                      # each task's features move together
        assert loss(gathered) < base
        merged = x.clone()
        merged[:, 1] = x[:, 0] + 0.01 * torch.randn(6, 8)                       # task 1's features = task 0's
        assert loss(merged) > base
    separated = torch.eye(3).repeat(6, 1, 1) * 10                               # one point per task, far apart
    assert loss(separated) == 0.0


def test_triplet_reads_only_weighted_features_and_reaches_them():
    x = _clustered(0).requires_grad_()
    weight = torch.ones(6, 3)
    weight[:3, 2] = 0                                                            # (image < 3, task 2) left out
    loss = triplet_tc_loss(x, weight, 0.5)
    loss.backward()
    assert x.grad[:3, 2].abs().sum() == 0 and x.grad[3:].abs().sum() > 0
    changed = x.detach().clone()
    changed[:3, 2] = 100.0
    assert torch.equal(triplet_tc_loss(changed, weight, 0.5), loss.detach())


# -- the retrieval block ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_first", [True, False])
def test_block_order_is_self_attention_then_cross_attention_on_the_knowledge_then_ffn(norm_first):
    torch.manual_seed(0)
    block = SelfCrossFFNBlock(8, 2, 2, norm_first)
    calls = []
    block.self_attn.register_forward_hook(lambda m, i, o: calls.append(("self", i)))
    block.attn.register_forward_hook(lambda m, i, o: calls.append(("cross", i)))
    block.ffn.register_forward_hook(lambda m, i, o: calls.append(("ffn", i)))
    x, kv = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    block(x, kv)
    assert [name for name, _ in calls] == ["self", "cross", "ffn"]
    _, (q, k, v) = calls[1]
    assert torch.equal(k, kv) and torch.equal(v, kv) and q.shape == x.shape   # key/value: the knowledge
    assert not torch.equal(q, block.norm_cross(x) if norm_first else x)       # query: after self-attention
    # the method's blocks take f^t as query and f^ta as key/value
    method = build(toy_tasks(2)).eval()
    seen = []
    method.retrieval[0][0].attn.register_forward_hook(lambda m, i, o: seen.append(i))
    method.knowledge_proj.register_forward_hook(lambda m, i, o: seen.append(o))
    method.refine(torch.rand(1, C, 2, 2), torch.rand(1, 3, H, W))
    kv_tokens, (q, k, _v) = seen[0], seen[1]
    assert torch.equal(k, kv_tokens.reshape(2, 4, C)) and q.shape == (2, 4, C)


# -- labels and predictions of unlabelled tasks -----------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"akg_on": "labelled"}, {"tc_aggregate": "pairs"}, FIRST,
                                     {**FIRST, "akg_on": "labelled", "tc_mode": "refined"}])
def test_no_term_reads_an_unlabelled_task_prediction_or_label(options):
    torch.manual_seed(0)
    tasks = toy_tasks(4)
    net, method = TinyNet(tasks), build(tasks, **options)
    images = torch.rand(B, 3, H, W)
    labelled = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    targets = targets_for(tasks)
    changed = {k: v.clone() for k, v in targets.items()}
    for i, t in enumerate(tasks):
        rows = labelled[:, i] == 0
        changed[t.name][rows] = 0 if t.kind_object.categorical else float("nan")
    net.eval()  # deterministic BN, same codebook
    method.eval()
    method.vq.initted.fill_(True)
    results = []
    for tgt in (targets, changed):
        net.zero_grad()
        method.zero_grad()
        step = make_step(net, method, images, tgt, labelled)
        for p in step.predictions.values():
            p.retain_grad()
        losses = method.losses(step)
        sum(losses.values()).backward()
        for i, t in enumerate(tasks):                                           # gradient check on the predictions
            grad = step.predictions[t.name].grad
            assert grad[labelled[:, i] == 0].abs().sum() == 0, t.name
            assert grad[labelled[:, i] == 1].abs().sum() > 0, t.name
        results.append(({k: v.detach() for k, v in losses.items()}, method.slots.grad.clone(),
                        net.encoder[0].weight.grad.clone()))
    (l0, s0, e0), (l1, s1, e1) = results
    assert l0.keys() == l1.keys()
    for k in l0:
        assert torch.equal(l0[k], l1[k]), k
    assert torch.equal(s0, s1) and torch.equal(e0, e1)


# -- switches, VQ ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["paper", "first"])
@pytest.mark.parametrize("switches,expected", [
    ({}, {"vq", "tae", "tke", "tc"}),
    ({"use_vq": False}, {"tae", "tke", "tc"}),
    ({"use_tae": False}, {"vq", "tke", "tc"}),
    ({"use_akg": False}, {"vq", "tae"}),
    ({"use_tc": False}, {"vq", "tae", "tke"}),
    ({"use_retrieval": False}, {"vq", "tae", "tke", "tc"}),
])
def test_switches_remove_exactly_their_terms(switches, expected, variant):
    torch.manual_seed(0)
    tasks = toy_tasks(3)
    net, method = TinyNet(tasks), build(tasks, variant=variant, **switches)
    images = torch.rand(B, 3, H, W)
    losses = method.losses(make_step(net, method, images, targets_for(tasks), torch.ones(B, 3)))
    assert set(losses) == {t.name for t in tasks} | expected
    if switches.get("use_vq") is False:
        assert method.vq is None and "codes" not in make_step(net, method, images, {}, None).refined.extras
    if switches.get("use_retrieval") is False:
        assert method.retrieval is None and method.knowledge_proj is None
        feats = net.encode(images)
        refined = method.refine(feats, images)
        ft = method._task_features(method._integrate(feats)[0])
        assert torch.allclose(refined.task_features["t1"], ft[:, 1])


def test_vq_straight_through_reaches_encoder_and_codebook_gets_its_own_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizer(C, 8)
    f_e = torch.randn(2, C, 2, 2, requires_grad=True)
    f_q, codes, loss = vq(f_e)
    assert codes.shape == (2, 2, 2) and f_q.shape == f_e.shape
    assert torch.allclose(f_q, vq.codebook[codes].permute(0, 3, 1, 2), atol=1e-6)
    (f_q * torch.randn_like(f_q)).sum().backward(retain_graph=True)
    assert f_e.grad is not None and f_e.grad.abs().sum() > 0          # straight-through, f_q path alone
    assert vq.codebook.grad is None                                   # the f_q path gives the codebook nothing
    loss.backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0


def test_vq_codebook_gradient_trains_the_chosen_entries_from_downstream():
    """vq_gradient="codebook" (paper variant): f^q's gradient reaches the chosen entries, not the encoder, so the
    reconstruction that reads f^i = f^e + f^q trains the codebook."""
    torch.manual_seed(0)
    vq = VectorQuantizer(C, 8, straight_through=False)
    f_e = torch.randn(2, C, 2, 2, requires_grad=True)
    f_q, codes, _ = vq(f_e)
    torch.testing.assert_close(f_q, vq.codebook[codes].permute(0, 3, 1, 2))
    (f_q * torch.randn_like(f_q)).sum().backward()
    assert f_e.grad is None
    used = torch.zeros(8, dtype=torch.bool)
    used[codes.flatten()] = True
    assert vq.codebook.grad[used].abs().sum() > 0 and vq.codebook.grad[~used].abs().sum() == 0
    method = build(toy_tasks(2))
    assert method.vq.straight_through is False and build(toy_tasks(2), **FIRST).vq.straight_through is True


def test_vq_off_means_integrated_feature_is_the_encoder_feature():
    method = build(toy_tasks(2), use_vq=False)
    feats = torch.rand(2, C, 2, 2)
    f_i, loss, codes = method._integrate(feats)
    assert f_i is feats and codes is None and loss.item() == 0.0


# -- training with the real network, options ---------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"tc_aggregate": "pairs", "tc_distance": "euclidean"},
                                     {"affinity_pool": "mean", "norm_first": False, "task_blocks": 1},
                                     {"variant": "first", "tc_mode": "batch"},
                                     {"variant": "first", "tc_mode": "refined"}])
def test_no_nan_over_a_few_steps_with_multitasknet(options):
    from mtlwb.models.mtl_net import MultiTaskNet

    torch.manual_seed(0)
    tasks = make_tasks(["semantic", "depth", "normal"], num_classes=5)
    net = MultiTaskNet(tasks, backbone="resnet_small")
    method = TaskPrototypeRetrieval(tasks, net.feature_channels, TPKROptions(**{**SMALL, **options}))
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
                       ({"proj_kernel": 2}, "proj_kernel"), ({"affinity_pool": "max"}, "affinity_pool"),
                       ({"variant": "second"}, "variant"), ({"size": "huge"}, "size"),
                       ({"tc_distance": "l1"}, "tc_distance"), ({"tc_aggregate": "max"}, "tc_aggregate"),
                       ({"tc_margin": -0.1}, "tc_margin"), ({"knowledge": "x"}, "knowledge"),
                       ({"block": "ffn"}, "block"), ({"embed_dim": -1}, "embed_dim"),
                       ({"task_blocks": 1.5}, "task_blocks"), ({"norm_first": "yes"}, "norm_first"),
                       ({"vq_gradient": "none"}, "vq_gradient")]:
        with pytest.raises(ValueError, match=field):
            TPKROptions(**bad)
    with pytest.raises(ValueError, match="heads"):
        TaskPrototypeRetrieval(toy_tasks(2), C, TPKROptions(heads=3))
    with pytest.raises(ValueError, match="unknown"):
        build_method("tpkr", toy_tasks(2), C, {"nope": 1})


# -- large feature maps -----------------------------------------------------------------------------------------------

def test_attention_stride_fits_the_token_budget():
    assert attention_stride(36, 48, 4096) == 1                 # stride-8 backbone at NYUv2 size: exact
    assert attention_stride(64, 64, 4096) == 1                 # and at PASCAL's 512x512
    assert attention_stride(288, 384, 4096) == 8               # SegNet's full-resolution feature: 36×48 tokens
    assert attention_stride(5, 7, 4) == 4                      # ceil(5/4)·ceil(7/4) = 4
    with pytest.raises(ValueError, match="attention_tokens"):
        TPKROptions(attention_tokens=0)


@pytest.mark.parametrize("variant", ["paper", "first"])
def test_full_resolution_feature_retrieves_on_a_pooled_grid(variant):
    """A full-resolution shared feature (SegNet): affinity and retrieval on a pooled grid, added back as an upsampled
    residual; with a budget that covers every position it is the exact attention."""
    torch.manual_seed(0)
    tasks = toy_tasks(3)
    feats = torch.randn(2, C, H, W, requires_grad=True)        # stride 1: H·W = 256 positions
    images = torch.randn(2, 3, H, W)
    exact = TaskPrototypeRetrieval(tasks, C, TPKROptions(**SMALL, variant=variant, attention_tokens=H * W)).eval()
    pooled = TaskPrototypeRetrieval(tasks, C, TPKROptions(**SMALL, variant=variant, attention_tokens=16)).eval()
    pooled.load_state_dict(exact.state_dict())
    ft = exact._task_features(exact._integrate(feats)[0])
    out, affinity = exact._retrieve(ft)
    torch.testing.assert_close(out, exact._attend(ft, exact._affinity_map(ft, ft)))
    small = F.avg_pool2d(ft.flatten(0, 1), 4).unflatten(0, (2, 3))                 # 4×4 = 16 tokens
    out, affinity = pooled._retrieve(ft)
    assert affinity.shape[2] == (16 if variant == "paper" else 1)                  # the paper's A on the grid
    residual = pooled._attend(small, pooled._affinity_map(ft, small)) - small
    up = F.interpolate(residual.flatten(0, 1), size=(H, W), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ft + up.unflatten(0, (2, 3)))                  # f^t + up(R(pool f^t) − pool f^t)
    assert (out - ft).abs().amax() > 0
    refined = pooled.refine(feats, images)
    assert refined.extras["reconstruction"].shape == images.shape                # no upsampling at stride 1
    sum(v.sum() for v in refined.task_features.values()).backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


# -- the paper-size model: parameters counted from its structure ------------------------------------------------

def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def _basic_block(cin: int, w: int) -> int:
    """Two 3×3 convs (no bias) + two BN, plus a 1×1 conv + BN shortcut when the width changes."""
    shortcut = _conv(cin, w, 1, False) + 2 * w if cin != w else 0
    return _conv(cin, w, 3, False) + _conv(w, w, 3, False) + 4 * w + shortcut


def _resnet18() -> int:
    """ResNet-18 without fc: the same modules whether dilated or read at its four stages (resnet18_multiscale)."""
    stem = _conv(3, 64, 7, False) + 2 * 64
    widths = [64, 64, 128, 256, 512]
    return stem + sum(_basic_block(widths[i], widths[i + 1]) + _basic_block(widths[i + 1], widths[i + 1])
                      for i in range(4))


def _aspp(cin: int, cout: int, width: int = 256) -> int:
    """1×1 + three dilated 3×3 branches (conv-BN-ReLU), image pooling (conv, no BN), 1×1 projection, 3×3 refine."""
    branches = _conv(cin, width, 1, False) + 3 * _conv(cin, width, 3, False) + 4 * 2 * width
    return (branches + _conv(cin, width, 1, False) + _conv(5 * width, width, 1, False) + 2 * width
            + _conv(width, width, 3, False) + 2 * width + _conv(width, cout, 1))


def _attention(dim: int) -> int:
    return 4 * dim * dim + 4 * dim                              # q, k, v and output projections with biases


def paper_size_parameters(channels: list[int], d: int | None = 1024, c: int = 64 + 128 + 256 + 512) -> dict[str, int]:
    """Parameters of resnet18_multiscale (c = 960 channels) + ASPP heads + tpkr at size "paper", by part.

    d None: no prototype and no retrieval (the key and the slots exist but are unused: counted apart).
    """
    o = TPKROptions(size="paper")
    D, K, T, width, m = o.embed_dim, o.codebook_size, len(channels), o.decoder_width, o.ffn_mult
    parts = {"backbone (ResNet-18)": _resnet18(), "heads (ASPP)": sum(_aspp(c, k) for k in channels),
             "embedding conv 3×3 c → D": _conv(c, D, 3), "codebook K × D": K * D,
             "image decoder (L_tae)": (_conv(D, width, 3) + _conv(width, width // 2, 3)
                                       + _conv(width // 2, width // 4, 3) + _conv(width // 4, 3, 3)),
             "task decoders (2 BasicBlocks each)": T * o.task_blocks * _basic_block(D, D),
             "output conv 1×1 D → c": _conv(D, c, 1)}
    key_and_slots = D * (d or o.proto_dim) + (d or o.proto_dim) + T * (d or o.proto_dim)
    if d is None:
        parts["unused key W and slots"] = key_and_slots
        return parts
    block = 2 * _attention(D) + (D * m * D + m * D + m * D * D + D) + 3 * 2 * D          # self, cross, FFN, 3 LN
    parts |= {"key W (D → d) and slots (T × d)": key_and_slots, "knowledge projection d → D": d * D + D,
              f"retrieval blocks ({o.layers})": o.layers * block}
    return parts


NYUD = (["semantic", "depth", "normal"], 40)
PASCAL = (["semantic", "parts", "saliency", "normal", "edge"], 21)


def _model_parameters(names: list[str], classes: int, options: dict) -> tuple[int, list[int]]:
    from mtlwb.models import MultiTaskNet

    with torch.device("meta"):                                  # shapes only: no memory, no initialisation cost
        tasks = make_tasks(names, classes)
        net = MultiTaskNet(tasks, "resnet18_multiscale")          # the benchmark configurations' backbone
        method = build_method("tpkr", tasks, net.feature_channels, options)
    count = sum(p.numel() for p in [*net.parameters(), *method.parameters()])
    return count, [t.channels for t in tasks]


def test_paper_size_parameter_count_is_the_structural_count_and_the_reported_one():
    count, channels = _model_parameters(*NYUD, {"size": "paper"})
    parts = paper_size_parameters(channels)
    assert count == sum(parts.values())
    readme = (REPO / "docs" / "methods" / "tpkr.md").read_text()   # the method's documentation page
    assert f"{count / 1e6:.1f} M" in readme                    # the number the docs report beside 159.4 M
    none, _ = _model_parameters(*NYUD, {"size": "paper", "use_akg": False, "use_tc": False, "use_retrieval": False})
    assert none == sum(paper_size_parameters(channels, d=None).values())
    assert f"{none / 1e6:.1f} M" in readme
    for d in (256, 512, 2048):                                 # the dimension ablation's models
        count_d, _ = _model_parameters(*NYUD, {"size": "paper", "proto_dim": d})
        assert count_d == sum(paper_size_parameters(channels, d).values())
        assert count_d - count == (d - 1024) * (1024 + 1 + 3 + 1024)   # per unit of d: W, its bias, 3 slots, d → D
    pascal, channels = _model_parameters(*PASCAL, {"size": "paper"})
    assert pascal == sum(paper_size_parameters(channels).values()) and f"{pascal / 1e6:.1f} M" in readme


# -- shipped sweeps and paper configurations ------------------------------------------------------------------------

def _spec(name: str):
    from mtlwb.sweeps.spec import load_spec

    return load_spec(REPO / "sweeps" / f"{name}.yaml")


def _arms(spec) -> dict[str, set[int]]:
    arms: dict[str, set[int]] = {}
    for r in spec.runs():
        key = r.params["method"] + " " + str(sorted((r.params.get("method_options") or {}).items()))
        arms.setdefault(key, set()).add(r.params["seed"])
    return arms


def test_paper_ablation_sweeps_load_plan_and_share_runs(tmp_path):
    from mtlwb.sweeps.planning import plan_runs
    from mtlwb.sweeps.state import SweepState

    losses, dims, regime = _spec("tpkr_paper_losses"), _spec("tpkr_paper_dims"), _spec("regime")
    for spec, arms in ((losses, 4), (dims, 6)):
        assert len(_arms(spec)) == arms and all(seeds == {0, 1, 2, 3, 4} for seeds in _arms(spec).values())
        assert all(r.params["label_setting"] == "onelabel" for r in spec.runs())
        assert all(spec.fixed[k] == regime.fixed[k] for k in regime.fixed)       # the regime's protocol
        for r in spec.runs():
            if r.params["method"] == "tpkr":
                assert r.params["method_options"]["variant"] == "paper"          # spelled out, never the default
        runs = spec.runs()
        todo, stale = plan_runs(SweepState(tmp_path / spec.name, spec, runs), runs, tmp_path / spec.name)
        assert len(todo) == len(runs) and not stale
    assert losses.reuse_from == ["regime"] and dims.reuse_from == ["regime", "tpkr_paper_losses"]
    ids = {n: {r.run_id for r in s.runs()} for n, s in (("l", losses), ("d", dims), ("r", regime))}
    # the regime's runs: supervised onelabel, and TPKR's full paper variant (spelled out here, the default there:
    # the same resolved options, so the same runs)
    assert len(ids["l"] & ids["r"]) == 10
    assert len(ids["d"] & ids["l"]) == 15                      # supervised, no prototype, d = 128
    assert len(ids["d"] - ids["l"]) == 15                      # what the dims sweep trains after the other two
    steps = [c["name"] for c in losses.claims]
    assert steps == ["+L_tae ≥ none", "+L_tke ≥ +L_tae", "+L_tc ≥ +L_tke"]
    assert all(c.get("relation") == ">=" for c in losses.claims + dims.claims)


def test_dimension_sweep_scales_the_published_dimensions_by_the_compact_width():
    spec = _spec("tpkr_paper_dims")
    compact, paper = TPKROptions(), TPKROptions(size="paper")
    scale = paper.embed_dim // 128                              # compact D = resnet_small's 128 channels; paper 1024
    assert scale == paper.codebook_size // compact.codebook_size == paper.proto_dim // compact.proto_dim == 8
    dims = set()
    for r in spec.runs():
        opts = r.params.get("method_options") or {}
        if r.params["method"] == "tpkr" and opts.get("use_retrieval", True):
            dims.add(TPKROptions(**opts).proto_dim * scale)
    assert dims == {256, 512, 1024, 2048}


@pytest.mark.parametrize("name, dataset, epochs, batch, rows", [
    ("tpkr_pascal_context", "pascal_context", 100, 6,
     ["59.78 / 59.08 / 78.62 / 15.63 / 65.10", "64.30 / 56.87 / 80.51 / 14.48 / 67.30", "44.73"]),
    ("tpkr_nyud", "nyud", 200, 4, ["45.95 / 0.4865 / 25.64", "47.53 / 0.4621 / 24.67", "159.4 M"])])
def test_paper_configurations_use_the_published_settings_and_name_their_rows(name, dataset, epochs, batch, rows):
    spec = _spec(f"benchmarks/{name}")
    text = (REPO / "sweeps" / "benchmarks" / f"{name}.yaml").read_text()
    f = spec.fixed
    assert (f["dataset"], f["lr"], f["epochs"], f["batch_size"]) == (dataset, 2e-5, epochs, batch)
    assert f["backbone"].startswith("resnet18")
    other = _spec(f"benchmarks/diffusionmtl_{name.split('_')[1]}")
    assert f == other.fixed                                    # the DiffusionMTL file's: supervised runs shared
    runs = spec.runs()
    assert {(r.params["method"], r.params["label_setting"]) for r in runs} >= \
        {("tpkr", "onelabel"), ("tpkr", "randomlabel"), ("supervised", "onelabel"), ("supervised", "randomlabel")}
    for r in runs:
        if r.params["method"] == "tpkr":
            options = TPKROptions(**r.params["method_options"])
            assert (options.variant, options.codebook_size, options.embed_dim) == ("paper", 4096, 1024)
            assert options.proto_dim == 1024 or r.params["label_setting"] == "onelabel"   # ablation arms: one-label
    for row in rows:
        assert row in text
    assert "Still different" in text


def test_training_benchmark_times_both_tpkr_variants():
    import math
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_training

    assert {"tpkr", "tpkr first"} <= set(bench_training.METHODS)
    assert bench_training.ARMS["tpkr first"] == ("tpkr", {"variant": "first"})
    assert TPKROptions(**bench_training.ARMS["tpkr paper size"][1]).embed_dim == 1024
    for label in ("tpkr", "tpkr first"):
        assert math.isfinite(bench_training._arm_step(label, "resnet_small", 2, (32, 40), "cpu")())
