"""Where a sweep's runs execute: a pool of run processes on this machine, or tasks on a Dask cluster; Ctrl-C.

Both take the same jobs (``execute_run``'s arguments) and report each result through the sweep's ``record``; the
worker side of a run is ``worker``.

Default parallelism: ``max(1, cpu_count // 2)`` workers, each run's torch limited to ``cpu_count // workers``
threads (``OMP_NUM_THREADS``): two cores per run, because training is compute-bound (more runs than cores only
time-slice) and each run holds ~1 GB. On 2 cores that is one run at a time; ``workers=2`` there only overlaps one
run's papermill start-up (~7 s) with another's training.

Ctrl-C (SIGINT): no further run starts; the runs in flight are stopped (their kernels shut down, SIGKILL after
``STOP_GRACE_S``), keep their last epoch's checkpoint and are recorded as ``interrupted`` (runs not started go back
to ``pending``); then KeyboardInterrupt reaches ``run_sweep``, which raises ``SweepInterrupted``.

Dask (``scheduler="tcp://host:port"``): every run is submitted as a task that executes the notebook on a worker; the
client process keeps the state file as futures complete; on Ctrl-C it sets a dask ``Event`` that the tasks watch (a
task's run executes in a RunProcess of its own, which it stops). On several nodes, start ``dask scheduler`` on one
node and ``dask worker tcp://host:8786 --nworkers K --nthreads 1`` on the others, with the repository (``data/``,
``reports/``, ``notebooks/``) on a shared filesystem mounted at the same path everywhere, and mtlwb installed in each
worker's environment. See the documentation's Sweeps page, "On a dask cluster".
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .worker import INTERRUPTED_ERROR, STOP_GRACE_S, RunProcess, error_text

# Ctrl-C reaches every process of the terminal's process group. The runs therefore execute in processes of their own
# session (``RunProcess``), which the terminal's signal does not reach; the sweep's process alone decides: it stops
# handing out runs, stops the runs in flight (SIGTERM: papermill's client then shuts its kernel down, the trainer's
# checkpoint of the last finished epoch stays), records them as interrupted and raises ``SweepInterrupted``.
POLL_S = 0.2                # how often the sweep looks at its runs and at Ctrl-C


def default_workers() -> int:
    """Runs at a time on this machine when none is asked: one per two cores (see "Default parallelism")."""
    return max(1, (os.cpu_count() or 1) // 2)


class _StopRequests:
    """While active (in the main thread), Ctrl-C sets ``requested`` instead of raising KeyboardInterrupt wherever
    the sweep happens to be (in the middle of writing state.json); a second Ctrl-C sets ``forced``. A SIGINT that
    is ignored (a sweep started in the background with ``&`` or ``nohup``) stays ignored."""

    def __init__(self) -> None:
        self.requested = self.forced = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.forced = self.requested
        self.requested = True

    def __enter__(self) -> _StopRequests:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _job(args: tuple, kw: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """``execute_run``'s arguments as the JSON a RunProcess reads."""
    notebook, run_dir, params, cwd = args
    return {"notebook": notebook, "run_dir": run_dir, "params": params, "cwd": cwd, "threads": threads, **kw}


def _interrupted(result: dict[str, Any]) -> dict[str, Any]:
    """A run stopped by Ctrl-C: whatever it returned (the killed kernel fails its cell), it was interrupted."""
    if result["status"] in ("completed", "pending"):   # finished before the stop reached it, or never started
        return result
    return {**result, "status": "interrupted", "error": INTERRUPTED_ERROR}


def _tick(bar: tqdm, failed: int) -> None:
    bar.update(1)
    bar.set_postfix(failed=failed)


def run_local(jobs: list[tuple[str, tuple, dict]], workers: int, record: Callable[[str, dict], None],
               bar: tqdm) -> None:
    """Run ``jobs`` on at most ``workers`` RunProcesses, handing a run to a process only when it is idle.

    Ctrl-C: no further run starts, the runs in flight are stopped (SIGKILL after ``STOP_GRACE_S``, or at a second
    Ctrl-C) and recorded as interrupted, then KeyboardInterrupt is raised.
    """
    import collections
    import select

    if not jobs:
        return
    workers = max(1, min(workers, len(jobs)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    pending = collections.deque(jobs)
    idle: list[RunProcess] = []
    busy: list[RunProcess] = []
    n_failed = 0
    with _StopRequests() as stop:
        try:
            while pending or busy:
                while pending and not stop.requested and len(busy) < workers:
                    rid, args, kw = pending.popleft()
                    proc = idle.pop() if idle else RunProcess(args[3])
                    proc.submit(rid, _job(args, kw, threads))
                    busy.append(proc)
                    record(rid, {"status": "running"})
                if stop.requested:
                    if not busy:
                        break
                    for proc in busy:
                        proc.stop()
                        if stop.forced or time.monotonic() - proc.stopped_at > STOP_GRACE_S:
                            proc.kill()
                ready, _, _ = select.select(busy, [], [], POLL_S)
                for proc in ready:
                    rid = proc.run_id
                    result = proc.read_result()
                    busy.remove(proc)
                    if proc.alive and proc.stopped_at is None:
                        idle.append(proc)
                    else:
                        proc.close()
                    result = _interrupted(result) if stop.requested else result
                    record(rid, result)
                    if result["status"] != "interrupted":
                        n_failed += result["status"] != "completed"
                        _tick(bar, n_failed)
        finally:
            for proc in idle + busy:
                proc.close()
    if stop.requested:
        raise KeyboardInterrupt


def _dask_task(job: dict[str, Any], stop_event: str) -> dict[str, Any]:
    """One run on a dask worker, executed by a RunProcess (a worker's thread cannot be stopped, a process can).

    The sweep's client sets the dask Event ``stop_event`` on Ctrl-C: a run that has not started then does not
    start (status ``pending``), a run in flight is stopped and reported interrupted.
    """
    from dask.distributed import Event

    stop = Event(stop_event)
    if stop.is_set():
        return {"status": "pending", "error": None, "notebook": None, "seconds": None}
    proc = RunProcess(job["cwd"])
    try:
        proc.submit(Path(job["run_dir"]).name, job)
        while True:
            readable = _wait_readable(proc, 1.0)
            if readable:
                result = proc.read_result()
                return _interrupted(result) if proc.stopped_at is not None else result
            if proc.stopped_at is None and stop.is_set():
                proc.stop()
            elif proc.stopped_at is not None and time.monotonic() - proc.stopped_at > STOP_GRACE_S:
                proc.kill()
    finally:
        proc.close()


def _wait_readable(proc: RunProcess, timeout: float) -> bool:
    import select

    return bool(select.select([proc], [], [], timeout)[0])


def run_dask(jobs: list[tuple[str, tuple, dict]], scheduler: str, record: Callable[[str, dict], None],
              bar: tqdm) -> None:
    """Submit every job to the dask scheduler; Ctrl-C sets the sweep's stop Event, waits for the tasks to come back
    (runs in flight stopped, waiting ones not started) and raises KeyboardInterrupt."""
    import uuid

    from dask.distributed import Client, Event
    from dask.distributed import as_completed as dask_completed
    from dask.distributed import wait as dask_wait

    if not jobs:
        return
    n_failed = 0
    stop_event = f"mtlwb-stop-{uuid.uuid4().hex}"
    with Client(scheduler) as client, _StopRequests() as stop:
        futures = {client.submit(_dask_task, _job(args, kw, None), stop_event, key=f"mtlwb-run-{rid}-{time.time_ns()}",
                                 pure=False): rid for rid, args, kw in jobs}
        left = dict(futures)
        finished = dask_completed(list(futures), with_results=False)
        while not stop.requested and left:
            for fut in finished.next_batch(block=False) if finished.has_ready() else []:
                rid = left.pop(fut)
                result = _future_result(fut)
                record(rid, result)
                n_failed += result["status"] != "completed"
                _tick(bar, n_failed)
            time.sleep(POLL_S)
        if stop.requested:
            Event(stop_event, client=client).set()
            with contextlib.suppress(TimeoutError):   # a lost worker: its runs stay pending
                dask_wait(list(left), timeout=STOP_GRACE_S + 30)
            for fut, rid in left.items():
                record(rid, _interrupted(_future_result(fut)) if fut.done() else {"status": "pending"})
            client.cancel([f for f in left if not f.done()])
            Event(stop_event, client=client).clear()
    if stop.requested:
        raise KeyboardInterrupt


def _future_result(fut: Any) -> dict[str, Any]:
    try:
        return fut.result()
    except Exception as e:  # noqa: BLE001  (worker lost, or the task could not be deserialised)
        return {"status": "failed", "error": error_text(e), "notebook": None, "seconds": None}


__all__ = ["POLL_S", "default_workers", "run_dask", "run_local"]
