"""GPU figures in one command: step time, images/s and peak memory of every registered method, and a short run.

``benchmarks/gpu.sh`` (``make bench-gpu``) picks the interpreter, installs what is missing and runs this file; it
can also be run alone: ``python benchmarks/gpu_bench.py [--tiny] [--device cpu] [--methods a,b] ...``.

What it measures, row by row:

- **step rows**: every method in ``mtlwb.methods.METHODS`` (so a method registered later is measured too) with
  the options of its published protocol, read from the benchmark sweep of that size (``sweeps/benchmarks/
  nyuv2.yaml`` at 288×384, NYUv2's 13 classes + depth + normals, batch 8; ``cityscapes.yaml`` at 128×256,
  7 classes + depth, batch 16, its published batch); a method absent from the sweep runs with its defaults. SegNet
  backbone, precision fp32, bf16 and fp16 (``ExperimentConfig.precision``: autocast, and a GradScaler for fp16).
  A step is the trainer's own ``train_epoch`` per batch (augmentation, the method's views, forward, losses,
  backward, optimizer), fed from an in-memory synthetic set (onelabel labels, ``num_workers`` 0): ms/step is the
  wall time of an epoch of measured steps after an epoch of warm-up steps, divided by the steps; peak MiB is
  ``torch.cuda.max_memory_allocated`` over the measured steps (on CPU the process's peak resident set).
- **training rows**: built-in scenes generated at 288×384, then ``mtlwb.experiment.loop.train`` per method for a few
  epochs (evaluated after the last one): seconds per epoch, training images/s of a middle epoch, final metrics.

Guards: rows run in a worker process that writes each result as a JSON line the moment it is measured; this
driver watches it, kills a row that runs past its timeout (or a worker that crashes, e.g. on a CUDA error) and
starts a fresh worker at the next row, so one row never stops the others. An out-of-memory row is caught inside
the worker and reported as ``OOM``. Rows still waiting when the total budget is spent are reported as skipped.
The seeding is the trainer's (``seed_everything``: deterministic algorithms where CUDA runs), so the figures are
those a user's run gets.

Output: the markdown (printed, and written atomically to ``<out>/bench_gpu.md``, ready for docs/benchmarks.md),
every event in ``<out>/rows.jsonl``, the workers' output in ``<out>/worker.log``.
"""

from __future__ import annotations

import os

# common.py pins the BLAS pools to one thread for the CPU benchmarks; here the CPU only feeds the GPU (collation,
# the trainer's bookkeeping), so torch keeps every core unless the caller chose a number (OMP_NUM_THREADS)
_threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, _threads)

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import common  # noqa: E402,I001  (puts the repository root on sys.path)
import torch  # noqa: E402

from mtlwb.core.io import atomic_write_text  # noqa: E402
from mtlwb.methods import METHODS  # noqa: E402

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Setting:
    """One image size with the tasks and protocol options of the published benchmark of that size."""

    name: str
    size: tuple[int, int]
    dataset: str
    tasks: tuple[str, ...]
    batch: int
    sweep: str


SETTINGS = (
    Setting("nyuv2", (288, 384), "nyuv2", ("semantic", "depth", "normal"), 8, "sweeps/benchmarks/nyuv2.yaml"),
    Setting("cityscapes", (128, 256), "cityscapes7", ("semantic", "depth"), 16, "sweeps/benchmarks/cityscapes.yaml"),
)
TINY_SIZE = (32, 64)           # SegNet needs multiples of 32
TRAIN_SIZE = (288, 384)        # the short training run: built-in scenes at NYUv2 size
EXIT_BAD_INPUT = 2


# -- planning -------------------------------------------------------------------------------------------------------

def method_order() -> list[str]:
    """Every registered method, supervised first (the "× sup." reference)."""
    return sorted(METHODS, key=lambda m: (m != "supervised", m))


def plan(args: argparse.Namespace) -> list[dict]:
    """The rows to measure, most wanted first: NYUv2 size (fp32, then AMP), the training run, Cityscapes size."""
    settings = [s for s in SETTINGS if s.name in args.sizes]
    rows: list[dict] = []

    def step_rows(setting: Setting, precisions: list[str]) -> None:
        options = common.protocol_options(setting.sweep)
        for precision in precisions:
            for method in args.methods:
                rows.append({"kind": "step", "setting": setting.name, "dataset": setting.dataset,
                             "size": list(TINY_SIZE if args.tiny else setting.size), "tasks": list(setting.tasks),
                             "batch": args.batch or (2 if args.tiny else setting.batch), "method": method,
                             "options": options.get(method, {}), "protocol": method in options,
                             "precision": precision, "warmup": args.warmup, "steps": args.steps,
                             "timeout": args.row_timeout})

    first = [p for p in args.precisions if p == "fp32"] or args.precisions[:1]
    rest = [p for p in args.precisions if p not in first]
    for setting in settings[:1]:
        step_rows(setting, first)
        step_rows(setting, rest)
    if args.train_epochs > 0:
        size = list(TINY_SIZE if args.tiny else TRAIN_SIZE)
        n_train, n_val = (4, 2) if args.tiny else (args.train_images, max(8, args.train_images // 4))
        root = str(Path(args.out) / f"scenes-{size[0]}x{size[1]}-{n_train}")
        rows.append({"kind": "data", "root": root, "size": size, "n_train": n_train, "n_val": n_val,
                     "timeout": args.train_timeout})
        options = common.protocol_options(SETTINGS[0].sweep)
        for method in args.methods:
            rows.append({"kind": "train", "root": root, "size": size, "n_train": n_train, "method": method,
                         "options": options.get(method, {}), "protocol": method in options,
                         "batch": args.batch or (2 if args.tiny else 8), "epochs": args.train_epochs,
                         "precision": args.train_precision, "num_workers": 0 if args.tiny else 4,
                         "run_dir": str(Path(args.out) / "runs" / method), "timeout": args.train_timeout})
    for setting in settings[1:]:
        step_rows(setting, first + rest)
    for i, row in enumerate(rows):
        row.update(id=i, device=args.device)
    return rows


# -- the worker: measures rows, one JSON line per event ---------------------------------------------------------------

class SyntheticSet(torch.utils.data.Dataset):
    """``n`` samples shaped like a folder loader's (image [3, H, W], semantic [H, W] long with −1 = ignore, dense
    targets [C, H, W]), cycling through one batch worth of random ones: the trainer's path without disk reads."""

    def __init__(self, tasks, size: tuple[int, int], n: int, pool: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        h, w = size
        targets = common.synthetic_targets(tasks, pool, h, w, g)
        self.samples = [{"image": torch.rand(3, h, w, generator=g), **{k: v[i] for k, v in targets.items()}}
                        for i in range(pool)]
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"index": i, **self.samples[i % len(self.samples)]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _epoch_seconds(exp, weighting, optimizer, scaler, epoch: int, steps: int, size: tuple[int, int]) -> float:
    """Wall time of one ``train_epoch`` of ``steps`` batches (CUDA-synchronized)."""
    from mtlwb.experiment.loop import train_epoch

    batch = exp.config.batch_size
    exp.train_set = SyntheticSet(exp.tasks, size, steps * batch, pool=batch)
    _sync(exp.device)
    t0 = time.perf_counter()
    train_epoch(exp, weighting, optimizer, epoch, progress=False, scaler=scaler)
    _sync(exp.device)
    return time.perf_counter() - t0


def measure_step(row: dict) -> dict:
    """ms/step, images/s and peak memory of the trainer's step for one method, size and precision."""
    from mtlwb.config import ExperimentConfig
    from mtlwb.core.runtime import seed_everything
    from mtlwb.data.registry import get_dataset
    from mtlwb.experiment.loop import Experiment
    from mtlwb.methods import build_method
    from mtlwb.models import MultiTaskNet
    from mtlwb.objectives.weighting import build_weighting

    t_start = time.perf_counter()
    seed_everything(0)
    cfg = ExperimentConfig(dataset=row["dataset"], data_root="(in memory)", tasks=row["tasks"], backbone="segnet",
                           method=row["method"], method_options=row["options"], batch_size=row["batch"], lr=1e-4,
                           augment=True, precision=row["precision"], device=row["device"], progress=False)
    device = torch.device(row["device"])
    info = get_dataset(cfg.dataset)
    tasks = info.make_tasks(cfg.tasks, cfg.data_root)
    model = MultiTaskNet(tasks, cfg.backbone, None, cfg.resolved_image_norm).to(device)
    method = build_method(cfg.method, tasks, model.feature_channels, cfg.method_options, cfg.loss_options,
                          cfg.task_prior_matrix).to(device)
    batch, size = row["batch"], tuple(row["size"])
    most = batch * max(row["warmup"], row["steps"])
    exp = Experiment(cfg, tasks, model, method, train_set=None, eval_set=None,
                     labelled=common.label_table(most, len(tasks), "onelabel"), device=device)
    weighting = build_weighting(cfg.weighting, [t.name for t in tasks]).to(device)
    groups = [{"params": list(model.parameters()), "lr": cfg.lr}] + method.parameter_groups(cfg.lr)
    optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    warm = _epoch_seconds(exp, weighting, optimizer, scaler, 0, row["warmup"], size)
    # as many measured steps as asked, but no more than half of what is left of the row's time allows
    left = row["timeout"] - (time.perf_counter() - t_start)
    steps = max(1, min(row["steps"], int(0.5 * left / (warm / row["warmup"]))))
    with common.PeakMemory(device) as mem:
        seconds = _epoch_seconds(exp, weighting, optimizer, scaler, 1, steps, size)
    return {"ms/step": 1000 * seconds / steps, "images/s": batch * steps / seconds, "peak MiB": mem.peak,
            "steps": steps, "warm-up s": warm, "aux. params": sum(p.numel() for p in method.parameters())}


def make_data(row: dict) -> dict:
    from mtlwb.data import generate_dataset

    t0 = time.perf_counter()
    h, w = row["size"]
    generate_dataset(row["root"], n_train=row["n_train"], n_val=row["n_val"], height=h, width=w, progress=False)
    return {"seconds": time.perf_counter() - t0}


def measure_train(row: dict) -> dict:
    """A short ``mtlwb.train`` run on the generated scenes: s/epoch, images/s of the middle epochs, metrics."""
    from mtlwb.config import ExperimentConfig
    from mtlwb.experiment.loop import train

    shutil.rmtree(row["run_dir"], ignore_errors=True)     # never resume an older run: time the whole thing
    cfg = ExperimentConfig(dataset="scenes", data_root=row["root"], tasks=["semantic", "depth", "normal"],
                           backbone="segnet", method=row["method"], method_options=row["options"],
                           batch_size=row["batch"], epochs=row["epochs"], eval_every=row["epochs"], lr=1e-4,
                           augment=True, precision=row["precision"], device=row["device"],
                           num_workers=row["num_workers"], run_dir=row["run_dir"], progress=False)
    t0 = time.perf_counter()
    record = train(cfg)
    wall = time.perf_counter() - t0
    seconds = [h["seconds"] for h in record["history"]]
    # the first epoch warms up, the last one also evaluates: the ones between are training alone
    middle = seconds[1:-1] or seconds
    primary = {t["name"]: t["primary_metric"] for t in record["tasks"]}
    shutil.rmtree(row["run_dir"], ignore_errors=True)
    return {"wall s": wall, "s/epoch": sum(seconds) / len(seconds),
            "train images/s": row["n_train"] / (sum(middle) / len(middle)),
            "metrics": {f"{name} {primary[name]}": m[primary[name]] for name, m in record["final"].items()}}


MEASURE = {"step": measure_step, "data": make_data, "train": measure_train}


def run_row(row: dict) -> dict:
    """One guarded measurement: a failure is a status line, never an exception."""
    try:
        result = {"status": "ok", **MEASURE[row["kind"]](row)}
    except torch.OutOfMemoryError:
        result = {"status": "OOM"}
    except Exception as e:  # one broken row must not lose the others' numbers
        message = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        result = {"status": f"failed: {type(e).__name__}: {message}"}
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def environment() -> dict:
    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "gpu MiB": torch.cuda.get_device_properties(0).total_memory / 2**20 if cuda else None,
            "cpus": os.cpu_count(), "python": sys.version.split()[0]}


def worker(plan_path: str, events_path: str, start: int) -> None:
    rows = json.loads(Path(plan_path).read_text())

    def emit(event: dict) -> None:
        with open(events_path, "a") as f:
            f.write(json.dumps(event) + "\n")

    emit({"event": "env", **environment()})
    for row in rows[start:]:
        emit({"event": "start", "id": row["id"], "time": time.time()})
        emit({"event": "done", "id": row["id"], **run_row(row)})


# -- the driver: runs the worker, enforces timeouts and the budget ----------------------------------------------------

def _read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    if not path.exists():
        return [], offset
    with open(path) as f:
        f.seek(offset)
        text = f.read()
    complete = text[:text.rfind("\n") + 1]          # a line still being written is read next time
    return [json.loads(line) for line in complete.splitlines() if line.strip()], offset + len(complete)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def drive(rows: list[dict], out: Path, budget: float, worker_cmd: list[str], startup_timeout: float = 180.0,
          poll: float = 0.2, log=print) -> tuple[dict[int, dict], dict]:
    """Measure ``rows`` in worker processes (``worker_cmd`` + ``--start i``): results by row id and the environment.

    A row running past its ``timeout``, or a worker dying inside a row, marks that row and goes on with the next in
    a fresh worker; a worker that exits or hangs before its first row marks the rest (it would again); past the
    ``budget`` the remaining rows are skipped; Ctrl-C stops the worker and keeps what was measured.
    """
    out.mkdir(parents=True, exist_ok=True)
    plan_path, events, log_path = out / "plan.json", out / "rows.jsonl", out / "worker.log"
    atomic_write_text(plan_path, json.dumps(rows))
    events.unlink(missing_ok=True)
    deadline = time.monotonic() + budget
    results: dict[int, dict] = {}
    env: dict = {}
    offset, next_row, stop = 0, 0, ""

    def finish(row_id: int, status: str) -> None:
        results[row_id] = {"status": status}
        log(_progress_line(rows[row_id], results[row_id], len(rows)))

    with open(log_path, "w") as log_file:
        while next_row < len(rows) and not stop:
            if time.monotonic() > deadline:
                break
            proc = subprocess.Popen(worker_cmd + ["--start", str(next_row)], stdout=log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            current, since, started_any = None, time.monotonic(), False
            try:
                while True:
                    code = proc.poll()          # before reading, so every event written before an exit is read
                    new, offset = _read_events(events, offset)
                    for e in new:
                        if e["event"] == "env":
                            env = env or {k: v for k, v in e.items() if k != "event"}
                        elif e["event"] == "start":
                            current, since, started_any = e["id"], time.monotonic(), True
                        elif e["event"] == "done":
                            results[e["id"]] = {k: v for k, v in e.items() if k not in ("event", "id")}
                            log(_progress_line(rows[e["id"]], results[e["id"]], len(rows)))
                            current, since, next_row = None, time.monotonic(), e["id"] + 1
                    if code is not None:
                        if current is not None:
                            finish(current, f"crashed (worker exit code {code}; see worker.log)")
                            next_row = current + 1
                        elif not started_any and next_row < len(rows):
                            stop = f"not run: the worker exited with code {code} before measuring (see worker.log)"
                        break
                    now = time.monotonic()
                    limit = rows[current]["timeout"] if current is not None else startup_timeout
                    if now - since > limit:
                        _kill(proc)
                        if current is not None:
                            finish(current, f"timeout after {limit:.0f} s")
                            next_row = current + 1
                        else:
                            stop = f"not run: the worker did not start a row within {startup_timeout:.0f} s"
                        break
                    if now > deadline:
                        _kill(proc)
                        if current is not None:
                            finish(current, f"stopped: the total budget of {budget:.0f} s ran out in this row")
                        break
                    time.sleep(poll)
            except KeyboardInterrupt:
                stop = "not run: interrupted (Ctrl-C)"
            finally:
                if proc.poll() is None:
                    _kill(proc)
    for row in rows:
        results.setdefault(row["id"], {"status": stop or f"skipped: the total budget of {budget:.0f} s was spent"})
    return results, env


def _label(row: dict) -> str:
    if row["kind"] == "data":
        return f"scenes {row['size'][0]}x{row['size'][1]}, {row['n_train']}+{row['n_val']} images"
    where = f"{row['setting']} {row['size'][0]}x{row['size'][1]}" if row["kind"] == "step" else "training run"
    return f"{where} {row['precision']} {row['method']}"


def _progress_line(row: dict, result: dict, total: int) -> str:
    figure = (f"{result['ms/step']:.1f} ms/step" if "ms/step" in result else
              f"{result['wall s']:.1f} s" if "wall s" in result else
              f"{result['seconds']:.1f} s" if "seconds" in result else "")
    return f"[{row['id'] + 1}/{total}] {_label(row)}: {result['status']}{', ' + figure if figure else ''}"


# -- the report ---------------------------------------------------------------------------------------------------

def _options_text(row: dict) -> str:
    if not row["protocol"]:
        return "defaults (not in the sweep)"
    return ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "–"


STEP_COLUMNS = ["size", "tasks", "batch", "method", "options", "precision", "ms/step", "images/s", "x sup.",
                "peak MiB", "status"]
TRAIN_COLUMNS = ["method", "options", "precision", "epochs", "train images", "s/epoch", "train images/s"]


def report(rows: list[dict], results: dict[int, dict], env: dict, args: argparse.Namespace, used: float) -> str:
    nan = float("nan")
    steps = [r for r in rows if r["kind"] == "step"]
    base = {(r["setting"], r["precision"]): results[r["id"]].get("ms/step")
            for r in steps if r["method"] == "supervised"}
    step_table = []
    for r in steps:
        res = results[r["id"]]
        ms = res.get("ms/step", nan)
        sup = base.get((r["setting"], r["precision"]))
        step_table.append({"size": f"{r['size'][0]}x{r['size'][1]}", "tasks": ", ".join(r["tasks"]),
                           "batch": r["batch"], "method": r["method"], "options": _options_text(r),
                           "precision": r["precision"], "ms/step": ms, "images/s": res.get("images/s", nan),
                           "x sup.": ms / sup if sup else nan, "peak MiB": res.get("peak MiB", nan),
                           "status": res["status"]})
    device = env.get("gpu") or "no CUDA device (a CPU run)"
    if env.get("gpu"):
        device += (f" ({env['gpu MiB'] / 1024:.0f} GiB), CUDA {env['cuda']}, cuDNN {env['cudnn']}")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = ["## GPU: step time, throughput and peak memory per method", "",
             f"_{stamp} — {device}, torch {env.get('torch', '?')}, Python {env.get('python', '?')}, "
             f"{env.get('cpus', '?')} CPU cores; `{' '.join(args.command)}`; {used:.0f} s of a {args.budget:.0f} s "
             "budget._", "",
             "One training step of the trainer (`train_epoch` per batch: augmentation, the method's views, forward, "
             "losses, backward, Adam), SegNet backbone, onelabel labels, synthetic in-memory batches; each method "
             "with the options of its published protocol (`sweeps/benchmarks/nyuv2.yaml` at 288×384, "
             "`cityscapes.yaml` at 128×256). ms/step: an epoch of measured steps after a warm-up epoch; "
             "× sup.: ratio to supervised at the same size and precision; peak MiB: "
             + ("`torch.cuda.max_memory_allocated`." if env.get("gpu") else "the process's peak resident set."),
             "", common.table(step_table, STEP_COLUMNS)]
    data = [r for r in rows if r["kind"] == "data"]
    trains = [r for r in rows if r["kind"] == "train"]
    if trains:
        d = data[0]
        made = results[d["id"]]
        metric_cols = list(dict.fromkeys(k for r in trains for k in results[r["id"]].get("metrics", {})))
        train_table = []
        for r in trains:
            res = results[r["id"]]
            train_table.append({"method": r["method"], "options": _options_text(r), "precision": r["precision"],
                                "epochs": r["epochs"], "train images": r["n_train"],
                                "s/epoch": res.get("s/epoch", nan), "train images/s": res.get("train images/s", nan),
                                **{c: res.get("metrics", {}).get(c, nan) for c in metric_cols},
                                "status": res["status"]})
        generated = (f"generated in {made['seconds']:.0f} s" if "seconds" in made else made["status"])
        lines += ["", f"### Short training run: built-in scenes {d['size'][0]}×{d['size'][1]}", "",
                  f"`mtlwb.train` per method: {d['n_train']} training and {d['n_val']} evaluation scenes "
                  f"({generated}), batch {trains[0]['batch']}, epochs {trains[0]['epochs']}, lr 1e-4, augmentation "
                  f"on, `num_workers` {trains[0]['num_workers']}, evaluated after the last epoch (metrics of an "
                  "untrained-length run: a check that training works, not a result). s/epoch includes that "
                  "evaluation; train images/s is of the epochs between the first and the last.", "",
                  common.table(train_table, TRAIN_COLUMNS + metric_cols + ["status"])]
    return "\n".join(lines) + "\n"


# -- command line -------------------------------------------------------------------------------------------------

def _csv(allowed: tuple[str, ...], name: str):
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"--{name}={text!r}: allowed a comma-separated subset of {list(allowed)}")
        return items
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                   help="auto: CUDA, and a clear error where there is none (CPU only with --device cpu)")
    p.add_argument("--tiny", action="store_true", help=f"smoke run: {TINY_SIZE[0]}x{TINY_SIZE[1]} images, batch 2, "
                   "1 warm-up and 1 measured step, 4+2 training scenes, 1 epoch")
    p.add_argument("--methods", type=_csv(tuple(method_order()), "methods"), default=method_order())
    p.add_argument("--precisions", type=_csv(PRECISIONS, "precisions"), default=list(PRECISIONS))
    p.add_argument("--sizes", type=_csv(tuple(s.name for s in SETTINGS), "sizes"), default=[s.name for s in SETTINGS])
    p.add_argument("--batch", type=int, default=0, help="batch of every row (default: 8 at 288x384, 16 at 128x256)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per row (default 2; --tiny 1)")
    p.add_argument("--steps", type=int, default=None, help="measured steps per row, at most (default 10; --tiny 1)")
    p.add_argument("--train-epochs", type=int, default=None, help="epochs of the training run; 0: no training run "
                   "(default 3; --tiny 1)")
    p.add_argument("--train-images", type=int, default=96, help="training scenes of the training run")
    p.add_argument("--train-precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--budget", type=float, default=540.0, help="seconds for all rows together")
    p.add_argument("--row-timeout", type=float, default=90.0, help="seconds per step row")
    p.add_argument("--train-timeout", type=float, default=150.0, help="seconds per training-run row")
    p.add_argument("--out", default=str(common.ROOT / "reports" / "gpu"))
    p.add_argument("--worker", nargs=2, metavar=("PLAN", "EVENTS"), help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.command = ["benchmarks/gpu_bench.py", *(argv if argv is not None else sys.argv[1:])]
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 2)
    args.steps = args.steps if args.steps is not None else (1 if args.tiny else 10)
    args.train_epochs = args.train_epochs if args.train_epochs is not None else (1 if args.tiny else 3)
    for name in ("batch", "train_epochs"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)}: must be >= 0")
    for name in ("warmup", "steps", "train_images"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)}: must be >= 1")
    for name in ("budget", "row_timeout", "train_timeout"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)}: must be > 0 seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker[0], args.worker[1], args.start)
        return 0
    if args.device == "auto":
        if not torch.cuda.is_available():
            print(f"gpu_bench: --device auto found no CUDA device (torch {torch.__version__}); on a GPU machine "
                  "install a CUDA build of torch, or run on CPU with --device cpu (e.g. --tiny --device cpu)",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        args.device = "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_bench: --device cuda: no CUDA device is available to torch {torch.__version__}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Path(args.out)
    rows = plan(args)
    t0 = time.monotonic()
    print(f"gpu_bench: {len(rows)} rows on {args.device}, budget {args.budget:.0f} s; output in {out}", flush=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(out / "plan.json"), str(out / "rows.jsonl")]
    results, env = drive(rows, out, args.budget, cmd, log=lambda line: print(line, flush=True))
    text = report(rows, results, env, args, time.monotonic() - t0)
    atomic_write_text(out / "bench_gpu.md", text)
    print("\n" + text)
    print(f"wrote {out / 'bench_gpu.md'}")
    return 130 if any(r["status"].startswith("not run: interrupted") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
