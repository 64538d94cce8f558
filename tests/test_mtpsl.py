"""MTPSL: pair enumeration, FiLM tables, gradient routing, any T."""

from __future__ import annotations

import pytest
import torch

import mtlwb.methods.mtpsl  # noqa: F401  (registers)
from mtlwb.methods.base import Step, build_method, forward_step
from mtlwb.methods.mtpsl import MTPSL, MTPSLOptions
from mtlwb.models.mtl_net import MultiTaskNet
from mtlwb.tasks import make_tasks
from tests.helpers.steps import FEAT, H, W, make_step, mixed_tasks


def test_pairs_enumerate_unlabelled_to_labelled():
    m = MTPSL(mixed_tasks(3), FEAT, MTPSLOptions(width=4, full_label_pairs=True))
    lab = torch.tensor([[1, 0, 0], [1, 1, 1], [0, 0, 0], [0, 1, 1]])
    got = {tuple(r) for r in m.pairs(lab).tolist()}
    full = {(1, s, t) for s in range(3) for t in range(3) if s != t}
    assert got == {(0, 1, 0), (0, 2, 0), (3, 0, 1), (3, 0, 2)} | full
    m_part = MTPSL(mixed_tasks(3), FEAT, MTPSLOptions(width=4, full_label_pairs=False))
    assert {tuple(r) for r in m_part.pairs(lab).tolist()} == {(0, 1, 0), (0, 2, 0), (3, 0, 1), (3, 0, 2)}
    m_default = MTPSL(mixed_tasks(3), FEAT, MTPSLOptions(width=4))      # published: a full row in a partial table
    assert {tuple(r) for r in m_default.pairs(lab).tolist()} == {(0, 1, 0), (0, 2, 0), (3, 0, 1), (3, 0, 2)}


@pytest.mark.parametrize("T", range(2, 7))
def test_film_tables_and_pair_columns(T):
    m = MTPSL(mixed_tasks(T), FEAT, MTPSLOptions(width=4))
    films = [mod for mod in m.modules() if hasattr(mod, "gamma")]
    assert films and all(f.gamma.shape[1] == f.beta.shape[1] == T * (T - 1) for f in films)
    s, t = torch.tensor([(s, t) for s in range(T) for t in range(T) if s != t]).unbind(1)
    assert sorted(MTPSL.pair_column(s, t, T).tolist()) == list(range(T * (T - 1)))


def test_unlabelled_ground_truth_gets_no_gradient_and_is_never_read():
    tasks = mixed_tasks(4)
    lab = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    m = MTPSL(tasks, FEAT, MTPSLOptions(width=4))
    step = make_step(tasks, lab)
    torch.manual_seed(0)
    loss = sum(m.losses(step).values())
    loss.backward()
    for i, t in enumerate(tasks):
        tgt = step.targets[t.name]
        if tgt.is_floating_point():
            for b in range(3):
                g = tgt.grad[b].abs().sum()
                assert (g > 0) if lab[b, i] else (g == 0), (t.name, b)
    # overwrite the unlabelled ground truth with garbage: the loss must not change
    for i, t in enumerate(tasks):
        unl = ~lab[:, i].bool()
        if step.targets[t.name].is_floating_point():
            step.targets[t.name].data[unl] = float("nan")
        else:
            step.targets[t.name][unl] = 3
    torch.manual_seed(0)
    again = sum(m.losses(step).values())
    assert torch.allclose(loss, again)


def test_gradient_reaches_unlabelled_predictions_only():
    tasks = mixed_tasks(3)
    lab = torch.tensor([[1, 0, 0], [0, 1, 1]])
    m = MTPSL(tasks, FEAT, MTPSLOptions(width=4, full_label_pairs=False))
    step = make_step(tasks, lab)
    m.losses(step)["mtpsl"].backward()
    for i, t in enumerate(tasks):
        g = step.predictions[t.name].grad
        for b in range(2):
            assert (g[b].abs().sum() > 0) == (not lab[b, i]), (t.name, b)
    assert step.features.grad is None  # the backbone feature is an anchor, detached
    assert all(p.grad is not None for p in m.mapping.parameters())


def test_no_pairs_gives_attached_zero():
    tasks = mixed_tasks(2)
    m = MTPSL(tasks, FEAT, MTPSLOptions(width=4))
    out = m.losses(make_step(tasks, torch.zeros(2, 2, dtype=torch.long)))
    assert out["mtpsl"].item() == 0.0 and out["mtpsl"].requires_grad


@pytest.mark.parametrize("T", range(2, 7))
def test_any_number_of_tasks(T):
    tasks = mixed_tasks(T)
    lab = (torch.rand(3, T, generator=torch.Generator().manual_seed(T)) > 0.5).long()
    lab[0] = 1
    lab[1, 0], lab[1, 1] = 0, 1
    for reduction in ("pairs", "batch"):
        m = MTPSL(tasks, FEAT, MTPSLOptions(width=4, reduction=reduction))
        step = make_step(tasks, lab, seed=T)
        out = m.losses(step)
        assert set(out) == {t.name for t in tasks} | {"mtpsl"}
        sum(out.values()).backward()
        assert torch.isfinite(out["mtpsl"]) and out["mtpsl"] > 0
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_end_to_end_with_model_and_options():
    tasks = make_tasks(["semantic", "depth", "normal"], 4)
    model = MultiTaskNet(tasks)
    m = build_method("mtpsl", tasks, model.feature_channels, {"width": 4, "mapping_lr": 1e-2})
    feats, refined, preds, _ = forward_step(model, m, torch.randn(2, 3, H, W))
    step = make_step(tasks, torch.tensor([[1, 0, 0], [0, 1, 1]]))
    step = Step(step.images, feats, refined, preds, step.targets, step.labelled)
    sum(m.losses(step).values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert m.parameter_groups(1e-4)[0]["lr"] == 1e-2
    assert build_method("mtpsl", tasks, 8, {"width": 4}).parameter_groups(1e-4)[0]["lr"] == 1e-4
    with pytest.raises(ValueError, match="reduction"):
        MTPSLOptions(reduction="sum")
    with pytest.raises(ValueError, match="reg_weight"):
        MTPSLOptions(reg_weight=-1)


def test_reference_defaults_are_the_published_weights_and_balance():
    o = MTPSLOptions()
    assert (o.weight, o.reg_weight, o.reduction, o.norm) == (2.0, 0.5, "batch", "instance")


def test_batch_reduction_sums_pairs_per_sample_over_batch_size():
    tasks = mixed_tasks(3)
    lab = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 0]])
    torch.manual_seed(0)
    summed = MTPSL(tasks, FEAT, MTPSLOptions(width=4, weight=1.0, reduction="batch", full_label_pairs=True))
    averaged = MTPSL(tasks, FEAT, MTPSLOptions(width=4, weight=1.0, reduction="pairs", full_label_pairs=True))
    averaged.load_state_dict(summed.state_dict())
    step = make_step(tasks, lab)
    P = summed.pairs(lab).shape[0]                     # 2 + 2 + 6 + 0 = 10 pairs over B = 4 samples
    torch.manual_seed(1)
    a = summed.losses(step).auxiliary["mtpsl"]
    torch.manual_seed(1)
    b = averaged.losses(step).auxiliary["mtpsl"]
    assert P == 10
    torch.testing.assert_close(a, b * P / 4)


def test_instance_norm_makes_a_pair_independent_of_the_others():
    """Per-map normalization (ref.): a sample's term inside a batch equals its term alone; BatchNorm pools them."""
    tasks = mixed_tasks(2)                              # source: depth prediction, target: segmentation label
    lab = torch.tensor([[1, 0], [1, 0]])
    step = make_step(tasks, lab)

    def sample(b: int) -> Step:
        return Step(step.images[b:b + 1], step.features[b:b + 1], step.refined,
                    {k: v[b:b + 1] for k, v in step.predictions.items()},
                    {k: v[b:b + 1] for k, v in step.targets.items()}, lab[b:b + 1])

    for norm, independent in (("instance", True), ("batch", False)):
        torch.manual_seed(0)
        m = MTPSL(tasks, FEAT, MTPSLOptions(width=4, weight=1.0, norm=norm, reduction="batch"))
        together = 2 * m.losses(step).auxiliary["mtpsl"]               # (term 0 + term 1) / B, B = 2
        apart = m.losses(sample(0)).auxiliary["mtpsl"] + m.losses(sample(1)).auxiliary["mtpsl"]
        assert torch.allclose(together, apart, atol=1e-6) == independent, norm


def test_two_views_read_the_consistency_view():
    tasks = mixed_tasks(3)
    lab = torch.tensor([[1, 0, 0], [0, 1, 1]])
    torch.manual_seed(0)
    two = MTPSL(tasks, FEAT, MTPSLOptions(width=4, views=2))
    one = MTPSL(tasks, FEAT, MTPSLOptions(width=4))
    one.load_state_dict(two.state_dict())
    step, view1 = make_step(tasks, lab, seed=0), make_step(tasks, lab, seed=5)
    step.views = [view1]
    torch.manual_seed(3)
    got = two.losses(step)
    torch.manual_seed(3)
    expected = one.losses(view1).auxiliary["mtpsl"]
    torch.testing.assert_close(got.auxiliary["mtpsl"], expected)
    torch.testing.assert_close(got.supervised["t0"], one.losses(step).supervised["t0"])   # supervised: view 0
    assert two.view_spec.extra == 1 and one.view_spec.extra == 0


def test_film_tables_get_their_own_lr_and_decay():
    m = MTPSL(mixed_tasks(3), FEAT, MTPSLOptions(width=4, film_lr=1e-3, film_lr_step=30))
    rest, film = m.parameter_groups(1e-4)
    film_ids = {id(p) for mod in m.modules() if hasattr(mod, "gamma") for p in (mod.gamma, mod.beta)}
    assert {id(p) for p in film["params"]} == film_ids and not film_ids & {id(p) for p in rest["params"]}
    assert (film["lr"], film["lr_step"], film["lr_gamma"], rest["lr"]) == (1e-3, 30, 0.5, 1e-4)
    assert "lr_step" not in rest


def test_fidelity_switch_sets_the_published_pairs_draws_and_normal_loss():
    paper, code = MTPSLOptions(), MTPSLOptions(arch="reference")            # auto: by arch
    assert (paper.fidelity, paper.gumbel_per_pair, paper.full_label_pairs, paper.dot_normal_loss) == \
        ("paper", False, "full_run", False)                                # pairs: the published rule
    assert (code.fidelity, code.gumbel_per_pair, code.full_label_pairs, code.dot_normal_loss) == \
        ("published_code", True, "full_run", True)
    assert MTPSLOptions(fidelity="published_code", full_label_pairs=False).full_label_pairs is False
    assert MTPSLOptions(full_label_pairs=True).full_label_pairs is True                # the former default, an option
    with pytest.raises(ValueError, match=r"mtpsl.full_label_pairs='all': allowed \[True, False, 'full_run'\]"):
        MTPSLOptions(full_label_pairs="all")


def test_published_full_label_pairs_pair_a_full_row_only_in_a_fully_labelled_run():
    lab = torch.tensor([[1, 0, 0], [1, 1, 1]])
    m = MTPSL(mixed_tasks(3), FEAT, MTPSLOptions(width=4, full_label_pairs="full_run"))
    assert {tuple(r) for r in m.pairs(lab).tolist()} == {(0, 1, 0), (0, 2, 0)}    # the full row: no pair
    m.use_label_table(torch.tensor([[1, 0, 0], [1, 1, 1]]))                       # a partial run
    assert m.pairs(lab).shape[0] == 2
    m.use_label_table(torch.ones(5, 3))                                           # the ref.'s 'full' setting
    full = {(1, s, t) for s in range(3) for t in range(3) if s != t}
    assert {tuple(r) for r in m.pairs(torch.ones(2, 3, dtype=torch.long)).tolist()} == \
        full | {(0, s, t) for (_, s, t) in full}


def test_the_trainer_hands_the_label_table_to_the_method():
    from mtlwb.config import ExperimentConfig
    from mtlwb.experiment.loop import build_experiment

    common = dict(method="mtpsl", method_options={"fidelity": "published_code"}, train_samples=4, eval_samples=2,
                  device="cpu", progress=False)
    assert build_experiment(ExperimentConfig(label_setting="full", **common)).method.full_run
    assert not build_experiment(ExperimentConfig(label_setting="onelabel", **common)).method.full_run


def test_per_pair_gumbel_draws_as_the_published_code():
    tasks = mixed_tasks(3)
    lab = torch.tensor([[0, 1, 1], [0, 1, 0], [1, 0, 1]])
    torch.manual_seed(0)
    shared = MTPSL(tasks, FEAT, MTPSLOptions(width=4)).double()
    per_pair = MTPSL(tasks, FEAT, MTPSLOptions(width=4, gumbel_per_pair=True)).double()
    per_pair.load_state_dict(shared.state_dict())
    step = make_step(tasks, lab, dtype=torch.float64)
    b = per_pair.pairs(lab)[:, 0]
    noise = per_pair.draw_noise(step, torch.Generator().manual_seed(1))
    assert noise["t0"].shape == (b.numel(), 5, H, W)                               # one draw per triple
    one_per_sample = shared.draw_noise(step, torch.Generator().manual_seed(2))
    assert one_per_sample["t0"].shape == (3, 5, H, W)
    # the same draw for every pair of a sample is the shared mode; a draw of its own per pair is not
    same = per_pair.losses(step, {"t0": one_per_sample["t0"][b]})["mtpsl"]
    torch.testing.assert_close(same, shared.losses(step, one_per_sample)["mtpsl"])
    assert not torch.allclose(per_pair.losses(step, noise)["mtpsl"], same)
    per_pair.losses(step)["mtpsl"].backward()                                     # draws its own when given none
    assert step.predictions["t0"].grad[:2].abs().sum() > 0 and step.predictions["t0"].grad[2].abs().sum() == 0


def test_published_code_uses_the_dot_product_normal_loss():
    from mtlwb.objectives.losses import LossOptions, task_loss

    tasks = mixed_tasks(3)
    lab = torch.tensor([[0, 1, 1], [1, 0, 1]])
    step = make_step(tasks, lab)
    step.targets["t2"] = step.targets["t2"] * 0.6
    m = MTPSL(tasks, FEAT, MTPSLOptions(width=4, dot_normal_loss=True))
    want = task_loss(tasks[2], step.predictions["t2"], step.targets["t2"], lab[:, 2], LossOptions(normal="dot"))
    torch.testing.assert_close(m.supervised_losses(step)["t2"], want)
    assert not torch.allclose(MTPSL(tasks, FEAT, MTPSLOptions(width=4)).supervised_losses(step)["t2"], want)
