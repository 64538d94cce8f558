"""Prior knowledge of task relations: the task_prior field, and what TPKR, MTPSL and JTR do with it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import mtlwb
from mtlwb.config import ExperimentConfig
from mtlwb.methods.base import Step, build_method
from mtlwb.methods.jtr import JTR, JTROptions, cosine_distance, per_sample_reference_losses, prior_task_weights
from mtlwb.methods.mtpsl import MTPSL, MTPSLOptions
from mtlwb.methods.tpkr import TaskPrototypeRetrieval, TPKROptions, prior_loss, slots_from_prior
from mtlwb.tasks import TaskSpec
from mtlwb.tasks.priors import parse_task_prior, related_strength, row_normalized
from tests.helpers.steps import FEAT, H, W, make_step, mixed_tasks

REPO = Path(__file__).resolve().parents[1]
TASKS = ["semantic", "depth", "normal"]


# -- the config field -------------------------------------------------------------------------------------------

def test_pair_dict_is_symmetric_unless_both_orders_are_given():
    p = parse_task_prior({"depth-normal": 1.0, "semantic-depth": 0.3}, TASKS)
    assert torch.allclose(p, torch.tensor([[1.0, 0.3, 0.0], [0.3, 1.0, 1.0], [0.0, 1.0, 1.0]]))
    q = parse_task_prior({"depth-normal": 1.0, "normal-depth": 0.5}, TASKS)
    assert q[1, 2] == 1.0 and q[2, 1] == 0.5 and q[0, 1] == q[0, 2] == 0.0
    assert torch.equal(parse_task_prior([[1, 0, 0], [0, 1, 0.2], [0, 0.7, 1]], TASKS),
                       torch.tensor([[1, 0, 0], [0, 1, 0.2], [0, 0.7, 1]], dtype=torch.float32))
    assert parse_task_prior(None, TASKS) is None


@pytest.mark.parametrize("prior, pattern", [
    ([[1, 0], [0, 1]], r"task_prior: a matrix must be 3×3 .*got 2 rows"),
    ([[1, 0, 0], [0, 1, 0], [0, 0]], r"task_prior: a matrix must be 3×3"),
    ([[1, 0, 0], [0, 1, 1.5], [0, 0, 1]], r"task_prior\[1\]\[2\] \(depth→normal\)=1.5: must be a number in \[0, 1\]"),
    ([[1, 0, 0], [0, 1, 0], [0, 0, 0.5]], r"task_prior\[2\]\[2\]=0.5 \(normal with itself\): the diagonal must be 1"),
    ({"depth-normal": -0.1}, r"task_prior\['depth-normal'\]=-0.1: must be a number in \[0, 1\]"),
    ({"depth-normal": float("nan")}, r"task_prior\['depth-normal'\]=nan"),
    ({"depth-normal": True}, r"task_prior\['depth-normal'\]=True"),
    ({"depth-edge": 1.0}, r"task_prior key 'depth-edge': 'edge' is not one of tasks=\['semantic', 'depth', 'normal'\]"),
    ({"albedo-depth": 1.0}, r"'albedo' is not one of tasks"),
    ({"depth-depth": 1.0}, r"task_prior key 'depth-depth': a self pair"),
    ({"depthnormal": 1.0}, r"task_prior key 'depthnormal': name a pair of tasks as \"a-b\""),
    ("depth-normal", r"task_prior='depth-normal': must be None, a 3×3 matrix"),
])
def test_bad_priors_are_refused_naming_the_culprit(prior, pattern):
    with pytest.raises(ValueError, match=pattern):
        ExperimentConfig(task_prior=prior)


def test_prior_is_checked_against_the_configured_tasks_and_the_method_before_any_work(tmp_path):
    # data_root does not exist: the prior is refused on construction, before any path is looked at
    with pytest.raises(ValueError, match=r"'normal' is not one of tasks=\['semantic', 'depth'\]"):
        ExperimentConfig(tasks=["semantic", "depth"], task_prior={"depth-normal": 1.0},
                         data_root=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"relates no pair of tasks above mtpsl.prior_threshold=0.5"):
        ExperimentConfig(method="mtpsl", method_options={"prior_threshold": 0.5}, task_prior={"depth-normal": 0.5})
    with pytest.raises(ValueError, match=r"jtr.prior_weighting: the task_prior relates no two tasks"):
        ExperimentConfig(method="jtr", method_options={"prior_weighting": True}, task_prior={})
    with pytest.raises(ValueError, match=r"need proto_dim >= 3 tasks, got proto_dim=2"):
        ExperimentConfig(method="tpkr", method_options={"prior_mode": "init", "proto_dim": 2},
                         task_prior={"depth-normal": 1.0})
    with pytest.raises(ValueError, match=r"prior_mode='strong': allowed"):
        ExperimentConfig(method="tpkr", method_options={"prior_mode": "strong"})


def test_no_prior_keeps_old_run_ids_and_a_prior_changes_the_id():
    plain = ExperimentConfig()
    assert "task_prior" not in mtlwb.identity.identity(plain.to_dict())
    assert ExperimentConfig(task_prior={"depth-normal": 1.0}).run_id != plain.run_id
    assert plain.task_prior_matrix is None


def test_build_method_hands_the_parsed_prior_to_the_method():
    tasks = [TaskSpec(f"t{i}", "depth", 1, "m", True) for i in range(3)]
    p = parse_task_prior({"t0-t1": 1.0}, ["t0", "t1", "t2"])
    m = build_method("supervised", tasks, FEAT, task_prior=p)
    assert torch.equal(m.task_prior, p) and "task_prior" not in m.state_dict()   # not in checkpoints
    assert build_method("supervised", tasks, FEAT).task_prior is None
    with pytest.raises(ValueError, match=r"task_prior: shape \(2, 2\) does not match the 3 tasks"):
        build_method("supervised", tasks, FEAT, task_prior=torch.eye(2))


def test_row_normalized_and_related_strength():
    p = torch.tensor([[1.0, 1.0, 0.0], [0.5, 1.0, 0.5], [0.0, 0.0, 1.0]])
    assert torch.allclose(row_normalized(p).sum(1), torch.ones(3))
    assert torch.allclose(related_strength(p), torch.tensor([(0.75 + 0.0) / 2, (0.75 + 0.25) / 2, 0.25 / 2]))


# -- TPKR ------------------------------------------------------------------------------------------------------

def _rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.sum(-1, keepdim=True)


def test_tpkr_prior_term_is_zero_exactly_at_the_normalized_prior():
    target = row_normalized(parse_task_prior({"depth-normal": 1.0, "semantic-depth": 0.3}, TASKS))
    d = 0.05 * torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 1.0]])      # rows sum to 0
    at_prior = torch.stack([target + d, target - d])                                      # batch mean = target
    weight = torch.ones(2, 3)
    assert prior_loss(at_prior, weight, target).abs() < 1e-6
    other = torch.stack([_rows(torch.rand(3, 3) + 0.1) for _ in range(2)]).requires_grad_()
    loss = prior_loss(other, weight, target)
    assert loss > 1e-3
    loss.backward()
    assert other.grad.abs().sum() > 0                                                     # reaches the affinity
    # a row with no weight in the batch is left out
    only_first = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    wrong_rest = torch.stack([torch.cat([target[:1], torch.eye(3)[1:]])] * 2)
    assert prior_loss(wrong_rest, only_first, target).abs() < 1e-6


def _tpkr_step(method, B: int = 3, seed: int = 0) -> Step:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, 3, H, W, generator=g)
    features = torch.randn(B, FEAT, H // 8, W // 8, generator=g)
    refined = method.refine(features, images)
    return Step(images, features, refined, {}, {}, torch.ones(B, len(method.tasks)))


SMALL_TPKR = dict(codebook_size=8, proto_dim=8, heads=2, decoder_width=8, use_retrieval=False)


@pytest.mark.parametrize("mode, has_term", [("regularize", True), ("both", True), ("init", False), ("none", False)])
def test_tpkr_prior_term_is_logged_and_trains_the_prototypes(mode, has_term):
    torch.manual_seed(0)
    tasks = [TaskSpec(f"t{i}", "depth", 1, "m", True) for i in range(3)]
    method = TaskPrototypeRetrieval(tasks, FEAT, TPKROptions(**SMALL_TPKR, prior_mode=mode, prior_weight=2.0))
    method.supervised_losses = lambda step: {}
    method.use_task_prior(parse_task_prior({"t0-t1": 1.0}, ["t0", "t1", "t2"]))
    step = _tpkr_step(method)
    aux = method.losses(step).auxiliary
    assert ("prior" in aux) == has_term
    if has_term:
        a = step.refined.extras["affinity"]
        expected = 2.0 * prior_loss(a, torch.ones(3, 3), row_normalized(method.task_prior))
        assert torch.allclose(aux["prior"], expected) and aux["prior"] > 0
        aux["prior"].backward()
        assert method.slots.grad.abs().sum() > 0 and method.key.weight.grad.abs().sum() > 0
    plain = TaskPrototypeRetrieval(tasks, FEAT, TPKROptions(**SMALL_TPKR, prior_mode=mode))
    plain.supervised_losses = lambda step: {}
    assert "prior" not in plain.losses(_tpkr_step(plain)).auxiliary                      # no prior: no term


def test_tpkr_slots_start_with_the_prior_as_their_cosine_matrix():
    torch.manual_seed(0)
    names = ["a", "b", "c", "d"]
    prior = parse_task_prior({"a-b": 1.0, "c-d": 0.6, "b-c": 0.2}, names)
    c = 0.9
    gram = torch.eye(4) + c * (prior - torch.eye(4))
    assert torch.linalg.eigvalsh(gram).min() > 0                                        # PSD: exact
    basis = torch.randn(4, 32)
    slots = slots_from_prior(prior, basis, c)
    v = F.normalize(slots, dim=1)
    assert torch.allclose(v @ v.t(), gram, atol=1e-5)
    assert math.isclose(slots.norm(dim=1).mean().item(), basis.norm(dim=1).mean().item(), rel_tol=1e-5)
    # a chain over 3 tasks at c = 0.9 is not PSD: clipped to the nearest PSD matrix, still unit-cosine diagonal
    chain = parse_task_prior({"a-b": 1.0, "b-c": 1.0}, names[:3])
    v = F.normalize(slots_from_prior(chain, torch.randn(3, 8), c), dim=1)
    g = v @ v.t()
    assert torch.allclose(g.diagonal(), torch.ones(3), atol=1e-5) and g[0, 1] > g[0, 2] and g[1, 2] > g[0, 2]

    tasks = [TaskSpec(n, "depth", 1, "m", True) for n in names]
    torch.manual_seed(1)
    random_slots = TaskPrototypeRetrieval(tasks, FEAT, TPKROptions(**SMALL_TPKR)).slots.detach().clone()
    torch.manual_seed(1)
    method = build_method("tpkr", tasks, FEAT, {**SMALL_TPKR, "prior_mode": "init"}, task_prior=prior)
    assert torch.allclose(method.slots.detach(), slots_from_prior(prior, random_slots, c))
    torch.manual_seed(1)
    regularized = build_method("tpkr", tasks, FEAT, {**SMALL_TPKR, "prior_mode": "regularize"}, task_prior=prior)
    assert torch.equal(regularized.slots.detach(), random_slots)                          # init only when asked


# -- MTPSL -----------------------------------------------------------------------------------------------------

def test_mtpsl_prior_keeps_exactly_the_related_pairs():
    tasks = mixed_tasks(3)
    lab = torch.tensor([[1, 0, 0], [1, 1, 1], [0, 1, 0]])
    plain = MTPSL(tasks, FEAT, MTPSLOptions(width=4, full_label_pairs=True))
    every = {tuple(r) for r in plain.pairs(lab).tolist()}
    related = MTPSL(tasks, FEAT, MTPSLOptions(width=4, full_label_pairs=True))
    related.use_task_prior(parse_task_prior({"t0-t1": 1.0, "t1-t2": 0.4}, ["t0", "t1", "t2"]))  # t0–t2 unrelated
    kept = {tuple(r) for r in related.pairs(lab).tolist()}
    assert kept == {p for p in every if {p[1], p[2]} != {0, 2}}
    assert len(kept) < len(every) and (0, 2, 0) in every and (1, 0, 2) in every
    # the threshold cuts the weaker pair as well; an asymmetric prior keeps one direction only
    strict = MTPSL(tasks, FEAT, MTPSLOptions(width=4, full_label_pairs=True, prior_threshold=0.5))
    strict.use_task_prior(related.task_prior)
    assert {tuple(r) for r in strict.pairs(lab).tolist()} == {p for p in every if {p[1], p[2]} == {0, 1}}
    one_way = MTPSL(tasks, FEAT, MTPSLOptions(width=4, full_label_pairs=True))
    one_way.use_task_prior(parse_task_prior({"t1-t0": 1.0, "t0-t1": 0.0}, ["t0", "t1", "t2"]))  # source t1 → t0
    assert {tuple(r) for r in one_way.pairs(lab).tolist()} == {p for p in every if (p[1], p[2]) == (1, 0)}


@pytest.mark.parametrize("reduction, factor", [("batch", 0.5), ("pairs", 1.0)])
def test_mtpsl_prior_weighting_scales_each_pair_term(reduction, factor):
    tasks = mixed_tasks(3)
    lab = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    torch.manual_seed(0)
    method = MTPSL(tasks, FEAT, MTPSLOptions(width=4, reduction=reduction))
    half = torch.full((3, 3), 0.5).fill_diagonal_(1.0)
    terms = {}
    for name, weighting in (("plain", False), ("weighted", True)):
        method.options.prior_weighting = weighting
        method.use_task_prior(half)
        torch.manual_seed(1)                                           # same Gumbel draws
        terms[name] = method.losses(make_step(tasks, lab))["mtpsl"]
    assert torch.allclose(terms["weighted"], factor * terms["plain"], rtol=1e-5)
    # unequal strengths: the weighted mean over pairs differs from the plain one
    method.use_task_prior(torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.1], [0.1, 0.1, 1.0]]))
    torch.manual_seed(1)
    assert not torch.allclose(method.losses(make_step(tasks, lab))["mtpsl"], terms["plain"])


# -- JTR -------------------------------------------------------------------------------------------------------

def test_jtr_task_weights_are_the_mean_strength_over_its_max():
    p = parse_task_prior({"t0-t1": 1.0, "t1-t2": 0.5}, ["t0", "t1", "t2"])
    assert torch.allclose(prior_task_weights(p), torch.tensor([0.5, 0.75, 0.25]) / 0.75)


def test_jtr_prior_weighting_scales_each_tasks_channels_in_the_joint_space():
    torch.manual_seed(0)
    tasks = mixed_tasks(3)
    names = [t.name for t in tasks]
    lab = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 1, 1]])
    method = JTR(tasks, FEAT, JTROptions(width=4, seg_encoding="soft", prior_weighting=True))
    method.supervised_losses = lambda step: {}
    method.use_task_prior(parse_task_prior({"t0-t1": 1.0, "t1-t2": 0.5}, names))
    step = make_step(tasks, lab)
    w = prior_task_weights(method.task_prior)                                   # [2/3, 1, 1/3]
    y_hat, y, _ = method.views(step)
    scale = torch.repeat_interleave(w, torch.tensor([5, 1, 3])).view(1, -1, 1, 1)
    with torch.no_grad():
        expected = cosine_distance(method.encoder(y_hat * scale), method.encoder(y * scale)).mean()
        unweighted = cosine_distance(method.encoder(y_hat), method.encoder(y)).mean()
    got = method.losses(step).auxiliary
    assert torch.allclose(got["jtr_model"], method.options.model_weight * expected, atol=1e-6)
    assert not torch.allclose(expected, unweighted)
    reference = per_sample_reference_losses(method, step)                       # the per-sample path agrees
    assert all(torch.allclose(got[k], reference[k], atol=1e-5) for k in got)
    # a task the prior relates to none has weight 0: its prediction no longer moves any JTR term
    method.use_task_prior(parse_task_prior({"t0-t1": 1.0}, names))
    before = method.losses(step).auxiliary
    step.predictions["t2"] = torch.randn_like(step.predictions["t2"]).requires_grad_()
    after = method.losses(step).auxiliary
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    method.options.prior_weighting = False                                     # off: the prior is not used
    assert not torch.allclose(method.losses(step).auxiliary["jtr_model"], after["jtr_model"])


# -- end to end ------------------------------------------------------------------------------------------------

PRIOR = {"depth-normal": 1.0, "semantic-depth": 0.3}


@pytest.mark.parametrize("method, options", [("mtpsl", {"prior_weighting": True}), ("jtr", {"prior_weighting": True})])
def test_tiny_training_with_a_prior(tiny_config, tmp_path, method, options):
    with_prior = mtlwb.train(tiny_config(method=method, method_options=options, task_prior=PRIOR,
                                         run_dir=str(tmp_path / "prior")))
    without = mtlwb.train(tiny_config(method=method, method_options=options, run_dir=str(tmp_path / "none")))
    assert with_prior["status"] == "completed" and with_prior["config"]["task_prior"] == PRIOR
    assert all(math.isfinite(v) for v in with_prior["history"][-1]["train"].values())
    assert with_prior["history"][-1]["train"] != without["history"][-1]["train"]     # the prior reached the loss
    exp = mtlwb.load_experiment(tmp_path / "prior", device="cpu")
    assert torch.equal(exp.method.task_prior, parse_task_prior(PRIOR, TASKS))


def test_tiny_tpkr_training_with_a_prior_from_the_command_line(tiny_root, tmp_path, capsys):
    from mtlwb.cli import main

    run_dir = tmp_path / "cli"
    assert main(["train", "--data_root", str(tiny_root), "--method", "tpkr", "--epochs", "1", "--batch_size", "8",
                 "--device", "cpu", "--progress", "false", "--run_dir", str(run_dir),
                 "--method_options", '{"prior_mode": "both"}', "--task_prior", json.dumps(PRIOR)]) == 0
    record = mtlwb.load_record(run_dir)
    assert record["config"]["task_prior"] == PRIOR
    assert record["history"][-1]["train"]["prior"] > 0
    capsys.readouterr()
    assert main(["train", "--task_prior", '{"depth-albedo": 1.0}']) == 2     # refused in one line, exit 2
    assert "task_prior key 'depth-albedo': 'albedo' is not one of tasks" in capsys.readouterr().err
    assert main(["train", "--task_prior", "[[1, 0], [0, 1]]"]) == 2
    assert "task_prior: a matrix must be 3×3" in capsys.readouterr().err


# -- the shipped sweep -----------------------------------------------------------------------------------------

def test_shipped_task_prior_sweep_validates_and_fits_the_budget():
    from mtlwb.sweeps.spec import load_spec

    path = REPO / "sweeps" / "task_prior.yaml"
    spec = load_spec(path)
    runs = spec.runs()
    assert spec.name == "task_prior" and len(runs) == 2 * 3 * 3          # methods × priors × seeds
    assert {r.params["seed"] for r in runs} == {0, 1, 2}                # ≥ 3 paired seeds: intervals exist
    assert {r.params["method"] for r in runs} == {"tpkr", "mtpsl"}
    baselines = [r for r in runs if spec.is_baseline(r.params)]
    assert baselines and all(r.params.get("task_prior") is None for r in baselines)
    priors = {json.dumps(r.params.get("task_prior"), sort_keys=True) for r in runs}
    assert len(priors) == 3                                      # none, sensible, wrong
    assert yaml.safe_load(path.read_text())["fixed"]["label_setting"] == "onelabel"


def test_image_level_tasks_left_out_of_the_joint_space_take_their_prior_rows_with_them():
    tasks = [TaskSpec("t0", "depth", 1, "m", True), TaskSpec("t1", "classification", 4, "accuracy", False),
             TaskSpec("t2", "normal", 3, "m", True)]
    names = [t.name for t in tasks]
    prior = parse_task_prior({"t0-t2": 1.0, "t0-t1": 0.5}, names)
    mtpsl = build_method("mtpsl", tasks, FEAT, {"width": 4, "image_level_encoding": "none"}, task_prior=prior)
    assert torch.equal(mtpsl.joint_prior, torch.tensor([[1.0, 1.0], [1.0, 1.0]]))          # t0, t2 only
    lab = torch.tensor([[1, 0]])                                                        # joint columns
    assert {tuple(r) for r in mtpsl.pairs(lab).tolist()} == {(0, 1, 0)}
    jtr = build_method("jtr", tasks, FEAT, {"width": 4, "image_level_encoding": "none", "prior_weighting": True},
                       task_prior=prior)
    assert torch.allclose(jtr.joint_task_weights, torch.ones(2))
    with pytest.raises(ValueError, match=r"relates none of the tasks in the joint space \['t0', 't2'\]"):
        build_method("jtr", tasks, FEAT, {"width": 4, "image_level_encoding": "none", "prior_weighting": True},
                     task_prior=parse_task_prior({"t0-t1": 0.5}, names))
