"""Shared helpers for the benchmarks: one thread, medians, peak memory, markdown tables.

Why these choices: the machine is shared, so a single run says little — every figure is the median over repeats,
and comparisons are ratios of numbers measured in the same process run. Work is pinned to one thread so numbers do
not depend on how many cores other users leave free. CPU memory is the process's peak resident set (VmHWM, reset
before each measurement through /proc/self/clear_refs, with a malloc_trim so freed heap does not hide a new peak);
CUDA memory is torch's own high-water mark.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy/torch load their BLAS

import ctypes  # noqa: E402
import gc  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # runnable as `python benchmarks/x.py` without installing the package

import torch  # noqa: E402


def pin_threads() -> None:
    """One intra-op thread: numbers then measure work, not how busy the other core is."""
    torch.set_num_threads(1)


def sync(device: torch.device | str | None = None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1,
                   device: torch.device | str | None = None) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones (CUDA-synchronized)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median seconds per callable, timed round-robin so a burst of load from other users hits all of them alike
    (the ratios between them are what the benchmarks report)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# -- memory ---------------------------------------------------------------------------------------------------------

def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Context manager: peak memory of the block in MiB — ``peak`` (absolute) and ``delta`` (above the start).

    CPU: VmHWM after resetting it (Linux); elsewhere falls back to ``resource.getrusage`` (never reset, so
    ``delta`` is then a lower bound). CUDA: ``torch.cuda.max_memory_allocated`` after a reset.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.peak = float("nan")
        self.delta = float("nan")
        self.method = ""

    def __enter__(self) -> PeakMemory:
        _trim_heap()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated() / 2**20
            self.method = "cuda max_memory_allocated"
            return self
        self._reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")          # resets VmHWM to the current RSS
            self._reset = True
        except OSError:
            pass
        rss = _status_kib("VmRSS")
        self._start = (rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
        self.method = "VmHWM (reset)" if self._reset else "ru_maxrss"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            hwm = _status_kib("VmHWM") if self._reset else None
            self.peak = (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
        self.delta = self.peak - self._start


# -- tables -----------------------------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "–"
        if value == 0 or 0.01 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
        return f"{value:.2e}"
    return str(value)


def table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Markdown table of ``rows`` (columns: the given ones, else every key in first-seen order)."""
    if not rows:
        return "_(no rows)_"
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if isinstance(rows[0].get(c), (int, float)) and not isinstance(rows[0].get(c), bool)
                            else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def check(label: str, ok: bool, detail: str) -> str:
    """One line of a target check, e.g. ``- [x] JTR T=8/T=2 ≤ 4.5: 1.7``."""
    return f"- [{'x' if ok else ' '}] {label}: {detail}"


def machine() -> str:
    """What the numbers were measured on (a line for the report)."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f", CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no CUDA"
    return (f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} "
            f"({torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''}){gpu}")


# -- synthetic inputs -------------------------------------------------------------------------------------------------

def label_table(batch: int, num_tasks: int, setting: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """[B, T] long: "onelabel" (sample b labelled for task b mod T, balanced) or "full" (all ones)."""
    if setting == "full":
        return torch.ones(batch, num_tasks, dtype=torch.long, device=device)
    if setting != "onelabel":
        raise ValueError(f"setting={setting!r}: allowed 'onelabel', 'full'")
    lab = torch.zeros(batch, num_tasks, dtype=torch.long)
    lab[torch.arange(batch), torch.arange(batch) % num_tasks] = 1
    return lab.to(device)


def synthetic_targets(tasks, batch: int, height: int, width: int, generator: torch.Generator,
                      device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Ground truth shaped like a loader's: segmentation [B, H, W] long (−1 = ignore), the rest [B, C, H, W]."""
    out = {}
    for t in tasks:
        y = t.kind_object.random_target(t, batch, (height, width), generator)
        out[t.name] = y.to(device)
    return out


def protocol_options(sweep: str | Path) -> dict[str, dict]:
    """Method -> ``method_options`` of the published protocols in a benchmark sweep (``sweeps/benchmarks/*.yaml``):
    its ``include`` entries, and no options for the methods of its grid. The sweeps are the one place these live."""
    import yaml

    spec = yaml.safe_load((ROOT / sweep).read_text())
    options = {m: {} for m in spec.get("grid", {}).get("method", [])}
    for entry in spec.get("include", []):
        options.setdefault(entry["method"], dict(entry.get("method_options", {})))
    return options


def main(doc: str, run: Callable[[bool], list[dict]], report: Callable[[list[dict]], str]) -> None:
    """The command line every benchmark module shares: ``python benchmarks/<module>.py [--quick]``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(report(run(parser.parse_args().quick)))
