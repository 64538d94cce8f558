"""JTR: gradient routing, batched == per-sample reference, linear input width, any T."""

from __future__ import annotations

import pytest
import torch

import mtlwb.methods.jtr  # noqa: F401  (registers)
from mtlwb.methods.base import Step, build_method, forward_step
from mtlwb.methods.jtr import JTR, JTROptions, per_sample_reference_losses, two_routes
from mtlwb.models.mtl_net import MultiTaskNet
from mtlwb.tasks import TaskSpec, make_tasks
from tests.helpers import steps
from tests.helpers.steps import FEAT, H, W, mixed_tasks


def make_step(tasks: list[TaskSpec], labelled: torch.Tensor, **options) -> Step:
    """The shared random batch, with invalid (zero) depth pixels: the joint valid mask has holes to respect."""
    return steps.make_step(tasks, labelled, depth_holes=True, **options)


def grads(tensors) -> list[torch.Tensor]:
    return [torch.zeros_like(t) if t.grad is None else t.grad.clone() for t in tensors]


def zero(step: Step, method: JTR) -> None:
    for t in list(step.predictions.values()) + list(method.parameters()):
        t.grad = None


def assert_batched_equals_reference(m: JTR, step: Step, leaves: list[torch.Tensor], noise: dict[str, torch.Tensor],
                                    joint_noise: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """The batched JTR terms, and their gradients on ``leaves``, equal the per-sample reference's (float64: the same
    math; float32 only reorders the batch reductions, ~1e-5 apart). Returns the batched gradients."""
    batched = m.losses(step, noise, joint_noise).auxiliary
    sum(batched.values()).backward()
    g_batched = grads(leaves)
    for t in leaves:
        t.grad = None
    reference = per_sample_reference_losses(m, step, noise, joint_noise)
    sum(reference.values()).backward()
    g_reference = grads(leaves)
    assert batched.keys() == reference.keys() == {"jtr_model", "jtr_joint", "jtr_recon"}
    for k in batched:
        torch.testing.assert_close(batched[k], reference[k], atol=1e-5, rtol=1e-5)
    for a, b in zip(g_batched, g_reference):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    return g_batched


LAB = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 1, 1]])


def _with_views(tasks, labelled, n_views: int) -> Step:
    """A Step whose further views are independent random batches (what the trainer's scale-crops give)."""
    first = make_step(tasks, labelled, seed=0, dtype=torch.float64)
    first.views = [make_step(tasks, labelled, seed=10 + v, dtype=torch.float64) for v in range(n_views - 1)]
    return first


def test_model_side_moves_only_unlabelled_predictions():
    tasks = mixed_tasks(4)
    m = JTR(tasks, FEAT, JTROptions(width=4))
    step = make_step(tasks, LAB)
    m.losses(step)["jtr_model"].backward()
    for i, t in enumerate(tasks):
        g = step.predictions[t.name].grad
        for b in range(3):
            assert (g[b].abs().sum() > 0) == (not LAB[b, i]), (t.name, b)
    assert all(p.grad is None for p in m.parameters())


def test_joint_side_trains_only_the_joint_network():
    tasks = mixed_tasks(4)
    m = JTR(tasks, FEAT, JTROptions(width=4))
    step = make_step(tasks, LAB)
    out = m.losses(step)
    (out["jtr_joint"] + out["jtr_recon"]).backward()
    assert all(p.grad is None for p in step.predictions.values())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    zero(step, m)
    m.losses(step)["jtr_joint"].backward()
    assert all(p.grad is None for p in m.decoder.parameters())


@pytest.mark.parametrize("fidelity", ["paper", "published_code"])
@pytest.mark.parametrize("views", [1, 3])
@pytest.mark.parametrize("seg_encoding", ["soft", "hard"])
def test_batched_equals_per_sample_reference(seg_encoding, views, fidelity):
    # views=3: the model side reads view 1 and the joint side view 2, each with its own noise; view 0 supervises only
    # published_code with one view: the joint side still encodes on its own (softmax Ŷ, its own Gumbel draws)
    tasks = mixed_tasks(4)
    m = JTR(tasks, FEAT, JTROptions(width=4, seg_encoding=seg_encoding, views=views, fidelity=fidelity)).double()
    step = _with_views(tasks, LAB, views)
    sides = step.views or [step]                                  # what the JTR terms read, model side first
    noise = m.draw_noise(sides[0], torch.Generator().manual_seed(1))
    joint_noise = m.draw_noise(sides[-1], torch.Generator().manual_seed(2)) \
        if views == 3 or fidelity == "published_code" else None
    side_preds = [p for v in sides for p in v.predictions.values()]
    leaves = side_preds + list(m.parameters())
    g_batched = assert_batched_equals_reference(m, step, leaves, noise, joint_noise)
    # the model side moved the predictions of its view (view 1 with 3 views)
    assert any(g.abs().sum() > 0 for g in g_batched[:len(tasks)])
    if views == 3:
        assert all(g.abs().sum() == 0 for g in g_batched[len(tasks):len(side_preds)])   # view 2: detached inputs
        assert all(p.grad is None for p in step.predictions.values())        # view 0: supervised losses only


# dense and image-level tasks mixed: a 4-class classification (labels may be −1, undefined), a 2-value regression;
# the batch's rows label different subsets
HETERO = [TaskSpec("seg", "segmentation", 5, "miou", False),
          TaskSpec("cls", "classification", 4, "accuracy", False),
          TaskSpec("dep", "depth", 1, "abs_err", True),
          TaskSpec("reg", "regression", 2, "mae", True, loc=1.5, scale=0.3)]
HETERO_LAB = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 1], [1, 1, 1, 1]])


@pytest.mark.parametrize("seg_encoding", ["soft", "hard"])
def test_batched_equals_per_sample_reference_with_image_level_tasks(seg_encoding):
    m = JTR(HETERO, FEAT, JTROptions(width=4, seg_encoding=seg_encoding)).double()
    assert m.in_channels == 5 + 4 + 1 + 2                       # image-level tasks broadcast as C_t channels
    step = make_step(HETERO, HETERO_LAB, dtype=torch.float64)
    noise = m.draw_noise(step, torch.Generator().manual_seed(1))
    if seg_encoding == "hard":
        assert noise.y_hat["cls"].shape == (4, 4)                  # one Gumbel draw per image for classification
    leaves = list(step.predictions.values()) + list(m.parameters())
    assert_batched_equals_reference(m, step, leaves, noise)


def test_image_level_predictions_get_model_side_gradient_only_where_unlabelled():
    m = JTR(HETERO, FEAT, JTROptions(width=4, seg_encoding="soft")).double()
    step = make_step(HETERO, HETERO_LAB, dtype=torch.float64)
    step.targets["cls"] = torch.tensor([2, 0, 3, 1])                   # all defined here (see the next test)
    m.losses(step)["jtr_model"].backward()
    for i, t in enumerate(HETERO):
        g = step.predictions[t.name].grad
        for b in range(4):
            assert (g[b].abs().sum() > 0) == (not HETERO_LAB[b, i]), (t.name, b)


def test_undefined_image_level_label_masks_the_whole_sample():
    """A labelled classification with label −1 is an ignore 'pixel' covering the image: the joint mask is 0."""
    from mtlwb.methods.encodings import joint_valid_mask
    step = make_step(HETERO, HETERO_LAB)
    step.targets["cls"] = torch.tensor([-1, -1, 0, 0])                 # sample 1 labels cls: undefined
    step.targets["dep"] = torch.ones(4, 1, H, W)
    step.targets["seg"] = torch.zeros(4, H, W, dtype=torch.long)
    mask = joint_valid_mask(HETERO, step.targets, HETERO_LAB, step.images)
    assert mask.shape == (4, 1, H, W)
    assert mask[1].sum() == 0 and mask[0].sum() == H * W           # sample 0 does not label cls: unaffected


def test_image_level_encoding_none_leaves_them_out_of_the_joint_space():
    m = JTR(HETERO, FEAT, JTROptions(width=4, image_level_encoding="none"))
    assert [t.name for t in m.joint_tasks] == ["seg", "dep"] and m.in_channels == 6
    step = make_step(HETERO, HETERO_LAB)
    m.losses(step)["jtr_model"].backward()
    assert step.predictions["cls"].grad is None and step.predictions["reg"].grad is None
    with pytest.raises(ValueError, match="image_level_encoding='none' leaves no task"):
        JTR(HETERO[1::2], FEAT, JTROptions(image_level_encoding="none"))
    with pytest.raises(ValueError, match="jtr.image_level_encoding='vector'"):
        JTROptions(image_level_encoding="vector")


@pytest.mark.parametrize("T", range(2, 7))
def test_any_number_of_tasks_and_linear_width(T):
    tasks = mixed_tasks(T)
    m = JTR(tasks, FEAT, JTROptions(width=4))
    width = sum(t.channels for t in tasks)
    assert m.encoder.blocks[0][0].in_channels == width == m.decoder.out[-1].out_channels
    lab = (torch.rand(3, T, generator=torch.Generator().manual_seed(T)) > 0.5).long()
    lab[1] = 0
    step = make_step(tasks, lab, seed=T)
    out = m.losses(step)
    assert set(out) == {t.name for t in tasks} | {"jtr_model", "jtr_joint", "jtr_recon"}
    sum(out.values()).backward()
    assert all(torch.isfinite(v) for v in out.values())
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())
    code_pred, code_target = m.joint_codes(step)
    assert code_pred.shape == code_target.shape == (3, FEAT, H // 8, W // 8)


def test_reconstruction_off_removes_the_term():
    tasks = mixed_tasks(3)
    m = JTR(tasks, FEAT, JTROptions(width=4, reconstruction=False))
    step = make_step(tasks, LAB[:, :3])
    out = m.losses(step)
    assert "jtr_recon" not in out
    sum(out.values()).backward()
    assert all(p.grad is None for p in m.decoder.parameters())


def test_end_to_end_with_model_and_options():
    tasks = make_tasks(["semantic", "depth", "normal"], 4)
    model = MultiTaskNet(tasks)
    m = build_method("jtr", tasks, model.feature_channels, {"width": 4, "detach_target": True})
    feats, refined, preds, _ = forward_step(model, m, torch.randn(2, 3, H, W))
    step = make_step(tasks, torch.tensor([[1, 0, 0], [0, 1, 1]]))
    step = Step(step.images, feats, refined, preds, step.targets, step.labelled)
    sum(m.losses(step).values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with pytest.raises(ValueError, match="seg_encoding"):
        JTROptions(seg_encoding="gumbel")
    with pytest.raises(ValueError, match="depth_sigma"):
        JTROptions(depth_sigma=0)


def test_two_routes_equals_a_frozen_and_a_detached_pass():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.GroupNorm(4, 4), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 2, 3, stride=2))
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    up_x, up_w = torch.randn(2, 2, 3, 3), torch.randn(2, 2, 3, 3)
    for_x, for_w = two_routes(net, x)
    ((for_x * up_x).sum() + (for_w * up_w).sum()).backward()
    got_x, got_w = x.grad.clone(), [p.grad.clone() for p in net.parameters()]
    x.grad = None
    net.zero_grad()
    frozen = torch.func.functional_call(net, {k: v.detach() for k, v in net.named_parameters()}, (x,))
    ((frozen * up_x).sum() + (net(x.detach()) * up_w).sum()).backward()
    torch.testing.assert_close(got_x, x.grad)
    for a, p in zip(got_w, net.parameters()):
        torch.testing.assert_close(a, p.grad)
    for_x, _ = two_routes(net, x)       # an unused route leaves its side without gradient
    net.zero_grad()
    for_x.sum().backward()
    assert all(p.grad is None for p in net.parameters())


def test_three_views_read_the_views_not_view_zero():
    tasks = mixed_tasks(3)
    m = JTR(tasks, FEAT, JTROptions(width=4, seg_encoding="soft", views=3)).double()
    step = _with_views(tasks, LAB[:, :3], 3)
    moved = _with_views(tasks, LAB[:, :3], 3)
    moved.predictions = {k: v + 1.0 for k, v in moved.predictions.items()}   # change view 0 only
    a, b = m.losses(step).auxiliary, m.losses(moved).auxiliary
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert m.view_spec.extra == 2 and JTR(tasks, FEAT, JTROptions(width=4)).view_spec.extra == 0


def test_views_option_is_validated():
    with pytest.raises(ValueError, match="jtr.views=2"):
        JTROptions(views=2)
    with pytest.raises(ValueError, match="jtr.photometric='autoaugment'"):
        JTROptions(photometric="autoaugment")


def test_reference_code_recon_targets_apply_phi_to_depth_and_compare_raw_normals_by_dot():
    from mtlwb.methods.jtr import reconstruction_loss

    depth = [TaskSpec("d", "depth", 1, "abs_err", True)]
    recon = torch.zeros(1, 1, 1, 2)                        # sigmoid(0) = 0.5 everywhere
    y = torch.tensor([0.2, 0.9]).view(1, 1, 1, 2)
    mask = torch.ones(1, 1, 1, 2)
    paper = reconstruction_loss(depth, recon, y, mask)     # y is the encoded target
    assert paper.item() == pytest.approx((0.3 + 0.4) / 2)
    phi = torch.special.ndtr((y - 2.3618) / 1.5876)        # the ref. passes depth before Φ: Φ(Φ(d)) for Ŷ's
    code = reconstruction_loss(depth, recon, y, mask, target_form="reference_code")
    assert code.item() == pytest.approx((0.5 - phi).abs().mean().item())
    normal = [TaskSpec("n", "normal", 3, "mean_angle", True)]
    r = torch.tensor([3.0, 0.0, 0.0]).view(1, 3, 1, 1)     # unit reconstruction (1, 0, 0)
    n = torch.tensor([0.6, 0.0, 0.0]).view(1, 3, 1, 1)     # a short raw normal in [−1, 1]
    one = torch.ones(1, 1, 1, 1)
    assert reconstruction_loss(normal, r, n, one, target_form="reference_code").item() == pytest.approx(0.4)
    assert reconstruction_loss(normal, r, (n + 1) / 2, one).item() == pytest.approx(0.0)   # paper: direction only


def test_reference_code_recon_targets_batched_equals_per_sample():
    tasks = mixed_tasks(4)
    m = JTR(tasks, FEAT, JTROptions(width=4, seg_encoding="soft", recon_targets="reference_code")).double()
    step = make_step(tasks, LAB, dtype=torch.float64)
    batched = m.losses(step).auxiliary
    reference = per_sample_reference_losses(m, step)
    torch.testing.assert_close(batched["jtr_recon"], reference["jtr_recon"])
    paper = JTR(tasks, FEAT, JTROptions(width=4, seg_encoding="soft")).double()
    paper.load_state_dict(m.state_dict())
    assert not torch.allclose(paper.losses(step).auxiliary["jtr_recon"], batched["jtr_recon"])


# the published code's differences, each on its own (module docstring of jtr.py)
LAB3 = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])        # t0 segmentation, t1 depth, t2 normal


def _inputs(**options) -> tuple[JTR, Step]:
    tasks = mixed_tasks(3)
    return JTR(tasks, FEAT, JTROptions(width=4, **options)).double(), make_step(tasks, LAB3, dtype=torch.float64)


def test_fidelity_switch_sets_every_difference_and_each_can_be_reversed():
    from mtlwb.methods.jtr import FIDELITY_SWITCHES

    paper, code = JTROptions(), JTROptions(arch="reference")        # auto: by arch
    assert paper.fidelity == "paper" and code.fidelity == "published_code"
    for name, (p, c, _) in FIDELITY_SWITCHES.items():
        assert getattr(paper, name) == p and getattr(code, name) == c, name
    assert JTROptions(fidelity="published_code", mask_labels=True).mask_labels is True
    assert JTROptions(arch="reference", fidelity="paper").recon_targets == "paper"
    with pytest.raises(ValueError, match=r"jtr.fidelity='exact': allowed \['auto', 'paper', 'published_code'\]"):
        JTROptions(fidelity="exact")
    with pytest.raises(ValueError, match=r"jtr.gumbel_draws='per_pixel': allowed \['shared', 'independent'\]"):
        JTROptions(gumbel_draws="per_pixel")
    with pytest.raises(ValueError, match=r"jtr.mask_labels=1: allowed \[False, True\]"):
        JTROptions(mask_labels=1)


def test_mask_before_encoding_leaves_phi_of_zero_and_one_half_where_masked():
    from mtlwb.methods.encodings import depth_by_cdf

    for before in (False, True):
        m, step = _inputs(mask_before_encoding=before, seg_encoding="soft")
        x = m.joint_inputs(step)
        out = (x.mask == 0).expand(-1, 9, -1, -1)                  # 5 + 1 + 3 channels
        assert out.any()
        seg, depth, normal = x.y_hat[:, :5], x.y_hat[:, 5:6], x.y_hat[:, 6:]
        assert (seg[out[:, :5]] == 0).all()                       # one-hots are masked after encoding either way
        if before:
            assert torch.allclose(depth[out[:, :1]], depth_by_cdf(torch.zeros(())).double())
            assert (normal[out[:, :3]] == 0.5).all()
        else:
            assert (depth[out[:, :1]] == 0).all() and (normal[out[:, :3]] == 0).all()


def test_labels_stay_unmasked_where_another_task_is_invalid():
    for mask_labels in (True, False):
        m, step = _inputs(mask_labels=mask_labels, seg_encoding="soft")
        x = m.joint_inputs(step)
        # row 3 labels segmentation and depth: where its segmentation is ignored, its depth label is out of the mask
        outside = (x.mask[3, 0] == 0) & (step.targets["t1"][3, 0] > 0)
        assert outside.any()
        label = x.y[3, 5][outside]
        assert (label == 0).all() if mask_labels else (label > 0).all()


def test_independent_gumbel_draws_for_y_hat_and_y_of_an_unlabelled_segmentation():
    for draws in ("shared", "independent"):
        m, step = _inputs(gumbel_draws=draws, recon_targets="reference_code")
        noise = m.draw_noise(step, torch.Generator().manual_seed(0))
        assert (noise.y is None) == (draws == "shared") and (noise.recon_y is None) == (draws == "shared")
        x = m.joint_inputs(step, noise)
        same = torch.equal(x.y_hat[1:3, :5], x.y[1:3, :5])        # rows 1, 2: segmentation unlabelled
        assert same == (draws == "shared")
        if draws == "independent":                                # the ref.-code targets draw again, on the joint side
            j = m.joint_inputs(step, noise, joint=True)
            assert not torch.equal(j.recon_y[1:3, :5], j.y[1:3, :5])


def test_joint_side_reads_a_softmax_segmentation_the_model_side_a_one_hot():
    m, step = _inputs(joint_y_hat_seg="softmax")
    noise = m.draw_noise(step, torch.Generator().manual_seed(0))
    model, joint = m.joint_inputs(step, noise), m.joint_inputs(step, noise, joint=True)
    soft = step.predictions["t0"].softmax(dim=1) * joint.mask
    torch.testing.assert_close(joint.y_hat[:, :5], soft)
    assert set(model.y_hat[:, :5].unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(joint.y[1:3, :5], model.y[1:3, :5])   # Y's one-hot is still a one-hot
    plain, _ = _inputs()
    torch.testing.assert_close(plain.joint_inputs(step, noise, joint=True).y_hat, model.y_hat)


def test_reference_code_targets_are_rebuilt_from_raw_predictions_and_labels():
    m, step = _inputs(joint_y_hat_seg="softmax", recon_targets="reference_code", mask_labels=False)
    noise = m.draw_noise(step, torch.Generator().manual_seed(0))
    j = m.joint_inputs(step, noise, joint=True)
    assert set(j.recon_y_hat[:, :5].unique().tolist()) <= {0.0, 1.0}          # a hard one-hot, the input a softmax
    torch.testing.assert_close(j.recon_y[2, 6:], step.targets["t2"][2].detach())   # row 2's normals: the raw label
    torch.testing.assert_close(j.recon_y[0, 6:], step.predictions["t2"][0].detach())  # row 0's: the raw prediction
    torch.testing.assert_close(j.recon_y_hat[:, 5:6], j.y_hat[:, 5:6].detach())     # Ŷ's depth: Φ applied again later
    paper, _ = _inputs(joint_y_hat_seg="softmax")
    assert paper.joint_inputs(step, noise, joint=True).recon_y is None         # paper: the inputs themselves


def test_nonzero_target_denominator_counts_the_targets_entries():
    from mtlwb.methods.jtr import reconstruction_loss

    seg = [TaskSpec("s", "segmentation", 2, "miou", False)]
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]]).view(1, 2, 1, 4)   # pixel 3: no class
    recon, mask = torch.zeros(1, 2, 1, 4), torch.ones(1, 1, 1, 4)
    bce = 2 * 4 * torch.log(torch.tensor(2.0))                           # BCE(0, ·) = ln 2 on 8 entries
    assert reconstruction_loss(seg, recon, target, mask).item() == pytest.approx(bce / 4)
    assert reconstruction_loss(seg, recon, target, mask, denominator="nonzero_targets").item() == pytest.approx(
        bce / 3)
    normal = [TaskSpec("n", "normal", 3, "mean_angle", True)]
    r = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 1, 2)
    n = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 2)      # one non-zero entry in all
    got = reconstruction_loss(normal, r, n, torch.ones(1, 1, 1, 2), target_form="reference_code",
                              denominator="nonzero_targets")
    assert got.item() == pytest.approx(0.0)                              # 1 − Σ r̂·n·m / count = 1 − 1/1


def test_depth_reconstruction_squeeze_is_the_references():
    from mtlwb.methods.jtr import reconstruction_loss

    depth = [TaskSpec("d", "depth", 1, "abs_err", True)]
    recon, target, mask = torch.full((1, 1, 1, 1), 40.0, dtype=torch.float64), torch.ones(1, 1, 1, 1), \
        torch.ones(1, 1, 1, 1)                                           # sigmoid = 1 to double precision
    assert reconstruction_loss(depth, recon, target, mask).item() == pytest.approx(0.0, abs=1e-15)
    assert reconstruction_loss(depth, recon, target, mask, squeeze=True).item() == pytest.approx(0.5e-5, rel=1e-9)


def test_published_code_uses_the_dot_product_normal_loss_on_non_unit_labels():
    from mtlwb.objectives.losses import LossOptions, task_loss

    m, step = _inputs(dot_normal_loss=True)
    step.targets["t2"] = step.targets["t2"] * 0.7                       # the refs' bilinear crops shorten normals
    t = m.tasks[2]
    got = m.supervised_losses(step)["t2"]
    want = task_loss(t, step.predictions["t2"], step.targets["t2"], LAB3[:, 2], LossOptions(normal="dot"))
    torch.testing.assert_close(got, want)
    paper, _ = _inputs()
    assert not torch.allclose(paper.supervised_losses(step)["t2"], got)
    m.loss_options = LossOptions(normal="l1")                           # an explicit other form is kept
    torch.testing.assert_close(m.supervised_losses(step)["t2"], task_loss(t, step.predictions["t2"],
                                                                          step.targets["t2"], LAB3[:, 2],
                                                                          LossOptions(normal="l1")))
