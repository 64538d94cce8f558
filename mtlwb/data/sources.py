"""Training sources: where a run's images, tasks and label table come from — the one place the trainer reads.

A run trains on its main source (the config's ``data_root`` / ``label_setting``, source 0, with its validation
split) and on the extra sources of ``config.sources``: other roots, each with its own labelled tasks, label
setting, size and sampling weight. This is the question of JTR's paper about combining data of different
origins (NYUv2's 47,584 extra frames labelled for depth only, ~60x its multi-task split): does a large source
labelled for one task, from another domain, help a small multi-task one?

A source spec (one dict of ``config.sources``; ``SOURCE_KEYS``)::

    {name: B, data_root: data/scenes-B, dataset: scenes,   # dataset: default the main one
     tasks: [depth],              # the tasks it labels (default: all the config's); the others are unlabelled
     label_setting: full,         # the setting among those tasks (default full), mask_seed (default 0)
     train_samples: 1000, eval_samples: 200,                # first N images (default: all)
     weight: 1.0,                 # sampling weight; the main source's is 1
     evaluate: true,              # evaluate on its evaluation split (default true)
     generate: {style: B, seed: 1, n_train: 1000, n_val: 250}}   # scenes only: how ensure_sources makes it

Every source's label table has the config's task columns; a task the source does not label is a column of
zeros, and its targets are placeholders (``ignore`` / zeros) that are never read from disk. So the label mask
alone tells every method which tasks an image has, and every method trains unchanged on a mixture.

The mixture (``SourceMixture``) concatenates the sources' training images and tables; item ``index`` is the row
of the concatenated table. An epoch draws, with replacement, as many images as all sources hold together
(sum of their training sizes); each draw picks source k with probability weight_k / sum of weights, then an
image of it uniformly. Weights proportional to the sizes give the ordinary epoch over the union in expectation;
equal weights oversample the smaller source. The draws come from a generator seeded by the epoch seed (and the
rank), so a resumed run replays them exactly.

With ``sources=[]`` nothing here changes the single-source path: ``build_training_sources`` returns the main
source built by ``build_splits``, and the trainer shuffles it as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from ..tasks import TaskSpec
from .generate import ensure_dataset
from .registry import get_dataset, resolve_label_split
from .request import MAIN_SOURCE, DataRequest, SourceSpec
from .splits import build_splits

__all__ = ["MAIN_SOURCE", "SourceMixture", "TrainingSource", "build_training_sources", "ensure_sources",
           "sources_text"]

_MIXTURE_SALT = 3                  # the sampler's generator: epoch seed + 3 (+2 is augmentation's)


def ensure_sources(request: DataRequest) -> list[Path]:
    """Generate every extra source of dataset ``scenes`` that is not complete yet, with its ``generate`` options."""
    return [ensure_dataset(s.data_root, **s.generate) for s in request.sources if s.dataset == "scenes"]


# --- built sources ------------------------------------------------------------------------------------------------
@dataclass
class TrainingSource:
    """One source as the trainer reads it."""

    name: str
    data_root: str
    weight: float
    labelled_tasks: list[str]          # the tasks this source labels (columns of ``table`` that can be 1)
    train: Dataset                     # images trained on; item "index" = row of ``table``
    table: np.ndarray                  # [N_k, T] over the source's whole training split (config task columns)
    train_ids: np.ndarray              # [n_k] rows trained on
    test: Dataset | None               # its evaluation split (None: not evaluated)
    label_split: dict                  # the table's provenance (registry.resolve_label_split)
    val: Dataset | None = None         # main source only (val_fraction)
    val_ids: np.ndarray = field(default_factory=lambda: np.arange(0))
    pseudo: np.ndarray | None = None   # main source only: [N_k, T] bool, entries of ``table`` that are pseudo-labels

    def true_labels(self) -> np.ndarray:
        """[N_k, T] the table without its pseudo-labelled entries."""
        return self.table if self.pseudo is None else np.where(self.pseudo, 0, self.table).astype(self.table.dtype)

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for the run record."""
        return {"name": self.name, "data_root": self.data_root, "weight": self.weight,
                "labelled_tasks": self.labelled_tasks, "num_train": len(self.train),
                "num_eval": None if self.test is None else len(self.test),
                "labelled_per_task": self.true_labels()[self.train_ids].sum(0).astype(int).tolist(),
                "label_split": self.label_split}


class _WithPlaceholders(Dataset):
    """A source's split with placeholder targets (``ignore`` / zeros) for the tasks it does not label, so that
    its items collate with the other sources' (the label table says those tasks are unlabelled)."""

    def __init__(self, base: Dataset, tasks: list[TaskSpec], labelled: list[str]) -> None:
        self.base, self.tasks, self.labelled = base, tasks, set(labelled)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        h, w = item["image"].shape[-2:]
        for t in self.tasks:
            if t.name in self.labelled:
                continue
            item[t.name] = t.kind_object.placeholder(t, (h, w))
        return item


def _main_source(request: DataRequest) -> tuple[list[TaskSpec], TrainingSource]:
    s = build_splits(request)
    label_split = getattr(s.train, "label_split", None) or getattr(getattr(s.train, "dataset", None),
                                                                    "label_split", None) or {}
    return s.tasks, TrainingSource(MAIN_SOURCE, request.data_root, 1.0, list(request.tasks), s.train, s.labelled,
                                   s.train_ids, s.test, label_split, s.val, s.val_ids, s.pseudo)


def _extra_source(spec: SourceSpec, tasks: list[TaskSpec], main: TrainingSource) -> TrainingSource:
    info = get_dataset(spec.dataset)
    root = Path(spec.data_root)
    info.check_root(root)
    own = info.make_tasks(list(spec.tasks), root)
    wanted = {t.name: t for t in tasks}
    if any(t != wanted[t.name] for t in own):
        raise ValueError(f"source {spec.name!r} ({spec.data_root}): its tasks {own} differ from the main source's "
                         f"{[wanted[t.name] for t in own]} (e.g. another number of semantic classes)")
    train = info.loader(root, "train", own, spec.train_samples)
    table, label_split = resolve_label_split(info, spec, len(train), getattr(train, "ids", None))
    full = np.zeros((len(train), len(tasks)), np.float32)      # [N_k, T]: zeros for the tasks it does not label
    full[:, [[t.name for t in tasks].index(n) for n in spec.tasks]] = table
    test = info.loader(root, "val", tasks, spec.eval_samples) if spec.evaluate else None
    image, main_image = train[0]["image"].shape, main.train[0]["image"].shape
    if image != main_image:
        raise ValueError(f"source {spec.name!r} ({spec.data_root}): images of shape {tuple(image)}, the main "
                         f"source's are {tuple(main_image)}; batches mix them, so they must agree")
    return TrainingSource(spec.name, spec.data_root, spec.weight, list(spec.tasks),
                          _WithPlaceholders(train, tasks, spec.tasks), full, np.arange(len(train)), test,
                          label_split)


def build_training_sources(request: DataRequest) -> tuple[list[TaskSpec], list[TrainingSource]]:
    """The request's tasks and its sources: the main one (``build_splits``) first, then ``request.sources``."""
    tasks, main = _main_source(request)
    return tasks, [main] + [_extra_source(spec, tasks, main) for spec in request.sources]


class SourceMixture(Dataset):
    """The sources' training images end to end; item ``index`` is the row of the concatenated ``table``.

    ``indices`` (the rows trained on) and ``label_split`` (the main source's) read like a ``Subset`` of one
    source, for the run record.
    """

    def __init__(self, sources: Sequence[TrainingSource]) -> None:
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(s.table) for s in self.sources])         # table row of each source
        self.table = np.concatenate([s.table for s in self.sources])                  # [sum N_k, T]
        self.sizes = np.array([len(s.train) for s in self.sources])
        self.starts = np.cumsum([0] + self.sizes.tolist())                            # item position of each
        self.indices = np.concatenate([s.train_ids + o for s, o in zip(self.sources, self.offsets)]).tolist()
        self.label_split = self.sources[0].label_split

    def __len__(self) -> int:
        return int(self.starts[-1])

    def source_of(self, position: int) -> int:
        return int(np.searchsorted(self.starts, position, side="right") - 1)

    def __getitem__(self, position: int) -> dict:
        k = self.source_of(position)
        item = dict(self.sources[k].train[position - int(self.starts[k])])
        item["index"] = int(item["index"]) + int(self.offsets[k])
        return item

    def sample_weights(self) -> torch.Tensor:
        """[len] per-image weight: weight_k / n_k, so source k is drawn with probability weight_k / sum."""
        per = [torch.full((int(n),), s.weight / int(n), dtype=torch.float64) for s, n in zip(self.sources, self.sizes)]
        return torch.cat(per)

    def sampler(self, epoch_seed: int, rank: int = 0, world_size: int = 1) -> WeightedRandomSampler:
        """The epoch's draws: len(self) / world_size per rank, seeded by (epoch seed, rank)."""
        gen = torch.Generator().manual_seed(epoch_seed + _MIXTURE_SALT + 7919 * rank)
        return WeightedRandomSampler(self.sample_weights(), math.ceil(len(self) / world_size), replacement=True,
                                     generator=gen)


def sources_text(sources: Sequence[dict]) -> str:
    """One line for tables: ``none`` or ``B: depth (full) ×1`` per extra source."""
    if not sources:
        return "none"
    return " + ".join(f"{s.get('name', '?')}: {','.join(s.get('tasks', []))} ({s.get('label_setting', 'full')}) "
                      f"×{s.get('weight', 1.0):g}" for s in sources)
