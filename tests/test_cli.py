"""The command line as a new user meets it: every refusal is one line naming the parameter, exit 2 (a traceback only
with --debug); ``tasks`` given as a word is refused on every path; a non-torch mask file is named; papermill's
``-p`` for a dict gets the ``-y`` hint; a finished sweep prints its verdicts and main table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from mtlwb import cli
from mtlwb.config import ExperimentConfig
from mtlwb.data.masks import load_mask_file
from mtlwb.sweeps.notebook_params import check_injected, text_for_container_message

REPO = Path(__file__).resolve().parents[1]
TRAIN_NB = REPO / "notebooks" / "train.ipynb"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    """``mtlwb`` as a user runs it: a new process, this checkout's package first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "mtlwb.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300, **kw)


def _refused(result: subprocess.CompletedProcess, command: str, *words: str) -> str:
    """Exit 2 and exactly one stderr line, ``mtlwb <command>: ...``, holding ``words``; no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"mtlwb {command}: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# --- refusals -----------------------------------------------------------------------------------------
def _main(capsys, command: str, *args: str) -> str:
    """``cli.main`` in this process: exit 2 and exactly one stderr line ``mtlwb <command>: ...``."""
    assert cli.main([command, *args]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mtlwb {command}: "), err
    return lines[0]


def test_train_refusals_are_one_line_with_exit_2(tmp_path, capsys):
    line = _main(capsys, "train", "--epoch", "3")
    assert "unknown option '--epoch'; did you mean --epochs?" in line and "--lr_schedule" in line
    assert "method='mtl++': allowed" in _main(capsys, "train", "--method", "mtl++")
    line = _main(capsys, "train", "--tasks", "semantic")
    assert "tasks='semantic': must be a list of task names" in line and "'depth'" in line
    assert "--epochs: needs a value" in _main(capsys, "train", "--epochs")
    assert "--epochs: needs a value" in _main(capsys, "train", "--epochs", "--lr", "0.1")
    assert "nowhere" in _main(capsys, "train", "--data_root", str(tmp_path / "nowhere"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert "is a file, not a folder" in _main(capsys, "train", "--run_dir", str(blocker / "run"))
    with pytest.raises(cli.Refused):       # --debug: the exception itself, with its traceback
        cli.main(["train", "--method", "mtl++", "--debug"])


def test_sweep_and_argparse_refusals_are_one_line_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: a: b\ngrid: {method: [supervised]}\n")
    line = _main(capsys, "sweep", str(bad))
    assert f"'{bad}': not valid YAML at line 2, column 15: mapping values are not allowed here" in line
    assert "does not exist" in _main(capsys, "sweep", str(tmp_path / "none.yaml"))
    assert "--workers=0: must be an integer >= 1" in _main(capsys, "sweep", "sweeps/quick.yaml", "--workers", "0")
    assert "unrecognized arguments: --bogus" in _main(capsys, "sweep", "sweeps/quick.yaml", "--bogus")
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", "sweeps/quick.yaml", "--workers", "two"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("mtlwb sweep: argument --workers: invalid")
    words = tmp_path / "words.yaml"
    words.write_text(yaml.safe_dump({"name": "words", "grid": {"method": ["supervised"]},
                                     "fixed": {"tasks": "semantic"}}))
    assert "parameter 'tasks'='semantic' has type str" in _main(capsys, "sweep", str(words))


@pytest.mark.slow
def test_refusals_end_to_end_in_a_new_process(tmp_path):
    _refused(_cli("train", "--tasks", "semantic"), "train", "tasks='semantic'", "must be a list of task names")
    _refused(_cli("train", "--epoch", "3"), "train", "unknown option '--epoch'", "did you mean --epochs?")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: a: b\n")
    _refused(_cli("sweep", str(bad)), "sweep", "not valid YAML at line 2, column 15")
    _refused(_cli("sweep", "sweeps/quick.yaml", "--workers", "two"), "sweep", "--workers", "invalid int value")
    result = _cli("train", "--method", "mtl++", "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr and "method='mtl++'" in result.stderr


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli.main(["sweep", "sweeps/quick.yaml", "--root", str(blocker / "sweeps")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mtlwb sweep: --root=") and "is a file, not a folder" in err
    assert blocker.read_text() == ""
    # a read-only file system: os.access says so, for root as well
    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_access = os.access
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "access", lambda path, mode: Path(path) != readonly and real_access(path, mode))
        assert cli.main(["train", "--run_dir", str(readonly / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtlwb train: run_dir=") and "cannot write in" in err and "read-only" in err
    assert not (readonly / "run").exists()


def test_an_os_error_during_the_work_is_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    import errno

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x" / "state.json"))

    monkeypatch.setattr("mtlwb.sweeps.run.run_sweep", read_only)
    assert cli.main(["sweep", "sweeps/quick.yaml", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"mtlwb sweep: cannot write or read '{tmp_path / 'x' / 'state.json'}': Read-only file system"


# --- tasks given as a word -----------------------------------------------------------------------------------
@pytest.mark.parametrize("tasks", ["semantic", "depth", 5, {"semantic": 1}])
def test_tasks_must_be_a_list_not_a_word_split_into_letters(tasks):
    with pytest.raises(ValueError, match=r"tasks=.*: must be a list of task names.*allowed names \['semantic'"):
        ExperimentConfig(tasks=tasks)
    assert ExperimentConfig(tasks=("semantic", "depth")).tasks == ["semantic", "depth"]


def test_tasks_as_text_in_a_sweep_is_refused_before_any_run():
    from mtlwb.sweeps.spec import load_spec

    spec = {"name": "t", "notebook": str(TRAIN_NB), "fixed": {"tasks": "semantic"}, "grid": {"method": ["jtr"]}}
    with pytest.raises(ValueError, match=r"fixed: parameter 'tasks'='semantic' has type str.*expects list"):
        load_spec(spec)


# --- papermill's -p for a list or a dict --------------------------------------------------------------------
def _papermill_namespace(injected: str, values: dict) -> dict:
    parameters = nbformat.read(TRAIN_NB, as_version=4).cells[1].source
    return {"_ih": ["", parameters, injected, "check_injected(...)"], **values}


def test_a_dict_or_list_given_as_text_gets_the_papermill_y_hint():
    known = list(ExperimentConfig().to_dict()) + ["reuse_finished_run", "finished_runs_dir"]
    text = '{"use_tc": false}'
    with pytest.raises(ValueError) as e:
        check_injected(known, _papermill_namespace(f"# Parameters\nmethod_options = {text!r}\n",
                                                   {"method_options": text}))
    assert str(e.value) == (f"parameter 'method_options'='{text}' is text, but method_options is a dict (default "
                            "{}); papermill's -p passes text: give a dict with -y, e.g. -y 'method_options: "
                            f"{text}'")
    with pytest.raises(ValueError, match=r"tasks is a list.*-y 'tasks: \[\"semantic\", \"depth\", \"normal\"\]'"):
        check_injected(known, _papermill_namespace("# Parameters\ntasks = 'semantic'\n", {"tasks": "semantic"}))
    # the dict itself (-y), and a text parameter given as text, pass
    check_injected(known, _papermill_namespace("# Parameters\nmethod_options = {'use_tc': False}\n",
                                               {"method_options": {"use_tc": False}}))
    check_injected(known, _papermill_namespace("# Parameters\nmethod = 'jtr'\n", {"method": "jtr"}))
    assert text_for_container_message("lr", "0.1", 0.001) is None


# --- mask files that are not of their suffix's format ------------------------------------------------------
@pytest.mark.parametrize("suffix, expected", [(".pt", "torch.save"), (".pth", "torch.save"),
                                              (".npy", "numpy.save")])
def test_a_text_file_as_a_mask_file_is_named_with_the_expected_format(tmp_path, suffix, expected):
    path = tmp_path / f"mask{suffix}"
    path.write_text("epochs: 3\nthis is not a mask\n")
    with pytest.raises(ValueError) as e:
        load_mask_file(path, 10, ["semantic", "depth"])
    message = str(e.value)
    assert message.startswith(f"mask file '{path}': cannot read it") and expected in message
    assert "\n" not in message and "KeyError" not in message


def test_a_numpy_file_named_pt_is_refused_as_not_a_torch_file(tmp_path):
    import numpy as np

    path = tmp_path / "mask.pt"
    with open(path, "wb") as f:
        np.save(f, np.ones((10, 2), np.float32))
    with pytest.raises(ValueError, match=r"mask.pt': cannot read it \(not a torch file.*expected a torch file"):
        load_mask_file(path, 10, ["semantic", "depth"])


def test_cli_train_names_the_mask_file(tmp_path, capsys):
    path = tmp_path / "settings.pt"
    path.write_text("epochs: 3\n")
    line = _main(capsys, "train", "--label_setting", str(path), "--data_root", "data/scenes-64x80",
                 "--train_samples", "8", "--run_dir", str(tmp_path / "run"))
    assert f"mask file '{path}': cannot read it (not a torch file" in line and "labels_weights" in line


# --- what a finished sweep prints --------------------------------------------------------------------------
TASKS = [{"name": "depth", "kind": "depth", "channels": 1, "primary_metric": "abs_err", "lower_is_better": True}]


def _fake_run_local(jobs, workers, record, bar):
    """Every run 'completes' at once with a metrics.json as the trainer writes it (depth error by method, seed)."""
    for rid, (_, run_dir, params, _), kw in jobs:
        out = Path(run_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "train.ipynb").write_text("{}")
        error = {"supervised": 1.0, "tpkr": 0.8}[params["method"]] + 0.01 * params["seed"]
        (out / "metrics.json").write_text(json.dumps({
            "status": "completed", "config": kw["expected_config"], "tasks": TASKS,
            "label_split": {"source": "generated", "setting": "onelabel", "mask_seed": 0, "fallback": False},
            "final": {"depth": {"abs_err": error}}}))
        record(rid, {"status": "completed", "error": None, "notebook": str(out / "train.ipynb"), "seconds": 0.0})


def test_a_finished_sweep_prints_its_verdicts_and_main_table(tmp_path, capsys, monkeypatch):
    import mtlwb.sweeps.run as sweep_module

    monkeypatch.setattr(sweep_module, "run_local", _fake_run_local)
    spec = {"name": "printed", "notebook": str(TRAIN_NB), "baseline": {"method": "supervised"},
            "fixed": {"train_samples": 16, "epochs": 1}, "grid": {"method": ["supervised", "tpkr"], "seed": [0, 1, 2]},
            "claims": [{"name": "TPKR > supervised", "group": {"method": "tpkr"}, "vs": {"method": "supervised"}}]}
    path = tmp_path / "printed.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert cli.main(["sweep", str(path), "--root", str(tmp_path), "--no-report"]) == 0
    out = capsys.readouterr().out
    summary = (tmp_path / "printed" / "summary.md").read_text()
    head = cli.summary_head(tmp_path / "printed" / "summary.md")
    assert head in out
    assert "claim TPKR > supervised" in head and "**" not in head            # the verdict, without markdown
    table_header = next(line for line in summary.splitlines() if line.startswith("|"))
    assert table_header in head and "Δ_MTL vs method=supervised" in table_header
    assert "## " not in head and len(head.splitlines()) < len(summary.splitlines())


def _unstarted_run_local(jobs, workers, record, bar):
    """No run starts (each is handed back pending, as an executor that stops early does): nothing to report."""
    for rid, _, _ in jobs:
        record(rid, {"status": "pending", "error": None, "notebook": None, "seconds": 0.0})


def test_a_sweep_with_no_finished_run_says_the_report_is_not_rendered(tmp_path, capsys, monkeypatch):
    import mtlwb.sweeps.run as sweep_module

    monkeypatch.setattr(sweep_module, "run_local", _unstarted_run_local)
    spec = {"name": "failing", "notebook": str(TRAIN_NB), "baseline": {"method": "supervised"},
            "fixed": {"train_samples": 16, "epochs": 1}, "grid": {"method": ["supervised"], "seed": [0]}}
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(spec))
    cli.main(["sweep", str(path), "--root", str(tmp_path)])                       # returns: no ValueError raised
    err = capsys.readouterr().err
    assert "report: not rendered: sweep_dir=" in err and "no finished runs" in err and "Traceback" not in err


# --- papermill as a user runs it: -p gives text ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name, text, hint", [
    ("tasks", "semantic", "give a list with -y"),
    ("method_options", '{"use_tc": false}', """give a dict with -y, e.g. -y 'method_options: {"use_tc": false}'"""),
])
def test_papermill_p_of_a_list_or_dict_is_refused_with_the_y_hint(tmp_path, name, text, hint):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(TRAIN_NB), str(tmp_path / "out.ipynb"), parameters={name: text, "method": "tpkr"},
                            kernel_name="python3", progress_bar=False, cwd=str(REPO))
    assert e.value.ename == "ValueError" and f"parameter {name!r}={text!r} is text" in e.value.evalue
    assert hint in e.value.evalue


# --- local kernels ------------------------------------------------------------------------------------------
def test_local_kernels_are_given_unix_sockets_with_a_short_unique_path():
    from mtlwb.sweeps.notebooks import local_kernel_config

    a, b = local_kernel_config(), local_kernel_config()
    if os.name != "posix":
        pytest.skip("no Unix domain sockets here: kernels stay on TCP")
    assert a.KernelManager.transport == "ipc" and a.KernelManager.ip != b.KernelManager.ip
    assert len(a.KernelManager.ip) + len("-99999") < 100          # a Unix socket path has ~104 bytes


@pytest.mark.slow
def test_a_notebook_run_uses_ipc_and_prints_no_tcp_warning(tmp_path):
    """What a sweep's runs and its report do (notebook_runner.execute), in a process of its own to see its stderr."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from ipykernel.kernelapp import IPKernelApp\n"
                                  "print(IPKernelApp.instance().transport)")])
    nbformat.write(nb, tmp_path / "in.ipynb")
    code = (f"from mtlwb.sweeps.notebooks import execute; execute({str(tmp_path / 'in.ipynb')!r}, "
            f"{str(tmp_path / 'out.ipynb')!r}, progress=False)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "without encryption" not in result.stdout + result.stderr
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[-1].outputs[0]["text"].strip() == "ipc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ipynb", "out.ipynb"]   # no socket files left here
