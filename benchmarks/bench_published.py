"""The published codes vs mtlwb's reference layouts, like for like: the cost of one training step of each.

The published code is never part of the project: give a copy by path and this module imports its modules from
there at run time — ``MTLWB_JTR_CODE`` (a checkout of KentoNishi/JTR-CVPR-2024, its root or its ``code/``
folder) and ``MTLWB_MTPSL_CODE`` (a checkout of VICO-UoE/MTPSL). Without a path its rows say "not given".

Both sides do the same work: SegNet backbone, NYUv2's three tasks (13 classes), batch 4, 64×96, onelabel labels
(sample b labelled for task b mod 3), the same synthetic views, Adam; one step = forward on the concatenated
views, the losses, backward, the optimizer step(s). Views are made once, outside the timed step, on both sides
(the published loaders make them in their data workers; JTR's needs torchvision). Per protocol:

- supervised — MTPSL's ``nyu_mtl_sl.py``: ``SegNet`` forward, ``model_fit`` per sample on its labelled tasks / B;
  mtlwb: ``supervised``.
- JTR, 3 views — ``code/train_nyuv2.py``: ``SegNet_MTL`` on the 3B images, per sample ``compute_losses`` (view 0)
  and ``SegNet_JTR.compute_losses`` (views 1 and 2; a deep copy of the joint net per sample), weights 4 and 2,
  one Adam over both networks; mtlwb: ``jtr`` with the options of ``sweeps/benchmarks/nyuv2.yaml``.
- MTPSL, 2 views — ``nyu_mtl_xtc.py``: ``SegNet`` on the 2B images, per sample ``model_fit`` (view 0) and
  ``Mapfns`` on view 1 (consistency weight 2), Adam lr 1e-4 and the FiLM tables' own Adam lr 1e-3; mtlwb:
  ``mtpsl`` with the options of the same sweep.

The published scripts' per-batch training-metric logging (``compute_miou`` etc.) is not counted. Their
``.cuda()`` calls are made no-ops while their steps run on the CPU. Two threads, every step timed round-robin in
one process (median of 7 after 2 warm-ups), so the ratios compare like with like on a shared machine.

Run as ``python benchmarks/bench_published.py [--quick]`` (also part of ``make bench``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import common  # noqa: I001  (sets thread env vars and sys.path before torch/mtlwb load)
import torch
from bench_reference import training_step

from mtlwb.methods import build_method
from mtlwb.models import MultiTaskNet
from mtlwb.tasks import make_tasks

TASKS = ("semantic", "depth", "normal")
CLASSES = 13
CHANNELS = [CLASSES, 1, 3]          # the published networks' output channels per task
SIZE, BATCH, THREADS = (64, 96), 4, 2
SWEEP = "sweeps/benchmarks/nyuv2.yaml"
ENV = {"jtr": "MTLWB_JTR_CODE", "mtpsl": "MTLWB_MTPSL_CODE"}
#: files a checkout must hold (under the folder the modules are imported from)
REQUIRED = {"jtr": ("models/nyuv2_segnet_mtl.py", "models/nyuv2_segnet_jtr.py", "utils/process.py"),
            "mtpsl": ("model/segnet_mtl.py", "model/mapfns.py")}
#: (label, mtlwb method, which published code runs it)
VARIANTS = (("supervised", "supervised", "mtpsl"), ("JTR, 3 views", "jtr", "jtr"), ("MTPSL, 2 views", "mtpsl", "mtpsl"))
VIEWS = {"supervised": 1, "jtr": 3, "mtpsl": 2}


class CodePathError(ValueError):
    """An env var names a folder that is not the published code it should be (one line, for exit 2)."""


def published_code(environ: Mapping[str, str] = os.environ) -> dict[str, Path | None]:
    """The folders to import the published modules from, or None where no path was given."""
    found: dict[str, Path | None] = {}
    for name, var in ENV.items():
        value = environ.get(var, "").strip()
        if not value:
            found[name] = None
            continue
        root = Path(value).expanduser()
        candidates = [root / "code", root] if name == "jtr" else [root]
        folder = next((c for c in candidates if all((c / f).is_file() for f in REQUIRED[name])), None)
        if folder is None:
            raise CodePathError(f"{var}={value!r}: no {', '.join(REQUIRED[name])} under it; give the root of a "
                                f"checkout of {'KentoNishi/JTR-CVPR-2024' if name == 'jtr' else 'VICO-UoE/MTPSL'}")
        found[name] = folder.resolve()
    return found


def import_published(folder: Path, names: list[str]) -> dict[str, object]:
    """Import ``names`` from a published checkout, then drop its top-level packages from ``sys.modules``.

    Both codes have a top-level ``utils`` package (and generic names like ``model``); dropping them after the
    import lets the two load side by side, and keeps them from shadowing anything later. The imported modules
    keep working: they hold references to what they imported.
    """
    tops = {p.stem for p in folder.iterdir() if p.is_dir() or p.suffix == ".py"}
    clash = sorted(n for n in sys.modules if n.split(".")[0] in tops)
    saved = {n: sys.modules.pop(n) for n in clash}
    sys.path.insert(0, str(folder))
    try:
        return {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(folder))
        for n in [n for n in sys.modules if n.split(".")[0] in tops]:
            del sys.modules[n]
        sys.modules.update(saved)


@contextlib.contextmanager
def cuda_calls_are_noops() -> Iterator[None]:
    """The published code moves tensors with ``.cuda()``; on a CPU-only machine those calls return the tensor."""
    if torch.cuda.is_available():
        yield
        return
    tensor_cuda, module_cuda = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = tensor_cuda, module_cuda


# -- inputs shared by both sides ------------------------------------------------------------------------------------

def make_views(batch: int, size: tuple[int, int], count: int = 3, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``count`` views of one batch: image [B, 3, H, W], semantic [B, H, W] long (−1 ignore), depth, normal."""
    tasks = make_tasks(list(TASKS), CLASSES)
    g = torch.Generator().manual_seed(seed)
    h, w = size
    return [{"image": torch.rand(batch, 3, h, w, generator=g), "index": torch.arange(batch),
             **common.synthetic_targets(tasks, batch, h, w, g)} for _ in range(count)]


def labelled_tasks(labels: torch.Tensor, i: int) -> list[int]:
    return torch.nonzero(labels[i]).squeeze(1).tolist()


def _rows_of(view: dict, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return view["semantic"][i:i + 1], view["depth"][i:i + 1], view["normal"][i:i + 1]


# -- the published steps (their modules, driven as their training scripts drive them) ----------------------------------

def published_supervised(mtpsl: dict, views: list[dict], labels: torch.Tensor) -> tuple[Callable[[], float], int]:
    model = mtpsl["model.segnet_mtl"].SegNet(type_="standard", class_nb=CLASSES)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    v0, batch = views[0], labels.shape[0]
    model.train()

    def step() -> float:
        preds, _, _ = model(v0["image"])
        loss = 0
        for i in range(batch):
            seg, depth, normal = _rows_of(v0, i)
            per_task = model.model_fit(preds[0][i:i + 1], seg, preds[1][i:i + 1], depth, preds[2][i:i + 1], normal)
            loss = loss + sum(per_task[t] for t in labelled_tasks(labels, i)) / batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step, 0


def published_jtr(jtr: dict, views: list[dict], labels: torch.Tensor) -> tuple[Callable[[], float], int]:
    model = jtr["models.nyuv2_segnet_mtl"].SegNet_MTL()
    joint = jtr["models.nyuv2_segnet_jtr"].SegNet_JTR(CHANNELS)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(joint.parameters()), lr=1e-4)
    images = torch.cat([v["image"] for v in views[:3]])
    batch = labels.shape[0]
    model.train()
    joint.train()

    def step() -> float:
        preds, _ = model(images)
        per_view = torch.split(torch.cat(preds, dim=1), batch, dim=0)       # 3 × [B, ΣC, H, W]
        loss = 0
        for i in range(batch):
            lab = labelled_tasks(labels, i)
            p0, p1, p2 = (torch.split(p[i:i + 1], CHANNELS, dim=1) for p in per_view)
            per_task = model.compute_losses(*p0, *_rows_of(views[0], i))
            dist, recon = joint.compute_losses((*p1, *_rows_of(views[1], i)), (*p2, *_rows_of(views[2], i)),
                                               lab, CLASSES, 2.0)
            loss = loss + sum(per_task[t] for t in lab) / batch + (4.0 * dist + 2.0 * recon) / batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step, sum(p.numel() for p in joint.parameters())


def published_mtpsl(mtpsl: dict, views: list[dict], labels: torch.Tensor) -> tuple[Callable[[], float], int]:
    model = mtpsl["model.segnet_mtl"].SegNet(type_="standard", class_nb=CLASSES)
    mapfns = mtpsl["model.mapfns"].Mapfns(tasks=list(TASKS), input_channels=CHANNELS)
    film = [p for n, p in mapfns.named_parameters() if "gamma" in n or "beta" in n]
    rest = [p for n, p in mapfns.named_parameters() if not ("gamma" in n or "beta" in n)]
    optimizer = torch.optim.Adam(list(model.parameters()) + rest, lr=1e-4)
    optimizer_film = torch.optim.Adam(film, lr=1e-3)
    images = torch.cat([v["image"] for v in views[:2]])
    batch = labels.shape[0]
    model.train()
    mapfns.train()

    def step() -> float:
        preds, _, feat = model(images)
        p0, p1 = [p[:batch] for p in preds], [p[batch:] for p in preds]
        bottleneck_1 = feat[0][batch:]
        loss = 0
        for i in range(batch):
            w = labels[i].float()
            per_task = model.model_fit(p0[0][i:i + 1], views[0]["semantic"][i:i + 1], p0[1][i:i + 1],
                                       views[0]["depth"][i:i + 1], p0[2][i:i + 1], views[0]["normal"][i:i + 1])
            consistency = mapfns([p[i:i + 1] for p in p1], list(_rows_of(views[1], i)), bottleneck_1[i:i + 1],
                                 w.clone(), ssl_type="onelabel")
            loss = loss + sum(per_task[t] for t in labelled_tasks(labels, i)) / batch + 2.0 * consistency / batch
        optimizer.zero_grad()
        optimizer_film.zero_grad()
        loss.backward()
        optimizer.step()
        optimizer_film.step()
        return float(loss.detach())

    return step, sum(p.numel() for p in mapfns.parameters())


PUBLISHED = {"supervised": published_supervised, "jtr": published_jtr, "mtpsl": published_mtpsl}
MODULES = {"jtr": ["models.nyuv2_segnet_mtl", "models.nyuv2_segnet_jtr"], "mtpsl": ["model.segnet_mtl", "model.mapfns"]}


def mtlwb_step(method_name: str, options: dict, views: list[dict], labels: torch.Tensor) -> tuple[Callable, int]:
    tasks = make_tasks(list(TASKS), CLASSES)
    model = MultiTaskNet(tasks, "segnet")
    method = build_method(method_name, tasks, model.feature_channels, options)
    optimizer = torch.optim.Adam([{"params": list(model.parameters()), "lr": 1e-4}] + method.parameter_groups(1e-4))
    used = views[:1 + method.view_spec.extra]
    step = training_step(model, method, tasks, optimizer, labels, lambda: used)
    return step, sum(p.numel() for p in method.parameters())


def _in_published_context(step: Callable[[], float]) -> Callable[[], float]:
    def run() -> float:
        with cuda_calls_are_noops():
            return step()
    return run


# -- run and report ---------------------------------------------------------------------------------------------------

def run(quick: bool = False, size: tuple[int, int] = SIZE, batch: int = BATCH, repeats: int | None = None,
        warmup: int | None = None, threads: int = THREADS, environ: Mapping[str, str] = os.environ,
        methods: tuple[str, ...] = ("supervised", "jtr", "mtpsl")) -> list[dict]:
    """One row per protocol (of ``methods``; supervised first, the ratios' reference): seconds per step of the
    published code (None where its path was not given) and of mtlwb, measured round-robin in this process."""
    repeats = repeats if repeats is not None else (2 if quick else 7)
    warmup = warmup if warmup is not None else (1 if quick else 2)
    code = published_code(environ)
    modules = {name: import_published(folder, MODULES[name]) for name, folder in code.items() if folder is not None}
    options = common.protocol_options(SWEEP)
    views = make_views(batch, size)
    labels = common.label_table(batch, len(TASKS), "onelabel")
    steps: dict[str, Callable[[], float]] = {}
    params: dict[str, int] = {}
    variants = [v for v in VARIANTS if v[1] in methods]
    for label, method, source in variants:
        torch.manual_seed(0)
        steps[f"mtlwb {label}"], params[f"mtlwb {label}"] = mtlwb_step(method, options.get(method, {}), views, labels)
        if source in modules:
            torch.manual_seed(0)
            with cuda_calls_are_noops():
                step, params[f"published {label}"] = PUBLISHED[method](modules[source], views, labels)
            steps[f"published {label}"] = _in_published_context(step)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seconds = common.interleaved_medians(steps, repeats, warmup)
    finally:
        torch.set_num_threads(before)
    rows = []
    for label, method, source in variants:
        rows.append({"variant": label, "method": method, "views": VIEWS[method], "size": f"{size[0]}x{size[1]}",
                     "batch": batch, "threads": threads, "repeats": repeats, "warmup": warmup,
                     "published s": seconds.get(f"published {label}"), "mtlwb s": seconds[f"mtlwb {label}"],
                     "published aux. params": params.get(f"published {label}"),
                     "mtlwb aux. params": params[f"mtlwb {label}"],
                     "published code": str(code[source]) if code[source] else None, "env": ENV[source]})
    return rows


def _ratio_text(published: float, mtlwb: float) -> str:
    r = published / mtlwb
    return f"{r:.2f}× faster" if r >= 1 else f"{1 / r:.2f}× slower"


def report(rows: list[dict]) -> str:
    base = rows[0] if rows[0]["method"] == "supervised" else {"published s": None, "mtlwb s": None}
    sup = {side: base[f"{side} s"] for side in ("published", "mtlwb")}
    lines = ["| | published code | mtlwb | mtlwb / published |", "|---|---|---|---|"]
    for r in rows:
        label = r["variant"]
        if r["mtlwb aux. params"]:
            label += f", {r['mtlwb aux. params'] / 1e6:.1f} M {'joint' if r['method'] == 'jtr' else 'mapping'} net"
        cells = []
        for side in ("published", "mtlwb"):
            s = r[f"{side} s"]
            if s is None:
                cells.append(f"not given (set {r['env']})")
            elif r is base or not sup[side]:
                cells.append(f"{s:.3f} s")
            else:
                cells.append(f"{s:.3f} s ({s / sup[side]:.2f}× supervised)")
        ratio = _ratio_text(r["published s"], r["mtlwb s"]) if r["published s"] is not None else "–"
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")
    r0 = rows[0]
    lines += ["", f"SegNet, batch {r0['batch']}, {r0['size'].replace('x', '×')}, {r0['threads']} threads, median of "
              f"{r0['repeats']} steps after {r0['warmup']} warm-ups, one process, round-robin; views made once, "
              "outside the timed step, on both sides."]
    for r in rows:
        if r["published aux. params"] and r["published aux. params"] != r["mtlwb aux. params"]:
            lines.append(f"- {r['variant']}: the published network has {r['published aux. params']:,} parameters, "
                         f"mtlwb's {r['mtlwb aux. params']:,}.")
    given = sorted({r["published code"] for r in rows if r["published code"]})
    lines.append(f"- published code read from: {', '.join(given)}" if given else
                 f"- published code not given: set {' and '.join(ENV.values())} to checkouts of the published "
                 "repositories to fill its column.")
    return "\n".join(lines)


def check_env() -> str | None:
    """The one-line error for a bad code path (None when the paths are fine or not given)."""
    try:
        published_code()
    except CodePathError as e:
        return str(e)
    return None


if __name__ == "__main__":
    error = check_env()
    if error:
        print(f"bench_published: {error}", file=sys.stderr)
        sys.exit(2)
    common.main(__doc__, run, report)
