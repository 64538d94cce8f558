"""Fault injection: killed runs resume exactly, writes are atomic, a full disk loses nothing, bad input fails early."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mtlwb
from mtlwb.core.io import atomic_write_json, atomic_write_text
from mtlwb.data import generate_dataset
from mtlwb.sweeps.notebooks import check_parameters

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def medium_root(tmp_path_factory):
    """Enough images that an epoch lasts long enough to be killed in the middle."""
    root = tmp_path_factory.mktemp("data") / "scenes-medium"
    generate_dataset(root, n_train=64, n_val=8, height=32, width=40, seed=1, progress=False)
    return root


def _train_cmd(root: Path, run_dir: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "mtlwb.cli", "train", "--data_root", str(root), "--run_dir", str(run_dir),
            "--epochs", str(epochs), "--batch_size", "4", "--method", "jtr", "--lr_step", "1",
            "--progress", "false", "--device", "cpu"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_uninterrupted_numbers(medium_root, tmp_path):
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(_train_cmd(medium_root, killed_dir, 3), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    checkpoint = killed_dir / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in time"
    time.sleep(0.3)                                     # inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    record = json.loads((killed_dir / "metrics.json").read_text())
    assert record["status"] == "running" and len(record["history"]) < 3, "the kill must land before the end"

    resumed = subprocess.run(_train_cmd(medium_root, killed_dir, 3), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean = subprocess.run(_train_cmd(medium_root, clean_dir, 3), cwd=ROOT, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    a = json.loads((killed_dir / "metrics.json").read_text())
    b = json.loads((clean_dir / "metrics.json").read_text())
    assert a["status"] == b["status"] == "completed"
    assert a["final"] == b["final"]
    assert [h["train"] for h in a["history"]] == [h["train"] for h in b["history"]]


_WRITER = """
import sys
from mtlwb.core.io import atomic_write_json
i = 0
while True:
    atomic_write_json(sys.argv[1], {"version": i, "payload": "x" * 400_000})
    i += 1
"""


def test_kill_during_atomic_writes_never_leaves_a_torn_file(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"version": -1, "payload": ""})
    for delay in (0.2, 0.35, 0.5):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=ROOT)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = json.loads(target.read_text())           # parses: never half written
        assert isinstance(data["version"], int)
        assert data["version"] == -1 or len(data["payload"]) == 400_000


def test_full_disk_keeps_the_previous_report(tmp_path, monkeypatch):
    report = tmp_path / "summary.md"
    atomic_write_text(report, "good report\n")
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(report, "new report that does not fit\n")
    monkeypatch.undo()
    assert report.read_text() == "good report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.md"], "no temporary file left behind"


def test_bad_papermill_parameters_are_refused_with_the_key():
    nb = ROOT / "notebooks" / "train.ipynb"
    with pytest.raises(ValueError, match=r"parameter 'epoch' is not a parameter of train.ipynb"):
        check_parameters(nb, {"epoch": 3})
    with pytest.raises(ValueError, match=r"parameter 'epochs'='three' has type str; train.ipynb expects int"):
        check_parameters(nb, {"epochs": "three"})
    with pytest.raises(ValueError, match=r"parameter 'progress'=1 has type int; train.ipynb expects bool"):
        check_parameters(nb, {"progress": 1})
    check_parameters(nb, {"epochs": 2, "lr": 1, "train_samples": None, "method": "jtr"})


def test_unknown_task_and_empty_task_labels_fail_before_training(tiny_config):
    with pytest.raises(ValueError, match=r"tasks=\['semantic', 'albedo'\]"):
        tiny_config(tasks=["semantic", "albedo"])
    with pytest.raises(ValueError, match="no labels"):
        tiny_config(label_setting="ratio:depth=0")


def test_mask_file_with_wrong_n_fails_before_training(tiny_config, tmp_path):
    import torch

    path = tmp_path / "onelabel.pt"
    torch.save({"labels_weights": torch.eye(3)[torch.arange(795) % 3]}, path)
    cfg = tiny_config(label_setting=str(path))
    with pytest.raises(ValueError, match=r"onelabel.pt.*expected \(N, T\) = \(24, 3\)"):
        mtlwb.build_experiment(cfg)


def _write_sweep(path: Path, grid: dict, name: str) -> Path:
    import yaml

    spec = {"name": name, "notebook": str(ROOT / "notebooks" / "train.ipynb"), "baseline": {"method": "supervised"},
            "fixed": {"train_samples": 16, "eval_samples": 8, "epochs": 1, "batch_size": 8,
                      "data_root": str(ROOT / "data" / "scenes-64x80")},
            "grid": grid}
    path.write_text(yaml.safe_dump(spec))
    return path


def _sweep_cmd(spec: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "mtlwb.cli", "sweep", str(spec), "--root", str(root), "--workers", "1",
            "--no-report"]


@pytest.mark.slow
def test_killed_sweep_reruns_only_the_missing_runs(tmp_path):
    spec = _write_sweep(tmp_path / "s.yaml", {"method": ["supervised"], "seed": [0, 1, 2]}, "killme")
    root = tmp_path / "sweeps"
    proc = subprocess.Popen(_sweep_cmd(spec, root), cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    state = root / "killme" / "state.json"
    done: list[str] = []
    while time.time() < deadline and not done:          # the sweep's own record: notebook finished, run recorded
        runs = json.loads(state.read_text())["runs"] if state.exists() else {}
        done = [rid for rid, r in runs.items() if r["status"] == "completed"]
        time.sleep(0.2)
    assert done, "no run completed in time"
    os.killpg(proc.pid, signal.SIGKILL)                  # the whole sweep: runner, workers, kernels
    proc.wait()
    survivors = {rid: (root / "killme" / rid / "metrics.json").stat().st_mtime_ns for rid in done}
    assert len(survivors) < 3, "the kill must land before the end"
    rerun = subprocess.run(_sweep_cmd(spec, root), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    records = {p.parent.name: json.loads(p.read_text()) for p in root.glob("killme/*/metrics.json")}
    assert len(records) == 3 and all(r["status"] == "completed" for r in records.values())
    for run, mtime in survivors.items():                # completed before the kill: not redone
        assert (root / "killme" / run / "metrics.json").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_nan_run_fails_alone_in_a_sweep(tmp_path):
    from mtlwb.sweeps.run import run_sweep

    spec = _write_sweep(tmp_path / "s.yaml", {"method": ["supervised"], "lr": [0.001, 1e30]}, "nan")
    result = run_sweep(spec, workers=1, root=tmp_path / "sweeps", summarize=False)
    assert not result.ok and len(result.failed) == 1
    failed = json.loads(next(p for p in (tmp_path / "sweeps" / "nan").glob("*/metrics.json")
                             if json.loads(p.read_text())["status"] == "failed").read_text())
    assert "became" in failed["error"] and "loss term" in failed["error"]
    assert sum(json.loads(p.read_text())["status"] == "completed"
               for p in (tmp_path / "sweeps" / "nan").glob("*/metrics.json")) == 1
