"""Encoders, heads and the multi-task network."""

from .mtl_net import BACKBONES, IMAGE_NORMS, Encoded, MultiTaskNet, build_encoder

__all__ = ["BACKBONES", "IMAGE_NORMS", "Encoded", "MultiTaskNet", "build_encoder"]
