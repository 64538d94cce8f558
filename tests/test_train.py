"""The trainer: every method trains, seeded runs repeat exactly, resume is exact, NaN stops cleanly."""

from __future__ import annotations

import json
import math

import pytest
import torch

import mtlwb
from mtlwb.experiment.loop import NonFiniteLossError
from mtlwb.methods import METHODS


def _final(record):
    return json.dumps(record["final"], sort_keys=True)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_without_nan(tiny_config, method):
    record = mtlwb.train(tiny_config(method=method, label_setting="randomlabel", epochs=1))
    assert record["status"] == "completed"
    terms = record["history"][-1]["train"]
    assert all(math.isfinite(v) for v in terms.values())
    assert set(record["final"]) == {"semantic", "depth", "normal"}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_under_bf16_autocast(tiny_config, method):
    record = mtlwb.train(tiny_config(method=method, label_setting="randomlabel", epochs=1, precision="bf16"))
    assert record["status"] == "completed"
    assert all(math.isfinite(v) for v in record["history"][-1]["train"].values())


def test_fp16_scales_the_loss_and_resumes_the_scale(tiny_config, tmp_path):
    """fp16 autocast trains through a GradScaler whose scale is checkpointed with the optimizer."""
    cfg = tiny_config(method="jtr", epochs=1, precision="fp16", run_dir=str(tmp_path / "fp16"))
    assert mtlwb.train(cfg)["status"] == "completed"
    state = torch.load(tmp_path / "fp16" / "checkpoint.pt", weights_only=False)
    assert 0 < state["scaler"]["scale"] <= 2.0 ** 16                # enabled: starts at 2^16, halves on overflow
    resumed = mtlwb.train(tiny_config(method="jtr", epochs=2, precision="fp16", run_dir=str(tmp_path / "fp16")))
    assert resumed["status"] == "completed" and len(resumed["history"]) == 2
    fp32 = tiny_config(method="jtr", epochs=1, run_dir=str(tmp_path / "fp32"))
    mtlwb.train(fp32)
    assert torch.load(tmp_path / "fp32" / "checkpoint.pt", weights_only=False)["scaler"] == {}   # disabled


def test_poly_schedule_and_task_weights(tiny_config, tmp_path):
    record = mtlwb.train(tiny_config(epochs=3, lr=1e-3, lr_schedule="poly", run_dir=str(tmp_path / "poly")))
    lrs = [h["lr"] for h in record["history"]]              # lr used in epoch e: lr0 · (1 − e/epochs)^0.9
    assert lrs == pytest.approx([1e-3 * (1 - e / 3) ** 0.9 for e in range(3)])
    cfg = tiny_config(task_weights={"depth": 0.0, "normal": 2.0}, run_dir=str(tmp_path / "w"))
    exp = mtlwb.build_experiment(cfg)
    before = {k: v.detach().clone() for k, v in exp.model.named_parameters() if k.startswith("heads.")}
    mtlwb.train(cfg, exp)
    after = dict(exp.model.named_parameters())
    moved = {k.split(".")[1] for k, v in before.items() if not torch.equal(v, after[k])}
    assert moved == {"semantic", "normal"}                      # weight 0: the depth head gets no gradient


def test_same_seed_same_numbers(tiny_config, tmp_path):
    a = mtlwb.train(tiny_config(method="tpkr", run_dir=str(tmp_path / "a"), epochs=2))
    b = mtlwb.train(tiny_config(method="tpkr", run_dir=str(tmp_path / "b"), epochs=2))
    assert _final(a) == _final(b)
    assert a["history"][0]["train"] == b["history"][0]["train"]
    c = mtlwb.train(tiny_config(method="tpkr", run_dir=str(tmp_path / "c"), epochs=2, seed=1))
    assert _final(a) != _final(c)


def test_resume_continues_to_the_same_numbers(tiny_config, tmp_path):
    full = mtlwb.train(tiny_config(method="jtr", run_dir=str(tmp_path / "full"), epochs=2, lr_step=1))
    mtlwb.train(tiny_config(method="jtr", run_dir=str(tmp_path / "part"), epochs=1, lr_step=1))
    resumed = mtlwb.train(tiny_config(method="jtr", run_dir=str(tmp_path / "part"), epochs=2, lr_step=1))
    assert len(resumed["history"]) == 2
    assert _final(full) == _final(resumed)


def test_completed_run_is_not_retrained(tiny_config):
    cfg = tiny_config(epochs=1)
    first = mtlwb.train(cfg)
    again = mtlwb.train(cfg)
    assert first["history"] == again["history"]


def test_checkpoint_of_another_experiment_is_refused(tiny_config):
    mtlwb.train(tiny_config(epochs=1))
    with pytest.raises(ValueError, match=r"different experiment \(differs in \['method', 'method_options'\]\)"):
        mtlwb.train(tiny_config(epochs=1, method="tpkr"))      # another method: other (resolved) options too
    with pytest.raises(ValueError, match=r"different experiment \(differs in \['lr'\]\)"):
        mtlwb.train(tiny_config(epochs=2, lr=0.5))              # more epochs continue the run; another lr does not


def test_non_finite_loss_names_the_term_and_keeps_last_checkpoint(tiny_config, monkeypatch):
    cfg = tiny_config(epochs=2)
    mtlwb.train(tiny_config(epochs=1))                       # epoch 1 is checkpointed
    from mtlwb.methods.supervised import Supervised
    original = Supervised.losses

    def poisoned(self, step):
        terms = original(self, step)
        terms.supervised["depth"] = terms.supervised["depth"] * float("nan")
        return terms

    monkeypatch.setattr(Supervised, "losses", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"loss term 'depth' became nan at epoch 1, step 0"):
        mtlwb.train(cfg)
    record = json.loads((cfg.resolved_run_dir / "metrics.json").read_text())
    assert record["status"] == "failed" and "depth" in record["error"]
    state = torch.load(cfg.resolved_run_dir / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1


def test_zero_epochs_evaluates_the_initial_model(tiny_config):
    record = mtlwb.train(tiny_config(epochs=0))
    assert record["history"][0]["epoch"] == 0 and record["final"]


@pytest.mark.parametrize("method,options", [
    ("jtr", {"views": 3, "photometric": "randaugment"}),
    ("mtpsl", {"views": 2, "film_lr": 1e-2, "film_lr_step": 1, "film_lr_gamma": 0.1}),
])
def test_multi_view_protocols_train_repeatably_and_resume(tiny_config, tmp_path, method, options):
    """The reference protocols (several views per batch, the FiLM tables' own schedule) train, repeat and resume."""
    def cfg(run, epochs):
        return tiny_config(method=method, method_options=options, epochs=epochs, augment=True,
                           run_dir=str(tmp_path / run), lr_step=1)

    full = mtlwb.train(cfg("full", 2))
    again = mtlwb.train(cfg("again", 2))
    assert _final(full) == _final(again)
    mtlwb.train(cfg("part", 1))
    assert _final(mtlwb.train(cfg("part", 2))) == _final(full)
    if method == "mtpsl":
        state = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
        lrs = [g["lr"] for g in state["optimizer"]["param_groups"]]
        # after 2 epochs: the model 1e-3 × 0.5² (lr_step 1), the FiLM group 1e-2 × 0.1² (its own step of 1 epoch)
        assert lrs[0] == pytest.approx(2.5e-4) and lrs[-1] == pytest.approx(1e-4)


def test_state_is_written_at_evaluated_epochs_and_the_last(tiny_config, monkeypatch):
    """Between evaluations an epoch writes no checkpoint unless CHECKPOINT_EVERY_S has passed; what is written is
    always a checkpoint and a record that agree, and a run resumed from it finishes with the same numbers."""
    from mtlwb.experiment import loop

    saved = []
    save = loop.atomic_torch_save
    monkeypatch.setattr(loop, "atomic_torch_save", lambda path, st: saved.append(st["epoch"]) or save(path, st))
    full = mtlwb.train(tiny_config(epochs=5, eval_every=2, lr_step=2))          # lr_step fixed: not epochs // 2
    assert saved == [2, 4, 5]
    record = json.loads((tiny_config().resolved_run_dir / "metrics.json").read_text())
    assert len(record["history"]) == 5 and record["status"] == "completed"
    saved.clear()
    monkeypatch.setattr(loop, "CHECKPOINT_EVERY_S", 0.0)
    part = tiny_config(epochs=3, eval_every=2, lr_step=2, run_dir=str(tiny_config().resolved_run_dir.parent / "part"))
    mtlwb.train(part)
    assert saved == [1, 2, 3]                                       # the time rule writes every epoch here
    resumed = mtlwb.train(tiny_config(epochs=5, eval_every=2, lr_step=2, run_dir=str(part.resolved_run_dir)))
    assert _final(resumed) == _final(full)


def test_bf16_autocast_losses_stay_within_the_stated_tolerance_of_fp32(tiny_config):
    """One training batch's loss terms under bf16 autocast vs fp32, same weights, views and Gumbel draws:
    supervised and MTPSL within 3 %, JTR within 10 % (its straight-through Gumbel one-hots may flip where two
    classes' logits tie within bfloat16's precision); docs/benchmarks.md gives the measured differences."""
    import dataclasses

    from mtlwb.data.views import make_views
    from mtlwb.experiment import loop

    if not loop.native_bf16(torch.device("cpu")):
        pytest.skip("this CPU has no native bfloat16 (avx512_bf16 / AMX)")
    for method, options, tolerance in (("supervised", {}, 0.03), ("mtpsl", {"views": 2}, 0.03),
                                       ("jtr", {"views": 3, "fidelity": "published_code"}, 0.10)):
        exp = mtlwb.build_experiment(tiny_config(method=method, method_options=options, backbone="segnet"))
        exp.model.train()
        exp.method.train()
        batch = next(iter(torch.utils.data.DataLoader(exp.train_set, batch_size=4)))
        views = make_views(batch, exp.tasks, exp.method.view_spec, torch.Generator().manual_seed(0))
        labelled = exp.labelled[batch["index"]]
        terms = {}
        for precision in ("fp32", "bf16"):
            exp.config = dataclasses.replace(exp.config, precision=precision)
            torch.manual_seed(1)
            with torch.no_grad():
                terms[precision] = {k: float(v) for k, v in loop.step_losses(exp, views, labelled).all().items()}
        worst = max(abs(terms["bf16"][k] - terms["fp32"][k]) / max(abs(terms["fp32"][k]), 1e-6) for k in terms["fp32"])
        assert worst <= tolerance, (method, terms)


def test_the_trainer_runs_a_view_read_only_detached_without_head_graph(tiny_config):
    """JTR's three views on SegNet: the trainer's forward pass runs view 2's heads without a graph."""
    from mtlwb.data.views import make_views
    from mtlwb.experiment import loop

    exp = mtlwb.build_experiment(tiny_config(method="jtr", method_options={"views": 3}, backbone="segnet"))
    exp.model.train()
    calls = []
    exp.model.heads["depth"].register_forward_hook(lambda m, args, out: calls.append((args[0].shape[0],
                                                                                       torch.is_grad_enabled())))
    batch = next(iter(torch.utils.data.DataLoader(exp.train_set, batch_size=4)))
    views = make_views(batch, exp.tasks, exp.method.view_spec, torch.Generator().manual_seed(0))
    loop.step_losses(exp, views, exp.labelled[batch["index"]])
    assert calls == [(8, True), (4, False)]


def test_channels_last_reaches_the_methods_networks(tiny_config):
    exp = mtlwb.build_experiment(tiny_config(method="jtr", channels_last=True))
    convs = [m.weight for m in exp.method.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)


def test_bf16_on_a_cpu_without_it_warns(tiny_config, monkeypatch):
    from mtlwb.experiment import loop

    monkeypatch.setattr(loop, "native_bf16", lambda device: False)
    with pytest.warns(UserWarning, match=r"precision='bf16' on a CPU without native bfloat16"):
        mtlwb.build_experiment(tiny_config(precision="bf16"))


@pytest.mark.parametrize("backbone", ["segnet", "resnet_small"])
def test_running_detached_views_without_a_graph_changes_no_training_number(tiny_config, tmp_path, monkeypatch,
                                                                          backbone):
    """JTR's three views, one epoch: the trainer's split forward pass and the one-graph pass it replaced give the
    same history and weights. resnet_small (the regime sweep's backbone; heads with BatchNorm keep one graph): bit
    for bit. SegNet (heads split, view 2's without a graph): equal up to float32 rounding (losses to 1e-4, weights
    to 1e-5 in total after Adam, evaluation metrics, which count pixels, to 1 %), since a conv's weight
    gradient summed over 8 rows rounds differently from the same sum over 12 rows of which 4 are zero (in float64
    the two passes agree to 1e-12: tests/test_views.py)."""
    from mtlwb.experiment import loop

    def run(name: str) -> tuple[list, dict]:
        cfg = tiny_config(method="jtr", method_options={"views": 3, "fidelity": "published_code"},
                          backbone=backbone, train_samples=16, run_dir=str(tmp_path / name))
        exp = mtlwb.build_experiment(cfg)
        history = mtlwb.train(cfg, exp)["history"]
        weights = {**exp.model.state_dict(), **{f"method.{k}": v for k, v in exp.method.state_dict().items()}}
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history], weights

    calls = []
    split_pass = loop.forward_step
    monkeypatch.setattr(loop, "forward_step", lambda model, method, images, views=1:
                        calls.append(views) or split_pass(model, method, images, views=views))
    split, split_weights = run("split")
    assert calls.count(3) == 2                   # the trainer's two steps pass the view count (evaluation: one view)
    monkeypatch.setattr(loop, "forward_step", lambda model, method, images, views=1:
                        split_pass(model, method, images))
    whole, whole_weights = run("whole")
    assert split_weights.keys() == whole_weights.keys()
    if backbone == "resnet_small":
        assert split == whole
        assert all(torch.equal(split_weights[k], whole_weights[k]) for k in split_weights)
        return
    flat = lambda d, p="": {f"{p}{k}": v for k1, v1 in d.items()  # noqa: E731
                            for k, v in (flat(v1, f"{k1}.").items() if isinstance(v1, dict) else [(k1, v1)])}
    a, b = flat(split[0]), flat(whole[0])
    assert a.keys() == b.keys()
    losses = [k for k in a if k.startswith("train.")]
    assert {k: a[k] for k in losses} == pytest.approx({k: b[k] for k in losses}, rel=1e-4, abs=1e-6)
    # the evaluation's argmax / threshold metrics may flip a few of the 8×32×40 pixels on so small a difference
    assert {k: a[k] for k in a if k not in losses} == pytest.approx({k: b[k] for k in b if k not in losses}, rel=1e-2)
    for k in split_weights:
        # Adam divides by sqrt(v): a weight whose gradient is near zero can move on a rounding difference by up to
        # lr·(1−β1)/√(1−β2) ≈ 3.2·lr per step (the bias-corrected worst case), so single weights agree only within
        # the 2 steps' reach; in total, to 1e-5 (below)
        torch.testing.assert_close(split_weights[k], whole_weights[k], rtol=0, atol=2 * 1e-3 * 0.1 / 0.001 ** 0.5)
    floats = [k for k in split_weights if split_weights[k].is_floating_point()]
    total_diff = sum(float((split_weights[k] - whole_weights[k]).abs().sum()) for k in floats)
    assert total_diff <= 1e-5 * sum(float(split_weights[k].abs().sum()) for k in floats)
