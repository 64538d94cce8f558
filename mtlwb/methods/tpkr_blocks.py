"""The networks of the task-prototype method (``tpkr.py``): retrieval blocks, task decoders, image decoder.

Kept apart so that ``tpkr.py`` reads like the method's equations. Tokens are [N, L, D]: N = images × tasks, L the
positions of one task's feature map (or of its knowledge), D the width.

Retrieval blocks (``TPKROptions.block``):
  * ``SelfCrossFFNBlock`` — the description's knowledge-retrieval block: self-attention over the task's own
    positions, then cross-attention with query = the task feature and key/value = the task-affinity knowledge
    f^ta, then a feed-forward network; each a residual branch with a LayerNorm (before the branch by default,
    ``norm_first``, so f^tr = f^t + … keeps an identity path from f^t to the heads; after it otherwise).
  * ``CrossFFNBlock`` — the first implementation's block: cross-attention, then FFN (post-norm there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.resnet import BasicBlock


def attention_stride(h: int, w: int, max_tokens: int) -> int:
    """Smallest power of two s with ceil(h/s)·ceil(w/s) <= max_tokens."""
    s = 1
    while -(-h // s) * -(-w // s) > max_tokens:
        s *= 2
    return s


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))


class CrossFFNBlock(nn.Module):
    """Cross-attention (query x, key/value kv) → FFN, each residual with a LayerNorm; the first implementation's
    retrieval layer (post-norm: x = LN(x + MHA(x, kv, kv)); x = LN(x + FFN(x)))."""

    def __init__(self, dim: int, heads: int, ffn_mult: int, norm_first: bool = False) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = feed_forward(dim, ffn_mult)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """x [N, L, D] (queries), kv [N, L', D] -> [N, L, D]."""
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.attn(h, kv, kv, need_weights=False)[0]
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.attn(x, kv, kv, need_weights=False)[0])
        return self.norm2(x + self.ffn(x))


class SelfCrossFFNBlock(nn.Module):
    """Self-attention → cross-attention (query x, key/value kv) → FFN, each residual with a LayerNorm.

    ``attn`` is the cross-attention (the name the first block uses for its only attention).
    """

    def __init__(self, dim: int, heads: int, ffn_mult: int, norm_first: bool = True) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_self = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(dim)
        self.ffn = feed_forward(dim, ffn_mult)
        self.norm_ffn = nn.LayerNorm(dim)

    def _self(self, x: torch.Tensor) -> torch.Tensor:
        return self.self_attn(x, x, x, need_weights=False)[0]

    def _cross(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        return self.attn(x, kv, kv, need_weights=False)[0]

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """x [N, L, D] (the task's tokens), kv [N, L', D] (its knowledge tokens) -> [N, L, D]."""
        if self.norm_first:
            x = x + self._self(self.norm_self(x))
            x = x + self._cross(self.norm_cross(x), kv)
            return x + self.ffn(self.norm_ffn(x))
        x = self.norm_self(x + self._self(x))
        x = self.norm_cross(x + self._cross(x, kv))
        return self.norm_ffn(x + self.ffn(x))


BLOCKS = {"self_cross_ffn": SelfCrossFFNBlock, "cross_ffn": CrossFFNBlock}


def retrieval_block(kind: str, dim: int, heads: int, ffn_mult: int, norm_first: bool) -> nn.Module:
    return BLOCKS[kind](dim, heads, ffn_mult, norm_first)


def task_decoder(dim: int, blocks: int, kernel: int) -> nn.Sequential:
    """f^i [B, D, h, w] -> one task's feature f^t [B, D, h, w].

    blocks = 0: one conv(kernel)-BN-ReLU (the first implementation's projection); blocks = n: n ResNet BasicBlocks,
    the per-task "preliminary decoder" of DiffusionMTL (two blocks there), whose released settings the
    task-prototype paper's training settings equal.
    """
    if blocks == 0:
        return nn.Sequential(nn.Conv2d(dim, dim, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(dim),
                             nn.ReLU(inplace=True))
    return nn.Sequential(*(BasicBlock(dim, dim) for _ in range(blocks)))


class ReconstructionDecoder(nn.Module):
    """f^i [B, c, h, w] -> image [B, 3, H, W]: three conv-ReLU stages, each after a ×2 bilinear upsampling while the
    feature is still smaller than the image (so a stride-8 feature gets three, a full-resolution one none), then a
    linear conv and, if the sizes still differ, a bilinear resize."""

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        widths = [cin, width, width // 2, width // 4]
        self.stages = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for conv in self.stages:
            if x.shape[-2] < size[0] and x.shape[-1] < size[1]:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = F.relu(conv(x))
        x = self.out(x)
        if x.shape[-2:] != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x
