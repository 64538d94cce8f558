"""ExperimentConfig refuses bad input on construction, naming the parameter and the allowed values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlwb.config import ExperimentConfig
from mtlwb.identity import identity


@pytest.mark.parametrize("kw, pattern", [
    ({"method": "mtl++"}, r"method='mtl\+\+': allowed \['diffusionmtl', 'jtr', 'mtpsl', 'supervised', 'tpkr'\]"),
    ({"label_setting": "some"}, r"label_setting='some'"),
    ({"epochs": -1}, r"epochs=-1: must be an integer >= 0"),
    ({"epochs": 2.5}, r"epochs=2.5"),
    ({"batch_size": 0}, r"batch_size=0"),
    ({"lr": 0}, r"lr=0: must be a number > 0"),
    ({"tasks": ["semantic", "albedo"]}, r"tasks=\['semantic', 'albedo'\]"),
    ({"tasks": []}, r"tasks=\[\]"),
    ({"weighting": "gradnorm"}, r"weighting='gradnorm': allowed"),
    ({"device": "tpu"}, r"device='tpu'"),
    ({"backbone": "vit"}, r"backbone='vit'"),
    ({"method": "jtr", "method_options": {"widht": 8}}, r"unknown \['widht'\]"),
    ({"method": "tpkr", "method_options": {"codebook_size": 0}}, r"codebook_size"),
    ({"label_setting": "randomlabel", "tasks": ["depth"]}, r"at least 2 tasks"),
    ({"lr_schedule": "cosine"}, r"lr_schedule='cosine': allowed \['step', 'poly'\]"),
    ({"task_weights": {"edge": 2.0}}, r"task_weights: 'edge' is not one of tasks"),
    ({"task_weights": {"depth": -1}}, r"task_weights\['depth'\]=-1: must be a finite number >= 0"),
    ({"task_weights": {"depth": float("nan")}}, r"task_weights\['depth'\]=nan"),
    ({"task_weights": [1, 2, 3]}, r"task_weights=\[1, 2, 3\]: must be a dict"),
])
def test_bad_values_are_named(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        ExperimentConfig(**kw)


def test_missing_dataset_is_named(tmp_path):
    cfg = ExperimentConfig(data_root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="data_root=.*nowhere.*mtlwb generate"):
        cfg.check_paths()


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown config parameters \['epoch'\]"):
        ExperimentConfig.from_dict({"epoch": 3})


def test_run_id_is_stable_and_ignores_run_location():
    a = ExperimentConfig(seed=1)
    b = ExperimentConfig(seed=1, run_dir="/elsewhere", progress=False)
    assert a.run_id == b.run_id
    assert a.run_id != ExperimentConfig(seed=2).run_id
    assert a.run_id.startswith("supervised-onelabel-s1-")


def test_options_added_later_keep_old_run_ids_at_their_defaults():
    """lr_schedule and task_weights came after runs were named: at their defaults they leave run_id as it was."""
    a = ExperimentConfig(seed=1)
    later = ("lr_schedule", "task_weights", "edge_loss", "normal_loss", "image_norm", "val_fraction", "val_seed",
             "eval_every", "regression_loss", "sources", "task_prior", "grad_clip",
             "normal_crop", "diagnostics", "diagnostics_probe", "pseudo_labels")
    legacy = {k: v for k, v in a.to_dict().items() if k not in later + ("run_dir", "progress", "device", "num_workers")}
    assert identity(a.to_dict()) == legacy
    assert "loss_reduction" in identity(a.to_dict())     # it changed the numbers: old ids must not be reused
    assert ExperimentConfig(seed=1, lr_schedule="poly").run_id != a.run_id
    assert ExperimentConfig(seed=1, task_weights={"depth": 2.0}).run_id != a.run_id
    assert ExperimentConfig(seed=1, regression_loss="smooth_l1").run_id != a.run_id
    assert ExperimentConfig(seed=1, grad_clip=10.0).run_id != a.run_id
    assert ExperimentConfig(seed=1, normal_crop="bilinear").run_id != a.run_id


def test_normal_crop_auto_keeps_the_built_in_scenes_nearest_and_the_real_datasets_bilinear():
    # auto = what each dataset's runs did before the option (scenes) / the references' loaders (real datasets)
    assert ExperimentConfig().resolved_normal_crop == "nearest"
    assert ExperimentConfig(normal_crop="bilinear").resolved_normal_crop == "bilinear"
    assert ExperimentConfig(dataset="nyuv2", data_root="x").resolved_normal_crop == "bilinear"
    assert ExperimentConfig(dataset="nyuv2", data_root="x", normal_crop="nearest").resolved_normal_crop == "nearest"
    with pytest.raises(ValueError, match=r"normal_crop='linear': allowed \['auto', 'bilinear', 'nearest'\]"):
        ExperimentConfig(normal_crop="linear")


@settings(max_examples=80, deadline=None)
@given(epochs=st.integers(-5, 50), batch=st.integers(-2, 64), lr=st.floats(-1, 1, allow_nan=False),
       method=st.sampled_from(["supervised", "jtr", "bogus"]))
def test_validation_accepts_exactly_the_valid_region(epochs, batch, lr, method):
    valid = epochs >= 0 and batch >= 1 and lr > 0 and method != "bogus"
    try:
        ExperimentConfig(epochs=epochs, batch_size=batch, lr=lr, method=method)
    except ValueError:
        assert not valid
    else:
        assert valid


def test_cli_train_help_lists_every_config_field(capsys):
    import dataclasses

    from mtlwb.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert all(f"--{f.name} " in text for f in dataclasses.fields(ExperimentConfig))
    assert main(["train", "--lr_sched", "poly"]) == 2
    assert "unknown option '--lr_sched'; did you mean --lr_schedule?" in capsys.readouterr().err
