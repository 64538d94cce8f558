"""Sweeps: grid expansion, validation before any run, and (slow) papermill runs: parallel, resume, failure, dask."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

import pytest
import yaml

from mtlwb import cli
from mtlwb.config import ExperimentConfig
from mtlwb.sweeps.notebook_params import TRAIN_NOTEBOOK_ONLY
from mtlwb.sweeps.notebooks import notebook_parameters
from mtlwb.sweeps.planning import plan_runs
from mtlwb.sweeps.run import SweepResult, run_sweep
from mtlwb.sweeps.run_ids import params_run_id, run_id
from mtlwb.sweeps.spec import load_spec
from mtlwb.sweeps.state import SweepInUseError, SweepState, exclusive_lock, sweep_runs
from tests.helpers.fixtures_real import write_nyuv2

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


SHIPPED = sorted((REPO / "sweeps").glob("*.yaml")) + sorted((REPO / "sweeps" / "benchmarks").glob("*.yaml"))


def test_the_shipped_sweeps_are_found():
    names = {p.relative_to(REPO / "sweeps").as_posix() for p in SHIPPED}
    assert len(SHIPPED) >= 15 and {"quick.yaml", "regime_64x80.yaml", "benchmarks/nyuv2.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(REPO / "sweeps").as_posix())
def test_every_shipped_sweep_loads_and_plans(path):
    """Found by glob: a new sweep file is covered without touching this test."""
    spec = load_spec(path)
    runs = spec.runs()
    assert spec.name == path.stem and runs and len({r.run_id for r in runs}) == len(runs)
    assert not spec.baseline or any(spec.is_baseline(r.params) for r in runs)
    assert isinstance(spec.description, str)


# --- effective parameters and run identity ---------------------------------------------------------------
def test_every_parameter_gets_the_config_default_not_the_notebook_default():
    notebook = notebook_parameters(REPO / "notebooks" / "train.ipynb")
    assert notebook["eval_samples"] == 32 and notebook["epochs"] == 1     # the notebook's tiny CI defaults
    spec = _spec(fixed={"train_samples": 16, "data_root": TINY["data_root"]}, grid={"method": ["supervised"]})
    (run,) = load_spec(spec).runs()
    default = ExperimentConfig()
    assert set(run.effective) == set(notebook) - {"run_dir", "progress"} - TRAIN_NOTEBOOK_ONLY  # all injected
    assert run.effective["eval_samples"] is None and run.effective["epochs"] == default.epochs == 10
    assert run.effective["train_samples"] == 16 and run.params == spec["fixed"] | {"method": "supervised"}
    assert run.run_id == ExperimentConfig(**run.effective).run_id
    assert run.run_id == run_id({**run.effective, "device": "cuda", "num_workers": 3})   # execution only


# the config as it was before a default changed (eval_samples used to be 32)
_StaleDefaults = dataclasses.make_dataclass(
    "_StaleDefaults", [("eval_samples", int | None, dataclasses.field(default=32))], bases=(ExperimentConfig,))


def _fake_completed_run(sweep: Path, rid: str, params: dict, config: dict) -> None:
    """A finished run as a sweep leaves it: state entry, notebook, metrics.json with the config it ran."""
    (sweep / rid).mkdir(parents=True)
    (sweep / rid / "train.ipynb").write_text("{}")
    (sweep / rid / "metrics.json").write_text(json.dumps({"status": "completed", "config": config}))
    state = json.loads((sweep / "state.json").read_text()) if (sweep / "state.json").is_file() else {"runs": {}}
    state["runs"][rid] = {"params": params, "status": "completed", "error": None,
                          "notebook": str(sweep / rid / "train.ipynb"), "seconds": 1.0, "finished": "x"}
    (sweep / "state.json").write_text(json.dumps(state))


def _plan(sweep: Path, spec: dict):
    parsed = load_spec(spec)
    runs = parsed.runs()
    return runs, plan_runs(SweepState(sweep, parsed, runs), runs, sweep)


def test_a_changed_default_gives_a_new_id_and_the_stale_run_is_not_reused(tmp_path, monkeypatch):
    spec = _spec(fixed={"train_samples": 16, "data_root": TINY["data_root"]}, grid={"method": ["supervised"]})
    sweep = tmp_path / "t"
    with monkeypatch.context() as m:                        # the sweep as it ran when the default was 32
        m.setattr("mtlwb.config.ExperimentConfig", _StaleDefaults)
        (old,) = load_spec(spec).runs()
        old_config = _StaleDefaults(**old.effective).to_dict()
    assert old.effective["eval_samples"] == 32
    _fake_completed_run(sweep, old.run_id, old.params, old_config)
    (new,), (todo, notes) = _plan(sweep, spec)
    assert new.run_id != old.run_id and todo == [new]        # new id, and it runs
    (note,) = notes
    assert note.startswith(f"NOT REUSED {old.run_id}") and "eval_samples: 32 -> null" in note
    assert new.run_id in note and (sweep / old.run_id).is_dir()       # the old run is left, not overwritten
    # resume semantics: once the new run has completed with the effective config, it is skipped
    state = json.loads((sweep / "state.json").read_text())
    state["runs"][new.run_id]["status"] = "completed"
    (sweep / "state.json").write_text(json.dumps(state))
    (sweep / new.run_id).mkdir()
    (sweep / new.run_id / "train.ipynb").write_text("{}")
    (sweep / new.run_id / "metrics.json").write_text(json.dumps(
        {"status": "completed", "config": ExperimentConfig(**new.effective).to_dict()}))
    assert _plan(sweep, spec)[1] == ([], [])


def test_runs_of_the_earlier_id_scheme_are_adopted_or_refused(tmp_path):
    spec = _spec(fixed={"train_samples": 16, "eval_samples": 8, "data_root": TINY["data_root"]},
                 grid={"method": ["supervised", "tpkr"]})
    sweep = tmp_path / "t"
    runs = load_spec(spec).runs()
    same, other = (ExperimentConfig(**r.effective).to_dict() for r in runs)
    other["epochs"] = 1                                      # run with the notebook's default under the old scheme
    for run, config in zip(runs, (same, other)):
        _fake_completed_run(sweep, params_run_id(run.params), run.params, config)
    _, (todo, notes) = _plan(sweep, spec)
    assert [r.run_id for r in todo] == [runs[1].run_id]
    assert notes[0] == f"ADOPTED {params_run_id(runs[0].params)} as {runs[0].run_id}: same effective config, " \
                       "named by an earlier id scheme"
    assert (sweep / runs[0].run_id / "metrics.json").is_file()
    assert notes[1].startswith(f"NOT REUSED {params_run_id(runs[1].params)}") and "epochs: 1 -> 10" in notes[1]


def test_a_record_under_the_same_id_with_another_config_is_moved_aside(tmp_path):
    spec = _spec(fixed={"train_samples": 16, "data_root": TINY["data_root"]}, grid={"method": ["supervised"]})
    sweep = tmp_path / "t"
    (run,) = load_spec(spec).runs()
    _fake_completed_run(sweep, run.run_id, run.params, {**ExperimentConfig(**run.effective).to_dict(),
                                                        "eval_samples": 32})
    _, (todo, notes) = _plan(sweep, spec)
    assert todo == [run] and "eval_samples: 32 -> null" in notes[0]
    assert (sweep / f"{run.run_id}.stale-1" / "metrics.json").is_file() and not (sweep / run.run_id).exists()


def test_reuse_from_copies_only_finished_runs_of_the_same_config_from_the_other_sweep(tmp_path, monkeypatch):
    import mtlwb.sweeps.run as sweep_module

    fixed = {"train_samples": 16, "eval_samples": 8, "data_root": TINY["data_root"]}
    shared, own = load_spec(_spec(name="other", fixed=fixed, grid={"method": ["supervised", "tpkr"]})).runs()
    other = tmp_path / "other"
    _fake_completed_run(other, shared.run_id, shared.params, ExperimentConfig(**shared.effective).to_dict())
    _fake_completed_run(other, own.run_id, own.params,              # same id, but its record holds another config
                        {**ExperimentConfig(**own.effective).to_dict(), "epochs": 3})
    (tmp_path / "t" / shared.run_id).mkdir(parents=True)            # a partial run of this sweep in its place
    jobs_seen = []

    def fake_run_local(jobs, workers, record, bar):
        for rid, _, _ in jobs:
            jobs_seen.append(rid)
            record(rid, {"status": "completed", "error": None, "notebook": None, "seconds": 0.0})

    monkeypatch.setattr(sweep_module, "run_local", fake_run_local)
    result = run_sweep(_spec(fixed=fixed, grid={"method": ["supervised", "tpkr"]}, reuse_from=["other"]),
                       root=tmp_path, summarize=False)
    assert jobs_seen == [own.run_id]                                # the shared run is not trained again
    assert result.skipped == [shared.run_id]
    assert any(n.startswith(f"REUSED {shared.run_id}") for n in result.stale)
    copied = tmp_path / "t" / shared.run_id
    assert (copied / "metrics.json").read_text() == (other / shared.run_id / "metrics.json").read_text()
    assert (other / shared.run_id / "metrics.json").is_file()       # copied, not moved
    assert (tmp_path / "t" / f"{shared.run_id}.stale-1").is_dir()   # the partial run was moved aside
    entry = sweep_runs(tmp_path / "t")[shared.run_id]
    assert entry["status"] == "completed" and entry["notebook"] == str(copied / "train.ipynb")
    assert not list((tmp_path / "t").glob(".*.copy-*"))


@pytest.mark.parametrize("bad", ["regime", [1], ["t"], ["../x"]])
def test_reuse_from_must_name_other_sweeps(bad):
    with pytest.raises(ValueError, match="sweep reuse_from="):
        load_spec(_spec(reuse_from=bad))


def test_report_prints_a_line_per_label_split_fallback(tmp_path):
    result = SweepResult("t", tmp_path, ["a"], [], {}, 1.0, stale=["NOT REUSED x: why"],
                         fallbacks={"a": "published file data/nyuv2/settings/onelabel.pth not found"})
    text = result.report()
    assert "  LABEL SPLIT FALLBACK a: published file data/nyuv2/settings/onelabel.pth not found" in text
    assert "  NOT REUSED x: why" in text


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


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    spec = _spec(name="dry", grid={"method": ["supervised", "tpkr", "jtr"], "seed": [0]})
    path = tmp_path / "dry.yaml"
    path.write_text(yaml.safe_dump(spec))
    runs = load_spec(spec).runs()
    sweep = tmp_path / "dry"
    done, resumable, fresh = runs
    config = ExperimentConfig(**{**done.effective, "run_dir": "", "progress": False}).to_dict()
    _fake_completed_run(sweep, done.run_id, done.params, config)
    (sweep / resumable.run_id).mkdir()
    (sweep / resumable.run_id / "checkpoint.pt").write_bytes(b"")
    record = {"status": "running", "config": {}, "history": [{}, {}]}
    (sweep / resumable.run_id / "metrics.json").write_text(json.dumps(record))
    before = {p: p.stat().st_mtime_ns for p in sweep.rglob("*")}

    assert cli.main(["sweep", str(path), "--root", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sweep dry: 3 runs, 1 already done, 2 to do") and "nothing was run" in lines[0]
    plan = {line.split()[0]: line for line in lines[1:]}
    assert set(plan) == {r.run_id for r in runs}
    assert " done " in plan[done.run_id] and "method=supervised" in plan[done.run_id]
    assert "resume at epoch 3" in plan[resumable.run_id] and "method=tpkr" in plan[resumable.run_id]
    assert " run " in plan[fresh.run_id] and "method=jtr" in plan[fresh.run_id]
    assert "train_samples" not in plan[fresh.run_id]          # the fixed parameters are not repeated per run
    assert {p: p.stat().st_mtime_ns for p in sweep.rglob("*")} == before    # nothing written, no lock, no snapshot
    assert cli.main(["sweep", str(path), "--root", str(tmp_path / "elsewhere"), "--dry-run"]) == 0
    assert "0 already done, 3 to do" in capsys.readouterr().out and not (tmp_path / "elsewhere").exists()


def test_second_client_on_the_same_sweep_is_refused(tmp_path):
    (tmp_path / "t").mkdir()
    fd = exclusive_lock(tmp_path / "t" / ".sweep.lock")
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
    bad_notebook = (sweep / bad_id / "train.ipynb").stat().st_mtime_ns
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert cli.main(["sweep", str(path), "--root", str(tmp_path), "--no-report", "--workers", "1"]) == 1
    assert {rid: (sweep / rid / "metrics.json").stat().st_mtime_ns for rid in good} == mtimes
    assert (sweep / bad_id / "train.ipynb").stat().st_mtime_ns > bad_notebook   # the failed run was executed again
    assert "without encryption" not in (sweep / bad_id / "kernel.log").read_text()   # IPC kernels
    assert sweep_runs(sweep)[bad_id]["status"] == "failed"

    from mtlwb.sweeps.report import render_report

    html = render_report(sweep)
    assert html.name == "summary.html" and "Δ_MTL vs method=supervised" in html.read_text()


@pytest.mark.slow
def test_sweep_uses_config_defaults_and_prints_label_split_fallbacks(tmp_path, capsys):
    """eval_samples left out: the whole validation split (the config's default), not the notebook's 32; a run
    whose published split file is missing says so in the sweep's output, its record and the summary."""
    nyuv2 = write_nyuv2(tmp_path / "nyuv2")                     # no settings/randomlabels.pth
    spec = _spec(name="defaults", fixed={"train_samples": 16, "epochs": 1, "batch_size": 8},
                 grid={"method": ["supervised"]},
                 include=[{"dataset": "nyuv2", "data_root": str(nyuv2), "label_setting": "randomlabel"}])
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert cli.main(["sweep", str(path), "--root", str(tmp_path), "--no-report", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    sweep = tmp_path / "defaults"
    records = {rid: json.loads((sweep / rid / "metrics.json").read_text()) for rid in sweep_runs(sweep)}
    scenes = next(r for r in records.values() if r["config"]["dataset"] == "scenes")
    assert scenes["config"]["eval_samples"] is None and scenes["num_eval"] == 500     # all 500, not 32
    assert scenes["label_split"]["source"] == "generated" and not scenes["label_split"]["fallback"]
    (fallback_id,) = [rid for rid, r in records.items() if r["config"]["dataset"] == "nyuv2"]
    assert records[fallback_id]["label_split"]["fallback"] is True
    assert f"LABEL SPLIT FALLBACK {fallback_id}: published file {nyuv2}/settings/randomlabels.pth not found" in out
    summary = (sweep / "summary.md").read_text()
    assert f"LABEL SPLIT FALLBACK in 1 run(s) ({fallback_id})" in summary and "eval_samples=null" in summary
    assert cli.summary_head(sweep / "summary.md") in out and "Δ_MTL vs method=supervised" in out   # the table


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


def test_paper_configurations_use_the_published_layouts_and_protocols():
    """sweeps/benchmarks/: MTPSL and JTR in their reference layouts and view protocols, PASCAL with MTL-PyTorch's
    losses; every file names the published table it reproduces."""
    from mtlwb.sweeps.spec import load_spec

    for name in ("nyuv2", "nyuv2_jtr", "cityscapes"):
        spec = load_spec(f"sweeps/benchmarks/{name}.yaml")
        opts = {r.params["method"]: r.params.get("method_options", {}) for r in spec.runs()}
        assert opts["mtpsl"]["arch"] == "reference" and opts["mtpsl"]["views"] == 2 and opts["mtpsl"]["film_lr_step"]
        assert opts["jtr"] == {"arch": "reference", "fidelity": "published_code", "views": 3,
                               "photometric": "randaugment"}
        assert opts["mtpsl"]["fidelity"] == "published_code"
        assert spec.fixed["backbone"] == "segnet" and spec.fixed["loss_reduction"] == "batch"
        assert spec.fixed.get("normal_loss", "dot") == "dot"          # the references' (Cityscapes: no normals)
        assert "Table" in Path(f"sweeps/benchmarks/{name}.yaml").read_text()
    pascal = load_spec("sweeps/benchmarks/pascal_context.yaml")
    assert (pascal.fixed["edge_loss"], pascal.fixed["normal_loss"], pascal.fixed["image_norm"]) == (
        "mtl_pytorch", "l1", "auto")
    runs = pascal.runs()
    assert {r.params["method"] for r in runs} == {"supervised", "mtpsl", "jtr", "tpkr"} and len(runs) == 16
    assert all(r.params["method_options"] == {"fidelity": "published_code"} for r in runs
               if r.params["method"] in ("mtpsl", "jtr"))


# --- frozen inputs: the notebook is snapshotted, a code change under a running sweep stops its later runs -----
def test_code_fingerprint_follows_every_source_file(tmp_path):
    from mtlwb.sweeps.worker import code_fingerprint

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    before = code_fingerprint(tmp_path)
    assert code_fingerprint(tmp_path) == before
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert code_fingerprint(tmp_path) != before
    assert code_fingerprint() == code_fingerprint(Path(run_sweep.__code__.co_filename).parents[1])   # the package


def test_a_run_whose_code_changed_since_the_sweep_started_is_not_executed(tmp_path):
    from mtlwb.sweeps.worker import execute_run

    run_dir = tmp_path / "run"
    result = execute_run(str(REPO / "notebooks" / "train.ipynb"), str(run_dir), {}, str(REPO), code="0" * 16)
    assert result["status"] == "failed" and "source code changed" in result["error"]
    assert "run the sweep again" in result["error"] and not run_dir.exists()   # nothing was started


def test_the_sweep_runs_a_snapshot_of_its_notebook_and_passes_its_code_fingerprint(tmp_path, monkeypatch):
    import mtlwb.sweeps.run as sweep_module
    from mtlwb.sweeps.worker import code_fingerprint

    notebook = tmp_path / "train.ipynb"
    notebook.write_bytes((REPO / "notebooks" / "train.ipynb").read_bytes())
    seen = []

    def fake_run_local(jobs, workers, record, bar):
        notebook.write_text("edited while the sweep runs")        # a save in JupyterLab mid-sweep
        for rid, args, kw in jobs:
            seen.append((Path(args[0]), kw["code"]))
            record(rid, {"status": "completed", "error": None, "notebook": None, "seconds": 0.0})

    monkeypatch.setattr(sweep_module, "run_local", fake_run_local)
    run_sweep(_spec(notebook=str(notebook)), root=tmp_path, summarize=False)
    assert len(seen) == 2
    for path, code in seen:
        assert path.parent == tmp_path / "t" and path != notebook
        assert path.read_bytes() == (REPO / "notebooks" / "train.ipynb").read_bytes()
        assert code == code_fingerprint()


def test_runs_handed_to_the_workers_are_queued_until_they_finish(tmp_path, monkeypatch):
    """state.json must not call a run "running" while it waits for a free worker."""
    import mtlwb.sweeps.run as sweep_module

    seen = []

    def fake_run_local(jobs, workers, record, bar):
        state = json.loads((tmp_path / "t" / "state.json").read_text())
        seen.extend(state["runs"][rid]["status"] for rid, _, _ in jobs)
        record(jobs[0][0], {"status": "completed", "error": None, "notebook": None, "seconds": 0.0})

    monkeypatch.setattr(sweep_module, "run_local", fake_run_local)
    run_sweep(_spec(), root=tmp_path, summarize=False)
    assert seen == ["queued", "queued"]
    runs = json.loads((tmp_path / "t" / "state.json").read_text())["runs"]
    assert sorted(r["status"] for r in runs.values()) == ["completed", "queued"]


@pytest.mark.parametrize("claims, key", [
    ("B > A", "sweep claims="),
    ([{"name": "x", "group": {"method": "tpkr"}}], r"claims\[0\].vs="),
    ([{"name": "x", "group": {"method": "tpkr"}, "vs": {"method": "supervised"}, "relation": "<"}],
     r"claims\[0\].relation='<'"),
    ([{"name": "x", "group": {"methd": "tpkr"}, "vs": {"method": "supervised"}}], r"claims\[0\].group"),
    ([{"name": "x", "group": {"method": "jtr"}, "vs": {"method": "supervised"}}], "matches none of the 2 runs"),
    ([{"group": {"method": "tpkr"}, "vs": {"method": "supervised"}}], "non-empty name"),
    ([{"name": "x", "group": {"method": "tpkr"}, "vs": {"method": "supervised"}, "on": "edge"}],
     r"^sweep claims\[0\]\.on='edge': must be a task of every run the claim compares \(their tasks: \['depth', "),
])
def test_claims_are_validated_before_any_run(claims, key):
    with pytest.raises(ValueError, match=key):
        load_spec(_spec(claims=claims))


def test_a_claim_on_a_task_reads_a_bare_yaml_on_key(tmp_path):
    """YAML 1.1 reads ``on:`` as true; the claim still names its task (and state.json keeps it as "on")."""
    claims = ('claims:\n  - {name: x, group: {method: tpkr}, vs: {method: supervised}, on: depth}\n')
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in _spec().items()}) + claims)
    assert load_spec(path).claims == [{"name": "x", "group": {"method": "tpkr"}, "vs": {"method": "supervised"},
                                       "on": "depth"}]


@pytest.mark.parametrize("name, tasks", [("positive_control", ["depth", "normal"]),
                                         ("positive_control_semantic", ["semantic", "depth", "normal"])])
def test_shipped_positive_control_compares_every_arm_on_the_starved_normals(name, tasks):
    """Depth on every image, normals on 10 %: supervised, the geometric oracle, the full-label ceiling and every
    method, 5 seeds each, listed seed by seed; one claim on the normals per method and for the oracle."""
    from mtlwb.methods import METHODS

    spec = load_spec(REPO / "sweeps" / f"{name}.yaml")
    runs = spec.runs()
    arms = {(r.effective["method"], r.effective["label_setting"], r.effective["pseudo_labels"]) for r in runs}
    starved = "ratio:normal=0.1"
    assert arms == {(m, starved, "none") for m in METHODS} | {("supervised", "full", "none"),
                                                             ("supervised", starved, "normals_from_depth")}
    assert len(runs) == 5 * len(arms) and all(r.effective["tasks"] == tasks for r in runs)
    assert [r.effective["seed"] for r in runs] == sorted(r.effective["seed"] for r in runs)   # seed-major
    assert all(r.effective["diagnostics"] and r.effective["val_fraction"] == 0.2 for r in runs)
    assert sum(spec.is_baseline(r.params) for r in runs) == 5
    assert all(c["on"] == "normal" and spec.is_baseline(c["vs"]) for c in spec.claims)
    claimed = {c["group"]["method"] for c in spec.claims}
    assert claimed == set(METHODS) and any(c["group"].get("pseudo_labels") == "normals_from_depth"
                                           for c in spec.claims)


def test_shipped_regime_claims_pick_runs():
    spec = load_spec(REPO / "sweeps" / "regime.yaml")
    assert {c["name"] for c in spec.claims} >= {"MTPSL > supervised", "JTR ≥ MTPSL", "TPKR ≥ JTR"}
