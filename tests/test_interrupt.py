"""Ctrl-C as a terminal sends it: a real SIGINT to the process group of ``mtlwb sweep`` (local run processes, and the
dask backend) and of ``mtlwb train``. Within seconds nothing of the run is left running, the run in flight is
recorded as interrupted and stays resumable, nothing queued starts, one line says how to resume (exit 130), and the
same command resumes the run where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TAG = "MTLWB_TEST_INTERRUPT_TAG"          # inherited by every process a command starts: how the test finds them
EPOCHS = 8                                 # the SIGINT lands after epoch 1, so 7 epochs are left: mid-run
QUIET = ("Traceback", "KeyboardInterrupt", "leaked semaphore", "without encryption")

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes through /proc")


def _env(tag: str) -> dict[str, str]:
    return {**os.environ, TAG: tag, "TQDM_DISABLE": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _run_processes(tag: str) -> list[int]:
    """Kernels and run processes started under ``tag`` that are still alive."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:            # gone, or not a process
            continue
        if f"{TAG}={tag}".encode() in environ.split(b"\0") and (b"ipykernel" in cmdline or b"run_worker" in cmdline):
            found.append(int(proc.name))
    return found


def _wait_until(condition, seconds: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def _default_sigint() -> None:
    """SIGINT as in a terminal's foreground job: a test run in the background (``&``, CI) inherits it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_once_a_checkpoint_exists(cmd: list[str], checkpoints: str, root: Path, tag: str):
    """Start ``cmd`` in a session of its own, SIGINT its process group after the first epoch's checkpoint."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(tag), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        assert _wait_until(lambda: any(root.glob(checkpoints)) or proc.poll() is not None, 600), "no epoch in time"
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)        # what Ctrl-C in a terminal does
        sent = time.monotonic()
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _one_line(err: str, prefix: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0]


def _sweep_spec(root: Path) -> Path:
    spec = {"name": "ctrlc", "notebook": str(REPO / "notebooks" / "train.ipynb"), "baseline": {"method": "supervised"},
            "fixed": {"train_samples": 16, "eval_samples": 8, "epochs": EPOCHS, "batch_size": 8,
                      "data_root": str(REPO / "data" / "scenes-64x80")},
            "grid": {"method": ["supervised"], "seed": [0, 1]}}
    path = root / "ctrlc.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _check_sweep_interrupted(root: Path, tag: str, returncode: int, out: str, err: str, seconds: float) -> dict:
    """Everything Ctrl-C must leave behind; returns {run id: its history at the interrupt}."""
    sweep = root / "ctrlc"
    assert returncode == 130, err
    line = _one_line(err, "mtlwb sweep: interrupted: 1 run(s) stopped and recorded as interrupted")
    assert "1 not started; run the same command again to resume sweep ctrlc" in line
    assert not any(word in out + err for word in QUIET), out + err
    assert seconds < 30, f"the sweep took {seconds:.0f}s to stop"
    assert _wait_until(lambda: not _run_processes(tag), 10), f"still running: {_run_processes(tag)}"
    runs = json.loads((sweep / "state.json").read_text())["runs"]
    (stopped,) = [rid for rid, r in runs.items() if r["status"] == "interrupted"]
    (queued,) = [rid for rid, r in runs.items() if r["status"] == "pending"]
    assert not (sweep / queued).exists(), "a queued run started"
    record = json.loads((sweep / stopped / "metrics.json").read_text())
    assert record["status"] == "running" and 1 <= len(record["history"]) < EPOCHS, "the SIGINT must land mid-run"
    import torch

    checkpoint = torch.load(sweep / stopped / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == len(record["history"])                    # resumable from where it stopped
    mtime = (sweep / stopped / "checkpoint.pt").stat().st_mtime_ns
    time.sleep(2)
    assert (sweep / stopped / "checkpoint.pt").stat().st_mtime_ns == mtime and not (sweep / queued).exists()
    assert "without encryption" not in (sweep / stopped / "kernel.log").read_text()   # IPC kernels
    return {stopped: record["history"]}


def _check_sweep_resumed(root: Path, rerun: subprocess.CompletedProcess, before: dict) -> None:
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not any(word in rerun.stdout + rerun.stderr for word in QUIET), rerun.stdout + rerun.stderr
    sweep = root / "ctrlc"
    runs = json.loads((sweep / "state.json").read_text())["runs"]
    assert all(r["status"] == "completed" for r in runs.values()) and len(runs) == 2
    for rid, history in before.items():
        record = json.loads((sweep / rid / "metrics.json").read_text())
        assert record["status"] == "completed" and len(record["history"]) == EPOCHS
        assert record["history"][:len(history)] == history                # resumed, not trained again


def _sweep_cmd(spec: Path, root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mtlwb.cli", "sweep", str(spec), "--root", str(root), "--no-report", *extra]


@pytest.mark.slow
def test_ctrl_c_stops_a_local_sweep_and_the_same_command_resumes(tmp_path):
    tag = uuid.uuid4().hex
    cmd = _sweep_cmd(_sweep_spec(tmp_path), tmp_path, "--workers", "1")
    result = _interrupt_once_a_checkpoint_exists(cmd, "ctrlc/*/checkpoint.pt", tmp_path, tag)
    before = _check_sweep_interrupted(tmp_path, tag, *result)
    rerun = subprocess.run(cmd, cwd=REPO, env=_env(tag), capture_output=True, text=True, timeout=900)
    _check_sweep_resumed(tmp_path, rerun, before)


@pytest.mark.slow
def test_ctrl_c_stops_a_dask_sweep_and_the_same_command_resumes(tmp_path, monkeypatch):
    from dask.distributed import LocalCluster

    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG, tag)              # the cluster's workers, and the runs they start, carry the tag
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        cmd = _sweep_cmd(_sweep_spec(tmp_path), tmp_path, "--dask-scheduler", cluster.scheduler_address)
        result = _interrupt_once_a_checkpoint_exists(cmd, "ctrlc/*/checkpoint.pt", tmp_path, tag)
        before = _check_sweep_interrupted(tmp_path, tag, *result)
        rerun = subprocess.run(cmd, cwd=REPO, env=_env(tag), capture_output=True, text=True, timeout=900)
    _check_sweep_resumed(tmp_path, rerun, before)


@pytest.fixture(scope="module")
def medium_root(tmp_path_factory):
    """Enough images that an epoch lasts long enough to be interrupted in the middle."""
    from mtlwb.data import generate_dataset

    root = tmp_path_factory.mktemp("data") / "scenes-medium"
    generate_dataset(root, n_train=64, n_val=8, height=32, width=40, seed=1, progress=False)
    return root


@pytest.mark.slow
def test_ctrl_c_stops_mtlwb_train_in_one_line_and_the_same_command_resumes(medium_root, tmp_path):
    tag = uuid.uuid4().hex
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "mtlwb.cli", "train", "--data_root", str(medium_root), "--run_dir", str(run_dir),
           "--epochs", str(EPOCHS), "--batch_size", "8", "--method", "supervised", "--progress", "false",
           "--device", "cpu"]
    returncode, out, err, seconds = _interrupt_once_a_checkpoint_exists(cmd, "run/checkpoint.pt", tmp_path, tag)
    assert returncode == 130 and seconds < 30, err
    line = _one_line(err, f"mtlwb train: interrupted; {run_dir} keeps its last finished epoch")
    assert "the same command resumes from it" in line and not any(word in out + err for word in QUIET)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "running" and 1 <= len(record["history"]) < EPOCHS
    rerun = subprocess.run(cmd, cwd=REPO, env=_env(tag), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["status"] == "completed" and resumed["history"][:len(record["history"])] == record["history"]


def test_a_ctrl_c_during_writes_that_belong_together_arrives_after_them():
    from mtlwb.core.io import signals_deferred

    events = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: events.append("ctrl-c"))
    try:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)       # Ctrl-C between the checkpoint and its record
            time.sleep(0.05)
            events.append("record")                   # still written, before the Ctrl-C is handled
        time.sleep(0.05)
        assert events == ["record", "ctrl-c"]
        assert signal.getsignal(signal.SIGINT) is not None and events.count("ctrl-c") == 1
    finally:
        signal.signal(signal.SIGINT, previous)
