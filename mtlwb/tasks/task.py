"""What the task kinds read of a task: the ``Task`` protocol (``TaskSpec`` in ``mtlwb.tasks`` is one).

Its own leaf module so that the kinds, meters, encodings and label rules can name a task in their signatures
without importing ``mtlwb.tasks`` (whose ``TaskSpec`` asks the kinds for its rules): no import circle.
"""

from __future__ import annotations

from typing import Protocol


class Task(Protocol):
    """A task as the kind objects read it (fields of ``mtlwb.tasks.TaskSpec``)."""

    name: str
    kind: str
    channels: int
    primary_metric: str
    lower_is_better: bool
    loc: float
    scale: float

    @property
    def image_level(self) -> bool: ...
