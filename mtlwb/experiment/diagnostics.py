"""Mechanism diagnostics: does a method's cross-task signal point where the hidden labels would?

Why: the built-in scenes (and every benchmark whose partial labels are simulated) keep the ground truth of the tasks
hidden from training. So for a task *t* unlabelled on an image, one can compare the gradient the method's auxiliary
terms send with the gradient that *t*'s own label would send if it were given — and tell an uninformative signal
from one drowned in noise or starved of steps. Nothing here names a method: it reads ``Method.losses`` (its
``auxiliary`` terms, as they enter the training loss) and the model's predictions.

With ``ExperimentConfig.diagnostics`` the trainer calls ``measure`` at every evaluated epoch, on a fixed probe batch:
``probe_size`` training images (validation rows never), drawn by a generator seeded from ``mask_seed`` alone, so
every seed and method of an ablation sees the same probe; loaded without augmentation; their rows of the label
table; their hidden ground truth as the dataset stores it. A method trained on several views gets the probe's views
from the data layer (``make_views``) with a generator seeded from ``mask_seed`` too; each view carries its own
targets. Over the pairs (view v, image i, task t) with t unlabelled on i (labelled pairs excluded; invalid/ignore
pixels of the hidden target excluded from every vector):

1. Prediction level: g_aux = ∂L_aux/∂ŷ_t (L_aux = Σ auxiliary terms), g_hid = ∂L_t(ŷ_t, y_t)/∂ŷ_t (the task's
   supervised loss on the hidden label, the training reduction; view v's loss reads view v's targets). Per pair
   cos(g_aux, g_hid) (0 when either is zero); recorded: the mean over pairs (``cosine``), the share of pairs with
   cosine > 0 (``positive_share``), the share whose g_aux is not zero (``reached``) and the mean of
   ‖g_aux‖ / median‖g_sup‖ (``norm_ratio``), g_sup the gradient a *labelled* image of t gets from its real
   supervised loss (view 0, where the supervised losses are computed). Only the views the auxiliary terms read
   (some g_aux ≠ 0) are paired. Not applicable (None) when the auxiliary terms read no prediction at all.
2. Backbone level, over the shared encoder's parameters θ: cos(∂L_aux/∂θ, ∂L_hid/∂θ), L_hid = Σ_t w_t·L_t(hidden
   rows of view 0) — what labelling the hidden pairs would add to the training loss, w_t the task's weight there
   (``task_weights`` × the weighting scheme's current weight); per task the same with L_hid,t; the yardstick
   cos(∂L_sup/∂θ, ∂L_hid/∂θ): how far the labelled supervision already points where the hidden labels would; and
   ‖∂L_aux/∂θ‖ / ‖∂L_sup/∂θ‖. The auxiliary parts are None for a method without auxiliary terms.
3. Landscape: L_aux with task t's unlabelled rows (valid pixels) of every view set to the prediction, the ground
   truth written as a prediction, a perturbed ground truth, a constant and noise (the task kind's
   ``TargetForms``), each evaluated with the same noise seed (same Gumbel draws). Is the term's minimum near the
   truth (``truth_below_prediction``)?

Isolation: the measurement never changes training. The torch (CPU and CUDA), numpy and Python RNG states, every
buffer and parameter of model and method (BatchNorm running statistics, a VQ codebook's first-batch
initialisation, …) and every module's train/eval mode are restored afterwards; gradients come from
``torch.autograd.grad`` (never ``.backward()``, so no ``.grad`` is touched); the optimizer is never seen. Losses run
as in training (train mode, fp32) and as one process (under torchrun only rank 0 measures; no collective runs),
except that BatchNorm layers hold their batch statistics constant in the backward pass (``per_image_batch_norm``:
each gradient is that of the images its loss reads).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate

from ..core import distributed
from ..data.views import make_views
from ..methods import Step, forward_step, split_views
from ..objectives.losses import task_loss, valid_pixels
from ..tasks import TaskSpec
from .build import Experiment

PROBE_SIZE = 16
_PROBE_SALT = 0xD1A6          # the probe's draw: generator seeded from (salt, mask_seed), never from seed
_NOISE_SEED = 0xD1A6_0001     # torch's global generator before each loss evaluation: same Gumbel draws each time
LANDSCAPE = ("prediction", "truth", "perturbed", "constant", "noise")
TASK_FIELDS = ("hidden", "labelled", "cosine", "positive_share", "reached", "norm_ratio", "backbone_cosine",
               "backbone_supervised_cosine")
BACKBONE_FIELDS = ("cosine", "supervised_cosine", "norm_ratio", "auxiliary_norm", "supervised_norm",
                   "hidden_norm")


def target_as_prediction(form: str, task: TaskSpec, target: torch.Tensor, prediction: torch.Tensor,
                         gen: torch.Generator) -> torch.Tensor:
    """``form`` in LANDSCAPE[1:] of the task's ground truth, shaped like ``prediction`` (the task kind's
    ``TargetForms``)."""
    forms = task.kind_object.target_forms
    if forms is None:
        raise ValueError(f"diagnostics: task {task.name!r} of kind {task.kind!r} has no target forms (TaskKind."
                         "target_forms); the landscape needs them")
    return getattr(forms, form)(task, target, prediction, gen)


# --- the probe -----------------------------------------------------------------------------------------------------
@dataclass
class Probe:
    """The fixed probe batch: its views (view 0 first; collated items on the device) and label rows [B, T]."""

    views: list[dict]
    labelled: torch.Tensor
    positions: list[int]           # item positions in the main source's training split (for the record)


def build_probe(exp: Experiment, size: int = PROBE_SIZE) -> Probe:
    """``size`` images of the main source's training split (validation rows are not in it), drawn from a generator
    seeded by ``mask_seed`` alone; no augmentation; the method's views (if any) from a generator seeded likewise."""
    train = exp.sources[0].train if exp.sources else exp.train_set
    mask_seed = exp.config.mask_seed
    order = np.random.default_rng([_PROBE_SALT, mask_seed]).permutation(len(train))
    positions = sorted(int(i) for i in order[:min(size, len(train))])
    batch = default_collate([train[i] for i in positions])
    labelled = exp.labelled[batch["index"]].to(exp.device)            # main source rows come first in any mixture
    batch = {k: v.to(exp.device) if torch.is_tensor(v) else v for k, v in batch.items()}
    spec = exp.method.view_spec
    gen = torch.Generator().manual_seed(_PROBE_SALT * 7919 + mask_seed)
    views = make_views(batch, exp.tasks, spec, gen) if spec.active else [batch]
    return Probe(views, labelled, positions)


# --- isolation -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def isolated(*modules: nn.Module) -> Iterator[None]:
    """Run the body, then put back every RNG state, every buffer and parameter value (and object) and every
    module's train/eval mode of ``modules``, as they were before it."""
    rng = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
           np.random.get_state(), random.getstate())
    saved = [(m, kind, name, t, t.detach().clone()) for mod in modules for m in mod.modules()
             for kind in ("_buffers", "_parameters") for name, t in getattr(m, kind).items() if t is not None]
    modes = [(m, m.training) for mod in modules for m in mod.modules()]
    try:
        with distributed.single_process():
            yield
    finally:
        with torch.no_grad():
            for m, kind, name, tensor, copy in saved:
                getattr(m, kind)[name] = tensor
                tensor.copy_(copy)
        for m, training in modes:
            m.training = training
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state_all(rng[1])
        np.random.set_state(rng[2])
        random.setstate(rng[3])


@contextlib.contextmanager
def per_image_batch_norm(*modules: nn.Module) -> Iterator[None]:
    """Every BatchNorm layer of ``modules`` in training mode normalizes with its batch's statistics, as in training,
    but holds them constant in the backward pass, so a loss on some images reaches no other image through the batch
    mean and variance.

    Why: a training-mode BatchNorm is invariant to a shift common to the batch, so the gradient of a loss on some
    images is that loss's part minus the batch mean of it, spread over every image; the encoder gradients of two
    losses on disjoint images are then anti-correlated by construction (a supervised-only tiny run: the labelled
    supervision's cosine with the hidden labels' is −0.48 this way, +0.91 with the statistics held). With them
    held, each gradient is that of the images it is computed on, and the forward values stay training's.
    """
    patched = [m for mod in modules for m in mod.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]

    def held(bn: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            dims = [0, *range(2, x.dim())]
            mean, var = x.mean(dims).detach(), x.var(dims, unbiased=False).detach()
            return F.batch_norm(x, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return forward

    for bn in patched:
        bn.forward = held(bn)
    try:
        yield
    finally:
        for bn in patched:
            del bn.forward


# --- the measurement -----------------------------------------------------------------------------------------------
def _flat(grads: tuple[torch.Tensor | None, ...], like: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, like)])


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """cos(a, b) of two flat vectors (in float64, so that equal directions give 1 to ~1e-12); 0 when either is
    zero."""
    a, b = a.double(), b.double()
    na, nb = a.norm(), b.norm()
    return 0.0 if na == 0 or nb == 0 else float(((a @ b) / (na * nb)).clamp(-1.0, 1.0))


def _or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class _Pass:
    """One forward pass of the probe with everything the measures read (tensors concatenated over views)."""

    images: torch.Tensor
    features: torch.Tensor
    refined: Any
    predictions: dict[str, torch.Tensor]       # task -> [V·B, ...]
    targets: dict[str, torch.Tensor]           # task -> [V·B, ...]
    labelled: torch.Tensor                     # [B, T]
    bottleneck: torch.Tensor | None
    views: int

    def step(self, predictions: Mapping[str, torch.Tensor] | None = None) -> Step:
        return split_views(Step(self.images, self.features, self.refined, dict(predictions or self.predictions),
                                self.targets, self.labelled, self.bottleneck), self.views)


def _forward(exp: Experiment, probe: Probe) -> _Pass:
    views = probe.views
    images = torch.cat([v["image"] for v in views])
    torch.manual_seed(_NOISE_SEED)
    features, refined, preds, bottleneck = forward_step(exp.model, exp.method, images)
    targets = {t.name: torch.cat([v[t.name] for v in views]) for t in exp.tasks}
    return _Pass(images, features, refined, {k: v.float() for k, v in preds.items()}, targets, probe.labelled,
                 bottleneck, len(views))


def _losses(exp: Experiment, run: _Pass, predictions: Mapping[str, torch.Tensor] | None = None):
    torch.manual_seed(_NOISE_SEED)                 # every evaluation draws the same method noise
    return exp.method.losses(run.step(predictions))


def _view(x: torch.Tensor, v: int, B: int) -> torch.Tensor:
    return x[v * B:(v + 1) * B]


def measure(exp: Experiment, weights: Mapping[str, float] | None = None, probe: Probe | None = None,
            probe_size: int | None = None) -> dict[str, Any]:
    """The diagnostics of ``exp`` now (see the module docstring); JSON-ready, None where not applicable.

    ``weights``: the weighting scheme's current per-task weights (``Weighting.weights()``; default 1), which with
    ``task_weights`` scale each task's supervised loss in the training loss.
    """
    t0 = time.perf_counter()
    size = probe_size or getattr(exp.config, "diagnostics_probe", PROBE_SIZE)
    with isolated(exp.model, exp.method), torch.enable_grad():
        probe = probe or build_probe(exp, size)
        exp.model.train()
        exp.method.train()
        with per_image_batch_norm(exp.model, exp.method):
            out = _measure(exp, probe, weights or {})
    out["seconds"] = time.perf_counter() - t0
    return out


def _measure(exp: Experiment, probe: Probe, weights: Mapping[str, float]) -> dict[str, Any]:
    tasks, cfg = exp.tasks, exp.config
    run = _forward(exp, probe)
    terms = _losses(exp, run)
    B, V = probe.labelled.shape[0], run.views
    w = {t.name: float(weights.get(t.name, 1.0)) * float(cfg.task_weights.get(t.name, 1.0)) for t in tasks}
    params = [p for p in exp.model.encoder.parameters() if p.requires_grad]
    preds = [run.predictions[t.name] for t in tasks]
    zero = torch.zeros((), device=exp.device)
    aux = sum(terms.auxiliary.values(), zero)
    has_aux = bool(terms.auxiliary) and aux.requires_grad
    if has_aux:
        grads = torch.autograd.grad(aux, preds + params, retain_graph=True, allow_unused=True)
        g_aux = {t.name: g if g is not None else torch.zeros_like(p) for t, g, p in zip(tasks, grads, preds)}
        aux_theta = _flat(grads[len(preds):], params)
    else:
        g_aux = {t.name: torch.zeros_like(p) for t, p in zip(tasks, preds)}
        aux_theta = None
    sup = sum((w[t.name] * terms.supervised[t.name] for t in tasks), zero)
    grads = torch.autograd.grad(sup, preds + params, retain_graph=True, allow_unused=True) \
        if sup.requires_grad else (None,) * (len(preds) + len(params))
    g_sup = {t.name: g if g is not None else torch.zeros_like(p) for t, g, p in zip(tasks, grads, preds)}
    sup_theta = _flat(grads[len(preds):], params)

    hidden = 1.0 - probe.labelled.float()                                                       # [B, T]
    valid, g_hid = {}, {}
    for i, t in enumerate(tasks):
        pred, target = run.predictions[t.name], run.targets[t.name]
        valid[t.name] = valid_pixels(t, target).expand_as(pred)
        leaf = pred.detach().requires_grad_()
        loss = sum(task_loss(t, _view(leaf, v, B), _view(target, v, B), hidden[:, i], exp.method.loss_options)
                   for v in range(V))
        g_hid[t.name] = torch.autograd.grad(loss, leaf)[0] if loss.requires_grad else torch.zeros_like(pred)

    read_views = [v for v in range(V) if any(_view(g_aux[t.name], v, B).any() for t in tasks)]
    reads = bool(read_views)
    record: dict[str, Any] = {"auxiliary_terms": sorted(terms.auxiliary), "reads_predictions": reads,
                              "probe": {"images": B, "views": V, "views_read": read_views,
                                        "positions": probe.positions}}

    hid_theta_t: dict[str, torch.Tensor] = {}
    for t, pred in zip(tasks, preds):
        grad_out = torch.zeros_like(pred)
        grad_out[:B] = w[t.name] * _view(g_hid[t.name], 0, B)                        # view 0: the supervised view
        g = torch.autograd.grad(pred, params, grad_outputs=grad_out, retain_graph=True, allow_unused=True)
        hid_theta_t[t.name] = _flat(g, params)
    hid_theta = sum(hid_theta_t.values())

    per_task = {}
    for i, t in enumerate(tasks):
        entry = _prediction_level(t, i, probe.labelled, valid[t.name], g_aux[t.name], g_hid[t.name],
                                  g_sup[t.name], read_views, B, reads)
        has_hidden = bool(hid_theta_t[t.name].any())
        entry["backbone_cosine"] = _cosine(aux_theta, hid_theta_t[t.name]) if has_aux and has_hidden else None
        entry["backbone_supervised_cosine"] = _cosine(sup_theta, hid_theta_t[t.name]) if has_hidden else None
        entry["landscape"] = _landscape(exp, run, t, i, probe.labelled, valid[t.name], _total(terms.auxiliary)) \
            if reads and entry["hidden"] else None
        per_task[t.name] = entry
    record["tasks"] = per_task

    any_hidden = bool(hid_theta.any())
    sup_norm = float(sup_theta.norm())
    record["backbone"] = {
        "cosine": _cosine(aux_theta, hid_theta) if has_aux and any_hidden else None,
        "supervised_cosine": _cosine(sup_theta, hid_theta) if any_hidden else None,
        "norm_ratio": _or_none(float(aux_theta.norm()) / sup_norm) if has_aux and sup_norm > 0 else None,
        "auxiliary_norm": float(aux_theta.norm()) if has_aux else None,
        "supervised_norm": sup_norm, "hidden_norm": float(hid_theta.norm()) if any_hidden else 0.0}
    return record


def _prediction_level(task: TaskSpec, i: int, labelled: torch.Tensor, valid: torch.Tensor, g_aux: torch.Tensor,
                      g_hid: torch.Tensor, g_sup: torch.Tensor, read_views: list[int], B: int,
                      reads: bool) -> dict[str, Any]:
    """Per-pair cosines, positive share, reach and norm ratio of one task (see the module docstring)."""
    lab = labelled[:, i].bool()
    sup_norms = [float((_view(g_sup, 0, B)[b] * _view(valid, 0, B)[b]).norm()) for b in range(B) if lab[b]]
    sup_norms = [n for n in sup_norms if n > 0]
    median_sup = float(np.median(sup_norms)) if sup_norms else None
    cosines, norms = [], []
    for v in read_views:
        a_v, h_v, m_v = _view(g_aux, v, B), _view(g_hid, v, B), _view(valid, v, B)
        for b in range(B):
            if lab[b] or not m_v[b].any():
                continue                                   # labelled pairs and fully invalid targets: excluded
            a = (a_v[b] * m_v[b]).flatten()
            cosines.append(_cosine(a, (h_v[b] * m_v[b]).flatten()))
            norms.append(float(a.norm()))
    hidden = sum(1 for b in range(B) if not lab[b] and _view(valid, 0, B)[b].any())
    entry: dict[str, Any] = {"hidden": hidden, "labelled": int(lab.sum())}
    if not reads or not cosines:
        return {**entry, "cosine": None, "positive_share": None, "reached": None, "norm_ratio": None}
    return {**entry, "cosine": float(np.mean(cosines)), "positive_share": float(np.mean([c > 0 for c in cosines])),
            "reached": float(np.mean([x > 0 for x in norms])),
            "norm_ratio": float(np.mean(norms)) / median_sup if median_sup else None}


def _landscape(exp: Experiment, run: _Pass, task: TaskSpec, i: int, labelled: torch.Tensor, valid: torch.Tensor,
               at_prediction: float) -> dict[str, Any]:
    """L_aux with the task's unlabelled, valid entries of every view set to each form of LANDSCAPE (the first, the
    prediction itself, is ``at_prediction``: the value of the gradient pass, same noise)."""
    B = labelled.shape[0]
    rows = (~labelled[:, i].bool()).repeat(run.views)                                    # [V·B]
    shape = (-1,) + (1,) * (valid.dim() - 1)
    where = valid & rows.view(shape)
    pred, target = run.predictions[task.name].detach(), run.targets[task.name]
    gen = torch.Generator().manual_seed(_NOISE_SEED + i)
    values = {"prediction": at_prediction}
    with torch.no_grad():
        for form in LANDSCAPE[1:]:
            parts = [target_as_prediction(form, task, _view(target, v, B), _view(pred, v, B), gen)
                     for v in range(run.views)]
            terms = _losses(exp, run, {**run.predictions, task.name: torch.where(where, torch.cat(parts), pred)})
            values[form] = _total(terms.auxiliary)
    values["truth_below_prediction"] = values["truth"] < values["prediction"]
    return values


def _total(auxiliary: Mapping[str, torch.Tensor]) -> float:
    return float(sum(float(v.detach()) for v in auxiliary.values()))


# --- reading the record --------------------------------------------------------------------------------------------
def flatten(entry: Mapping[str, Any]) -> dict[str, float]:
    """One history entry's ``diagnostics`` as ``{"<task>/<field>": value}``: the task fields, the landscape as
    ``"<task>/landscape <form>"`` (``truth_below_prediction`` as 0/1) and the backbone totals as
    ``"backbone/<field>"``. Not applicable values (None) are left out; so is everything for an entry without
    diagnostics."""
    d = entry.get("diagnostics") or {}
    out: dict[str, float] = {}
    for task, fields in (d.get("tasks") or {}).items():
        for key in TASK_FIELDS:
            if fields.get(key) is not None:
                out[f"{task}/{key}"] = float(fields[key])
        for key, value in (fields.get("landscape") or {}).items():
            out[f"{task}/landscape {key}"] = float(value)
    for key in BACKBONE_FIELDS:
        if (d.get("backbone") or {}).get(key) is not None:
            out[f"backbone/{key}"] = float(d["backbone"][key])
    return out


def history_frame(history: list[Mapping[str, Any]]):
    """Long frame (epoch, task, measure, value) of every evaluated epoch's diagnostics in a run's history; task
    ``backbone`` holds the totals over tasks."""
    import pandas as pd

    rows = [(h["epoch"], *key.split("/", 1), value) for h in history for key, value in flatten(h).items()]
    return pd.DataFrame(rows, columns=["epoch", "task", "measure", "value"])


EPOCH_COLUMNS = {"hidden": "hidden", "labelled": "labelled", "cosine": "prediction cos",
                 "positive_share": "share cos > 0", "reached": "reached", "norm_ratio": "‖g_aux‖ / ‖g_sup‖",
                 "backbone_cosine": "backbone cos", "backbone_supervised_cosine": "yardstick: labelled cos"}


def epoch_table(entry: Mapping[str, Any]):
    """One evaluated epoch's diagnostics as a table: a row per task (the landscape's values as its last columns)
    and a row ``backbone`` with the totals over tasks; empty cells where a measure does not apply."""
    import pandas as pd

    d = entry.get("diagnostics") or {}
    rows = []
    for task, fields in (d.get("tasks") or {}).items():
        row = {"task": task, **{header: fields.get(key) for key, header in EPOCH_COLUMNS.items()}}
        row.update({f"L_aux at {k}": v for k, v in (fields.get("landscape") or {}).items()})
        rows.append(row)
    if d:
        b = d["backbone"]
        rows.append({"task": "backbone", "backbone cos": b["cosine"], "yardstick: labelled cos": b["supervised_cosine"],
                     "‖g_aux‖ / ‖g_sup‖": b["norm_ratio"]})
    return pd.DataFrame(rows).set_index("task") if rows else pd.DataFrame()


__all__ = ["BACKBONE_FIELDS", "LANDSCAPE", "PROBE_SIZE", "TASK_FIELDS", "Probe",
           "build_probe", "epoch_table", "flatten", "history_frame", "isolated", "measure", "per_image_batch_norm",
           "target_as_prediction"]
