"""Record what the published JTR and MTPSL code compute on the seeded parity case (``tests/helpers/parity_case.py``).

    python tools/record_reference_parity.py --jtr <JTR-CVPR-2024 checkout> --mtpsl <MTPSL checkout> \
        [--out tests/fixtures/reference_parity.json] [--measure]

Runs the published modules (``SegNet_JTR.compute_losses`` and ``SegNet_MTL.compute_losses`` of
KentoNishi/JTR-CVPR-2024; ``Mapfns`` and ``SegNet.model_fit`` of VICO-UoE/MTPSL), imported from the checkouts
given here — none of their code is in this repository — on CPU in float64 (``.cuda()`` made a no-op), with:

- the joint / mapping network weights of mtlwb's ``arch: reference`` modules after ``derive_weights``, copied into
  the published modules through ``mtlwb.experiment.reference_checkpoints.reference_key`` (its checkpoint key maps);
- the case's predictions as leaves (segmentation as the logits for JTR, their log-softmax for MTPSL, whose SegNet
  returns log-probabilities), per-sample loops and normalizations exactly as ``code/train_nyuv2.py`` and
  ``nyu_mtl_xtc.py`` write them (sum over samples of the sample's terms / B);
- every Gumbel draw of the published code taken, in its call order, from the case: the code's own sampler runs,
  with ``Tensor.exponential_`` returning exp(−g) for the case's g (so −log of it is g).

It writes the losses and the gradients' sketches (norm, projections on seeded directions) with the repositories'
commits to ``--out``. ``--measure`` also prints, for every fidelity switch, what reversing it alone changes
against the published code on this case (cosine of full gradients, relative loss difference): the numbers in the
README's list of differences.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]      # the repository root: mtlwb and the tests package

from mtlwb.experiment.reference_checkpoints import reference_key  # noqa: E402
from tests.helpers import parity_case as pc  # noqa: E402


class GumbelQueue:
    """Serves the case's Gumbel noise to the published code's samplers, in their call order."""

    def __init__(self) -> None:
        self.queue: list[torch.Tensor] = []
        self.original = torch.Tensor.exponential_

    def __enter__(self) -> GumbelQueue:
        queue = self.queue

        def exponential_(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            if not queue:
                raise RuntimeError("the published code drew more Gumbel noise than the case provides")
            g = queue.pop(0)
            if tuple(g.shape) != tuple(tensor.shape):
                raise RuntimeError(f"Gumbel draw of shape {tuple(tensor.shape)}, the case's next is {tuple(g.shape)}")
            return tensor.copy_(torch.exp(-g))

        torch.Tensor.exponential_ = exponential_
        return self

    def __exit__(self, *exc) -> None:
        torch.Tensor.exponential_ = self.original

    def serve(self, draws: list[torch.Tensor]) -> None:
        if self.queue:
            raise RuntimeError(f"{len(self.queue)} Gumbel draws of the case were not used by the published code")
        self.queue.extend(draws)


def commit(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def load_into_reference(kind: str, ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Copy ``ours``' weights into the published module by mtlwb's key map (BatchNorm statistics stay: unused in
    training mode)."""
    state, names = ours.state_dict(), list(pc.TASKS)
    copied = 0
    with torch.no_grad():
        for key, value in theirs.state_dict().items():
            inner = key[len("mapfns."):] if kind == "mapfns" and key.startswith("mapfns.") else key
            mine = reference_key(kind, inner, names)
            if mine in state:
                value.copy_(state[mine])
                copied += 1
            elif value.is_floating_point() and not key.endswith(("running_mean", "running_var")):
                raise RuntimeError(f"{kind}: published weight {key} has no mtlwb counterpart")
    if copied != len(state):
        raise RuntimeError(f"{kind}: {copied} of mtlwb's {len(state)} entries were copied")


def _grads(case, named: dict[str, torch.Tensor], views: int, params: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for v in range(views):
        for t in pc.TASKS:
            p = case["views"][v]["predictions"][t]
            out[f"view{v}.{t}"] = torch.zeros_like(p) if p.grad is None else p.grad.clone()
    for k in params:
        out[f"param.{k}"] = torch.zeros_like(named[k]) if named[k].grad is None else named[k].grad.clone()
    return out


def run_published_jtr(root: Path, case) -> dict:
    sys.path.insert(0, str(root / "code"))
    from models.nyuv2_segnet_jtr import SegNet_JTR
    from models.nyuv2_segnet_mtl import SegNet_MTL

    jtr = SegNet_JTR(list(pc.CHANNELS))
    ours = pc.build("jtr", {"fidelity": "published_code"})
    load_into_reference("segnet_jtr", ours, jtr)
    jtr.train()
    views, noise = case["views"], case["jtr_noise"]
    for v in views:
        for p in v["predictions"].values():
            p.grad = None
    losses = {f"supervised.{t}": 0.0 for t in pc.TASKS} | {"jtr.distance": 0.0, "jtr.recon": 0.0}
    total = torch.zeros((), dtype=torch.float64)
    with GumbelQueue() as gumbel:
        for b, row in enumerate(pc.LABEL_TABLE):
            labeled = [i for i, x in enumerate(row) if x]
            items = []
            for v in views:
                preds = [v["predictions"][t][b:b + 1] for t in pc.TASKS]
                items.append(preds + [v["targets"][t][b:b + 1] for t in pc.TASKS])
            sup = SegNet_MTL.compute_losses(None, *items[0])
            # the code's draws, in call order: Ŷ1, Y1 (unlabelled), Y2 (unlabelled), Y2's target (unlabelled), Ŷ2's
            seg_unlabelled = 0 not in labeled
            draws = [noise["model_y_hat"][b:b + 1]]
            draws += [noise["model_y"][b:b + 1], noise["joint_y"][b:b + 1], noise["recon_y"][b:b + 1]] \
                if seg_unlabelled else []
            draws += [noise["recon_y_hat"][b:b + 1]]
            gumbel.serve(draws)
            dist, recon = jtr.compute_losses(items[1], items[2], labeled, pc.CLASSES, 2.0)
            gumbel.serve([])
            n = len(pc.LABEL_TABLE)
            for i in labeled:
                losses[f"supervised.{pc.TASKS[i]}"] += float(sup[i]) / n
            losses["jtr.distance"] += float(4.0 * dist) / n
            losses["jtr.recon"] += float(2.0 * recon) / n
            total = total + sum(sup[i] for i in labeled) / n + (4.0 * dist + 2.0 * recon) / n
    total.backward()
    losses["total"] = float(total)
    named = {mine: dict(jtr.named_parameters())[key] for key in dict(jtr.named_parameters())
             if (mine := reference_key("segnet_jtr", key, list(pc.TASKS))) in pc.JTR_PARAMS}
    return {"losses": losses, "grads": _grads(case, named, 3, pc.JTR_PARAMS)}


def _mtpsl_predictions(view: dict, b: int) -> list[torch.Tensor]:
    """Sample ``b``'s predictions as MTPSL's SegNet returns them: log-probabilities for segmentation."""
    p = view["predictions"]
    return [torch.log_softmax(p["semantic"][b:b + 1], dim=1), p["depth"][b:b + 1], p["normal"][b:b + 1]]


def run_published_mtpsl(root: Path, case) -> dict:
    for name in [m for m in sys.modules if m == "utils" or m.startswith(("utils.", "models", "model"))]:
        del sys.modules[name]                                  # the JTR checkout's packages of the same names
    sys.path.insert(0, str(root))
    from model.mapfns import Mapfns
    from model.segnet_mtl import SegNet

    mapfns = Mapfns(tasks=list(pc.TASKS), input_channels=list(pc.CHANNELS))
    ours = pc.build("mtpsl", {"fidelity": "published_code"})
    load_into_reference("mapfns", ours, mapfns)
    mapfns.train()
    views = case["views"]
    for v in views:
        for p in v["predictions"].values():
            p.grad = None
    losses = {f"supervised.{t}": 0.0 for t in pc.TASKS} | {"mtpsl": 0.0}
    total = torch.zeros((), dtype=torch.float64)
    triples = pc.mtpsl_triples()
    n = len(pc.LABEL_TABLE)
    with GumbelQueue() as gumbel:
        for b, row in enumerate(pc.LABEL_TABLE):
            w = torch.tensor(row, dtype=torch.float64)

            p0, t0 = _mtpsl_predictions(views[0], b), [views[0]["targets"][t][b:b + 1] for t in pc.TASKS]
            sup = SegNet.model_fit(None, p0[0], t0[0], p0[1], t0[1], p0[2], t0[2])
            sup = [s if row[i] else 0 for i, s in enumerate(sup)]
            gumbel.serve([case["mtpsl_noise"][k:k + 1] for k, (bb, s, _) in enumerate(triples)
                          if bb == b and s == 0])
            con = mapfns(_mtpsl_predictions(views[1], b), [views[1]["targets"][t][b:b + 1] for t in pc.TASKS],
                         views[1]["bottleneck"][b:b + 1], w.clone(), ssl_type="randomlabels")
            gumbel.serve([])
            for i in range(3):
                losses[f"supervised.{pc.TASKS[i]}"] += float(sup[i]) / n
            losses["mtpsl"] += float(con) * 2.0 / n
            total = total + sum(sup) / n + con * 2.0 / n
    total.backward()
    losses["total"] = float(total)
    theirs = dict(mapfns.named_parameters())
    named = {mine: theirs[key] for key in theirs
             if (mine := reference_key("mapfns", key[len("mapfns."):], list(pc.TASKS))) in pc.MTPSL_PARAMS}
    return {"losses": losses, "grads": _grads(case, named, 2, pc.MTPSL_PARAMS)}


def cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Cosine of two gradients, each given as tensors to concatenate (1.0 when both are zero)."""
    x, y = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    if x.norm() == 0 and y.norm() == 0:
        return 1.0
    return float(x @ y / (x.norm() * y.norm()).clamp_min(1e-300))


def compare(ref: dict, ours: dict) -> dict[str, float]:
    """Largest relative loss difference, and the cosine with the published gradient of: view 0's predictions
    (supervised), view 1's (model side / consistency view), the recorded auxiliary-network parameters."""
    out = {"loss": max(abs(ours["losses"][k] - v) / max(abs(v), 1e-12) for k, v in ref["losses"].items())}
    for name, prefix in (("view0", "view0."), ("view1", "view1."), ("params", "param.")):
        keys = [k for k in ref["grads"] if k.startswith(prefix)]
        out[name] = cosine([ours["grads"][k] for k in keys], [ref["grads"][k] for k in keys])
    return out


JTR_REVERSALS = {"mask_before_encoding": False, "mask_labels": True, "gumbel_draws": "shared",
                 "joint_y_hat_seg": "encoding", "recon_targets": "paper", "recon_denominator": "valid_pixels",
                 "depth_recon_squeeze": False, "dot_normal_loss": False, "fidelity": "paper"}
MTPSL_REVERSALS = {"gumbel_per_pair": False, "dot_normal_loss": False, "fidelity": "paper"}


def measure(name: str, ref: dict, run, case, reversals: dict) -> None:
    """A markdown row per switch: its value reversed alone under published_code, against the published code."""
    print(f"\n{name}: | reversed alone | largest relative loss difference | gradient cosine: view 0 predictions | "
          "view 1 predictions | auxiliary network |")
    for option, value in reversals.items():
        c = compare(ref, run(case, {option: value}))
        print(f"| `{option}: {json.dumps(value)}` | {c['loss']:.1e} | {c['view0']:.4f} | {c['view1']:.4f} | "
              f"{c['params']:.4f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jtr", type=Path, required=True, help="checkout of KentoNishi/JTR-CVPR-2024")
    parser.add_argument("--mtpsl", type=Path, required=True, help="checkout of VICO-UoE/MTPSL")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "reference_parity.json")
    parser.add_argument("--measure", action="store_true", help="print each switch's effect (README numbers)")
    args = parser.parse_args(argv)
    for path, marker in ((args.jtr, "code/models/nyuv2_segnet_jtr.py"), (args.mtpsl, "model/mapfns.py")):
        if not (path / marker).is_file():
            print(f"error: {path} has no {marker}", file=sys.stderr)
            return 2
    torch.set_default_dtype(torch.float64)       # before the published modules build tensors at import
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    case = pc.make_case()
    jtr, mtpsl = run_published_jtr(args.jtr, case), run_published_mtpsl(args.mtpsl, case)
    record = {
        "about": {
            "what": "losses and gradient sketches of the published JTR and MTPSL code on tests/helpers/parity_case.py",
            "script": "tools/record_reference_parity.py --jtr <checkout> --mtpsl <checkout>",
            "jtr": {"repository": "KentoNishi/JTR-CVPR-2024", "commit": commit(args.jtr),
                    "modules": "code/models/nyuv2_segnet_jtr.py SegNet_JTR.compute_losses, "
                               "code/models/nyuv2_segnet_mtl.py SegNet_MTL.compute_losses"},
            "mtpsl": {"repository": "VICO-UoE/MTPSL", "commit": commit(args.mtpsl),
                      "modules": "model/mapfns.py Mapfns, model/segnet_mtl.py SegNet.model_fit"},
            "torch": torch.__version__, "dtype": "float64", "seed": pc.SEED,
        },
        "jtr": {"losses": jtr["losses"], "grads": {k: pc.sketch(v, k) for k, v in jtr["grads"].items()}},
        "mtpsl": {"losses": mtpsl["losses"], "grads": {k: pc.sketch(v, k) for k, v in mtpsl["grads"].items()}},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    for name, ref, run in (("jtr", jtr, pc.run_jtr), ("mtpsl", mtpsl, pc.run_mtpsl)):
        c = compare(ref, run(case))
        print(f"{name} published_code vs the published code: largest relative loss difference {c['loss']:.1e}, "
              f"gradient cosines {c['view0']:.12f} / {c['view1']:.12f} / {c['params']:.12f}", flush=True)
    if args.measure:
        measure("jtr", jtr, pc.run_jtr, case, JTR_REVERSALS)
        measure("mtpsl", mtpsl, pc.run_mtpsl, case, MTPSL_REVERSALS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
