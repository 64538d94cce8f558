"""t-SNE views of learned spaces: JTR's joint-task codes and any method's per-task (refined) features.

Why: JTR regularises predictions towards mixed targets in one joint space; if that works, codes of predictions and
of targets of the same image land together, whichever tasks the image was labelled for. Embeddings are cached in
``<run_dir>/tsne/`` keyed by a hash of the inputs, so re-opening a notebook is instant and never stale.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from tqdm.auto import tqdm

from ..config import ExperimentConfig
from ..core.io import atomic_torch_save, atomic_write_bytes
from ..experiment.build import Experiment
from ..experiment.files import SNAPSHOTS, TSNE_CACHE
from ..experiment.loop import EpochHook, train
from ..methods import Step, forward_step

# -- cached t-SNE ---------------------------------------------------------------------------------------------------

def tsne_key(x: np.ndarray, params: dict) -> str:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    h.update(str(x.shape).encode())
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()[:16]


def cached_tsne(x: np.ndarray, cache_dir: str | Path | None, name: str = "tsne", perplexity: float = 30.0,
                random_state: int = 0) -> np.ndarray:
    """2-D t-SNE of ``x`` [N, D]; loaded from ``<cache_dir>/<name>-<hash>.npz`` when the same inputs were seen."""
    x = np.asarray(x, dtype=np.float32)
    perplexity = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))      # sklearn needs perplexity < N
    params = {"perplexity": perplexity, "random_state": random_state, "init": "pca", "n_components": 2}
    path = Path(cache_dir) / f"{name}-{tsne_key(x, params)}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        with np.load(path) as f:
            return f["embedding"]
    from sklearn.manifold import TSNE  # lazy: scikit-learn costs a second of every notebook's start-up

    emb = TSNE(n_components=2, perplexity=perplexity, random_state=random_state, init="pca").fit_transform(x)
    emb = np.asarray(emb, dtype=np.float32)
    if path is not None:
        buf = io.BytesIO()
        np.savez(buf, embedding=emb, params=json.dumps(params))
        atomic_write_bytes(path, buf.getvalue())
    return emb


# -- epoch snapshots (the trainer keeps only the last checkpoint) ---------------------------------------------------

def snapshot_hook(run_dir: str | Path) -> EpochHook:
    """A ``train`` hook that writes the model's and the method's weights after every epoch to
    ``<run_dir>/snapshots/epoch-<e>.pt`` (atomically; what ``load_snapshot`` reads)."""
    folder = Path(run_dir) / SNAPSHOTS

    def save(exp: Experiment, epoch: int, entry: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(folder / f"epoch-{epoch}.pt", {"epoch": epoch, "model": exp.model.state_dict(),
                                                         "method": exp.method.state_dict()})

    return save


def train_with_snapshots(config: ExperimentConfig) -> dict:
    """``train(config)`` keeping every epoch's weights as a snapshot (``snapshot_hook``): one run, the same numbers
    and record as without snapshots."""
    return train(config, hooks=[snapshot_hook(config.resolved_run_dir)])


def snapshot_paths(run_dir: str | Path) -> dict[int, Path]:
    """Epoch -> snapshot checkpoint, sorted by epoch (empty if the run kept none)."""
    found = {int(p.stem.split("-")[1]): p for p in (Path(run_dir) / SNAPSHOTS).glob("epoch-*.pt")}
    return dict(sorted(found.items()))


def load_snapshot(exp, path: str | Path) -> None:
    """Put a snapshot's model and method weights into an experiment built by ``load_experiment``."""
    state = torch.load(path, map_location=exp.device, weights_only=False)
    exp.model.load_state_dict(state["model"])
    exp.method.load_state_dict(state["method"])
    exp.model.eval()
    exp.method.eval()


# -- collecting vectors -------------------------------------------------------------------------------------------

def _batches(dataset, indices: Sequence[int], batch_size: int):
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start:start + batch_size]]
        yield {k: (torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k]) else [it[k] for it in items])
               for k in items[0]}


def _dominant(labels: torch.Tensor) -> torch.Tensor:
    """Most frequent valid class per row of [N, P] labels (-1 = ignore; -1 if none valid)."""
    out = []
    for row in labels:
        valid = row[row >= 0]
        out.append(int(torch.bincount(valid).argmax()) if len(valid) else -1)
    return torch.tensor(out)


def _pool(code: torch.Tensor, pool: str, positions: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, C, h, w] -> ([B·k, C], flat position indices [B, k]); k = 1 for the image mean."""
    b, c, h, w = code.shape
    if pool == "mean":
        return code.mean(dim=(-2, -1)), torch.zeros(b, 1, dtype=torch.long)
    pos = torch.stack([torch.randperm(h * w, generator=gen)[:positions] for _ in range(b)])        # [B, k]
    flat = code.flatten(-2)                                                                          # [B, C, hw]
    return torch.gather(flat, 2, pos[:, None].expand(-1, c, -1)).transpose(1, 2).reshape(-1, c), pos


def collect_joint_codes(exp, n_images: int = 64, pool: str = "mean", positions: int = 4, batch_size: int = 16,
                        seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """JTR codes of predictions and of mixed targets for the first ``n_images`` training images.

    Training images, because the mixed target depends on the partial labels. Returns vectors [2·N·k, C] and one row
    per vector: source (prediction / mixed target), image, labelled tasks, dominant class. Gumbel noise is drawn
    from ``seed`` (the global RNG is restored), so the same model gives the same vectors and the cache hits.
    """
    if pool not in ("mean", "positions"):
        raise ValueError(f"pool={pool!r}: allowed ('mean', 'positions')")
    method = exp.method
    if not hasattr(method, "joint_codes"):
        raise ValueError(f"method {exp.config.method!r} has no joint_codes(step); the joint latent needs a JTR run")
    exp.model.eval()
    method.eval()
    names = [t.name for t in exp.tasks]
    indices = list(range(min(n_images, len(exp.train_set))))
    gen = torch.Generator().manual_seed(seed)
    vecs: list[torch.Tensor] = []
    rows: list[dict] = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for batch in _batches(exp.train_set, indices, batch_size):
            images = batch["image"].to(exp.device)
            features, refined, preds, bottleneck = forward_step(exp.model, method, images)
            idx = torch.as_tensor(batch["index"])
            labelled = exp.labelled[idx].to(exp.device)
            step = Step(images, features, refined, {k: v.float() for k, v in preds.items()},
                        {n: batch[n].to(exp.device) for n in names}, labelled, bottleneck)
            code_pred, code_target = method.joint_codes(step)
            h, w = code_pred.shape[-2:]
            sem = batch.get("semantic")
            for source, code in (("prediction", code_pred), ("mixed target", code_target)):
                v, pos = _pool(code.float().cpu(), pool, positions, torch.Generator().manual_seed(seed))
                vecs.append(v)
                if sem is not None:
                    small = torch.nn.functional.interpolate(sem[:, None].float(), size=(h, w), mode="nearest")
                    small = small[:, 0].long().flatten(1)
                    dom = (_dominant(sem.flatten(1)) if pool == "mean"
                           else torch.gather(small, 1, pos).flatten())
                else:
                    dom = torch.full((v.shape[0],), -1)
                k = pos.shape[1]
                for r in range(v.shape[0]):
                    b = r // k
                    lab = "+".join(n for j, n in enumerate(names) if labelled[b, j]) or "none"
                    rows.append({"source": source, "image": int(idx[b]), "labelled": lab,
                                 "dominant class": int(dom[r])})
    del gen
    return torch.cat(vecs).numpy(), pd.DataFrame(rows)


def collect_task_features(exp, n_images: int = 48, split: str = "eval", batch_size: int = 16
                          ) -> tuple[np.ndarray, pd.DataFrame]:
    """The refined per-task features (what each head reads), mean-pooled per image: [N·T, C] and a row per vector.

    Any method: for methods without refinement every task reads the same shared feature (points coincide).
    """
    dataset = exp.eval_set if split == "eval" else exp.train_set
    exp.model.eval()
    exp.method.eval()
    vecs, rows = [], []
    with torch.no_grad():
        for batch in _batches(dataset, list(range(min(n_images, len(dataset)))), batch_size):
            refined = forward_step(exp.model, exp.method, batch["image"].to(exp.device)).refined
            for t in exp.tasks:
                vecs.append(refined.task_features[t.name].float().mean(dim=(-2, -1)).cpu())
                rows += [{"task": t.name, "image": int(i)} for i in batch["index"]]
    return torch.cat(vecs).numpy(), pd.DataFrame(rows)


# -- figures ------------------------------------------------------------------------------------------------------

def tsne_scatter(embedding: np.ndarray, meta: pd.DataFrame, color: str, symbol: str | None = None,
                 title: str = "t-SNE", class_names: Sequence[str] | None = None) -> go.Figure:
    """Scatter of a 2-D embedding coloured by one column of ``meta`` (hover shows every column)."""
    df = meta.copy()
    df["x"], df["y"] = embedding[:, 0], embedding[:, 1]
    if class_names is not None and "dominant class" in df:
        df["dominant class"] = [class_names[c] if 0 <= c < len(class_names) else "none"
                                for c in df["dominant class"]]
    df[color] = df[color].astype(str)
    fig = px.scatter(df, x="x", y="y", color=color, symbol=symbol, hover_data=list(meta.columns), title=title,
                     category_orders={color: sorted(df[color].unique(), key=_natural)})
    fig.update_traces(marker=dict(size=7, opacity=0.8))
    return fig.update_layout(height=460, width=620, xaxis_title="t-SNE 1", yaxis_title="t-SNE 2")


def _natural(s: str) -> tuple:
    return (0, int(s)) if s.lstrip("-").isdigit() else (1, s)


def joint_latent_figure(exp, run_dir: str | Path, color: str = "labelled", n_images: int = 64, pool: str = "mean",
                        positions: int = 4, perplexity: float = 30.0, class_names: Sequence[str] | None = None
                        ) -> go.Figure:
    """t-SNE of JTR joint codes (circles: predictions, diamonds: mixed targets), coloured by ``color``."""
    x, meta = collect_joint_codes(exp, n_images, pool, positions)
    emb = cached_tsne(x, Path(run_dir) / TSNE_CACHE, f"joint-{pool}", perplexity)
    return tsne_scatter(emb, meta, color, symbol="source", class_names=class_names,
                        title=f"JTR joint-task codes ({pool}), coloured by {color}")


def joint_latent_over_epochs(exp, run_dir: str | Path, n_images: int = 32, perplexity: float = 30.0,
                             progress: bool = False) -> go.Figure | None:
    """One t-SNE of the codes of every epoch snapshot, coloured by epoch; None if the run kept no snapshots.

    The model in ``exp`` is left at the last snapshot's weights.
    """
    snaps = snapshot_paths(run_dir)
    if not snaps:
        return None
    xs, metas = [], []
    for epoch, path in tqdm(snaps.items(), desc="snapshots", disable=not progress, leave=False):
        load_snapshot(exp, path)
        x, meta = collect_joint_codes(exp, n_images)
        xs.append(x)
        metas.append(meta.assign(epoch=epoch))
    emb = cached_tsne(np.concatenate(xs), Path(run_dir) / TSNE_CACHE, "joint-epochs", perplexity)
    return tsne_scatter(emb, pd.concat(metas, ignore_index=True), "epoch", symbol="source",
                        title="JTR joint-task codes of every epoch snapshot")


def shared_by_all_tasks(x: np.ndarray, meta: pd.DataFrame) -> bool:
    """Whether every task's vector of each image is the same vector: the method gives every head the shared
    feature unchanged (supervised, mtpsl, jtr), so there are no per-task features to compare."""
    tasks = list(dict.fromkeys(meta["task"]))
    first = x[(meta["task"] == tasks[0]).to_numpy()]
    return all(np.array_equal(first, x[(meta["task"] == t).to_numpy()]) for t in tasks[1:])


def task_feature_figure(exp, run_dir: str | Path, n_images: int = 48, perplexity: float = 30.0) -> go.Figure:
    """t-SNE of the per-task refined features coloured by task: do tasks get their own regions?

    For a method whose heads all read the one shared feature, T identical copies of each point would be embedded
    (t-SNE then collapses them into a few blobs that look like a finding); the figure shows each image once and
    says in its title that the tasks share the feature.
    """
    x, meta = collect_task_features(exp, n_images)
    method = exp.config.method
    if shared_by_all_tasks(x, meta):
        one = (meta["task"] == meta["task"].iloc[0]).to_numpy()
        x, meta = x[one], meta[one].assign(task="all tasks (one shared feature)").reset_index(drop=True)
        emb = cached_tsne(x, Path(run_dir) / TSNE_CACHE, "shared-feature", perplexity)
        return tsne_scatter(emb, meta, "task", title=f"Per-task features ({method}): every task reads the same "
                            "shared feature<br><sup>no per-task refinement in this method: one point per image, "
                            "no task regions to compare</sup>")
    emb = cached_tsne(x, Path(run_dir) / TSNE_CACHE, "task-features", perplexity)
    return tsne_scatter(emb, meta, "task", title=f"Per-task features ({method}), coloured by task")
