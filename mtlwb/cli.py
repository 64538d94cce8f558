"""Command line: ``mtlwb generate | train | run-default | sweep | eval-reference``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

QUICK_SWEEP = Path("sweeps/quick.yaml")


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_generate(args: argparse.Namespace) -> int:
    from .data import ensure_dataset

    # image_labels: a dataset generated before the image-level labels (or some of them, e.g. camera_view) existed
    # gets them added in place
    root = ensure_dataset(args.root, image_labels=True, n_train=args.n_train, n_val=args.n_val, height=args.height,
                          width=args.width, seed=args.seed, style=_value(args.style))
    print(f"dataset ready: {root}")
    return 0


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    from .config import ExperimentConfig
    from .train import train

    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    params = {}
    it = iter(extra)
    for flag in it:
        key = flag.lstrip("-").replace("-", "_")
        if not flag.startswith("--") or key not in fields:
            raise SystemExit(f"mtlwb train: unknown option {flag!r}; allowed --{' --'.join(sorted(fields))}")
        params[key] = _value(next(it, ""))
    config = ExperimentConfig(**params)
    record = train(config)
    print(json.dumps(record["final"], indent=2))
    print(f"run written to {config.resolved_run_dir}")
    return 0


def cmd_run_default(args: argparse.Namespace) -> int:
    """``make run``: the quick sweep (every method, small budget), its summary and HTML report."""
    from .aggregate import render_report
    from .sweep import run_sweep

    result = run_sweep(QUICK_SWEEP, device=args.device)
    print(result.report())
    html = render_report(result.sweep_dir)
    print(f"report: {html.resolve()}")
    return 0 if result.ok else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a YAML sweep (resumable); exit 1 if any run failed, 2 if the sweep file is invalid."""
    from .aggregate import render_report
    from .sweep import SweepInUseError, run_sweep

    try:
        result = run_sweep(args.spec, workers=args.workers, scheduler=args.dask_scheduler, device=args.device,
                           root=args.root)
    except (ValueError, FileNotFoundError, SweepInUseError) as e:
        print(f"mtlwb sweep: {e}", file=sys.stderr)
        return 2
    print(result.report())
    print(f"summary: {result.summary}")
    if not args.no_report:
        print(f"report: {render_report(result.sweep_dir).resolve()}")
    return 0 if result.ok else 1


def cmd_eval_reference(args: argparse.Namespace) -> int:
    """Evaluate a reference SegNet_MTL checkpoint (JTR's or MTPSL's training scripts) with the workbench metrics."""
    from .io import atomic_write_json
    from .reference_checkpoints import evaluate_reference_checkpoint

    try:
        metrics = evaluate_reference_checkpoint(args.checkpoint, args.dataset, args.data_root, tasks=args.tasks,
                                                batch_size=args.batch_size, eval_samples=args.eval_samples,
                                                device=args.device)
    except (ValueError, FileNotFoundError) as e:
        print(f"mtlwb eval-reference: {e}", file=sys.stderr)
        return 2
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtlwb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate the built-in procedural scenes (no-op if complete; "
                       "adds the image-level labels in place to a dataset generated without them, or without "
                       "the newer ones)")
    g.add_argument("--root", default="data/scenes-64x80")
    g.add_argument("--n-train", type=int, default=2000)
    g.add_argument("--n-val", type=int, default=500)
    g.add_argument("--height", type=int, default=None, help="default: H of a root named scenes-<H>x<W>, else 64")
    g.add_argument("--width", type=int, default=None, help="default: W of a root named scenes-<H>x<W>, else 80")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--style", default="default",
                   help="rendering style: default, B, or a JSON dict of mtlwb.data.style.SceneStyle fields")
    sub.add_parser("train", help="train one experiment: any config field as --field value (JSON values)",
                   description="Train one experiment (or resume it from its run_dir). Every field of "
                   "mtlwb.ExperimentConfig is an option; values are JSON where they parse as JSON, e.g. "
                   "--tasks '[\"semantic\", \"depth\"]' --method_options '{\"width\": 8}'.",
                   epilog=_config_fields(), formatter_class=argparse.RawDescriptionHelpFormatter)
    r = sub.add_parser("run-default", help="the default experiment through papermill, with an HTML report")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    w = sub.add_parser("sweep", help="run a YAML grid of training-notebook runs (resumable), then summarize")
    w.add_argument("spec", help="sweep file, e.g. sweeps/quick.yaml")
    w.add_argument("--workers", type=int, default=None, help="parallel runs (default: max(1, cores // 2))")
    w.add_argument("--dask-scheduler", default=None, metavar="tcp://host:port",
                   help="submit runs to this dask.distributed scheduler instead of local processes")
    w.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="override every run's device")
    w.add_argument("--root", default="reports/sweeps", help="sweep folders go to <root>/<name>/")
    w.add_argument("--no-report", action="store_true", help="skip rendering summary.html")
    e = sub.add_parser("eval-reference", help="evaluate a reference SegNet_MTL checkpoint (JTR / MTPSL code)",
                       description="Load a checkpoint saved by the reference code (JTR's model_state_dict, MTPSL's "
                       "state_dict, or a bare SegNet_MTL state dict) into the workbench's segnet model and "
                       "evaluate it on the dataset's evaluation split.")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--kind", default="segnet_mtl", choices=["segnet_mtl"],
                   help="what the checkpoint holds (mapfns / segnet_jtr load from Python: "
                   "mtlwb.reference_checkpoints)")
    e.add_argument("--dataset", required=True, help="nyuv2, cityscapes7, ... (mtlwb.config.DATASETS)")
    e.add_argument("--data-root", required=True)
    e.add_argument("--tasks", nargs="+", default=None, help="default: the dataset's task set")
    e.add_argument("--batch-size", type=int, default=2)
    e.add_argument("--eval-samples", type=int, default=None, help="only the first N evaluation images")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.add_argument("--out", default=None, help="also write the metrics to this JSON file")
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        return cmd_train(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return {"generate": cmd_generate, "run-default": cmd_run_default, "sweep": cmd_sweep,
            "eval-reference": cmd_eval_reference}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
