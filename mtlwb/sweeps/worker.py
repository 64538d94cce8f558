"""One run, executed in a process of its own: its notebook into its folder, with its inputs frozen.

Why run processes: papermill/jupyter_client are not safe when several kernels start concurrently from one process
(port and ZMQ races), so every run executes in a process of its own (``RunProcess``, given a run only when idle, in
a session of its own so that a terminal's Ctrl-C reaches the sweep's process alone, which then stops them: see
``executors``); kernel start-up is additionally serialised per machine with a file lock (held until the first cell
runs), closing the window in which two kernels could be handed the same free port (TCP; on POSIX the kernels talk
over Unix domain sockets, see ``notebooks.local_kernel_config``). A run process whose sweep process is killed stops
its run as well.

Frozen inputs: a sweep executes a snapshot of its notebook taken when it starts (``<sweep>/.notebook-<hash>.ipynb``),
so saving the notebook in JupyterLab while a sweep runs changes nothing in it; and each run first checks that mtlwb's
source is the one the sweep started with (``code_fingerprint``). A run whose code changed under it is not executed:
it fails at once with that reason (nothing of it is lost; running the sweep again resumes it with the new code),
since its numbers would come from another program than its neighbours'.

Failure isolation: ``execute_run`` never raises; a failing run is a result (status, error, path of its partial
notebook) that the sweep records before it goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from ..core.io import atomic_write_bytes
from ..experiment.files import KERNEL_LOG, METRICS, RUN_NOTEBOOK
from ..experiment.record import read_record
from .run_ids import config_differences, differences_text

STOP_GRACE_S = 10.0         # after SIGTERM, how long a run process gets before SIGKILL
INTERRUPTED_ERROR = "interrupted (Ctrl-C); the next run of the sweep resumes it from its last finished epoch"


# --- executing one run ---------------------------------------------------------------------------------
KERNEL_LOCK = Path(tempfile.gettempdir()) / f"mtlwb-kernel-start-{os.getuid()}.lock"  # per machine and user


class _KernelStartLock:
    """Machine-wide lock held from kernel launch until its first cell runs (flock: threads and processes)."""

    def __init__(self, path: Path = KERNEL_LOCK) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self, **_: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def code_fingerprint(package: Path | None = None) -> str:
    """A hash of every source file of the imported mtlwb package (or of ``package``; relative path and bytes): equal
    in the sweep's client and in its workers exactly when both run the same code."""
    package = package or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def snapshot_notebook(notebook: str | Path, sweep_dir: Path) -> Path:
    """A copy of ``notebook`` in the sweep folder, named by its content hash (written atomically): the sweep runs
    the copy, so an edit of the notebook while the sweep runs does not reach its later runs."""
    data = Path(notebook).read_bytes()
    path = sweep_dir / f".notebook-{hashlib.sha256(data).hexdigest()[:12]}.ipynb"
    if not path.is_file():
        atomic_write_bytes(path, data)
    return path


def execute_run(notebook: str, run_dir: str, params: dict[str, Any], cwd: str,
                threads: int | None = None, own_process: bool = False,
                expected_config: dict[str, Any] | None = None, code: str | None = None) -> dict[str, Any]:
    """Execute one run's notebook into ``run_dir``; never raises (the error is the result).

    ``own_process``: this process exists for this run (a RunProcess), so its stdout and stderr, which the
    kernel inherits, go to ``<run_dir>/kernel.log`` instead of interleaving with the progress bar.
    ``expected_config``: the effective config the run was given; a record that holds another one (a notebook
    that overrides a parameter) makes the run fail, naming the fields, since its numbers are not the ones asked for.
    ``code``: the sweep's ``code_fingerprint()`` at its start; another one here fails the run before it starts.
    """
    from .notebooks import execute

    if code is not None and code != code_fingerprint():
        return {"status": "failed", "notebook": None, "seconds": 0.0,
                "error": ("not run: mtlwb's source code changed after this sweep started (its finished runs used the "
                          "old code); run the sweep again to resume the remaining runs with the new code")}

    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)  # inherited by the kernel, read when torch starts
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    if own_process:
        log = os.open(out / KERNEL_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for fd in (1, 2):
            os.dup2(log, fd)
        os.close(log)
    output = out / RUN_NOTEBOOK
    started = time.time()
    lock = _KernelStartLock()
    try:
        lock.acquire()
        execute(notebook, output, {**params, "run_dir": str(out), "progress": False}, cwd=cwd, progress=False,
                on_cell_start=lock.release)
        status, error = "completed", None
        if (out / METRICS).is_file():
            record = read_record(out)
            diff = config_differences(record["config"], expected_config) if expected_config else {}
            if record.get("status") != "completed":
                status, error = "failed", f"metrics.json status={record.get('status')!r}: {record.get('error')}"
            elif diff:
                status, error = "failed", (f"the notebook ran another config than the sweep gave it "
                                           f"({differences_text(diff)})")
    except Exception as e:  # noqa: BLE001  (isolation: every failure becomes a recorded result)
        status, error = "failed", error_text(e)
    finally:
        lock.release()
    return {"status": status, "error": error, "notebook": str(output), "seconds": round(time.time() - started, 2)}


def error_text(e: BaseException) -> str:
    """A failed run's error in one line: the exception raised inside the notebook (papermill's), else type: message."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:  # papermill's PapermillExecutionError: the exception raised inside the notebook
        return f"{ename}: {evalue} (cell {getattr(e, 'exec_count', '?')})"
    text = f"{type(e).__name__}: {e}"
    return text if str(e) else "".join(traceback.format_exception_only(e)).strip()


# --- the process that executes runs ------------------------------------------------------------------------
def _package_parent() -> str:
    return str(Path(__file__).resolve().parents[2])


class RunProcess:
    """A Python process, in a session of its own, that executes the runs it is given one at a time
    (:func:`run_worker`): one JSON job per line on its stdin, one JSON result per line on its stdout.

    It imports this copy of mtlwb (``PYTHONPATH``), so it runs the code the sweep checked. Nothing is queued in it:
    a job is written only to an idle process. ``stop`` asks it to end its run (SIGTERM), ``kill`` makes sure.
    """

    def __init__(self, cwd: str) -> None:
        import subprocess
        import sys

        paths = [_package_parent(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
        self.proc = subprocess.Popen([sys.executable, "-c", "from mtlwb.sweeps.worker import run_worker; run_worker()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd, env=env, text=True,
                                     start_new_session=True)
        self.run_id: str | None = None
        self.stopped_at: float | None = None

    def submit(self, run_id: str, job: dict[str, Any]) -> None:
        self.run_id = run_id
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def fileno(self) -> int:   # for select: readable when the result line (or the end of the process) is there
        return self.proc.stdout.fileno()

    def read_result(self) -> dict[str, Any]:
        """The run's result (call when readable); a process that ended without one gives a failed result."""
        line = self.proc.stdout.readline()
        self.run_id = None
        if line:
            return json.loads(line)
        code = self.proc.wait()
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return {"status": "failed", "error": f"the run's process {how} (its kernel.log may say why)",
                "notebook": None, "seconds": None}

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        import signal

        if self.stopped_at is None and self.alive:
            self.stopped_at = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()

    def close(self) -> None:
        """End of input: an idle process exits at once; one still busy is stopped."""
        import subprocess

        with contextlib.suppress(OSError):   # BrokenPipeError: it has ended already
            self.proc.stdin.close()
        if self.run_id is not None:
            self.stop()
        try:
            self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
        self.proc.stdout.close()


class _Stop(BaseException):
    """Raised in a run process by SIGTERM: it unwinds papermill, whose exit path shuts the kernel down (papermill's
    client installs no signal handler of its own; SIGTERM's default would leave the kernel behind)."""


def _raise_stop_once(signum: int, frame: Any) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a second SIGTERM must not interrupt the kernel's shutdown
    raise _Stop


def run_worker() -> None:
    """A :class:`RunProcess`: execute each job read from stdin, write its result as one line to stdout.

    The result channel is the original stdout, kept apart: whatever else this process or its kernel prints goes to
    the run's ``kernel.log``. SIGTERM ends the run in flight (its kernel is shut down, the checkpoint of its last
    finished epoch stays) and the process. When the sweep's process dies (SIGKILL), this one stops too (SIGTERM to
    itself) instead of computing for nobody.
    """
    import signal
    import sys
    import threading

    results = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    parent = os.getppid()

    def stop_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, _raise_stop_once)
    threading.Thread(target=stop_with_parent, daemon=True).start()
    with contextlib.suppress(_Stop):
        for line in sys.stdin:
            job = json.loads(line)
            try:
                result = execute_run(**job, own_process=True)
            except _Stop:
                result = {"status": "interrupted", "error": INTERRUPTED_ERROR, "seconds": None,
                          "notebook": str(Path(job["run_dir"]) / RUN_NOTEBOOK)}
                results.write(json.dumps(result) + "\n")
                results.flush()
                return
            results.write(json.dumps(result) + "\n")
            results.flush()


__all__ = ["INTERRUPTED_ERROR", "KERNEL_LOCK", "STOP_GRACE_S", "RunProcess", "code_fingerprint", "error_text",
           "execute_run", "run_worker", "snapshot_notebook"]
