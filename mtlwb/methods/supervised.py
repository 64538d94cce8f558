"""Supervised-only multi-task learning: each task's loss on its labelled samples.

The baseline every partial-label paper compares against (MTPSL Table 1,
JTR Table 1): no term ever looks at an unlabelled task.
"""

from __future__ import annotations

from .base import Method, register


@register
class Supervised(Method):
    name = "supervised"
