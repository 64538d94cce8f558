"""The one interface every partial-label method implements.

A method sees one training batch after the forward pass and returns named
loss terms. It may own auxiliary modules (their parameters join the
optimizer through ``parameter_groups``) and may turn the shared feature into
per-task features before the heads (``refine``). The trainer only ever calls
these methods, so adding a method never touches the trainer.

A method whose predictions are not "the model's head applied to a task feature" (DiffusionMTL: a denoising chain
and its own readout heads; in training only the labelled tasks of a sample are denoised) sets ``owns_heads``: the
model is then built without heads and ``forward_step`` asks the method's ``decode`` for the predictions. Its
``decode`` may differ between training and evaluation (the trainer reads training-mode predictions only through
``losses``); evaluation and figures always see ``decode`` in eval mode.

Prior knowledge of task relations (``ExperimentConfig.task_prior``, parsed by ``mtlwb.tasks.priors``) reaches a method
as ``task_prior``, a [T, T] tensor (rows/columns in task order) or None, set by ``build_method`` through
``use_task_prior``; each method documents what it does with it (nothing, by default).

Loss-term contract: ``losses`` returns ``LossTerms`` with two fields, the
per-task supervised losses (combined by the loss-weighting scheme and the
fixed ``task_weights``) and the auxiliary terms (already multiplied by their
weights, added as they are). Nothing is inferred from a key's name.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from ..data.views import ViewSpec
from ..objectives.losses import LossOptions, task_loss
from ..tasks import TaskSpec


@dataclass
class Refined:
    """Per-task features for the heads, plus anything the losses need later."""

    task_features: dict[str, torch.Tensor]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Step:
    """Everything a method may look at for one batch.

    images [B, 3, H, W]; features: shared encoder output [B, C, h, w];
    predictions: task -> raw head output; targets: task -> ground truth as
    loaded; labelled [B, T] in {0, 1}, columns in ``tasks`` order;
    bottleneck: the backbone's deepest feature where it is not ``features``
    (SegNet: [B, 512, H/32, W/32]), else None.
    views: the further augmented views of the same samples (a ``Step`` each,
    same ``labelled``) when the method's ``view_spec`` asks for them; the
    fields above are view 0, on which the supervised losses are computed.
    """

    images: torch.Tensor
    features: torch.Tensor
    refined: Refined
    predictions: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    labelled: torch.Tensor
    bottleneck: torch.Tensor | None = None
    views: list[Step] = field(default_factory=list)


@dataclass
class LossTerms:
    """A method's loss for one batch: ``supervised`` {task: loss} and ``auxiliary`` {term: weighted loss}.

    The trainer weights the supervised terms (loss-weighting scheme × ``task_weights``) and adds the auxiliary ones
    as they are. Read-only mapping access (``terms["jtr_model"]``, ``.items()``) spans both, for logging and tests;
    a name in both fields is refused, so a term can never be taken for the other kind.
    """

    supervised: dict[str, torch.Tensor]
    auxiliary: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        both = sorted(set(self.supervised) & set(self.auxiliary))
        if both:
            raise ValueError(f"LossTerms: {both} named both as supervised and as auxiliary terms")

    def all(self) -> dict[str, torch.Tensor]:
        return {**self.supervised, **self.auxiliary}

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.all())

    def keys(self):
        return self.all().keys()

    def values(self):
        return self.all().values()

    def items(self):
        return self.all().items()


@dataclass
class NoOptions:
    pass


class Method(nn.Module):
    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    #: the method makes the predictions itself (``decode``); the model is built without heads (see module docstring)
    owns_heads: ClassVar[bool] = False
    #: form and normalization of the supervised losses; set from the config by ``build_method``
    loss_options: LossOptions = LossOptions()

    def __init__(self, tasks: Sequence[TaskSpec], feature_channels: int, options: Any = None) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.feature_channels = feature_channels
        self.options = options if options is not None else self.Options()
        # P [T, T] or None; a non-persistent buffer: moves with .to(device), never enters a checkpoint
        self.register_buffer("task_prior", None, persistent=False)

    @classmethod
    def check_task_prior(cls, options: Any, prior: torch.Tensor | None) -> None:
        """Refuse a prior the method cannot use with these options (called by the config, before any work)."""

    def use_task_prior(self, prior: torch.Tensor | None) -> None:
        """Take the parsed prior P [T, T] (or None); a method that builds something from it overrides this."""
        T = len(self.tasks)
        if prior is not None and tuple(prior.shape) != (T, T):
            raise ValueError(f"task_prior: shape {tuple(prior.shape)} does not match the {T} tasks")
        self.check_task_prior(self.options, prior)
        self.task_prior = None if prior is None else prior.detach().clone().float()

    @property
    def view_spec(self) -> ViewSpec:
        """How many further augmented views of each batch the method's losses read (none by default)."""
        return ViewSpec()

    def refine(self, features: torch.Tensor, images: torch.Tensor) -> Refined:
        """Default: every head reads the shared feature unchanged."""
        return Refined({t.name: features for t in self.tasks})

    def decode(self, refined: Refined, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Predictions of a method with ``owns_heads`` (dense [B, C, *size], image-level [B, C])."""
        raise NotImplementedError(f"{type(self).__name__}.decode: only a method with owns_heads = True predicts")

    def use_label_table(self, labelled: torch.Tensor) -> None:
        """Take the run's whole training label table [N, T] (set by the trainer before training); a method whose
        published code behaves differently in a fully labelled run overrides this (nothing, by default)."""

    def supervised_loss_options(self) -> LossOptions:
        """The form of the supervised losses: the config's (``loss_options``), unless a method's options change it."""
        return self.loss_options

    def supervised_losses(self, step: Step) -> dict[str, torch.Tensor]:
        options = self.supervised_loss_options()
        return {t.name: task_loss(t, step.predictions[t.name], step.targets[t.name], step.labelled[:, i], options)
                for i, t in enumerate(self.tasks)}

    def losses(self, step: Step) -> LossTerms:
        return LossTerms(self.supervised_losses(step))

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimizer groups for the method's own modules (none by default)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr}] if params else []

    def eval_summary(self, refined: Refined) -> dict[str, torch.Tensor]:
        """Per-batch quantities the trainer averages over the evaluation split each epoch
        (e.g. the task-affinity matrix); none by default."""
        return {}

    def on_epoch_end(self, epoch: int) -> None:
        """Hook for schedules inside a method (e.g. temperature decay)."""


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name`")
    METHODS[cls.name] = cls
    return cls


def parse_options(cls: type[Method], options: dict | None) -> Any:
    """Build the method's typed options; unknown keys are named in the error."""
    options = dict(options or {})
    known = {f.name for f in dataclasses.fields(cls.Options)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"method_options for method={cls.name!r}: unknown {unknown}; "
                         f"allowed {sorted(known)}")
    return cls.Options(**options)


def options_dict(options: Any) -> dict[str, Any]:
    """Every field of a method's typed options as JSON values: what ``ExperimentConfig.method_options`` keeps, a
    run record shows and the run identity hashes (``mtlwb.identity``)."""
    return json.loads(json.dumps(dataclasses.asdict(options)))


def shortest_options(cls: type[Method], resolved: dict[str, Any]) -> dict[str, Any]:
    """The fewest options, taken in field order, that resolve to ``resolved``: how a table names a run's options
    (``{"arch": "reference"}``, not the twenty fields that arch and the fidelity switch resolve to). The full dict
    where no shorter one gives the same options."""
    target = options_dict(parse_options(cls, resolved))
    given: dict[str, Any] = {}
    try:
        for f in dataclasses.fields(cls.Options):       # add each option the ones before it do not resolve to
            if f.name in resolved and options_dict(parse_options(cls, given)).get(f.name) != resolved[f.name]:
                given[f.name] = resolved[f.name]
        for name in reversed(list(given)):               # drop one that a later option resolves to anyway
            fewer = {k: v for k, v in given.items() if k != name}
            if options_dict(parse_options(cls, fewer)) == target:
                given = fewer
        same = options_dict(parse_options(cls, given)) == target
    except (TypeError, ValueError):
        return dict(resolved)
    return given if same else dict(resolved)


def build_method(name: str, tasks: Sequence[TaskSpec], feature_channels: int,
                 options: dict | None = None, loss_options: LossOptions | None = None,
                 task_prior: torch.Tensor | None = None) -> Method:
    """``task_prior``: the parsed P [T, T] (``ExperimentConfig.task_prior_matrix``) or None."""
    if name not in METHODS:
        raise ValueError(f"method={name!r}: allowed {sorted(METHODS)}")
    cls = METHODS[name]
    method = cls(tasks, feature_channels, parse_options(cls, options))
    method.loss_options = loss_options or LossOptions()
    method.use_task_prior(task_prior)
    return method


def step_rows(step: Step, start: int, stop: int, labelled: torch.Tensor) -> Step:
    """The Step of samples ``start:stop`` of ``step``'s per-sample tensors, with ``labelled`` for them.

    Refined extras whose first dimension is the batch's (``images``') are sliced too; others (scalars, per-batch
    terms) are kept whole. ``labelled`` is given, not sliced: concatenated views share one [B, T] table.
    """
    n = step.images.shape[0]

    def part(x: torch.Tensor) -> torch.Tensor:
        return x[start:stop]

    feats = {k: part(x) for k, x in step.refined.task_features.items()}
    extras = {k: part(x) if torch.is_tensor(x) and x.dim() and x.shape[0] == n else x
              for k, x in step.refined.extras.items()}
    bottleneck = part(step.bottleneck) if step.bottleneck is not None else None
    return Step(part(step.images), part(step.features), Refined(feats, extras),
                {k: part(x) for k, x in step.predictions.items()},
                {k: part(x) for k, x in step.targets.items()}, labelled, bottleneck)


def split_views(step: Step, count: int) -> Step:
    """A Step over ``count`` concatenated views ([count·B, …] tensors) → the view-0 Step with ``views`` filled.

    Refined extras whose first dimension is count·B are split too; others (scalars, per-batch terms) go whole to
    every view.
    """
    if count == 1:
        return step
    B = step.labelled.shape[0]
    first, *rest = [step_rows(step, v * B, (v + 1) * B, step.labelled) for v in range(count)]
    first.views = rest
    return first


class Forward(NamedTuple):
    """One forward pass: the shared feature, the method's refined features, the predictions, and the backbone's
    bottleneck where it has one apart from the feature (SegNet; else None) — all that a ``Step`` takes from it."""

    features: torch.Tensor
    refined: Refined
    predictions: dict[str, torch.Tensor]
    bottleneck: torch.Tensor | None = None


def forward_step(model: nn.Module, method: Method, images: torch.Tensor) -> Forward:
    """encode -> method.refine -> decode (the model's heads, or the method's own with ``owns_heads``); the same path
    for training and evaluation. ``model``: a ``MultiTaskNet`` (``encode_parts`` and ``decode``)."""
    features, bottleneck = model.encode_parts(images)
    refined = method.refine(features, images)
    size = images.shape[-2:]
    predictions = method.decode(refined, size) if method.owns_heads else model.decode(refined.task_features, size)
    return Forward(features, refined, predictions, bottleneck)
