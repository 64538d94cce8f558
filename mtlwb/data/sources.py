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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from ..tasks import TaskSpec
from .masks import check_setting
from .registry import check_tasks, get_dataset, resolve_label_split
from .style import resolve_style

if TYPE_CHECKING:
    from ..config import ExperimentConfig

MAIN_SOURCE = "main"
SOURCE_KEYS = ("name", "data_root", "dataset", "tasks", "label_setting", "mask_seed", "train_samples",
               "eval_samples", "weight", "evaluate", "generate")
GENERATE_KEYS = ("n_train", "n_val", "height", "width", "seed", "style")
_MIXTURE_SALT = 3                  # the sampler's generator: epoch seed + 3 (+2 is augmentation's)


@dataclass(frozen=True)
class SourceSpec:
    """One extra source as validated from the config (a ``registry.SplitRequest``)."""

    name: str
    data_root: str
    dataset: str
    tasks: list[str]
    label_setting: str = "full"
    mask_seed: int = 0
    train_samples: int | None = None
    eval_samples: int | None = None
    weight: float = 1.0
    evaluate: bool = True
    generate: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SOURCE_KEYS}


def parse_sources(raw: Any, main_dataset: str, main_tasks: list[str]) -> list[SourceSpec]:
    """``config.sources`` -> specs with every default filled in; ValueError naming ``sources[i].key`` otherwise."""
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"sources={raw!r}: must be a list of dicts (extra training sources), [] for none")
    specs, names = [], {MAIN_SOURCE}
    for i, entry in enumerate(raw):
        where = f"sources[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}={entry!r}: must be a dict with keys from {list(SOURCE_KEYS)}")
        unknown = sorted(set(entry) - set(SOURCE_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; allowed {list(SOURCE_KEYS)}")
        if not isinstance(entry.get("data_root"), str) or not entry["data_root"]:
            raise ValueError(f"{where}.data_root={entry.get('data_root')!r}: required, the source's folder")
        name = entry.get("name", f"source{i + 1}")
        if not isinstance(name, str) or not name or name in names:
            raise ValueError(f"{where}.name={name!r}: must be a non-empty string other than {sorted(names)}")
        names.add(name)
        dataset = entry.get("dataset", main_dataset)
        try:
            get_dataset(dataset)
        except ValueError as e:
            raise ValueError(f"{where}.{e}") from None
        tasks = entry.get("tasks", list(main_tasks))
        if not isinstance(tasks, (list, tuple)) or not tasks:
            raise ValueError(f"{where}.tasks={tasks!r}: must name at least one labelled task of tasks={main_tasks} "
                             "(a source with no labelled task adds nothing)")
        tasks = list(tasks)
        bad = [t for t in tasks if t not in main_tasks]
        if bad or len(set(tasks)) != len(tasks):
            raise ValueError(f"{where}.tasks={tasks}: give distinct tasks from the config's tasks={main_tasks}")
        tasks = [t for t in main_tasks if t in tasks]        # the config's column order
        _with_where(where, check_tasks, dataset, tasks)
        setting = entry.get("label_setting", "full")
        if not isinstance(setting, str):
            raise ValueError(f"{where}.label_setting={setting!r}: must be a string")
        _with_where(where, check_setting, setting, tasks)
        spec = SourceSpec(name, entry["data_root"], dataset, tasks, setting,
                          _int(where, "mask_seed", entry.get("mask_seed", 0), 0),
                          _optional_int(where, "train_samples", entry.get("train_samples")),
                          _optional_int(where, "eval_samples", entry.get("eval_samples")),
                          _weight(where, entry.get("weight", 1.0)), _bool(where, entry.get("evaluate", True)),
                          _generate(where, entry.get("generate", {}), dataset))
        if spec.evaluate:
            missing = [t for t in main_tasks if t not in get_dataset(dataset).tasks]
            if missing:
                raise ValueError(f"{where}: evaluate=true needs every task of tasks={main_tasks} annotated in "
                                 f"dataset {dataset!r} (missing {missing}); set evaluate: false")
        specs.append(spec)
    return specs


def _with_where(where: str, check, *args) -> None:
    try:
        check(*args)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _int(where: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}.{key}={value!r}: must be an integer >= {minimum}")
    return value


def _optional_int(where: str, key: str, value: Any) -> int | None:
    return None if value is None else _int(where, key, value, 1)


def _weight(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{where}.weight={value!r}: must be a finite number > 0 (the main source's weight is 1)")
    return float(value)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}.evaluate={value!r}: must be true or false")
    return value


def _generate(where: str, value: Any, dataset: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}.generate={value!r}: must be a dict with keys from {list(GENERATE_KEYS)}")
    if value and dataset != "scenes":
        raise ValueError(f"{where}.generate: only a source of dataset 'scenes' is generated (got {dataset!r})")
    unknown = sorted(set(value) - set(GENERATE_KEYS))
    if unknown:
        raise ValueError(f"{where}.generate: unknown keys {unknown}; allowed {list(GENERATE_KEYS)}")
    if "style" in value:
        _with_where(f"{where}.generate", resolve_style, value["style"])
    return dict(value)


def check_source_paths(specs: Sequence[SourceSpec]) -> None:
    """Every extra source's data must exist (scenes sources are generated by ``ensure_sources``)."""
    for i, spec in enumerate(specs):
        try:
            get_dataset(spec.dataset).check_root(spec.data_root)
        except FileNotFoundError as e:
            hint = (" (generated by mtlwb.data.ensure_sources(config), as the training notebook does, or "
                    "`mtlwb generate --root ... --style ...`)") if spec.dataset == "scenes" else ""
            raise FileNotFoundError(f"sources[{i}] ({spec.name}): {e}{hint}") from None


def ensure_sources(config: ExperimentConfig) -> list[Path]:
    """Generate every extra source of dataset ``scenes`` that is not complete yet, with its ``generate`` options."""
    from . import ensure_dataset

    return [ensure_dataset(s.data_root, **s.generate) for s in parse_sources(config.sources, config.dataset,
                                                                             config.tasks) if s.dataset == "scenes"]


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
            if t.kind == "classification":                         # image-level: [] class, -1 = undefined
                item[t.name] = torch.tensor(-1, dtype=torch.int64)
            elif t.kind == "regression":                           # image-level: [C]
                item[t.name] = torch.zeros(t.channels)
            elif t.kind == "segmentation":                         # [H, W], -1 = ignore
                item[t.name] = torch.full((h, w), -1, dtype=torch.int64)
            else:                                                  # [C, H, W]
                item[t.name] = torch.zeros(t.channels, h, w)
        return item


def _main_source(config: ExperimentConfig) -> tuple[list[TaskSpec], TrainingSource]:
    from . import build_splits

    s = build_splits(config)
    label_split = getattr(s.train, "label_split", None) or getattr(getattr(s.train, "dataset", None),
                                                                    "label_split", None) or {}
    return s.tasks, TrainingSource(MAIN_SOURCE, config.data_root, 1.0, list(config.tasks), s.train, s.labelled,
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


def build_training_sources(config: ExperimentConfig) -> tuple[list[TaskSpec], list[TrainingSource]]:
    """The config's tasks and its sources: the main one (``build_splits``) first, then ``config.sources``."""
    tasks, main = _main_source(config)
    specs = parse_sources(config.sources, config.dataset, config.tasks)
    return tasks, [main] + [_extra_source(spec, tasks, main) for spec in specs]


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
