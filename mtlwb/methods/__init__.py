"""Partial-label multi-task methods, one file each, behind ``Method``."""

from . import diffusionmtl, jtr, mtpsl, supervised, tpkr  # noqa: F401  (registers)
from .base import (
    METHODS,
    Forward,
    LossTerms,
    Method,
    Refined,
    Step,
    build_method,
    forward_step,
    options_dict,
    parse_options,
    register,
    shortest_options,
    split_views,
)

__all__ = ["METHODS", "Forward", "LossTerms", "Method", "Refined", "Step", "build_method", "forward_step",
           "options_dict", "parse_options", "register", "shortest_options", "split_views"]
