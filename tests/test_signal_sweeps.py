"""The shipped sweeps of issue 21, item 3 (what makes the cross-task signal informative): each is the positive
control's protocol with one change, its default arms are the positive control's own runs (so ``reuse_from`` copies
them instead of training them again), and each claim compares exactly one arm with exactly one other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtlwb.methods.jtr import JTROptions
from mtlwb.methods.mtpsl import MTPSLOptions
from mtlwb.sweeps.spec import _selects, load_spec  # the sweep's own claim selector

REPO = Path(__file__).resolve().parents[1]
SIGNAL = ("signal_weights", "signal_semantic", "signal_steps", "signal_steps_lr")


def _spec(name: str):
    return load_spec(REPO / "sweeps" / f"{name}.yaml")


def _arm(effective: dict) -> str:
    """A run's arm: every effective parameter but the seed (and what follows from it)."""
    return json.dumps({k: v for k, v in effective.items() if k not in ("seed", "mask_seed")}, sort_keys=True,
                      default=str)


@pytest.mark.parametrize("name", SIGNAL)
def test_each_claim_compares_one_arm_with_one_other_on_the_normals(name):
    spec = _spec(name)
    runs = spec.runs()
    assert spec.claims and all(c["on"] == "normal" for c in spec.claims)
    for claim in spec.claims:
        sides = [{_arm(r.effective) for r in runs if _selects(r, claim[side])} for side in ("group", "vs")]
        assert [len(s) for s in sides] == [1, 1], (claim["name"], sides)
        assert sides[0] != sides[1], claim["name"]
    seeds = [r.effective["seed"] for r in runs]
    assert seeds == sorted(seeds) and set(seeds) == set(range(5 if name.startswith("signal_steps") else 3))


@pytest.mark.parametrize("name, control", [("signal_weights", "positive_control"),
                                           ("signal_semantic", "positive_control_semantic")])
def test_default_arms_are_the_positive_controls_own_runs(name, control):
    """Same protocol as the control (every fixed parameter), so its supervised and default-method runs have the same
    ids here and are reused, not trained again."""
    spec, source = _spec(name), _spec(control)
    assert spec.reuse_from == [control] and spec.fixed == source.fixed
    shared = {r.run_id for r in spec.runs()} & {r.run_id for r in source.runs()}
    defaults = {r.run_id for r in spec.runs() if not r.params.get("method_options") and "task_prior" not in r.params}
    assert defaults and defaults <= shared


def test_weights_are_a_quarter_and_a_sixteenth_of_each_default():
    runs = _spec("signal_weights").runs()
    weights = {m: sorted(r.effective["method_options"][key] for r in runs
                         if r.effective["method"] == m and r.effective["seed"] == 0)
               for m, key in (("mtpsl", "weight"), ("jtr", "model_weight"))}
    mtpsl, jtr = MTPSLOptions().weight, JTROptions().model_weight
    assert weights == {"mtpsl": [mtpsl / 16, mtpsl / 4, mtpsl], "jtr": [jtr / 16, jtr / 4, jtr]}


def test_semantic_arms_change_only_the_encoding_or_the_pairs():
    runs = [r for r in _spec("signal_semantic").runs() if r.effective["seed"] == 0]
    assert all(r.effective["tasks"] == ["semantic", "depth", "normal"] for r in runs)
    jtr = sorted(r.effective["method_options"]["seg_encoding"] for r in runs if r.effective["method"] == "jtr")
    priors = [r.effective["task_prior"] for r in runs if r.effective["method"] == "mtpsl"]
    assert jtr == ["hard", "soft"] and sorted(priors, key=str) == [None, {"depth-normal": 1.0}]


@pytest.mark.parametrize("name, lr, methods", [("signal_steps", 1e-4, {"supervised", "mtpsl", "jtr"}),
                                               ("signal_steps_lr", 1e-3, {"supervised", "mtpsl"})])
def test_step_budget_is_eight_times_the_controls(name, lr, methods):
    """At the papers' learning rate (1e-4) and at the one every other built-in sweep uses (1e-3, the default)."""
    spec, control = _spec(name), _spec("positive_control")
    changed = {k for k in spec.fixed.keys() | control.fixed.keys() if spec.fixed.get(k) != control.fixed.get(k)}
    assert changed == {"batch_size", "lr"} and spec.fixed["lr"] == lr
    assert control.fixed["batch_size"] // spec.fixed["batch_size"] == 8
    assert {r.effective["method"] for r in spec.runs()} == methods
