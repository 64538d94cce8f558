"""The experiment configuration: one dataclass shared by notebooks, CLI, sweeps and tests.

Every field is checked on construction, so a typo in a notebook parameter
or a sweep grid fails before any data is read, with the field named and the
allowed values listed. Paths are checked separately (``check_paths``) because
a config may be built on one machine and run on another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data.registry import DATASET_NAMES
from .data.request import DataRequest
from .identity import run_id
from .methods import METHODS, options_dict, parse_options
from .models import BACKBONES, IMAGE_NORMS
from .objectives.losses import EDGE_LOSSES, NORMAL_LOSSES, REDUCTIONS, REGRESSION_LOSSES, LossOptions
from .objectives.weighting import WEIGHTINGS
from .tasks.priors import parse_task_prior

DATASETS = DATASET_NAMES  # scenes, nyuv2, cityscapes7, cityscapes19, pascal_context (data/registry.py)
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
LR_SCHEDULES = ("step", "poly")
NORMAL_CROPS = ("auto", "bilinear", "nearest")


@dataclass
class ExperimentConfig:
    # data
    dataset: str = "scenes"
    data_root: str = "data/scenes-64x80"
    tasks: list[str] = field(default_factory=lambda: ["semantic", "depth", "normal"])
    label_setting: str = "onelabel"
    mask_seed: int = 0
    train_samples: int | None = None      # use only the first N training images (tiny runs)
    eval_samples: int | None = None
    augment: bool = False                  # papers' scale-crop / flip / jitter on training batches (data/augment.py)
    # how the scale-crop resizes normals: bilinear (the MTPSL/JTR loaders') | nearest | auto (nearest on the
    # built-in scenes, whose earlier runs keep their ids and numbers; bilinear on the real datasets)
    normal_crop: str = "auto"
    # extra training sources beside data_root (source 0): dicts {data_root, tasks, label_setting, weight, ...}
    # (data/sources.py); each with its own labelled tasks and sampling weight, evaluated on its own split
    sources: list[dict[str, Any]] = field(default_factory=list)
    # method
    method: str = "supervised"
    # the method's typed options (methods/<name>.py); kept fully resolved (every field, the fidelity and variant
    # switches resolved), which is what the run identity hashes (mtlwb/identity.py)
    method_options: dict[str, Any] = field(default_factory=dict)
    weighting: str = "equal"
    # supervised-loss normalization: batch = per-sample losses, 0 where unlabelled, summed / B (MTPSL/JTR code);
    # labelled = mean over the labelled samples' valid pixels (mtlwb <= 0.1; B/k times larger at k of B labelled)
    loss_reduction: str = "batch"
    edge_loss: str = "balanced"            # mtl_pytorch: BCE with fixed pos. weight 0.95, / pixels (PASCAL baseline)
    normal_loss: str = "cosine"            # cosine: 1 − cos; dot: 1 − p·g (MTPSL/JTR code); l1 (MTL-PyTorch PASCAL)
    regression_loss: str = "l1"            # image-level regression tasks: l1 or smooth_l1 of standardized values
    task_weights: dict[str, float] = field(default_factory=dict)   # fixed factor per task's supervised loss
    # prior knowledge of task relations (mtlwb/tasks/priors.py): a T×T matrix in tasks order, or related pairs with
    # strengths in [0, 1], e.g. {"depth-normal": 1.0, "semantic-depth": 0.3}; None = no prior
    task_prior: list[list[float]] | dict[str, float] | None = None
    # model
    backbone: str = "resnet_small"
    backbone_weights: str | None = None
    image_norm: str = "auto"               # imagenet: (x − mean) / std of ImageNet; auto: imagenet iff backbone_weights
    # optimisation
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    lr_schedule: str = "step"              # step: ×lr_gamma every lr_step epochs; poly: ×(1 − epoch/epochs)^0.9
    lr_step: int = 0                       # epochs between lr decays; 0 = halfway through
    lr_gamma: float = 0.5
    weight_decay: float = 0.0
    grad_clip: float = 0.0                 # clip the L2 norm of all gradients to this per step (0 = off)
    seed: int = 0
    # execution
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False            # NHWC memory format for model and images (faster convs on GPU)
    num_workers: int = 0
    run_dir: str = ""                      # default: reports/runs/<run_id>
    progress: bool = True
    # model selection (appended: left out of run_id at their defaults)
    val_fraction: float = 0.0              # part of the training images held out as a labelled validation split
    val_seed: int = 0                      # draws the held-out images; independent of seed, like mask_seed
    eval_every: int = 1                    # evaluate every k epochs (and always after the last one)
    # mechanism diagnostics at every evaluated epoch (mtlwb/experiment/diagnostics.py): do the auxiliary terms'
    # gradients point where the hidden labels' would? Measured on a fixed probe of diagnostics_probe training
    # images; no effect on training (same numbers on or off)
    diagnostics: bool = False
    diagnostics_probe: int = 16
    # pseudo-labels made at load time from an image's own labels (mtlwb/data/pseudo_labels.py), whatever the method:
    # none | normals_from_depth (the geometric oracle: normals computed from the labelled depth and the camera
    # where normals are unlabelled; needs tasks depth and normal and a dataset with known intrinsics)
    pseudo_labels: str = "none"

    def __post_init__(self) -> None:
        # the data fields, validated once by the data layer's own request; its parsed values are kept
        self._data_request = DataRequest(
            self.dataset, self.data_root, self.tasks, self.label_setting, self.mask_seed, self.train_samples,
            self.eval_samples, self.val_fraction, self.val_seed, self.sources, self.pseudo_labels)
        self.tasks = list(self._data_request.tasks)
        self.sources = [spec.to_dict() for spec in self._data_request.sources]
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("backbone", self.backbone, BACKBONES)
        _choice("method", self.method, tuple(sorted(METHODS)))
        _choice("weighting", self.weighting, tuple(WEIGHTINGS))
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("loss_reduction", self.loss_reduction, REDUCTIONS)
        _choice("edge_loss", self.edge_loss, EDGE_LOSSES)
        _choice("normal_loss", self.normal_loss, NORMAL_LOSSES)
        _choice("regression_loss", self.regression_loss, REGRESSION_LOSSES)
        _choice("image_norm", self.image_norm, IMAGE_NORMS)
        _choice("normal_crop", self.normal_crop, NORMAL_CROPS)
        for name in ("augment", "channels_last", "diagnostics"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: must be true or false")
        if not isinstance(self.method_options, dict):
            raise ValueError(f"method_options={self.method_options!r}: must be a dict of the method's options")
        options = parse_options(METHODS[self.method], self.method_options)
        METHODS[self.method].check_task_prior(options, self.task_prior_matrix)
        self.method_options = options_dict(options)     # as the method will run: a changed default changes run_id
        _task_weights(self.task_weights, self.tasks)
        _int("epochs", self.epochs, 0)
        _int("batch_size", self.batch_size, 1)
        _int("lr_step", self.lr_step, 0)
        _int("num_workers", self.num_workers, 0)
        _int("seed", self.seed, 0)
        _int("eval_every", self.eval_every, 1)
        _int("diagnostics_probe", self.diagnostics_probe, 1)
        _positive("lr", self.lr)
        _positive("lr_gamma", self.lr_gamma)
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay!r}: must be a number >= 0")
        if isinstance(self.grad_clip, bool) or not isinstance(self.grad_clip, (int, float)) or not (
                0 <= self.grad_clip < float("inf")):
            raise ValueError(f"grad_clip={self.grad_clip!r}: must be a finite number >= 0 (0 = no clipping)")

    # --- derived -------------------------------------------------------------
    @property
    def data_request(self) -> DataRequest:
        """What the data layer reads (``mtlwb.data.DataRequest``), built and validated with the config. A config
        is not edited after construction: ``dataclasses.replace`` builds a changed one (and its request)."""
        return self._data_request

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config parameters {unknown}; allowed {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_parameters(cls, namespace: Mapping[str, Any]) -> ExperimentConfig:
        """The config of a notebook whose parameters are the config's fields (``notebooks/train.ipynb``): every
        field is read from ``namespace`` (the notebook's ``globals()``), so a field the notebook lacks is refused
        here rather than silently left at its default."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in namespace]
        if missing:
            raise ValueError(f"notebook parameters {missing} missing: a training notebook's parameters are every "
                             "ExperimentConfig field (add them to its parameters cell)")
        return cls(**{n: namespace[n] for n in names})

    @property
    def run_id(self) -> str:
        """Stable id from everything that changes the numbers (``mtlwb.identity``: not run_dir, progress, device,
        num_workers; the later-added options only where they differ from their pinned defaults)."""
        return run_id(self.to_dict())

    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("reports") / "runs" / self.run_id

    @property
    def loss_options(self) -> LossOptions:
        return LossOptions(self.loss_reduction, self.edge_loss, self.normal_loss, regression=self.regression_loss)

    @property
    def task_prior_matrix(self) -> torch.Tensor | None:
        """The parsed prior P [T, T] (rows/columns in ``tasks`` order), or None; what the method receives."""
        return parse_task_prior(self.task_prior, self.tasks)

    @property
    def resolved_image_norm(self) -> str:
        if self.image_norm == "auto":
            return "imagenet" if self.backbone_weights else "none"
        return self.image_norm

    @property
    def resolved_normal_crop(self) -> str:
        if self.normal_crop == "auto":
            return "nearest" if self.dataset == "scenes" else "bilinear"
        return self.normal_crop

    @property
    def resolved_lr_step(self) -> int:
        return self.lr_step or max(1, self.epochs // 2)

    def check_paths(self) -> None:
        """The data must exist (the synthetic scenes are generated by ``ensure_dataset``)."""
        self.data_request.check_paths()
        if self.backbone_weights and not Path(self.backbone_weights).is_file():
            raise FileNotFoundError(f"backbone_weights={self.backbone_weights!r}: no such file")


def _task_weights(weights: Any, tasks: list[str]) -> None:
    if not isinstance(weights, dict):
        raise ValueError(f"task_weights={weights!r}: must be a dict {{task: factor}} over tasks {tasks}")
    for name, w in weights.items():
        if name not in tasks:
            raise ValueError(f"task_weights: {name!r} is not one of tasks={tasks}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0 or w == float("inf"):
            raise ValueError(f"task_weights[{name!r}]={w!r}: must be a finite number >= 0")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: allowed {list(allowed)}")


def _int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name}={value!r}: must be a number > 0")
