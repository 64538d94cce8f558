"""JTR's joint-task network in its published layout (``arch="reference"``).

The layout of ``SegNet_JTR`` in the JTR reference code (KentoNishi/JTR-CVPR-2024,
``code/models/{nyuv2,cityscapes}_segnet_jtr.py``), rebuilt here as the encoder/decoder pair that ``jtr.py`` uses:

    encoder:  SegNet encoder on ΣC_t input channels: five stages, widths 64-128-256-512-512 with 2, 2, 3, 3, 3
              conv3×3 → norm → ReLU, each stage ending in a 2×2 max-pool that keeps its indices;
              code = the last pooled map [N, 512, H/32, W/32] (the ref.'s ``return_feat_only`` output)
    decoder:  the mirrored SegNet decoder (max-unpool with the encoder's indices, then 3, 3, 3, 2, 2 convs down to
              64 channels at full resolution) and the reconstruction head conv3×3(64 → 64) → conv1×1(64 → ΣC_t)
              (no norm or activation between them, as in the ref.)

The ref. also builds a BatchNorm over the ΣC_t input channels that its forward never uses; it is kept here
(``decoder.batchnorm``, never called) so that parameter counts and checkpoints match: 24,989,427 parameters for
NYUv2's 13/1/3 channels, 24,983,640 for Cityscapes' 7/1.

Normalization: the ref. runs the network inside a per-sample loop, so every BatchNorm sees batch size 1 in
training mode, i.e. normalizes each sample by its own per-channel statistics. ``jtr.py`` encodes the whole batch
[Ŷ; Y] in one call, so the norm here is GroupNorm(C, C): per sample, per channel, with the same affine weight
and bias (same parameter count), and the batched terms equal the per-sample ones
(``jtr.per_sample_reference_losses``). A ref. checkpoint's running statistics (used only in evaluation mode,
which JTR never runs its joint network in) are dropped on loading (``mtlwb.experiment.reference_checkpoints``).

Max-pool indices: the decoder unpools with the indices of the encoder pass that produced its code, but the
interface is ``encoder(x) -> code``, ``decoder(code, size)``. So the encoder keeps the indices of its last
``PoolRecord.capacity`` passes next to their codes, and the decoder finds the pass whose code equals the one it is
given (the same storage, or equal values — ``two_routes`` hands on a copy). ``jtr.py`` decodes right after the
encoder pass (``jtr_terms``) or after encoding Ŷ and Y (the per-sample reference), so two passes suffice. A code
no recorded pass produced is an error, not a silent wrong unpooling.

Why the record stays instead of returning the indices with the code: the code is produced inside ``two_routes``
(an autograd Function whose outputs are the two routes' codes, one forward pass), is handed on as a copy, and the
joint network shares ``encoder(x) -> code`` / ``decoder(code, size)`` with the compact layout (``jtr.JointEncoder``,
which has no indices). Returning indices would change that interface for both layouts and route integer tensors
through the Function; the record is per network pair (a deep copy starts empty), never module-level, and a lookup
that does not match fails loudly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STAGE_WIDTHS = (64, 128, 256, 512, 512)
STAGE_CONVS = (2, 2, 3, 3, 3)
CODE_CHANNELS = STAGE_WIDTHS[-1]


def conv_norm_relu(cin: int, cout: int) -> nn.Sequential:
    """conv3×3 → per-sample norm (the ref.'s BatchNorm at batch size 1) → ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(cout, cout), nn.ReLU())


def _stage(cin: int, cout: int, convs: int) -> nn.Sequential:
    return nn.Sequential(conv_norm_relu(cin, cout), *[conv_norm_relu(cout, cout) for _ in range(convs - 1)])


class PoolRecord:
    """The max-pool indices and pre-pool sizes of the encoder's last passes, found again by their code."""

    capacity = 2

    def __init__(self) -> None:
        self.passes: list[tuple[torch.Tensor, list[torch.Tensor], list[torch.Size]]] = []

    def add(self, code: torch.Tensor, indices: list[torch.Tensor], sizes: list[torch.Size]) -> None:
        self.passes = [*self.passes[-(self.capacity - 1):], (code.detach(), indices, sizes)]

    def find(self, code: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Size]]:
        code = code.detach()
        for stored, indices, sizes in reversed(self.passes):
            if stored.shape == code.shape and (stored.data_ptr() == code.data_ptr() or torch.equal(stored, code)):
                return indices, sizes
        raise RuntimeError("jtr reference decoder: this code was not produced by one of the joint encoder's last "
                           f"{self.capacity} passes, so its max-pool indices are unknown; decode right after encoding")

    def __deepcopy__(self, memo: dict) -> PoolRecord:
        return PoolRecord()       # a copied network starts with no passes of its own (and copies no tensors)


class ReferenceJointEncoder(nn.Module):
    """[N, ΣC_t, H, W] → code [N, 512, H/32, W/32] (SegNet encoder; H, W at least 32)."""

    def __init__(self, in_channels: int, record: PoolRecord) -> None:
        super().__init__()
        chans = [in_channels, *STAGE_WIDTHS]
        self.stages = nn.ModuleList([_stage(chans[i], chans[i + 1], n) for i, n in enumerate(STAGE_CONVS)])
        self.record = record

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices, sizes = [], []
        for stage in self.stages:
            x = stage(x)
            sizes.append(x.shape[-2:])
            x, idx = F.max_pool2d(x, 2, return_indices=True)        # [N, w_i, h/2, w/2]
            indices.append(idx)
        self.record.add(x, indices, sizes)
        return x


class ReferenceJointDecoder(nn.Module):
    """code [N, 512, h, w] → reconstruction logits [N, ΣC_t, H, W], unpooling with the encoder's indices."""

    def __init__(self, out_channels: int, record: PoolRecord) -> None:
        super().__init__()
        outs = [STAGE_WIDTHS[0], *STAGE_WIDTHS[:-1]]                 # stage i: widths[i] → outs[i]
        self.stages = nn.ModuleList([_stage(STAGE_WIDTHS[i], outs[i], STAGE_CONVS[i])
                                     for i in reversed(range(len(STAGE_WIDTHS)))])
        self.head = nn.Sequential(nn.Conv2d(STAGE_WIDTHS[0], STAGE_WIDTHS[0], 3, padding=1),
                                  nn.Conv2d(STAGE_WIDTHS[0], out_channels, 1))
        self.batchnorm = nn.GroupNorm(out_channels, out_channels)    # ref.: built, never used (see module doc)
        self.record = record

    def forward(self, code: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        indices, sizes = self.record.find(code)
        x = code
        for stage, idx, pre_pool in zip(self.stages, reversed(indices), reversed(sizes)):
            x = stage(F.max_unpool2d(x, idx, 2, 2, output_size=pre_pool))
        x = self.head(x)                                              # [N, ΣC_t, H, W]
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


def reference_joint_network(in_channels: int) -> tuple[ReferenceJointEncoder, ReferenceJointDecoder]:
    """The published joint network as (encoder, decoder) sharing one record of max-pool indices."""
    record = PoolRecord()
    return ReferenceJointEncoder(in_channels, record), ReferenceJointDecoder(in_channels, record)
