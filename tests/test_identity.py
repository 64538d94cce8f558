"""The run identity is defined once (mtlwb/identity.py): every config field is classified, a pinned default is a
decision, the method options enter resolved, and the trainer, the reuse of finished runs and the sweeps all read it."""

from __future__ import annotations

import dataclasses

import pytest

from mtlwb import identity
from mtlwb.config import ExperimentConfig
from mtlwb.methods import METHODS, options_dict, parse_options, shortest_options
from mtlwb.methods.tpkr import TPKROptions

FIELDS = [f.name for f in dataclasses.fields(ExperimentConfig)]


def test_every_config_field_has_exactly_one_identity_decision():
    """A field added to ExperimentConfig without a decision (in the identity, never, or skipped at a pinned value)
    fails here: its runs would otherwise be named and reused by whatever the code happens to do."""
    groups = [set(identity.ALWAYS), set(identity.EXECUTION_ONLY), set(identity.SKIP_AT_DEFAULT)]
    classified = [name for g in groups for name in g]
    assert sorted(classified) == sorted(set(classified)), "a field is classified twice"
    assert set(classified) == set(FIELDS), (f"unclassified: {sorted(set(FIELDS) - set(classified))}; "
                                            f"not fields: {sorted(set(classified) - set(FIELDS))}")


def test_a_pinned_skip_value_is_the_fields_default():
    """Changing a later-added option's default must be a conscious decision: the pinned value says which value the
    runs named before the option computed with; a default that moves away from it would keep their ids for runs
    that compute something else."""
    default = ExperimentConfig().to_dict()
    moved = {k: (pinned, default[k]) for k, pinned in identity.SKIP_AT_DEFAULT.items() if default[k] != pinned}
    assert not moved, f"pinned value != default: {moved}"


def test_execution_only_fields_never_change_the_id_and_every_other_field_does():
    base = ExperimentConfig(method="jtr", seed=1)
    for name, value in {"run_dir": "/elsewhere", "progress": False, "device": "cpu", "num_workers": 2}.items():
        assert ExperimentConfig(**{**base.to_dict(), name: value}).run_id == base.run_id, name
    for name, value in {"epochs": 3, "lr": 0.002, "mask_seed": 4, "augment": True, "lr_schedule": "poly",
                        "normal_crop": "bilinear", "grad_clip": 1.0, "precision": "bf16"}.items():
        assert ExperimentConfig(**{**base.to_dict(), name: value}).run_id != base.run_id, name
    assert base.run_id.startswith("jtr-onelabel-s1-")


def test_later_options_are_left_out_only_at_their_pinned_value():
    d = ExperimentConfig().to_dict()
    assert not set(identity.identity(d)) & (set(identity.SKIP_AT_DEFAULT) | identity.EXECUTION_ONLY)
    assert identity.identity({**d, "lr_schedule": "poly"})["lr_schedule"] == "poly"
    old = {k: v for k, v in d.items() if k not in identity.SKIP_AT_DEFAULT}    # recorded before those options
    assert identity.identity(old) == identity.identity(d) and identity.run_id(old) == identity.run_id(d)


@pytest.mark.parametrize("method, written", [("jtr", {}), ("jtr", {"arch": "reference"}), ("mtpsl", {"views": 2}),
                                             ("tpkr", {"variant": "first"}), ("diffusionmtl", {}), ("supervised", {})])
def test_method_options_are_kept_fully_resolved(method, written):
    config = ExperimentConfig(method=method, method_options=written)
    fields = {f.name for f in dataclasses.fields(METHODS[method].Options)}
    assert set(config.method_options) == fields                         # every field, not as written
    assert all(v is not None for k, v in config.method_options.items() if k != "mapping_lr" and k != "film_lr")
    again = ExperimentConfig(method=method, method_options=config.method_options)
    assert again.method_options == config.method_options and again.run_id == config.run_id   # idempotent
    assert shortest_options(METHODS[method], config.method_options) == written


def test_options_written_at_their_resolved_values_name_the_same_run():
    assert ExperimentConfig(method="jtr", method_options={"fidelity": "paper"}).run_id == \
        ExperimentConfig(method="jtr").run_id
    assert ExperimentConfig(method="tpkr", method_options={"use_vq": True, "variant": "paper"}).run_id == \
        ExperimentConfig(method="tpkr").run_id


def test_a_changed_option_default_changes_the_run_id(monkeypatch):
    """The stale-reuse case the resolution exists for: TPKR's default variant moved from "first" to "paper"; a run
    written {} under the old default must not keep the id of the new default's runs."""
    now = ExperimentConfig(method="tpkr")
    monkeypatch.setattr(TPKROptions, "__init__", _with_default(TPKROptions.__init__, variant="first"))
    before = ExperimentConfig(method="tpkr")
    assert before.method_options["variant"] == "first" and before.run_id != now.run_id


def _with_default(init, **defaults):
    def patched(self, *args, **kw):
        init(self, *args, **{**defaults, **kw})
    return patched


def test_resume_may_extend_epochs_but_nothing_else():
    a = ExperimentConfig(method="mtpsl", epochs=2).to_dict()
    assert identity.differences(a, {**a, "epochs": 5}, resume=True) == {}
    assert identity.differences(a, {**a, "epochs": 5}) == {"epochs": (2, 5)}
    assert identity.differences(a, {**a, "lr": 0.5}, resume=True) == {"lr": (a["lr"], 0.5)}
    assert identity.differences(a, {**a, "device": "cpu", "run_dir": "x"}) == {}


def test_trainer_reuse_and_sweeps_read_the_one_definition():
    """No module keeps its own list of fields that stay out of the identity."""
    from pathlib import Path

    import mtlwb

    package = Path(mtlwb.__file__).parent
    copies = [str(p.relative_to(package)) for p in package.rglob("*.py") if p.name != "identity.py"
              and any(s in p.read_text() for s in ('"run_dir", "progress", "device"', "_NOT_COMPARED", "NOT_IN_ID",
                                                   "identity_dict", "_ID_SKIP_AT_DEFAULT"))]
    assert not copies


def test_resolved_options_are_plain_json():
    for name, cls in METHODS.items():
        resolved = options_dict(parse_options(cls, {}))
        assert options_dict(parse_options(cls, resolved)) == resolved, name
