"""Encoders, heads and the multi-task network."""

from .mtl_net import BACKBONES, MultiTaskNet, build_encoder

__all__ = ["BACKBONES", "MultiTaskNet", "build_encoder"]
