"""The training loop: one function, any method, checkpoint and resume.

The trainer never names a method. It runs encode -> method.refine -> decode,
asks the method for its loss terms, combines the per-task supervised terms
with the loss-weighting scheme, adds the auxiliary terms, and logs every term.
State (checkpoint and record) is written atomically at the end of every evaluated epoch, of the last one, and of any
epoch ending ``CHECKPOINT_EVERY_S`` or more after the last write; a killed run resumes from its last checkpoint
and, because every epoch reseeds from (seed, epoch), finishes with exactly the numbers of an uninterrupted run. Why
not every epoch: the few-label regime's epochs take a fraction of a second, and saving model and optimizer state
(with an fsync) after each cost ~5 % of such a run; with the default ``eval_every: 1`` it is still every epoch.

Evaluation runs every ``eval_every`` epochs and after the last one, on the test
(eval) split and, with ``val_fraction`` > 0, on the held-out validation split;
the record keeps the last epoch's test metrics (``final``) and those of the
epoch best on validation (``best_val``, see ``mtlwb.experiment.selection``), both derived
from the checkpointed history so a resumed run reports the same.

Several training sources (``config.sources``, ``mtlwb.data.sources``): the trainer reads the sources built there;
with extra sources it trains on their mixture, drawn with their weights from the epoch seed, and evaluates every
source that has an evaluation split (``eval_by_source`` per evaluated epoch, ``final_by_source``); ``eval`` and
``final`` stay the main source's, so Δ_MTL and the tables read the same fields.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import identity
from ..config import ExperimentConfig
from ..core import distributed as dist_utils
from ..core.io import atomic_torch_save, signals_deferred
from ..core.runtime import epoch_seed, resolve_device, seed_everything
from ..data import MAIN_SOURCE, SourceMixture, build_training_sources
from ..data.augment import AugmentOptions, augment_batch
from ..data.registry import get_dataset
from ..data.views import make_views
from ..methods import METHODS, LossTerms, Step, build_method, forward_step, split_views
from ..models import MultiTaskNet
from ..objectives.metrics import MultiTaskMeter
from ..objectives.weighting import build_weighting
from . import diagnostics
from . import record as run_record
from .build import Experiment
from .files import CHECKPOINT
from .record import RunRecord
from .selection import best_on_validation

CHECKPOINT_EVERY_S = 60.0      # at most this much training is lost when a run is killed between evaluations


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN/inf; the last good checkpoint is kept."""


def build_experiment(config: ExperimentConfig) -> Experiment:
    """Check paths and data, then build datasets, model and method (no training)."""
    config.check_paths()
    device = resolve_device(config.device)
    seed_everything(config.seed)
    tasks, sources = build_training_sources(config.data_request)
    main = sources[0]
    # one source: its training split as it is (shuffled below as always); several: their weighted mixture
    train_set = SourceMixture(sources) if len(sources) > 1 else main.train
    labelled = train_set.table if len(sources) > 1 else main.table
    method_cls = METHODS[config.method]
    model = MultiTaskNet(tasks, config.backbone, config.backbone_weights, config.resolved_image_norm,
                         heads=not method_cls.owns_heads)          # a method that owns its heads gets none here
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = build_method(config.method, tasks, model.feature_channels, config.method_options,
                          config.loss_options, config.task_prior_matrix)
    if config.channels_last:           # the method's own networks (JTR's joint net, MTPSL's mapping net) as well
        method = method.to(memory_format=torch.channels_last)
    method.use_label_table(torch.from_numpy(labelled))
    _warn_emulated_bf16(config, device)
    pseudo = None
    if main.pseudo is not None and main.pseudo.any():     # extra sources come after the main one, never pseudo
        pseudo = torch.zeros(labelled.shape, dtype=torch.bool)
        pseudo[:len(main.pseudo)] = torch.from_numpy(main.pseudo)
    return Experiment(config, tasks, model.to(device), method.to(device), train_set, main.test,
                      torch.from_numpy(labelled), device, main.val, sources, pseudo)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (a CPU with avx512_bf16 or AMX; a CUDA GPU)."""
    if device.type != "cpu":
        return True
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def _warn_emulated_bf16(config: ExperimentConfig, device: torch.device) -> None:
    if config.precision == "bf16" and not native_bf16(device):
        warnings.warn("precision='bf16' on a CPU without native bfloat16 (avx512_bf16 or AMX): autocast emulates it "
                      "and trains slower than fp32", stacklevel=3)


def _autocast(config: ExperimentConfig, device: torch.device):
    if config.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _images(batch: dict, config: ExperimentConfig) -> torch.Tensor:
    images = batch["image"]
    return images.contiguous(memory_format=torch.channels_last) if config.channels_last else images


def evaluate(exp: Experiment, loader: DataLoader | None = None) -> tuple[dict, dict]:
    """Metrics over the evaluation split and the method's averaged summaries (e.g. task affinity)."""
    loader = loader or DataLoader(exp.eval_set, batch_size=exp.config.batch_size, shuffle=False,
                                  num_workers=exp.config.num_workers)
    exp.model.eval()
    exp.method.eval()
    meter = MultiTaskMeter(exp.tasks)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    with torch.inference_mode(), _autocast(exp.config, exp.device):
        for batch in loader:
            batch = _to(batch, exp.device)
            _, refined, preds, _ = forward_step(exp.model, exp.method, _images(batch, exp.config))
            meter.update({k: v.float() for k, v in preds.items()}, {t.name: batch[t.name] for t in exp.tasks})
            n = batch["image"].shape[0]
            for key, value in exp.method.eval_summary(refined).items():
                sums[key] = sums.get(key, 0) + value.float() * n
            count += n
    summaries = {k: (v / max(count, 1)).cpu().tolist() for k, v in sums.items()}
    return meter.compute(), summaries


def _optimizer(exp: Experiment, weighting: torch.nn.Module) -> torch.optim.Optimizer:
    cfg = exp.config
    groups = [{"params": list(exp.model.parameters()), "lr": cfg.lr}]
    groups += exp.method.parameter_groups(cfg.lr)
    extra = [p for p in weighting.parameters() if p.requires_grad]
    if extra:
        groups.append({"params": extra, "lr": cfg.lr})
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _check_finite(terms: dict[str, torch.Tensor], epoch: int, step: int) -> None:
    for name, value in terms.items():
        v = float(value.detach())
        if not math.isfinite(v):
            raise NonFiniteLossError(f"loss term {name!r} became {v} at epoch {epoch}, step {step}; "
                                     "the last good checkpoint is kept")


def _scheduler(config: ExperimentConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch: the step decay of MTAN/MTPSL/JTR, or the poly decay of the PASCAL-Context setups.

    A method's parameter group may carry its own step decay (``lr_step``, ``lr_gamma`` keys, e.g. MTPSL's FiLM
    tables: StepLR(30, 0.5) beside the network's StepLR(100, 0.5)); then every group gets its own factor.
    """
    if any("lr_step" in g for g in optimizer.param_groups):
        def factor(group: dict):
            if "lr_step" in group:
                return lambda e: group["lr_gamma"] ** (e // group["lr_step"])
            if config.lr_schedule == "poly":
                return lambda e: (1.0 - min(e, config.epochs) / max(1, config.epochs)) ** 0.9
            return lambda e: config.lr_gamma ** (e // config.resolved_lr_step)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(g) for g in optimizer.param_groups])
    if config.lr_schedule == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=max(1, config.epochs), power=0.9)
    return torch.optim.lr_scheduler.StepLR(optimizer, config.resolved_lr_step, config.lr_gamma)


def step_losses(exp: Experiment, views: list[dict], labelled: torch.Tensor) -> LossTerms:
    """The forward half of a training step: one forward pass on the batch's views concatenated (view 0 = the batch;
    the heads of views the method reads only detached run without a graph, ``forward_step``), then the method's
    loss terms, under the config's autocast. ``labelled`` [B, T]: the batch's rows of the label table."""
    cfg, names = exp.config, [t.name for t in exp.tasks]
    images = torch.cat([_images(v, cfg) for v in views]) if len(views) > 1 else _images(views[0], cfg)
    with _autocast(cfg, exp.device):
        features, refined, preds, bottleneck = forward_step(exp.model, exp.method, images, views=len(views))
        preds = {k: v.float() for k, v in preds.items()}
        targets = {n: torch.cat([v[n] for v in views]) if len(views) > 1 else views[0][n] for n in names}
        step = split_views(Step(images, features, refined, preds, targets, labelled, bottleneck), len(views))
        return exp.method.losses(step)


def train_epoch(exp: Experiment, weighting, optimizer, epoch: int, progress: bool = True,
                scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One pass over the training split; ``scaler`` (fp16) scales the loss so small gradients do not underflow."""
    cfg = exp.config
    scaler = scaler or torch.amp.GradScaler(exp.device.type, enabled=False)
    gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch))
    torch.manual_seed(epoch_seed(cfg.seed, epoch) + 1)
    if isinstance(exp.train_set, SourceMixture):    # several sources: weighted draws, seeded by (seed, epoch, rank)
        rank = dist_utils.current()
        sampler = exp.train_set.sampler(epoch_seed(cfg.seed, epoch), rank.rank, rank.world_size)
    else:
        sampler = dist_utils.train_sampler(exp.train_set, epoch_seed(cfg.seed, epoch), drop_last=False)
    loader = DataLoader(exp.train_set, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=gen, num_workers=cfg.num_workers,
                        drop_last=len(sampler if sampler is not None else exp.train_set) > cfg.batch_size)
    # augmentation draws from its own generator (per rank), so it never shifts the shuffling or method noise
    aug_gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch) + 2 + 7919 * dist_utils.current().rank)
    aug_options = AugmentOptions(flip=get_dataset(cfg.dataset).flip, normal_mode=cfg.resolved_normal_crop)
    view_spec = exp.method.view_spec
    exp.model.train()
    exp.method.train()
    task_names = [t.name for t in exp.tasks]
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
    for step, batch in enumerate(bar):
        batch = _to(batch, exp.device)
        if cfg.augment:
            batch = augment_batch(batch, exp.tasks, aug_gen, aug_options)
        # a method that trains on several augmented views gets them from the data layer, all in one forward pass
        views = make_views(batch, exp.tasks, view_spec, aug_gen, normal_mode=cfg.resolved_normal_crop) \
            if view_spec.active else [batch]
        labelled = exp.labelled[batch["index"].cpu()].to(exp.device)
        out = step_losses(exp, views, labelled)
        terms = out.all()
        _check_finite(terms, epoch, step)
        sup = {n: out.supervised[n] * cfg.task_weights.get(n, 1.0) for n in task_names}
        active = {n: bool(labelled[:, i].any()) for i, n in enumerate(task_names)}
        loss = weighting.combine(sup, active=active) + sum(out.auxiliary.values(), torch.zeros((), device=exp.device))
        _check_finite({"total": loss}, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        dist_utils.sync_gradients(p for group in optimizer.param_groups for p in group["params"])
        if cfg.grad_clip > 0:           # on the true (unscaled, rank-averaged) gradients, as a single process would
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip)
        scaler.step(optimizer)          # skips the step if fp16 gradients overflowed, then lowers the scale
        scaler.update()
        terms["total"] = loss
        for k, v in terms.items():
            if active.get(k, True):  # a task's mean is over the batches where it had labels
                totals[k] = totals.get(k, 0.0) + float(v.detach())
                counts[k] = counts.get(k, 0) + 1
        bar.set_postfix(loss=f"{totals['total'] / counts['total']:.3f}")
    return dist_utils.reduce_means(totals, counts)   # means over every rank's batches (one rank: as is)


def _state(exp: Experiment, weighting, optimizer, scheduler, scaler, epoch: int, history: list) -> dict:
    return {"epoch": epoch, "config": exp.config.to_dict(), "history": history,
            "model": exp.model.state_dict(), "method": exp.method.state_dict(),
            "weighting": weighting.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict()}


def _resume(exp: Experiment, weighting, optimizer, scheduler, scaler, run_dir: Path) -> tuple[int, list]:
    path = run_dir / CHECKPOINT
    if not path.exists():
        return 0, []
    state = torch.load(path, map_location=exp.device, weights_only=False)
    diff = list(identity.differences(state["config"], exp.config.to_dict(), resume=True))
    if diff:
        raise ValueError(f"run_dir={str(run_dir)!r} holds a checkpoint of a different experiment "
                         f"(differs in {diff}); choose another run_dir or delete it")
    exp.model.load_state_dict(state["model"])
    exp.method.load_state_dict(state["method"])
    weighting.load_state_dict(state["weighting"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state["epoch"], state["history"]


UNKNOWN_SPLIT = {"source": "unknown", "fallback": False,
                 "reason": "the training set carries no label_split (not built by mtlwb.data.build_datasets)"}


def _label_split(exp: Experiment) -> dict:
    """The split's provenance, from the training set or the dataset a validation Subset wraps."""
    for ds in (exp.train_set, getattr(exp.train_set, "dataset", None)):
        split = getattr(ds, "label_split", None)
        if split:
            return split
    return UNKNOWN_SPLIT


def _evaluates(epochs_done: int, config: ExperimentConfig) -> bool:
    """Every ``eval_every`` epochs, and always after the last one."""
    return epochs_done % config.eval_every == 0 or epochs_done == config.epochs


def _trained_rows(exp: Experiment, table: torch.Tensor | None = None) -> torch.Tensor:
    """[N_trained, T] rows of ``table`` (default: the label table) of the images actually trained on (validation
    images excluded)."""
    table = exp.labelled if table is None else table
    ids = getattr(exp.train_set, "indices", None)
    return table if ids is None else table[torch.as_tensor(ids)]


def _labelled_counts(exp: Experiment) -> tuple[dict[str, int], dict[str, int] | None]:
    """Trained images per task with a true label, and with a pseudo-label (None without pseudo-labels): the
    table the methods read marks both as labelled."""
    names = [t.name for t in exp.tasks]
    pseudo = torch.zeros_like(exp.labelled, dtype=torch.bool) if exp.pseudo is None else exp.pseudo
    true = _trained_rows(exp, exp.labelled * ~pseudo).sum(0).int().tolist()
    if exp.config.pseudo_labels == "none":
        return dict(zip(names, true)), None
    return dict(zip(names, true)), dict(zip(names, _trained_rows(exp, pseudo).sum(0).int().tolist()))


def write_record(run_dir: Path, exp: Experiment, history: list, status: str, error: str | None = None) -> RunRecord:
    """``metrics.json``: the full effective config, which label split was used (file + sha256, or generator +
    mask_seed; ``fallback`` when a published file was missing), per-epoch history, ``final`` (the last evaluated
    epoch's test metrics) and, with a validation split, ``best_val`` (test metrics at the epoch best on validation)."""
    evaluated = [h for h in history if "eval" in h]
    final = evaluated[-1]["eval"] if evaluated else {}
    labelled, pseudo = _labelled_counts(exp)
    record: RunRecord = {
        "run_id": exp.config.run_id, "status": status, "error": error,
        "config": exp.config.to_dict(), "tasks": [dict(t.__dict__) for t in exp.tasks],
        "num_train": len(exp.train_set), "num_eval": len(exp.eval_set),
        "labelled_per_task": labelled, "label_split": _label_split(exp),
        "device": str(exp.device), "history": history, "final": final}
    if pseudo is not None:
        record["pseudo_per_task"] = pseudo
    if exp.val_set is not None:
        record["num_val"] = len(exp.val_set)
        record["val_ids"] = list(exp.val_set.indices)
        record["best_val"] = best_on_validation(evaluated, exp.tasks)
    if len(exp.sources) > 1:
        record["sources"] = [s.summary() for s in exp.sources]
        record["final_by_source"] = evaluated[-1].get("eval_by_source", {}) if evaluated else {}
    return run_record.write_record(run_dir, record)


EpochHook = Callable[[Experiment, int, dict], None]


def train(config: ExperimentConfig, exp: Experiment | None = None, hooks: Sequence[EpochHook] = ()) -> dict:
    """Train (or resume) the experiment and return its record (also in <run_dir>/metrics.json).

    Under torchrun (WORLD_SIZE > 1) every rank trains on its shard with averaged gradients; only
    rank 0 evaluates and writes checkpoint and metrics, the other ranks return {'final': {}, ...}.

    ``hooks``: each is called as ``hook(exp, epoch, entry)`` at the end of every epoch trained here (``epoch`` =
    epochs done, ``entry`` = the epoch's history entry), on rank 0, after the epoch's record is written — to look at
    the model as it is then (``figures.latent`` keeps per-epoch snapshots this way) without restarting ``train``.
    A hook must not change the model, the method or any generator, or the numbers change.
    """
    dist_info = dist_utils.init_from_env(config.device)
    exp = exp or build_experiment(config)
    run_dir = config.resolved_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    weighting = build_weighting(config.weighting, [t.name for t in exp.tasks]).to(exp.device)
    optimizer = _optimizer(exp, weighting)
    scheduler = _scheduler(config, optimizer)
    scaler = torch.amp.GradScaler(exp.device.type, enabled=config.precision == "fp16")
    start, history = _resume(exp, weighting, optimizer, scheduler, scaler, run_dir)
    for module in (exp.model, exp.method, weighting):
        dist_utils.broadcast_module(module)
    eval_loader = DataLoader(exp.eval_set, batch_size=config.batch_size, shuffle=False,
                             num_workers=config.num_workers)
    val_loader = None if exp.val_set is None else DataLoader(exp.val_set, batch_size=config.batch_size,
                                                             shuffle=False, num_workers=config.num_workers)
    source_loaders = {s.name: DataLoader(s.test, batch_size=config.batch_size, shuffle=False,
                                         num_workers=config.num_workers)
                      for s in exp.sources[1:] if s.test is not None}
    epochs = tqdm(range(start, config.epochs), desc=config.run_id, disable=not config.progress or not dist_info.is_main,
                  initial=start, total=config.epochs)
    last_write = time.perf_counter()
    for epoch in epochs:
        t0 = time.perf_counter()
        try:
            train_terms = train_epoch(exp, weighting, optimizer, epoch, config.progress and dist_info.is_main,
                                      scaler)
        except NonFiniteLossError as e:
            if dist_info.is_main:
                write_record(run_dir, exp, history, "failed", str(e))
            raise
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        weighting.epoch_end({t.name: train_terms.get(t.name, 0.0) for t in exp.tasks})
        exp.method.on_epoch_end(epoch)
        for module in (exp.model, exp.method):
            dist_utils.broadcast_module(module)   # BatchNorm statistics are per rank: take rank 0's
        if not dist_info.is_main:
            continue
        entry = {"epoch": epoch + 1, "lr": lr, "train": train_terms}
        if _evaluates(epoch + 1, config):
            entry.update(_evaluations(exp, eval_loader, val_loader, source_loaders))
            if config.diagnostics:      # measured on a fixed probe batch; restores every state it touches
                entry["diagnostics"] = diagnostics.measure(exp, weighting.weights())
        entry.update(weights=weighting.weights(), seconds=time.perf_counter() - t0)
        history.append(entry)
        if _evaluates(epoch + 1, config) or time.perf_counter() - last_write >= CHECKPOINT_EVERY_S:
            state = _state(exp, weighting, optimizer, scheduler, scaler, epoch + 1, history)
            with signals_deferred():     # a Ctrl-C between the two would leave a checkpoint without its record
                atomic_torch_save(run_dir / CHECKPOINT, state)
                write_record(run_dir, exp, history, "running" if epoch + 1 < config.epochs else "completed")
            last_write = time.perf_counter()
        for hook in hooks:
            hook(exp, epoch + 1, entry)
    if not dist_info.is_main:
        return {"run_id": config.run_id, "status": "completed", "rank": dist_info.rank, "final": {}}
    if not history:   # epochs=0: record the untrained model's metrics
        history = [{"epoch": 0, "lr": config.lr, "train": {},
                    **_evaluations(exp, eval_loader, val_loader, source_loaders),
                    "weights": weighting.weights(), "seconds": 0.0}]
    return write_record(run_dir, exp, history, "completed")


def _evaluations(exp: Experiment, eval_loader: DataLoader, val_loader: DataLoader | None,
                 source_loaders: dict[str, DataLoader] | None = None) -> dict:
    """History fields of an evaluated epoch: test metrics (``eval``), method summaries, validation metrics, and
    with extra sources the test metrics of every evaluated source (``eval_by_source``, the main one included)."""
    metrics, summaries = evaluate(exp, eval_loader)
    out = {"eval": metrics, "summaries": summaries}
    if val_loader is not None:
        out["val"], _ = evaluate(exp, val_loader)
    if source_loaders:
        out["eval_by_source"] = {MAIN_SOURCE: metrics, **{name: evaluate(exp, loader)[0]
                                                          for name, loader in source_loaders.items()}}
    return out


def load_record(run_dir: str | Path) -> RunRecord:
    """A run folder's ``metrics.json`` (``experiment.record``)."""
    return run_record.read_record(run_dir)


def load_experiment(run_dir: str | Path, device: str = "auto") -> Experiment:
    """Rebuild a finished run's model and method from its checkpoint (for figures)."""
    run_dir = Path(run_dir)
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)
    cfg = dict(state["config"], device=device, run_dir=str(run_dir))
    exp = build_experiment(ExperimentConfig.from_dict(cfg))
    exp.model.load_state_dict(state["model"])
    exp.method.load_state_dict(state["method"])
    exp.model.eval()
    exp.method.eval()
    return exp
