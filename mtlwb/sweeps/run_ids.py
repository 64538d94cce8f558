"""A sweep run's name and the parameters it is given: the effective parameters, the run id, and the differences
between two configs that decide whether a finished run may be reused.

Its own module because the sweep file (``spec``, which names each run of its grid) and the planning (``planning``,
which compares what a folder holds with what a run needs) both need it, and neither should import the other.

Effective parameters: the training notebook's stored defaults are tiny (for CI), so a parameter the YAML leaves out
must not take them. Every run is given the effective value of every notebook parameter: the YAML's value, or else the
``ExperimentConfig`` default (the dataclass is the one source of defaults). Its run id is
``ExperimentConfig(**effective).run_id``, a hash of the full effective config (not of the keys the YAML happens to
set), so a changed default gives new ids, ids survive reordering the YAML, and change when any value does. A notebook
that is not the training notebook gets the YAML's parameters and an id hashed from them (``params_run_id``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .. import identity

SET_BY_SWEEP = ("run_dir", "progress")          # the sweep owns these; a spec may not set them
PREFIX_KEYS = ("method", "label_setting", "seed")


def canonical(value: Any) -> str:
    """A parameter value as JSON with sorted keys: how two values are compared (equal values, equal text)."""
    return json.dumps(value, sort_keys=True)


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def describe_params(params: dict[str, Any]) -> str:
    """``key=value, ...`` of a run's parameters, for messages and the dry run."""
    return ", ".join(f"{k}={_short(v)}" for k, v in params.items())


def effective_params(params: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every config field with the value a run of the training notebook uses: ``params``' value, else the
    ``ExperimentConfig`` default, never the notebook's stored (tiny) default; ``method_options`` fully resolved.
    The training notebook takes every config field as a parameter (``spec._check_training_notebook``), so no field is
    left out; its own parameters (``TRAIN_NOTEBOOK_ONLY``) keep the notebook's defaults (train, never reuse).

    ValueError names the run's parameters and the config field that is wrong.
    """
    from ..config import ExperimentConfig

    try:
        config = ExperimentConfig(**{**params, "run_dir": "", "progress": False}).to_dict()
    except (ValueError, TypeError) as e:
        raise ValueError(f"sweep run ({describe_params(params)}): {e}") from None
    return {k: v for k, v in config.items() if k not in SET_BY_SWEEP}


def run_id(effective: dict[str, Any]) -> str:
    """A training run's id: ``ExperimentConfig(**effective).run_id`` (readable prefix + hash of the whole effective
    config minus execution-only fields), so it changes when any value the run uses does, defaults included."""
    from ..config import ExperimentConfig

    return ExperimentConfig(**{**effective, "run_dir": "", "progress": False}).run_id


def config_differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{field: (recorded value, wanted value)} over the run identities (``mtlwb.identity``; a missing field shows
    as None): what must agree for a finished run to be reused."""
    return identity.differences(recorded, wanted)


def differences_text(diff: dict[str, tuple[Any, Any]]) -> str:
    """``field: recorded -> wanted, ...`` of ``config_differences``, for messages."""
    return ", ".join(f"{k}: {_short(old)} -> {_short(new)}" for k, (old, new) in diff.items())


def params_run_id(params: dict[str, Any]) -> str:
    """Readable prefix (method-label_setting-s<seed>) + sha1 of the sorted parameters that change results.

    The id of runs of a notebook that is not the training notebook, and the id training runs had before ids were
    taken from the effective config (so that runs recorded under it are recognised, never reused silently).
    """
    ident = {k: v for k, v in params.items() if k not in identity.EXECUTION_ONLY}
    digest = hashlib.sha1(canonical(ident).encode()).hexdigest()[:10]
    parts = []
    for key in PREFIX_KEYS:
        if key in params:
            text = str(params[key])
            parts.append(f"s{text}" if key == "seed" else "".join(c if c.isalnum() else "-" for c in text)[:24])
    return "-".join([*parts, digest])


__all__ = ["PREFIX_KEYS", "SET_BY_SWEEP", "canonical", "config_differences", "describe_params", "differences_text",
           "effective_params", "params_run_id", "run_id"]
