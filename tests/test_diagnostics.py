"""Mechanism diagnostics (mtlwb/experiment/diagnostics.py): what the numbers mean, and that measuring them changes
nothing.

The defining checks: an auxiliary term built to equal the hidden-label loss gives cosine 1 (prediction and backbone
level), a term independent of a task gives 0 for it, labelled pairs and ignore pixels are left out, and training
with diagnostics on gives the numbers and weights of training with them off, for every method.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import mtlwb
from mtlwb.experiment import diagnostics
from mtlwb.experiment.loop import build_experiment
from mtlwb.methods import METHODS, LossTerms, Method, Step
from mtlwb.objectives.losses import task_loss, valid_pixels

READS_PREDICTIONS = {"mtpsl": True, "jtr": True, "tpkr": False, "supervised": False, "diffusionmtl": False}


class HiddenLabelTerm(Method):
    """Not registered: an auxiliary term equal to the supervised loss on the *hidden* labels (an oracle), of the
    tasks in ``only`` (all by default), plus ``distract`` × the sum of the predictions on labelled rows and on the
    ignore pixels of unlabelled rows (which the diagnostics must leave out)."""

    name = "hidden_label_term"

    def __init__(self, tasks, feature_channels: int, only: tuple[str, ...] | None = None,
                 distract: float = 0.0) -> None:
        super().__init__(tasks, feature_channels)
        self.only, self.distract = only, distract

    def losses(self, step: Step) -> LossTerms:
        hidden = 1.0 - step.labelled
        aux = sum(task_loss(t, step.predictions[t.name], step.targets[t.name], hidden[:, i], self.loss_options)
                  for i, t in enumerate(self.tasks) if self.only is None or t.name in self.only)
        for i, t in enumerate(self.tasks):
            pred = step.predictions[t.name]
            invalid = ~valid_pixels(t, step.targets[t.name]).expand_as(pred)
            rows = step.labelled[:, i].bool().view(-1, *([1] * (pred.dim() - 1))).expand_as(pred)
            aux = aux + self.distract * (pred * (rows | invalid)).sum()
        return LossTerms(self.supervised_losses(step), {"hidden_label_term": aux})


def _experiment(tiny_config, term=None, **kw):
    """A tiny experiment (16 training images, onelabel); ``term`` builds a method that replaces the config's."""
    exp = build_experiment(tiny_config(train_samples=16, diagnostics_probe=12, **kw))
    if term is not None:
        exp.method = term(exp.tasks, exp.model.feature_channels).to(exp.device)
    return exp


def test_a_term_equal_to_the_hidden_label_loss_gives_cosine_one(tiny_config):
    d = diagnostics.measure(_experiment(tiny_config, HiddenLabelTerm))
    assert d["reads_predictions"] and d["auxiliary_terms"] == ["hidden_label_term"]
    for name, entry in d["tasks"].items():
        assert entry["hidden"] > 0, name
        assert entry["cosine"] == pytest.approx(1.0, abs=1e-5), name
        assert entry["positive_share"] == 1.0 and entry["reached"] == 1.0
        land = entry["landscape"]                      # the oracle's minimum is the truth
        assert land["truth_below_prediction"], (name, land)
        assert land["truth"] < min(land["perturbed"], land["constant"], land["noise"]), (name, land)
    assert d["backbone"]["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert d["backbone"]["norm_ratio"] > 0


def test_a_term_independent_of_a_task_gives_zero_for_it(tiny_config):
    d = diagnostics.measure(_experiment(tiny_config, lambda tasks, c: HiddenLabelTerm(tasks, c, only=("depth",))))
    assert d["tasks"]["depth"]["cosine"] == pytest.approx(1.0, abs=1e-5)
    for name in ("semantic", "normal"):
        entry = d["tasks"][name]
        assert entry["hidden"] > 0
        assert (entry["cosine"], entry["positive_share"], entry["reached"]) == (0.0, 0.0, 0.0), name
        land = entry["landscape"]                      # the term does not read the task: a flat landscape
        assert len({land[k] for k in diagnostics.LANDSCAPE}) == 1, land


def _with_ignore_pixels(probe: diagnostics.Probe) -> diagnostics.Probe:
    """The probe with the top rows of every dense target invalid (semantic −1, depth 0, normals 0)."""
    for view in probe.views:
        view["semantic"][:, :4] = -1
        view["depth"][:, :, :4] = 0
        view["normal"][:, :, :4] = 0
    return probe


def test_labelled_pairs_and_ignore_pixels_are_left_out(tiny_config):
    exp = _experiment(tiny_config, lambda tasks, c: HiddenLabelTerm(tasks, c, distract=0.05))
    probe = _with_ignore_pixels(diagnostics.build_probe(exp, 12))
    d = diagnostics.measure(exp, probe=probe)
    labelled = probe.labelled.bool()
    for i, (name, entry) in enumerate(d["tasks"].items()):
        assert entry["labelled"] == int(labelled[:, i].sum()) > 0
        assert entry["hidden"] == int((~labelled[:, i]).sum())
        # the distraction lives only on labelled rows and ignore pixels: left out, the oracle's cosine stays 1
        assert entry["cosine"] == pytest.approx(1.0, abs=1e-5), name


def test_the_probe_depends_on_mask_seed_only_and_never_holds_validation_images(tiny_config):
    a = diagnostics.build_probe(_experiment(tiny_config, seed=0, val_fraction=0.25), 8)
    b = diagnostics.build_probe(_experiment(tiny_config, seed=3, method="jtr", val_fraction=0.25), 8)
    c = diagnostics.build_probe(_experiment(tiny_config, mask_seed=1, val_fraction=0.25), 8)
    assert a.positions == b.positions != c.positions
    exp = _experiment(tiny_config, val_fraction=0.25)
    trained = set(exp.sources[0].train_ids.tolist())
    assert set(diagnostics.build_probe(exp, 100).views[0]["index"].tolist()) == trained   # all 12 trained, no val
    assert torch.equal(a.views[0]["image"], b.views[0]["image"])


def _state(exp) -> dict[str, torch.Tensor]:
    return {f"{owner}.{k}": v.detach().clone() for owner, module in (("model", exp.model), ("method", exp.method))
            for k, v in module.state_dict().items()}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_a_well_formed_record_and_leaves_no_trace(method, tiny_config):
    exp = build_experiment(tiny_config(method=method, train_samples=16, diagnostics_probe=6))
    exp.model.eval()                               # modes as a caller left them: restored exactly
    exp.method.train()
    modes = [m.training for m in (*exp.model.modules(), *exp.method.modules())]
    before, rng = _state(exp), (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    d = diagnostics.measure(exp)
    assert json.loads(json.dumps(d, allow_nan=False)) == d                       # plain JSON, no NaN
    after = _state(exp)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in (*exp.model.modules(), *exp.method.modules())] == modes
    assert torch.equal(torch.get_rng_state(), rng[0]) and np.array_equal(np.random.get_state()[1], rng[1])
    assert random.getstate() == rng[2]
    assert all(p.grad is None for p in (*exp.model.parameters(), *exp.method.parameters()))

    assert d["reads_predictions"] is READS_PREDICTIONS[method]
    assert set(d["tasks"]) == {t.name for t in exp.tasks} and d["probe"]["images"] == 6
    has_aux = bool(d["auxiliary_terms"])
    for name, entry in d["tasks"].items():
        assert set(entry) == {*diagnostics.TASK_FIELDS, "landscape"}
        assert entry["hidden"] + entry["labelled"] == 6
        for key in ("cosine", "positive_share", "reached", "norm_ratio"):
            assert (entry[key] is None) is not d["reads_predictions"], (name, key)
        assert (entry["landscape"] is None) is not d["reads_predictions"]
        assert (entry["backbone_cosine"] is None) is not has_aux
        assert -1 <= entry["backbone_supervised_cosine"] <= 1
        if d["reads_predictions"]:
            assert -1 <= entry["cosine"] <= 1 and entry["norm_ratio"] > 0
            assert set(entry["landscape"]) == {*diagnostics.LANDSCAPE, "truth_below_prediction"}
    assert set(d["backbone"]) == set(diagnostics.BACKBONE_FIELDS)
    assert (d["backbone"]["cosine"] is None) is not has_aux
    assert -1 <= d["backbone"]["supervised_cosine"] <= 1


def _without_diagnostics(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in ("diagnostics", "seconds")} for h in history]


@pytest.mark.parametrize("method, options", [("supervised", {}), ("mtpsl", {"views": 2}), ("jtr", {"views": 3}),
                                             ("tpkr", {}), ("diffusionmtl", {})])
def test_training_is_the_same_with_diagnostics_on_and_off(method, options, tiny_config, tmp_path):
    runs = {}
    for on in (False, True):
        config = tiny_config(method=method, method_options=options, epochs=2, train_samples=16, eval_samples=8,
                             diagnostics=on, diagnostics_probe=4, run_dir=str(tmp_path / str(on)))
        runs[on] = (mtlwb.train(config), torch.load(tmp_path / str(on) / "checkpoint.pt", weights_only=False))
    (off, off_state), (on, on_state) = runs[False], runs[True]
    assert all("diagnostics" in h for h in on["history"]) and not any("diagnostics" in h for h in off["history"])
    assert _without_diagnostics(on["history"]) == _without_diagnostics(off["history"])
    for part in ("model", "method", "optimizer"):
        a, b = off_state[part], on_state[part]
        if part == "optimizer":
            a, b = {k: v for k, s in a["state"].items() for k, v in _named(s, k)}, \
                {k: v for k, s in b["state"].items() for k, v in _named(s, k)}
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert on["config"]["diagnostics"] and on["run_id"] != off["run_id"]


def _named(state: dict, index: int):
    return [(f"{index}.{k}", v) for k, v in state.items() if torch.is_tensor(v)]


def test_config_validates_the_options_and_keeps_run_ids_at_their_defaults():
    with pytest.raises(ValueError, match=r"diagnostics='yes': must be true or false"):
        mtlwb.ExperimentConfig(diagnostics="yes")
    with pytest.raises(ValueError, match=r"diagnostics_probe=0: must be an integer >= 1"):
        mtlwb.ExperimentConfig(diagnostics_probe=0)
    base = mtlwb.ExperimentConfig()
    assert "diagnostics" not in mtlwb.identity.identity(base.to_dict())
    assert mtlwb.ExperimentConfig(diagnostics=True).run_id != base.run_id


def test_forms_of_the_truth_have_the_prediction_shape_and_keep_the_truth():
    from mtlwb.tasks import DEPTH, DOMINANT_CLASS, EDGE, NORMAL, NUM_OBJECTS, semantic

    gen = torch.Generator().manual_seed(0)
    seg = torch.randint(0, 5, (2, 4, 6))
    targets = {semantic(5): seg, DEPTH: torch.rand(2, 1, 4, 6) + 1, NORMAL: torch.nn.functional.normalize(
        torch.randn(2, 3, 4, 6), dim=1), EDGE: (torch.rand(2, 1, 4, 6) < 0.2).float(),
        DOMINANT_CLASS: torch.tensor([1, 3]), NUM_OBJECTS: torch.tensor([[2.0], [5.0]])}
    for task, y in targets.items():
        pred = torch.zeros((2, task.channels) + ((4, 6) if not task.image_level else ()))
        for form in diagnostics.LANDSCAPE[1:]:
            out = diagnostics.target_as_prediction(form, task, y, pred, gen)
            assert out.shape == pred.shape and torch.isfinite(out).all(), (task.name, form)
        truth = diagnostics.target_as_prediction("truth", task, y, pred, gen)
        every = torch.ones(2)                                      # the truth has (near) zero supervised loss
        assert float(task_loss(task, truth, y, every)) < 1e-3, task.name
        if task.kind == "normal":
            assert torch.allclose(diagnostics.target_as_prediction("noise", task, y, pred, gen).norm(dim=1),
                                  torch.ones(2, 4, 6))


# --- the record, aggregated: hand-made sweep records (no training) ---------------------------------------------------
TASKS = [{"name": "depth", "kind": "depth", "channels": 1, "primary_metric": "abs_err", "lower_is_better": True},
         {"name": "normal", "kind": "normal", "channels": 3, "primary_metric": "mean_angle", "lower_is_better": True}]


def _entry(epoch: int, cosine: float | None, backbone: float | None, below: bool) -> dict:
    """A history entry with diagnostics: ``cosine`` None = terms that read no prediction; ``backbone`` None = no
    auxiliary term."""
    reads = cosine is not None
    land = {**{f: 1.0 for f in diagnostics.LANDSCAPE}, "truth": 0.5, "truth_below_prediction": below} if reads \
        else None
    task = {"hidden": 3, "labelled": 1, "cosine": cosine, "positive_share": 0.5 if reads else None,
            "reached": 1.0 if reads else None, "norm_ratio": 2.0 if reads else None, "backbone_cosine": backbone,
            "backbone_supervised_cosine": -0.25}
    d = {"auxiliary_terms": [] if backbone is None else ["aux"], "reads_predictions": reads,
         "tasks": {"depth": {**task, "landscape": land}, "normal": {**task, "landscape": land}},
         "backbone": {"cosine": backbone, "supervised_cosine": -0.5, "norm_ratio": None if backbone is None else 1.5,
                      "auxiliary_norm": None, "supervised_norm": 1.0, "hidden_norm": 1.0}}
    return {"epoch": epoch, "train": {}, "eval": {"depth": {"abs_err": 1.0}, "normal": {"mean_angle": 30.0}},
            "diagnostics": d}


def _diagnostics_sweep(root):
    # method -> per seed: (epoch-2 prediction cosine, epoch-2 backbone cosine, truth below prediction)
    plan = {"jtr": [(0.1, 0.05, True), (0.2, 0.1, False), (0.3, 0.15, True)],
            "tpkr": [(None, 0.2, False)] * 3, "supervised": [(None, None, False)] * 3}
    runs = {}
    for method, seeds in plan.items():
        for seed, (cos, bb, below) in enumerate(seeds):
            rid = f"{method}{seed}"
            params = {"method": method, "seed": seed}
            history = [_entry(1, None if cos is None else -1.0, None if bb is None else -1.0, False),
                       _entry(2, cos, bb, below)]
            record = {"run_id": rid, "status": "completed", "config": params, "tasks": TASKS,
                      "final": history[-1]["eval"], "history": history}
            (root / rid).mkdir(parents=True)
            (root / rid / "metrics.json").write_text(json.dumps(record))
            runs[rid] = {"params": params, "status": "completed", "error": None, "notebook": ""}
    (root / "state.json").write_text(json.dumps({"name": "diag", "baseline": {"method": "supervised"},
                                                 "runs": runs}))
    return root


def test_sweep_tables_carry_the_diagnostics_of_the_selected_epoch(tmp_path):
    from mtlwb.analysis import summary
    from mtlwb.analysis import tables as aggregate

    sweep = _diagnostics_sweep(tmp_path / "d")
    table = aggregate.load_table(sweep)
    diag = summary.diagnostics_table(table).set_index(["group", "task"])
    jtr = diag.loc[("jtr", "normal")]
    half = 4.302653 * 0.1 / 3 ** 0.5                          # t_{0.975, 2} · sd / √n over the 3 seeds
    assert jtr["prediction cos"] == f"+0.200 [{0.2 - half:+.3f}, {0.2 + half:+.3f}]"      # epoch 2, not epoch 1
    assert jtr["truth < prediction (share of seeds)"] == "0.667" and jtr["n_seeds"] == 3
    assert jtr["share cos > 0"] == "0.5" and jtr["‖g_aux‖ / ‖g_sup‖"] == "2"
    assert diag.loc[("tpkr", "normal"), "prediction cos"] == "n/a"            # its terms read no prediction
    assert diag.loc[("tpkr", "normal"), "backbone cos"].startswith("+0.200 [+0.200, +0.200]")
    assert diag.loc[("supervised", "depth"), "backbone cos"] == "n/a"          # no auxiliary term
    assert diag.loc[("supervised", summary.BACKBONE_ROW), "yardstick: labelled cos"] == "-0.5"
    assert diag.loc[("jtr", summary.BACKBONE_ROW), "backbone cos"].startswith("+0.100 [")
    md = summary.write_summary(sweep).read_text()
    assert "## Does the cross-task signal point where the hidden labels would?" in md and "+0.200 [" in md

    # the epoch best on validation is the epoch whose diagnostics count
    for path in sweep.glob("jtr*/metrics.json"):
        record = json.loads(path.read_text())
        record["best_val"] = {"epoch": 1, "test": record["final"]}
        path.write_text(json.dumps(record))
    best = summary.diagnostics_table(aggregate.load_table(sweep)).set_index(["group", "task"])
    assert best.loc[("jtr", "normal"), "prediction cos"].startswith("-1.000 [-1.000, -1.000]")


def test_sweep_without_diagnostics_has_no_diagnostics_table(tmp_path):
    from mtlwb.analysis import summary
    from mtlwb.analysis import tables as aggregate

    sweep = _diagnostics_sweep(tmp_path / "d")
    for path in sweep.glob("*/metrics.json"):
        record = json.loads(path.read_text())
        record["history"] = [{k: v for k, v in h.items() if k != "diagnostics"} for h in record["history"]]
        path.write_text(json.dumps(record))
    table = aggregate.load_table(sweep)
    assert summary.diagnostics_table(table).empty and aggregate.diagnostics_curves(sweep, table).empty
    assert "hidden labels would" not in summary.write_summary(sweep).read_text()


def test_alignment_figure_has_one_mean_line_per_group_over_epochs(tmp_path):
    from mtlwb import figures
    from mtlwb.analysis import tables as aggregate

    sweep = _diagnostics_sweep(tmp_path / "d")
    table = aggregate.load_table(sweep)
    curves = aggregate.diagnostics_curves(sweep, table)
    assert set(curves["group"]) == {"jtr", "tpkr", "supervised"} and set(curves["epoch"]) == {1, 2}
    fig = figures.alignment_over_epochs(curves, measures=("cosine",), tasks=["normal"])
    means = {t.name: t for t in fig.data if t.mode == "lines+markers"}
    assert set(means) == {"jtr"}                               # only jtr's terms read predictions
    assert list(means["jtr"].x) == [1, 2] and list(means["jtr"].y) == pytest.approx([-1.0, 0.2])
    assert sum(t.mode == "lines" for t in fig.data) == 3       # its three seeds, thin
    both = figures.alignment_over_epochs(curves)               # prediction and backbone rows, both tasks
    assert {t.name for t in both.data if t.mode == "lines+markers"} == {"jtr", "tpkr"}
    assert len(both.layout.annotations) == 4                   # 2 task columns + 2 measure rows titled
    land = {t.name: t for t in figures.landscape_chart(curves).data}          # relative to the prediction
    assert set(land) == set(diagnostics.LANDSCAPE)
    assert list(land["truth"].y) == [-0.5, -0.5] and list(land["prediction"].y) == [0.0, 0.0]
    with pytest.raises(ValueError, match="no values of"):
        figures.alignment_over_epochs(curves[curves["group"] == "supervised"], measures=("cosine",))


@pytest.mark.slow
def test_report_shows_the_diagnostics_table_and_figure(tmp_path):
    from mtlwb.sweeps.report import render_report

    html = render_report(_diagnostics_sweep(tmp_path / "d")).read_text()
    assert "Does the cross-task signal point where the hidden labels would?" in html
    assert "truth &lt; prediction (share of seeds)" in html or "truth < prediction (share of seeds)" in html
    assert "+0.200 [" in html and "Alignment with the hidden labels" in html


def test_under_torchrun_the_measurement_calls_no_collective(monkeypatch):
    """Only rank 0 measures; a loss's global denominator (loss_reduction="labelled") must not wait for the others."""
    from mtlwb.core import distributed

    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 0)
    assert distributed.current().world_size == 2
    with diagnostics.isolated(torch.nn.Identity()):
        assert distributed.current().world_size == 1
        assert float(distributed.global_sum(torch.tensor(3.0))) == 3.0          # no all_reduce
    assert distributed.current().world_size == 2


def test_batch_norm_keeps_its_forward_and_decouples_the_images_gradients():
    """Held batch statistics: the training-mode output, but a loss on image 0 sends nothing to image 1."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)).train()
    x = torch.randn(3, 3, 5, 5, requires_grad=True)
    coupled = net(x)
    grad = torch.autograd.grad(coupled[0].sum() ** 2, x)[0]
    assert grad[1].abs().sum() > 0                                  # plain training mode: image 1 is reached
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with diagnostics.per_image_batch_norm(net):
        held = net(x)
        grad = torch.autograd.grad(held[0].sum() ** 2, x)[0]
    assert torch.allclose(held, coupled, atol=1e-6)
    assert grad[1].abs().sum() == 0 and grad[0].abs().sum() > 0
    assert "forward" not in vars(net[1])                           # the layer's own forward is back
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())   # running statistics untouched
