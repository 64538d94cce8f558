"""Refuse a mistyped notebook parameter inside the notebook itself, so plain ``papermill -p`` is safe too.

Papermill only warns ("Passed unknown parameter: epoch") and runs the defaults, which silently trains the wrong
experiment. ``mtlwb sweep`` checks names before the kernel starts (``notebook_runner.check_parameters``); a plain
papermill call never passes through it, so every notebook's first code cell calls :func:`check_injected`.

How the cell sees what was injected: papermill inserts, right after the ``parameters`` cell, a cell whose source
starts with ``# Parameters`` and assigns each ``-p`` name. The kernel's input history (IPython's ``_ih``) holds the
source of every cell it ran, the current one last, so the cell run just before the check is that injected cell
when papermill ran the notebook. Reading its assignments (rather than diffing the kernel's globals) means a
person's own variables in a live JupyterLab session are never mistaken for parameters, and a notebook opened
without injection is never refused.
"""

from __future__ import annotations

import ast
import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any

# the header papermill's Python translator writes into the injected-parameters cell
INJECTED_CELL_HEADER = "# Parameters"
# names papermill itself adds with --inject-paths / --inject-input-path / --inject-output-path
PAPERMILL_NAMES_PREFIX = "PAPERMILL_"
# parameters of notebooks/train.ipynb that are not ExperimentConfig fields (how the notebook obtains its run)
TRAIN_NOTEBOOK_ONLY = frozenset({"reuse_finished_run", "finished_runs_dir"})


def closest_name(name: str, known: Iterable[str]) -> str | None:
    """The known name most like ``name`` (difflib), or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_name_message(name: str, known: Iterable[str]) -> str:
    """``unknown notebook parameter 'epoch'; did you mean 'epochs'? known: [...]``."""
    known = sorted(known)
    guess = closest_name(name, known)
    hint = f"; did you mean {guess!r}?" if guess else ";"
    return f"unknown notebook parameter {name!r}{hint} known: {known}"


def assigned_names(source: str) -> list[str]:
    """Names a cell's top-level assignments bind, in order (an unparsable cell binds none we can name)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return []
    names: list[str] = []
    for node in body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def injected_names(namespace: Mapping[str, Any]) -> list[str]:
    """Names papermill injected, if the cell run just before the caller's was papermill's injected cell.

    ``namespace`` is the kernel's ``globals()``; outside IPython (no ``_ih``) nothing is known to be injected.
    """
    history = namespace.get("_ih")
    if not isinstance(history, list) or len(history) < 2:
        return []
    previous = history[-2]      # history[-1] is the cell running now
    if not isinstance(previous, str) or not previous.lstrip().startswith(INJECTED_CELL_HEADER):
        return []
    return [n for n in assigned_names(previous) if not n.startswith(PAPERMILL_NAMES_PREFIX)]


def literal_defaults(source: str) -> dict[str, Any]:
    """The literal values a cell's top-level assignments give (a name bound to anything else is left out)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return {}
    values = {}
    for node in body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            values.update({t.id: value for t in targets if isinstance(t, ast.Name)})
    return values


def parameters_cell_defaults(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The ``parameters`` cell's literal defaults, when papermill injected parameters right after it (the input
    history then ends: parameters cell, injected cell, the cell running now); else {}."""
    history = namespace.get("_ih")
    if not injected_names(namespace) or len(history) < 3 or not isinstance(history[-3], str):
        return {}
    return literal_defaults(history[-3])


def text_for_container_message(name: str, value: Any, default: Any) -> str | None:
    """Why a text value of a list or dict parameter is refused, with the ``-y`` form that gives one, else None.

    ``papermill -p method_options '{"use_tc": false}'`` injects the text, not the dict: ``-p`` takes every value as
    text, number or boolean, and only ``-y`` (YAML) or ``-f`` (a YAML file) carries a list or a dict.
    """
    kind = next((k for k in (list, dict) if isinstance(default, k)), None)
    if kind is None or not isinstance(value, str):
        return None
    import yaml

    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = None
    example = value if isinstance(parsed, kind) else json.dumps(default)
    return (f"parameter {name!r}={value!r} is text, but {name} is a {kind.__name__} (default {default!r}); "
            f"papermill's -p passes text: give a {kind.__name__} with -y, e.g. -y '{name}: {example}'")


def parameters_injected(namespace: Mapping[str, Any]) -> bool:
    """Whether papermill injected notebook parameters in this kernel (a cell it ran starts with ``# Parameters`` and
    assigns a name other than papermill's own ``PAPERMILL_*``): the notebook runs with parameters it was given, not
    with its stored ones. Outside IPython (no ``_ih``) nothing was injected."""
    history = namespace.get("_ih")
    if not isinstance(history, list):
        return False
    return any(isinstance(source, str) and source.lstrip().startswith(INJECTED_CELL_HEADER)
               and any(not n.startswith(PAPERMILL_NAMES_PREFIX) for n in assigned_names(source))
               for source in history)


def check_injected(known: Iterable[str], namespace: Mapping[str, Any]) -> None:
    """Raise ValueError naming each injected parameter that the notebook's ``parameters`` cell does not define, or
    a list or dict parameter injected as text (``papermill -p``, see :func:`text_for_container_message`).

    Call it first thing in the code cell that follows the ``parameters`` cell: ``check_injected([...], globals())``.
    """
    known = list(known)
    injected = injected_names(namespace)
    unknown = [n for n in injected if n not in known]
    if len(unknown) == 1:
        raise ValueError(unknown_name_message(unknown[0], known))
    if unknown:
        named = [f"{n!r}" + (f" (did you mean {g!r}?)" if (g := closest_name(n, known)) else "") for n in unknown]
        raise ValueError(f"unknown notebook parameters {', '.join(named)}; known: {sorted(known)}")
    defaults = parameters_cell_defaults(namespace)
    for name in injected:
        message = text_for_container_message(name, namespace.get(name), defaults.get(name))
        if message:
            raise ValueError(message)


def check_cell_source(parameters_source: str, width: int = 116) -> str:
    """The source of the cell that follows the parameters cell: the check, with the names ``parameters_source`` assigns.

    The notebook generators write it, so the list in the notebook is the parameters cell's own, never a copy that
    can drift.
    """
    indent = " " * len("check_injected([")
    lines, line = [], "check_injected(["
    for item in [repr(n) for n in assigned_names(parameters_source)]:
        if len(line) + len(item) + 2 > width:
            lines.append(line.rstrip())
            line = indent
        line += item + ", "
    line = line[:-2] + "],"
    lines += [line + " globals())"] if len(line) + len(" globals())") <= width else [line, indent[:-1] + "globals())"]
    return ("# a papermill -p name that the parameters cell does not define is refused here, before any work\n"
            "from mtlwb.sweeps.notebook_params import check_injected\n\n" + "\n".join(lines))


__all__ = ["TRAIN_NOTEBOOK_ONLY", "assigned_names", "check_cell_source", "check_injected", "closest_name",
           "injected_names", "literal_defaults", "parameters_cell_defaults", "parameters_injected",
           "text_for_container_message", "unknown_name_message"]
