"""Command line: ``mtlwb generate | train | run-default`` (and ``sweep`` when present)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

DEFAULT_NOTEBOOK = Path("notebooks/train.ipynb")
DEFAULT_EXPERIMENT = {"epochs": 8, "train_samples": None, "eval_samples": None, "label_setting": "onelabel",
                      "method": "supervised", "progress": False}


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_generate(args: argparse.Namespace) -> int:
    from .data import ensure_dataset

    root = ensure_dataset(args.root, n_train=args.n_train, n_val=args.n_val, height=args.height,
                          width=args.width, seed=args.seed)
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
    record = train(ExperimentConfig(**params))
    print(json.dumps(record["final"], indent=2))
    print(f"run written to {ExperimentConfig(**params).resolved_run_dir}")
    return 0


def cmd_run_default(args: argparse.Namespace) -> int:
    from .notebook_runner import execute, export_html

    out = Path("reports/default/train.ipynb")
    execute(DEFAULT_NOTEBOOK, out, dict(DEFAULT_EXPERIMENT, run_dir="reports/default/run", device=args.device))
    html = export_html(out)
    print(f"report: {html.resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mtlwb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate the built-in procedural scenes (no-op if complete)")
    g.add_argument("--root", default="data/scenes-64x80")
    g.add_argument("--n-train", type=int, default=2000)
    g.add_argument("--n-val", type=int, default=500)
    g.add_argument("--height", type=int, default=64)
    g.add_argument("--width", type=int, default=80)
    g.add_argument("--seed", type=int, default=0)
    sub.add_parser("train", help="train one experiment: any config field as --field value (JSON values)")
    r = sub.add_parser("run-default", help="the default experiment through papermill, with an HTML report")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        return cmd_train(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return {"generate": cmd_generate, "run-default": cmd_run_default}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
