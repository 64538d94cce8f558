"""JTR: gradient routing, batched == per-sample reference, linear input width, any T."""

from __future__ import annotations

import pytest
import steps
import torch
from steps import FEAT, H, W, mixed_tasks

import mtlwb.methods.jtr  # noqa: F401  (registers)
from mtlwb.methods.base import Step, build_method, forward_step
from mtlwb.methods.jtr import JTR, JTROptions, per_sample_reference_losses, two_routes
from mtlwb.models.mtl_net import MultiTaskNet
from mtlwb.tasks import TaskSpec, make_tasks


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


@pytest.mark.parametrize("views", [1, 3])
@pytest.mark.parametrize("seg_encoding", ["soft", "hard"])
def test_batched_equals_per_sample_reference(seg_encoding, views):
    # views=3: the model side reads view 1 and the joint side view 2, each with its own noise; view 0 supervises only
    tasks = mixed_tasks(4)
    m = JTR(tasks, FEAT, JTROptions(width=4, seg_encoding=seg_encoding, views=views)).double()
    step = _with_views(tasks, LAB, views)
    sides = step.views or [step]                                  # what the JTR terms read, model side first
    noise = m.draw_noise(sides[0], torch.Generator().manual_seed(1))
    joint_noise = m.draw_noise(sides[1], torch.Generator().manual_seed(2)) if views == 3 else None
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
        assert noise["cls"].shape == (4, 4)                     # one Gumbel draw per image for classification
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
    feats, refined, preds = forward_step(model, m, torch.randn(2, 3, H, W))
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


def test_reference_code_recon_targets_apply_phi_twice_to_y_hat_depth_only():
    from mtlwb.methods.jtr import reconstruction_loss

    tasks = [TaskSpec("d", "depth", 1, "abs_err", True)]
    recon = torch.zeros(1, 1, 1, 2)                        # sigmoid(0) = 0.5 everywhere
    y = torch.tensor([0.2, 0.9]).view(1, 1, 1, 2)          # already Φ-encoded depth
    mask = torch.ones(1, 1, 1, 2)
    paper = reconstruction_loss(tasks, recon, y, mask)
    assert paper.item() == pytest.approx((0.3 + 0.4) / 2)
    twice = torch.special.ndtr((y - 2.3618) / 1.5876)
    quirk = reconstruction_loss(tasks, recon, y, mask, targets="reference_code", is_y_hat=True)
    assert quirk.item() == pytest.approx((0.5 - twice).abs().mean().item())
    assert reconstruction_loss(tasks, recon, y, mask, targets="reference_code").item() == pytest.approx(paper.item())


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
