"""Sweeps: grid expansion, validation before any run, and (slow) papermill runs: parallel, resume, failure, dask."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from mtlwb import cli
from mtlwb.methods import METHODS
from mtlwb.sweep import SweepInUseError, _exclusive, load_spec, run_id, run_sweep, sweep_runs

REPO = Path(__file__).resolve().parents[1]
TINY = {"train_samples": 16, "eval_samples": 8, "epochs": 1, "batch_size": 8,
        "data_root": str(REPO / "data" / "scenes-64x80")}
BROKEN = {"method": "supervised", "dataset": "nyuv2", "data_root": "/nonexistent/data"}  # fails inside the notebook


def _spec(name: str = "t", **over) -> dict:
    spec = {"name": name, "notebook": str(REPO / "notebooks" / "train.ipynb"), "baseline": {"method": "supervised"},
            "fixed": dict(TINY), "grid": {"method": ["supervised", "tpkr"], "seed": [0]}}
    spec.update(over)
    return spec


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


# --- expansion ------------------------------------------------------------------------------------------
def test_grid_expansion_and_stable_ids():
    spec = load_spec(_spec(grid={"method": ["supervised", "tpkr"], "label_setting": ["onelabel", "randomlabel"],
                                 "seed": [0, 1, 2]},
                           include=[{"method": "tpkr", "method_options": {"use_tc": False}}]))
    runs = spec.runs()
    assert len(runs) == 2 * 2 * 3 + 2 * 3      # the include entry is crossed with label_setting x seed
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith("supervised-onelabel-s0-")
    # same parameters in another order -> same ids; another value -> another id
    shuffled = _spec(grid={"seed": [2, 1, 0], "label_setting": ["randomlabel", "onelabel"],
                           "method": ["tpkr", "supervised"]},
                     include=[{"method_options": {"use_tc": False}, "method": "tpkr"}],
                     fixed=dict(reversed(list(TINY.items()))))
    assert sorted(r.run_id for r in load_spec(shuffled).runs()) == sorted(ids)
    assert run_id({**runs[0].params, "epochs": 2}) != runs[0].run_id
    assert run_id({**runs[0].params, "device": "cpu"}) == runs[0].run_id     # device does not change results


def test_include_is_crossed_with_the_axes_it_leaves_open():
    spec = load_spec(_spec(grid={"method": ["supervised"], "seed": [0, 1]},
                           include=[{"method": "tpkr", "method_options": {"use_vq": False}},
                                    {"method": "tpkr", "seed": 5}]))
    runs = [(r.params["method"], r.params["seed"], r.params.get("method_options")) for r in spec.runs()]
    assert runs == [("supervised", 0, None), ("supervised", 1, None), ("tpkr", 0, {"use_vq": False}),
                    ("tpkr", 1, {"use_vq": False}), ("tpkr", 5, None)]


@pytest.mark.parametrize("name", ["quick", "methods", "small_data", "tpkr_ablation", "jtr_ablation",
                                  "benchmarks/nyuv2", "benchmarks/nyuv2_jtr", "benchmarks/cityscapes",
                                  "benchmarks/pascal_context"])
def test_shipped_sweeps_validate(name):
    raw = yaml.safe_load((REPO / "sweeps" / f"{name}.yaml").read_text())
    methods = set(raw["grid"].get("method", [])) | {e.get("method") for e in raw.get("include", [])} - {None}
    if not methods <= set(METHODS):
        pytest.skip(f"methods {sorted(methods - set(METHODS))} not registered yet")
    spec = load_spec(REPO / "sweeps" / f"{name}.yaml")
    assert spec.name == name.split("/")[-1] and any(spec.is_baseline(r.params) for r in spec.runs())


# --- validation: the error names the key, and nothing runs ------------------------------------------------
@pytest.mark.parametrize("change, key", [
    ({"fixed": {**TINY, "bogus_param": 1}}, "bogus_param"),
    ({"fixed": {**TINY, "epochs": "3"}}, "epochs"),
    ({"grid": {}}, "grid"),
    ({"grid": {"seed": []}}, "seed"),
    ({"notebook": "notebooks/missing.ipynb"}, "notebook"),
    ({"grid": {"method": ["supervised", "no_such_method"]}}, "method"),
    ({"include": [{"method": "tpkr", "method_options": {"use_vqq": True}}]}, "use_vqq"),
    ({"grid": {"label_setting": ["halflabel"]}}, "label_setting"),
    ({"fixed": {**TINY, "run_dir": "x"}}, "run_dir"),
    ({"baseline": {"method": "mtpsl"}}, "baseline"),
    ({"grdi": {"seed": [0]}}, "grdi"),
])
def test_validation_names_the_key_and_nothing_runs(tmp_path, change, key):
    with pytest.raises(ValueError, match=key):
        run_sweep(_spec(**change), root=tmp_path)
    assert not (tmp_path / "t").exists()


def test_cli_invalid_sweep_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_spec(fixed={**TINY, "epochs": -1})))
    assert cli.main(["sweep", str(path), "--root", str(tmp_path), "--no-report"]) == 2
    assert "epochs" in capsys.readouterr().err


def test_second_client_on_the_same_sweep_is_refused(tmp_path):
    (tmp_path / "t").mkdir()
    fd = _exclusive(tmp_path / "t" / ".sweep.lock")
    try:
        with pytest.raises(SweepInUseError, match="in use"):
            run_sweep(_spec(), root=tmp_path)
    finally:
        os.close(fd)
    assert not (tmp_path / "t" / "state.json").exists()


# --- papermill runs (slow) ------------------------------------------------------------------------------
@pytest.mark.slow
def test_parallel_sweep_failure_isolation_resume_and_report(tmp_path):
    spec = _spec(name="e2e", include=[BROKEN])
    result = run_sweep(copy.deepcopy(spec), workers=2, root=tmp_path)
    sweep = tmp_path / "e2e"
    good = [rid for rid, e in sweep_runs(sweep).items() if e["params"].get("dataset") != "nyuv2"]
    assert len(good) == 2 and sorted(result.completed) == sorted(good)
    for rid in good:
        assert (sweep / rid / "train.ipynb").is_file() and (sweep / rid / "metrics.json").is_file()
    # the broken run is recorded with its error and partial notebook, and the sweep reports failure
    assert not result.ok and len(result.failed) == 1
    (bad_id, bad), = result.failed.items()
    assert "data_root" in bad["error"] and Path(bad["notebook"]).is_file()
    assert sweep_runs(sweep)[bad_id]["status"] == "failed"
    assert (sweep / "summary.csv").is_file() and bad_id in (sweep / "summary.md").read_text()

    # resume through the CLI: completed runs are skipped (untouched), the failed one is redone -> exit 1
    mtimes = {rid: (sweep / rid / "metrics.json").stat().st_mtime_ns for rid in good}
    bad_log = (sweep / bad_id / "kernel.log").stat().st_size
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert cli.main(["sweep", str(path), "--root", str(tmp_path), "--no-report", "--workers", "1"]) == 1
    assert {rid: (sweep / rid / "metrics.json").stat().st_mtime_ns for rid in good} == mtimes
    assert (sweep / bad_id / "kernel.log").stat().st_size > bad_log   # the failed run was executed again
    assert sweep_runs(sweep)[bad_id]["status"] == "failed"

    from mtlwb.aggregate import render_report

    html = render_report(sweep)
    assert html.name == "summary.html" and "Δ_MTL vs method=supervised" in html.read_text()


@pytest.mark.slow
def test_dask_local_cluster_one_run(tmp_path):
    from dask.distributed import LocalCluster

    spec = _spec(name="dask", grid={"method": ["supervised"], "seed": [0]})
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        result = run_sweep(spec, scheduler=cluster.scheduler_address, root=tmp_path)
    assert result.ok and len(result.completed) == 1
    rid = result.completed[0]
    assert sweep_runs(tmp_path / "dask")[rid]["status"] == "completed"
    assert (tmp_path / "dask" / rid / "metrics.json").is_file()
