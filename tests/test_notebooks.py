"""Notebooks as a person and plain papermill use them: mistyped parameters refused, finished runs reused, and every
notebook started the way JupyterLab starts its kernel (cwd = notebooks/) finding what ``make run`` produced."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import nbformat
import pytest
import torch

import mtlwb
from mtlwb.experiment.reuse import (
    choose_run,
    config_differences,
    find_finished_run,
    is_finished,
    notebook_run,
    train_or_load,
)
from mtlwb.sweeps.notebook_params import (
    TRAIN_NOTEBOOK_ONLY,
    check_cell_source,
    check_injected,
    injected_names,
    parameters_injected,
)
from mtlwb.sweeps.notebooks import check_parameters, notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["train", "dataset_explorer", "joint_latent", "task_affinity", "diagnostics", "ablation_report"]
# per notebook: a mistyped name and the parameter difflib must suggest for it
TYPOS = {"train": ("epoch", "epochs"), "dataset_explorer": ("indice", "indices"),
         "joint_latent": ("perplexty", "perplexity"), "task_affinity": ("image_idx", "image_index"),
         "diagnostics": ("diagnostic_probe", "diagnostics_probe"),
         "ablation_report": ("sweepdir", "sweep_dir")}


def _papermill_history(injected: str, known_cell: str = "epochs = 1\n") -> dict:
    """A kernel namespace as papermill leaves it: parameters cell, injected cell, then the running check cell."""
    return {"_ih": ["", known_cell, injected, "check_injected([...], globals())"]}


# --- the check itself ----------------------------------------------------------------------------------------

def test_unknown_injected_name_is_refused_with_the_closest_known_name():
    with pytest.raises(ValueError) as e:
        check_injected(["epochs", "lr"], _papermill_history("# Parameters\nepoch = 2\n"))
    assert str(e.value) == "unknown notebook parameter 'epoch'; did you mean 'epochs'? known: ['epochs', 'lr']"
    with pytest.raises(ValueError, match=r"parameters 'epoch' \(did you mean 'epochs'\?\), 'zzz'; known"):
        check_injected(["epochs", "lr"], _papermill_history("# Parameters\nepoch = 2\nzzz = {'a': [1]}\n"))
    with pytest.raises(ValueError, match=r"unknown notebook parameter 'zzz'; known: \['epochs'\]"):
        check_injected(["epochs"], _papermill_history("# Parameters\nzzz = 1\n"))


def test_known_names_and_no_injection_pass():
    check_injected(["epochs", "lr"], _papermill_history('# Parameters\nepochs = 2\nlr = 0.1\n'))
    # papermill's own --inject-paths names are not the notebook's parameters
    check_injected(["epochs"], _papermill_history('# Parameters\nepochs = 2\nPAPERMILL_INPUT_PATH = "a.ipynb"\n'))
    # JupyterLab: the previous cell is a person's own, whatever it assigns; outside IPython there is no history
    check_injected(["epochs"], _papermill_history("experiment = 1\nconfig = 2\n"))
    check_injected(["epochs"], {"_ih": ["", "check_injected(...)"]})
    check_injected(["epochs"], {"epoch": 2})
    assert injected_names(_papermill_history("# Parameters\nepoch = 2\nlr: float = 1.0\n")) == ["epoch", "lr"]


def _check_cell(nb) -> tuple[int, list[str]]:
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    cell = nb.cells[at + 1]
    call = next(n for n in ast.walk(ast.parse(cell.source)) if isinstance(n, ast.Call)
                and getattr(n.func, "id", None) == "check_injected")
    return at + 1, ast.literal_eval(call.args[0])


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_checks_exactly_its_parameters_first(name):
    path = ROOT / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    at, names = _check_cell(nb)
    assert names == list(notebook_parameters(path))
    assert all(c.cell_type != "code" for c in nb.cells[:at - 1])      # nothing runs before parameters + check
    assert nb.cells[at].source == check_cell_source(nb.cells[at - 1].source)


def test_train_notebook_parameters_are_exactly_the_config_fields_plus_how_to_obtain_the_run():
    """Every config field is a parameter (a sweep can set each one, and the notebook builds its config from all of
    them: ExperimentConfig.from_parameters), and nothing else but how the notebook obtains its run."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(mtlwb.ExperimentConfig)}
    defaults = notebook_parameters(ROOT / "notebooks" / "train.ipynb")
    assert set(defaults) == fields | TRAIN_NOTEBOOK_ONLY and not TRAIN_NOTEBOOK_ONLY & fields
    config = mtlwb.ExperimentConfig.from_parameters(defaults)      # the stored values build the config
    assert config.epochs == defaults["epochs"] and config.normal_crop == defaults["normal_crop"]
    with pytest.raises(ValueError, match=r"notebook parameters \['normal_crop'\] missing"):
        mtlwb.ExperimentConfig.from_parameters({k: v for k, v in defaults.items() if k != "normal_crop"})


def test_a_sweep_refuses_a_training_notebook_that_lacks_a_config_field(tmp_path):
    """Before: a config field the notebook lacked was silently dropped from every run's parameters (its default
    trained while the sweep's id and record said otherwise)."""
    from mtlwb.sweeps.spec import load_spec

    nb = nbformat.read(ROOT / "notebooks" / "train.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("normal_crop ="))
    nbformat.write(nb, tmp_path / "train_old.ipynb")
    with pytest.raises(ValueError, match=r"takes every ExperimentConfig field as a parameter; its parameters cell "
                                         r"lacks \['normal_crop'\]"):
        load_spec({"name": "s", "notebook": str(tmp_path / "train_old.ipynb"), "grid": {"seed": [0]}})


def test_sweep_precheck_suggests_the_closest_name():
    with pytest.raises(ValueError, match=r"'epoch' is not a parameter of train.ipynb; did you mean 'epochs'\?"):
        check_parameters(ROOT / "notebooks" / "train.ipynb", {"epoch": 3})


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_plain_papermill_refuses_a_mistyped_parameter_before_any_work(name, tmp_path):
    import papermill as pm

    typo, suggestion = TYPOS[name]
    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters={typo: 1},
                            cwd=str(tmp_path), progress_bar=False, kernel_name="python3")
    assert e.value.ename == "ValueError"
    assert f"unknown notebook parameter {typo!r}; did you mean {suggestion!r}?" in e.value.evalue
    cells = nbformat.read(out, as_version=4).cells
    injected = next(i for i, c in enumerate(cells) if "injected-parameters" in c.metadata.get("tags", []))
    at = next(i for i, c in enumerate(cells) if i > injected and c.cell_type == "code")
    assert cells[at].source.startswith("# a papermill -p name")     # the first code cell after the injection
    assert [o.output_type for o in cells[at].outputs] == ["error"]
    after = [c for c in cells[at + 1:] if c.cell_type == "code"]
    assert after and all(c.execution_count is None for c in after)   # nothing after the check ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ipynb"]  # no data, no run folder


# --- reusing a finished run (training notebook) ---------------------------------------------------------------

def _record(path: Path, status: str = "completed", **config) -> None:
    path.mkdir(parents=True)
    cfg = {"dataset": "scenes", "tasks": ["semantic", "depth", "normal"], "label_setting": "onelabel",
           "method": "supervised", **config}
    (path / "metrics.json").write_text(json.dumps({"status": status, "config": cfg}))


def test_find_finished_run_takes_only_completed_matching_runs_with_a_checkpoint(tmp_path):
    quick = tmp_path / "quick"
    config = mtlwb.ExperimentConfig(method="jtr", train_samples=64, epochs=1)
    _record(quick / "a-running", status="running", method="jtr")
    (quick / "a-running" / "checkpoint.pt").write_bytes(b"x")
    _record(quick / "b-no-checkpoint", method="jtr")
    _record(quick / "c-other-method", method="tpkr")
    (quick / "c-other-method" / "checkpoint.pt").write_bytes(b"x")
    _record(quick / "d-other-labels", method="jtr", label_setting="randomlabel")
    (quick / "d-other-labels" / "checkpoint.pt").write_bytes(b"x")
    (quick / "e-torn").mkdir()
    (quick / "e-torn" / "metrics.json").write_text('{"status": "compl')
    (quick / "e-torn" / "checkpoint.pt").write_bytes(b"x")
    assert find_finished_run(quick, config) is None
    assert not is_finished(quick / "e-torn") and not is_finished(quick / "a-running")
    _record(quick / "z-jtr", method="jtr", epochs=5)
    (quick / "z-jtr" / "checkpoint.pt").write_bytes(b"x")
    _record(quick / "y-jtr", method="jtr", epochs=5)
    (quick / "y-jtr" / "checkpoint.pt").write_bytes(b"x")
    assert find_finished_run(quick, config) == quick / "y-jtr"          # first by name: deterministic
    assert find_finished_run(tmp_path / "missing", config) is None


def test_train_or_load_uses_the_finished_run_and_trains_otherwise(tiny_config, tmp_path, capsys):
    finished = tiny_config(train_samples=16, eval_samples=8, run_dir=str(tmp_path / "quick" / "run0"))
    record = mtlwb.train(finished)
    wanted = tiny_config(train_samples=8, eval_samples=8, run_dir=str(tmp_path / "mine"))

    exp, loaded = train_or_load(wanted, reuse_from=tmp_path / "quick")
    assert "loaded the finished run" in capsys.readouterr().out
    assert loaded == record and not (tmp_path / "mine").exists()      # nothing trained
    saved = torch.load(tmp_path / "quick" / "run0" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in exp.model.state_dict().items())
    assert config_differences(loaded["config"], wanted) == {"train_samples": (16, 8)}

    other = tiny_config(method="jtr", train_samples=8, eval_samples=8, run_dir=str(tmp_path / "mine"))
    exp, trained = train_or_load(other, reuse_from=tmp_path / "quick")
    assert "no finished run with" in capsys.readouterr().out
    assert trained["run_id"] == other.run_id and (tmp_path / "mine" / "checkpoint.pt").is_file()


def test_notebook_run_reuses_only_a_run_of_the_same_parameters(tiny_config, tmp_path, capsys):
    own = tmp_path / "nb-own"
    calls = []

    def counting_train(config):
        calls.append(config)
        return mtlwb.train(config)

    first = tiny_config(train_samples=8, eval_samples=8, run_dir=str(own))
    assert notebook_run(None, first, counting_train) == own and len(calls) == 1
    assert notebook_run(None, first, counting_train) == own and len(calls) == 1      # same parameters: reused
    stamp = (own / "metrics.json").read_bytes()

    other = tiny_config(train_samples=8, eval_samples=8, epochs=2, run_dir=str(own))   # a stale run in the folder
    assert notebook_run(None, other, counting_train) == own and len(calls) == 2
    assert "held a run of other parameters (epochs=1, wanted 2)" in capsys.readouterr().out
    assert (tmp_path / "nb-own.stale-1" / "metrics.json").read_bytes() == stamp     # moved aside, not deleted
    assert mtlwb.load_record(own)["config"]["epochs"] == 2

    assert notebook_run(str(tmp_path / "nb-own.stale-1"), other, counting_train) == tmp_path / "nb-own.stale-1"
    assert len(calls) == 2                                                            # a given run: shown as it is
    with pytest.raises(ValueError, match="run_dir='.*missing': no finished run there"):
        notebook_run(str(tmp_path / "missing"), other, counting_train)


def test_parameters_injected_means_papermill_was_given_parameters():
    assert parameters_injected(_papermill_history("# Parameters\nepochs = 2\n"))
    assert not parameters_injected(_papermill_history('# Parameters\nPAPERMILL_INPUT_PATH = "a.ipynb"\n'))
    assert not parameters_injected(_papermill_history("epochs = 3\n"))     # a person's own cell in JupyterLab
    assert not parameters_injected({})
    # later cells still see it (the training cell runs several cells after the injected one)
    assert parameters_injected({"_ih": ["", "epochs = 1", "# Parameters\nepochs = 2\n", "a = 1", "b = 2"]})


def test_choose_run_shows_make_runs_run_only_for_the_stored_parameters(tiny_config, tmp_path):
    quick = tmp_path / "quick"
    mtlwb.train(tiny_config(train_samples=16, eval_samples=8, run_dir=str(quick / "run0")))
    wanted = tiny_config(train_samples=8, eval_samples=8, run_dir=str(tmp_path / "mine"))
    found, text = choose_run(wanted, None, quick, injected=False)                 # opened in JupyterLab
    assert found == quick / "run0"
    assert text.startswith(f"showing the finished run {str(quick / 'run0')!r} (1 epoch(s) on 16 training images) "
                           "instead of training 1 epoch(s) on 8 training images")
    assert choose_run(wanted, True, quick, injected=True)[0] == quick / "run0"
    found, text = choose_run(wanted, None, quick, injected=True)                  # papermill -p: what was asked
    assert found is None and text.endswith("; parameters were given to papermill)")
    found, text = choose_run(wanted, False, quick, injected=False)
    assert found is None and "reuse_finished_run=False" in text
    found, text = choose_run(tiny_config(method="jtr"), None, quick, injected=False)   # none of this method
    assert found is None and "no finished run with" in text and "run `make run` first" in text
    assert choose_run(wanted, None, tmp_path / "missing", injected=False)[0] is None


# --- the notebooks opened in JupyterLab after `make run` --------------------------------------------------------

def _fresh_project(root: Path, tiny_root: Path) -> Path:
    """A copy of the project as a fresh clone has it once the data is generated (no reports/)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    (root / "mtlwb").symlink_to(ROOT / "mtlwb", target_is_directory=True)
    (root / "data").mkdir()
    (root / "data" / "scenes-64x80").symlink_to(tiny_root, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def project_after_make_run(tiny_root, tmp_path_factory) -> Path:
    """A copy of the project as ``make run`` leaves it: data/scenes-64x80 and a finished reports/sweeps/quick."""
    root = _fresh_project(tmp_path_factory.mktemp("project"), tiny_root)
    quick = root / "reports" / "sweeps" / "quick"
    config = mtlwb.ExperimentConfig(data_root=str(tiny_root), method="supervised", epochs=1, batch_size=8,
                                    train_samples=16, eval_samples=8, progress=False, device="cpu",
                                    run_dir=str(quick / "supervised-run"))
    mtlwb.train(config)
    state = {"name": "quick", "baseline": {"method": "supervised"},
             "runs": {"supervised-run": {"params": {"method": "supervised", "seed": 0}, "status": "completed",
                                         "error": None, "notebook": "supervised-run/train.ipynb"}}}
    (quick / "state.json").write_text(json.dumps(state))
    return root


def _outputs(nb) -> str:
    return "\n".join(o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
                     + o.get("data", {}).get("text/markdown", "")
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)


# per notebook: parameters, the words its output shows when its defaults found what they look for, and the file
# (relative to the project root) that it reads or writes there
FOUND = {"train": ({}, "loaded the finished run 'reports/sweeps/quick/supervised-run'",
                   "reports/sweeps/quick/supervised-run/metrics.json"),
         "ablation_report": ({}, "**Sweep `quick`**: 1 run(s) (1 completed); baseline **method=supervised**",
                             "reports/sweeps/quick/state.json"),
         "dataset_explorer": ({}, "24 training images", "data/scenes-64x80/meta.json"),
         "task_affinity": ({}, "'method': 'tpkr'", "reports/runs/nb-task-affinity/checkpoint.pt"),
         "joint_latent": ({}, "'method': 'jtr'", "reports/runs/nb-joint-latent/checkpoint.pt"),
         "diagnostics": ({}, "auxiliary terms: ['mtpsl'] | read the predictions: True",
                         "reports/runs/nb-diagnostics/checkpoint.pt")}


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_started_in_notebooks_folder_finds_what_make_run_wrote(name, project_after_make_run, tmp_path):
    import papermill as pm

    root = project_after_make_run
    params, expected, path = FOUND[name]
    out = tmp_path / f"{name}.ipynb"
    source = root / "notebooks" / f"{name}.ipynb"
    # the names `papermill --inject-paths` adds pass the check
    paths = {"PAPERMILL_INPUT_PATH": str(source), "PAPERMILL_OUTPUT_PATH": str(out)}
    pm.execute_notebook(str(source), str(out), parameters={**params, **paths}, cwd=str(root / "notebooks"),
                        progress_bar=False, kernel_name="python3")
    text = _outputs(nbformat.read(out, as_version=4))
    assert expected in text, text[-2000:]
    assert (root / path).is_file()
    assert not (root / "notebooks" / "reports").exists() and not (root / "notebooks" / "data").exists()


def _first_output(nb) -> str:
    return next(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
def test_training_notebook_says_first_which_run_it_shows(project_after_make_run, tiny_root, tmp_path):
    """Opened after `make run` (no parameters given): make run's run of the method, said in the first output. On a
    fresh clone (what nbval sees): the stored tiny run is trained, said so. Under papermill -p: what was asked."""
    import papermill as pm

    def run(root: Path, name: str, **params) -> str:
        out = tmp_path / f"{name}.ipynb"
        pm.execute_notebook(str(root / "notebooks" / "train.ipynb"), str(out), parameters=params,
                            cwd=str(root / "notebooks"), progress_bar=False, kernel_name="python3")
        return _first_output(nbformat.read(out, as_version=4))

    first = run(project_after_make_run, "after_make_run")
    assert first.startswith("showing the finished run 'reports/sweeps/quick/supervised-run' (1 epoch(s) on 16 "
                            "training images) instead of training 1 epoch(s) on 64 training images"), first
    runs = project_after_make_run / "reports" / "runs"
    assert not list(runs.glob("supervised-*"))                                          # nothing trained

    first = run(project_after_make_run, "given", epochs=1, train_samples=8, eval_samples=8)
    assert first.startswith("training the parameters of this notebook (1 epoch(s) on 8 training images; "
                            "parameters were given to papermill)"), first

    fresh = _fresh_project(tmp_path / "fresh", tiny_root)
    first = run(fresh, "fresh")
    assert first.startswith("training the parameters of this notebook (1 epoch(s) on 64 training images): no "
                            "finished run with dataset='scenes'"), first
    assert "run `make run` first" in first


# --- the .ipynb files are the notebooks' one source: their parameters cells, and that they stay thin -------------
ANALYSIS_PARAMETERS = {
    "dataset_explorer": ["data_root", "tasks", "label_setting", "settings", "mask_seed", "indices", "hist_images",
                         "style", "second_root", "export_dir"],
    "joint_latent": ["run_dir", "method", "label_setting", "epochs", "train_samples", "eval_samples", "n_images",
                     "pool", "positions", "perplexity", "export_dir"],
    "task_affinity": ["run_dir", "method", "label_setting", "epochs", "train_samples", "eval_samples", "task_prior",
                      "image_index", "grad_batches", "grad_batch_size", "export_dir"],
    "diagnostics": ["run_dir", "method", "tasks", "label_setting", "epochs", "train_samples", "eval_samples",
                    "diagnostics_probe", "export_dir"],
    "ablation_report": ["sweep_dir", "select"],
}
# modules a notebook may import: the library, and what displays its results
NOTEBOOK_IMPORTS = {"mtlwb", "pathlib", "numpy", "pandas", "IPython"}


def _parameters_cell(name: str):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


@pytest.mark.parametrize("name", sorted(ANALYSIS_PARAMETERS))
def test_each_analysis_notebook_has_its_parameters_as_tiny_literals(name):
    """Each analysis notebook's parameters cell, parsed: exactly the expected names, in order, each one plain
    assignment of a literal (what papermill and a sweep can replace), with defaults small enough for nbval."""
    tree = ast.parse(_parameters_cell(name).source)
    assigned = []
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        ast.literal_eval(node.value)                                   # a literal, not a computed value
        assigned.append(node.targets[0].id)
    assert assigned == ANALYSIS_PARAMETERS[name]
    values = notebook_parameters(ROOT / "notebooks" / f"{name}.ipynb")
    assert values.get("epochs", 0) <= 3 and (values.get("train_samples") or 0) <= 64


def test_the_training_notebooks_parameters_are_literal_assignments():
    """Every line of train.ipynb's parameters cell assigns a literal (its names are the config's fields: above)."""
    tree = ast.parse(_parameters_cell("train").source)
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        ast.literal_eval(node.value)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_thin(name):
    """A notebook shows and calls; what it computes lives in mtlwb, where it is tested: no function or class of its
    own, imports only from mtlwb and what displays its results."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)), \
                f"{name}: define it in mtlwb instead:\n{cell.source}"
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module] if isinstance(node, ast.ImportFrom) else [])
            assert all(m.split(".")[0] in NOTEBOOK_IMPORTS for m in modules), f"{name} imports {modules}"


def test_store_notebook_rewrites_the_check_cell_from_the_parameters_cell(tmp_path):
    """The notebook is the source: after a person edits its parameters cell, tools/store_notebook.py makes the check
    cell follow (what the removed generators did)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("store_notebook", ROOT / "tools" / "store_notebook.py")
    store_notebook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(store_notebook)
    nb = nbformat.read(ROOT / "notebooks" / "ablation_report.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells[at].source += "\nextra = 1"
    nbformat.write(nb, tmp_path / "edited.ipynb")
    store_notebook.refresh_check_cell(tmp_path / "edited.ipynb")
    _, names = _check_cell(nbformat.read(tmp_path / "edited.ipynb", as_version=4))
    assert names == ["sweep_dir", "select", "extra"]
