"""The run identity, defined once: which config fields name a run, and when a finished run stands for another.

Why one place: the identity decides whether a finished run is reused (a sweep's resume and ``reuse_from``, the
training notebook's finished run, ``train``'s resume from a checkpoint), so two copies of it that drift apart
silently reuse the wrong run. Everything that names or compares runs reads this module: ``ExperimentConfig.run_id``,
the trainer's resume check, ``experiment.reuse``, the sweeps' planning and the analysis tables' grouping.

Every field of ``ExperimentConfig`` is classified here, once (``tests/test_identity.py`` fails on a field without a
decision, and on a pinned value that differs from the field's default):

- ``ALWAYS``: in the identity at any value — it changes the numbers.
- ``EXECUTION_ONLY``: never in it — where a run executes and how it reports, not what it computes. ``device``: a
  run is the same experiment on another device (sweeps' ``--device``), though CUDA and CPU kernels differ in the
  last bits; ``num_workers``: loader processes change nothing drawn (every draw is seeded by the trainer).
- ``SKIP_AT_DEFAULT`` {field: pinned value}: options added after runs were first named. Left out while equal to the
  pinned value, so the runs named before the option existed keep their ids (they ran exactly the pinned value). The
  pinned value must stay the field's default: changing a default is then a decision the test makes visible, never
  an accident that keeps old ids for new numbers.

``method_options`` is in the identity as ``ExperimentConfig`` holds it: the method's typed options fully resolved
(every field, the fidelity and variant switches resolved), not as written. So a changed option default changes the
ids of the runs it affects, and a run made under the old default is never reused for the new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ALWAYS = frozenset({
    "dataset", "data_root", "tasks", "label_setting", "mask_seed", "train_samples", "eval_samples", "augment",
    "method", "method_options", "weighting", "loss_reduction", "backbone", "backbone_weights", "epochs",
    "batch_size", "lr", "lr_step", "lr_gamma", "weight_decay", "seed", "precision", "channels_last",
})
EXECUTION_ONLY = frozenset({"run_dir", "progress", "device", "num_workers"})
SKIP_AT_DEFAULT: dict[str, Any] = {
    "lr_schedule": "step", "task_weights": {}, "edge_loss": "balanced", "normal_loss": "cosine",
    "image_norm": "auto", "val_fraction": 0.0, "val_seed": 0, "eval_every": 1, "regression_loss": "l1",
    "sources": [], "task_prior": None, "grad_clip": 0.0, "normal_crop": "auto", "diagnostics": False,
    "diagnostics_probe": 16, "pseudo_labels": "none",
}
# what a resumed run may change: it continues the same experiment for more (or fewer) epochs
RESUME_MAY_CHANGE = frozenset({"epochs"})


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """What names a run: the config dict without the execution-only fields and without the later-added options
    at their pinned values, as canonical JSON values (a tuple is a list, keys sorted).

    A config recorded by an older mtlwb, before some option existed, has the same identity as today's config with
    that option at its pinned value: that is what the run computed.
    """
    kept = {k: v for k, v in config.items()
            if k not in EXECUTION_ONLY and not (k in SKIP_AT_DEFAULT and _same(v, SKIP_AT_DEFAULT[k]))}
    return json.loads(json.dumps(kept, sort_keys=True))


def run_id(config: Mapping[str, Any]) -> str:
    """``<method>-<label setting>-s<seed>-<8 hex digits>``: a readable prefix and a hash of the whole identity, so
    the id changes exactly when a value the run computes with does (defaults and resolved method options
    included)."""
    digest = hashlib.sha1(json.dumps(identity(config), sort_keys=True).encode()).hexdigest()[:8]
    return f"{config['method']}-{_slug(config['label_setting'])}-s{config['seed']}-{digest}"


def comparable(config: Mapping[str, Any], *, resume: bool = False) -> dict[str, Any]:
    """The identity two runs must share for one to stand for the other.

    ``resume``: comparing a run folder's checkpoint with the config that resumes it, where ``epochs`` may differ
    (``RESUME_MAY_CHANGE``): the same command with more epochs continues the run, as every epoch reseeds from
    (seed, epoch). The learning-rate schedule is the caller's to keep: with ``lr_step=0`` (halfway) or the poly
    schedule it follows ``epochs``, so a run extended that way differs from one trained to the end at once.
    """
    ident = identity(config)
    return {k: v for k, v in ident.items() if not (resume and k in RESUME_MAY_CHANGE)}


def differences(a: Mapping[str, Any], b: Mapping[str, Any], *, resume: bool = False) -> dict[str, tuple[Any, Any]]:
    """``{field: (a's value, b's value)}`` for every identity field on which two configs differ (a field one of them
    lacks shows as None), sorted by name."""
    x, y = comparable(a, resume=resume), comparable(b, resume=resume)
    return {k: (x.get(k), y.get(k)) for k in sorted(set(x) | set(y)) if not _same(x.get(k), y.get(k))}


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values (a tuple equals the list a record holds; 1 equals 1.0 as in JSON)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) or a == b


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in Path(s).stem if s)[:24]
