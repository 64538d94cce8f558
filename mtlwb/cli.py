"""Command line: ``mtlwb generate | train | run-default | sweep | eval-reference``.

Bad input is refused before any work in one line, ``mtlwb <command>: <parameter>…: <what is wrong, what is
allowed>``, with exit status 2; ``--debug`` shows the traceback instead. Only the checks that name the input
(``ValueError``, a missing file, an unwritable output folder) are turned into that line; any other exception is a
bug and keeps its traceback. Ctrl-C ends a command with one line saying how to resume, exit status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

QUICK_SWEEP = Path("sweeps/quick.yaml")
USAGE = """Multi-task learning workbench: generate | train | run-default | sweep | eval-reference.

Bad input is refused before any work, in one line naming the parameter, with exit status 2 (--debug shows the
traceback). Ctrl-C stops a command with one line saying how to resume, exit status 130."""
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130   # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


class Refused(Exception):
    """Bad input, already worded as the one line that names the parameter (``main`` prefixes the command)."""


class Interrupted(Exception):
    """Ctrl-C, with the line that says what was kept and how to resume."""


@contextlib.contextmanager
def refusing() -> Iterator[None]:
    """Turn the checks' errors inside the block into :class:`Refused` (the message is already one line that
    names the parameter). Use it around validation only: the same errors during the work are bugs."""
    try:
        yield
    except (ValueError, FileNotFoundError) as e:
        raise Refused(_one_line(e)) from e


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def check_writable(folder: str | Path, parameter: str) -> None:
    """Refuse an output folder that cannot be created or written (read-only file system, no permission, a file in
    the way), before any work and without creating anything: the nearest existing ancestor must be a writable
    folder. ``os.access`` answers for the real user, root included on a read-only file system."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise Refused(f"{parameter}={str(folder)!r}: {str(existing)!r} is a file, not a folder; give a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "read-only file system or no write permission"
        raise Refused(f"{parameter}={str(folder)!r}: cannot write in {str(existing)!r} ({reason}); "
                      "give a writable folder")


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_generate(args: argparse.Namespace) -> int:
    from .data import ensure_dataset

    check_writable(args.root, "--root")
    with refusing():
        style = _value(args.style)
        # image_labels: a dataset generated before the image-level labels (or some of them, e.g. camera_view) existed
        # gets them added in place
        root = ensure_dataset(args.root, image_labels=True, n_train=args.n_train, n_val=args.n_val,
                              height=args.height, width=args.width, seed=args.seed, style=style)
    print(f"dataset ready: {root}")
    return 0


def train_parameters(extra: list[str]) -> dict:
    """``--field value`` (or ``--field=value``) pairs -> {field: JSON value, else the text}; Refused names a flag
    that is not an ExperimentConfig field (with the closest one) or that has no value."""
    from .config import ExperimentConfig
    from .sweeps.notebook_params import closest_name

    fields = [f.name for f in dataclasses.fields(ExperimentConfig)]
    params, i = {}, 0
    while i < len(extra):
        flag, i = extra[i], i + 1
        name, eq, text = flag.partition("=")
        key = name.lstrip("-").replace("-", "_")
        if not name.startswith("--") or key not in fields:
            guess = closest_name(key, fields)
            raise Refused(f"unknown option {flag!r}" + (f"; did you mean --{guess}?" if guess else "")
                          + f" allowed --{' --'.join(sorted(fields))}")
        if not eq:
            if i == len(extra) or (extra[i].startswith("--") and extra[i].lstrip("-").replace("-", "_") in fields):
                raise Refused(f"{name}: needs a value (JSON where it parses as JSON, e.g. {name} 2)")
            text, i = extra[i], i + 1
        params[key] = _value(text)
    return params


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    from .config import ExperimentConfig
    from .experiment.loop import NonFiniteLossError, build_experiment, train

    params = train_parameters(extra)
    with refusing():
        config = ExperimentConfig(**params)
        check_writable(config.resolved_run_dir, "run_dir")
        exp = build_experiment(config)          # data and label files are read and checked here
    try:
        record = train(config, exp)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {config.resolved_run_dir} keeps its last finished epoch "
                          "(checkpoint.pt, metrics.json): the same command resumes from it") from None
    except NonFiniteLossError as e:
        print(f"mtlwb train: run failed: {_one_line(e)} (record: {config.resolved_run_dir / 'metrics.json'})",
              file=sys.stderr)
        return 1
    print(json.dumps(record["final"], indent=2))
    print(f"run written to {config.resolved_run_dir}")
    return 0


def summary_head(summary: Path) -> str:
    """What a researcher reads first in ``summary.md``: the verdicts and the main table (everything before its
    first ``##`` section), without the markdown emphasis."""
    lines = []
    for line in summary.read_text().splitlines():
        if line.startswith("## "):
            break
        lines.append(line.replace("**", "").rstrip())
    return "\n".join(lines).strip()


def _sweep(spec, args: argparse.Namespace, workers: int | None = None, scheduler: str | None = None,
           device: str | None = None, root: str = "reports/sweeps", report: bool = True) -> int:
    """Run a validated sweep; print its report, the head of its summary and the HTML report's path."""
    from .sweeps.report import render_report
    from .sweeps.run import SweepInterrupted, run_sweep
    from .sweeps.state import SweepInUseError

    try:
        result = run_sweep(spec, workers=workers, scheduler=scheduler, device=device, root=root)
    except SweepInUseError as e:
        raise Refused(_one_line(e)) from e
    except SweepInterrupted as e:
        raise Interrupted(_one_line(e)) from e
    print(result.report())
    if result.summary:
        print()
        print(summary_head(result.summary))
        print()
        print(f"summary: {result.summary}")
    if report:
        try:                             # render_report refuses a folder with nothing finished before a kernel
            html = render_report(result.sweep_dir)
        except ValueError as e:          # say so in one line, keep the sweep's own exit status
            print(f"report: not rendered: {_one_line(e)}", file=sys.stderr)
        else:
            print(f"report: {html.resolve()}")
    return 0 if result.ok else 1


def cmd_run_default(args: argparse.Namespace) -> int:
    """``make run``: the quick sweep (every method, small budget), its summary and HTML report."""
    from .sweeps.spec import load_spec

    with refusing():
        spec = load_spec(QUICK_SWEEP)
    check_writable(Path("reports/sweeps") / spec.name, "reports/sweeps")
    return _sweep(spec, args, device=args.device)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a YAML sweep (resumable); exit 1 if any run failed, 2 if the sweep file is invalid."""
    from .config import DEVICES
    from .sweeps.planning import plan_text
    from .sweeps.spec import load_spec

    if args.workers is not None and args.workers < 1:
        raise Refused(f"--workers={args.workers}: must be an integer >= 1")
    if args.device is not None and args.device not in DEVICES:
        raise Refused(f"--device={args.device!r}: allowed {list(DEVICES)}")
    with refusing():
        spec = load_spec(args.spec)
    if args.dry_run:
        print(plan_text(spec, args.root))
        return 0
    check_writable(Path(args.root) / spec.name, "--root")
    return _sweep(spec, args, workers=args.workers, scheduler=args.dask_scheduler, device=args.device,
                  root=args.root, report=not args.no_report)


def cmd_eval_reference(args: argparse.Namespace) -> int:
    """Evaluate a reference SegNet_MTL checkpoint (JTR's or MTPSL's training scripts) with the workbench metrics."""
    from .core.io import atomic_write_json
    from .experiment.reference_checkpoints import evaluate_reference_checkpoint

    if args.out:
        check_writable(Path(args.out).absolute().parent, "--out")
    with refusing():
        metrics = evaluate_reference_checkpoint(args.checkpoint, args.dataset, args.data_root, tasks=args.tasks,
                                                batch_size=args.batch_size, eval_samples=args.eval_samples,
                                                device=args.device)
    print(json.dumps(metrics, indent=2))
    if args.out:
        atomic_write_json(Path(args.out), metrics)
        print(f"metrics written to {args.out}")
    return 0


def _config_fields() -> str:
    """The options of ``mtlwb train``: ExperimentConfig's fields and their defaults."""
    from .config import ExperimentConfig

    default = ExperimentConfig()
    lines = [f"  --{f.name:<18} {json.dumps(getattr(default, f.name))}" for f in dataclasses.fields(ExperimentConfig)]
    return "config fields (default, as JSON):\n" + "\n".join(lines)


class OneLineParser(argparse.ArgumentParser):
    """argparse's refusals in one line (``mtlwb sweep: --workers: invalid int value: 'x'``), exit 2."""

    def error(self, message: str) -> None:   # type: ignore[override]
        self.exit(EXIT_REFUSED, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="mtlwb", description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of a refused input")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    g = sub.add_parser("generate", parents=[common], help="generate the built-in procedural scenes (no-op if "
                       "complete; adds the image-level labels in place to a dataset generated without them, or "
                       "without the newer ones)")
    g.add_argument("--root", default="data/scenes-64x80")
    g.add_argument("--n-train", type=int, default=2000)
    g.add_argument("--n-val", type=int, default=500)
    g.add_argument("--height", type=int, default=None, help="default: H of a root named scenes-<H>x<W>, else 64")
    g.add_argument("--width", type=int, default=None, help="default: W of a root named scenes-<H>x<W>, else 80")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--style", default="default",
                   help="rendering style: default, B, or a JSON dict of mtlwb.data.style.SceneStyle fields")
    sub.add_parser("train", parents=[common], help="train one experiment: any config field as --field value (JSON "
                   "values)", description="Train one experiment (or resume it from its run_dir). Every field of "
                   "mtlwb.ExperimentConfig is an option; values are JSON where they parse as JSON, e.g. "
                   "--tasks '[\"semantic\", \"depth\"]' --method_options '{\"width\": 8}'.",
                   epilog=_config_fields(), formatter_class=argparse.RawDescriptionHelpFormatter)
    r = sub.add_parser("run-default", parents=[common], help="the default experiment through papermill, with an "
                       "HTML report")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    w = sub.add_parser("sweep", parents=[common], help="run a YAML grid of training-notebook runs (resumable), "
                       "then summarize")
    w.add_argument("spec", help="sweep file, e.g. sweeps/quick.yaml")
    w.add_argument("--workers", type=int, default=None, help="parallel runs (default: max(1, cores // 2))")
    w.add_argument("--dask-scheduler", default=None, metavar="tcp://host:port",
                   help="submit runs to this dask.distributed scheduler instead of local processes")
    w.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="override every run's device")
    w.add_argument("--root", default="reports/sweeps", help="sweep folders go to <root>/<name>/")
    w.add_argument("--no-report", action="store_true", help="skip rendering summary.html")
    w.add_argument("--dry-run", action="store_true",
                   help="print the planned runs, their ids and which are already done; run nothing")
    e = sub.add_parser("eval-reference", parents=[common],
                       help="evaluate a reference SegNet_MTL checkpoint (JTR / MTPSL code)",
                       description="Load a checkpoint saved by the reference code (JTR's model_state_dict, MTPSL's "
                       "state_dict, or a bare SegNet_MTL state dict) into the workbench's segnet model and "
                       "evaluate it on the dataset's evaluation split.")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--kind", default="segnet_mtl", choices=["segnet_mtl"],
                   help="what the checkpoint holds (mapfns / segnet_jtr load from Python: "
                   "mtlwb.experiment.reference_checkpoints)")
    e.add_argument("--dataset", required=True, help="nyuv2, cityscapes7, ... (mtlwb.config.DATASETS)")
    e.add_argument("--data-root", required=True)
    e.add_argument("--tasks", nargs="+", default=None, help="default: the dataset's task set")
    e.add_argument("--batch-size", type=int, default=2)
    e.add_argument("--eval-samples", type=int, default=None, help="only the first N evaluation images")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.add_argument("--out", default=None, help="also write the metrics to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    prog = f"mtlwb {args.command}"
    if args.command != "train" and extra:
        print(f"{prog}: unrecognized arguments: {' '.join(extra)} (see {prog} --help)", file=sys.stderr)
        return EXIT_REFUSED
    commands = {"generate": cmd_generate, "run-default": cmd_run_default, "sweep": cmd_sweep,
                "eval-reference": cmd_eval_reference, "train": lambda a: cmd_train(a, extra)}
    try:
        return commands[args.command](args)
    except Refused as e:
        if args.debug:
            raise
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except Interrupted as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:   # outside a run's care (reading, validating, writing a report)
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:   # the machine, not the input: a folder that became unwritable, a full disk
        if args.debug or e.filename is None:
            raise
        print(f"{prog}: cannot write or read {str(e.filename)!r}: {e.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
