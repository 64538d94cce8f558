"""Nearest-entry vector quantization, with a straight-through estimator or with the gradient to the codebook.

van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning" (VQ-VAE), NeurIPS 2017, eq. 3:
    L = ||sg[z_e] - e||² + β ||z_e - sg[e]||²
The first (codebook) term moves the chosen entries towards the encoder output; the second (commitment) term keeps
the encoder from drifting away from the codebook. The choice of entry has no gradient. Two ways to pass the
downstream gradient on (``straight_through``):
  * True (VQ-VAE): the output is z_e + sg[e - z_e], so the decoder's gradient is copied to the encoder and the
    entries learn from the loss above only. Needed when the quantized value *replaces* z_e.
  * False: the output is the chosen entries e themselves, so the downstream gradient reaches those entries (and
    not the encoder). Enough when the quantized value is *added* to z_e, as in the task-prototype method
    (f^i = f^e + f^q): f^e already receives the gradient through the sum, and the codebook is then trained by what
    reads f^i (its reconstruction loss, as the method's description says), besides the loss above.

Used by the task-prototype method (Oh, Kim & Kim, AAAI 2026, arXiv 2601.07474) to quantize the shared feature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VectorQuantizer(nn.Module):
    """Codebook of ``codebook_size`` × ``dim``; every spatial position takes its nearest entry (L2)."""

    def __init__(self, dim: int, codebook_size: int, commitment_weight: float = 0.25,
                 init_from_data: bool = True, straight_through: bool = True) -> None:
        super().__init__()
        if dim < 1 or codebook_size < 1:
            raise ValueError(f"VectorQuantizer: dim={dim}, codebook_size={codebook_size}: both must be >= 1")
        if commitment_weight < 0:
            raise ValueError(f"VectorQuantizer.commitment_weight={commitment_weight}: must be >= 0")
        self.dim = dim
        self.codebook_size = codebook_size
        self.commitment_weight = commitment_weight
        self.straight_through = straight_through
        # VQ-VAE's uniform(-1/K, 1/K) init; with init_from_data the first training batch overwrites it with
        # encoder vectors, because ReLU features of scale ~1 otherwise all snap to one entry (dead codes).
        self.codebook = nn.Parameter(torch.empty(codebook_size, dim).uniform_(-1.0 / codebook_size,
                                                                              1.0 / codebook_size))
        self.register_buffer("initted", torch.tensor(not init_from_data))

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        # flat: [N, c]; sample K vectors (with replacement when N < K) plus a little noise to break ties
        idx = torch.randint(0, flat.shape[0], (self.codebook_size,), device=flat.device)
        self.codebook.copy_(flat[idx] + 1e-3 * torch.randn_like(flat[idx]))
        self.initted.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, c, h, w] -> (quantized [B, c, h, w], indices [B, h, w], loss []).

        The quantized values are codebook entries; their gradient goes to x (straight-through) or to the entries.
        """
        b, c, h, w = x.shape
        flat = x.permute(0, 2, 3, 1).reshape(-1, c)                               # [N, c], N = B·h·w
        if self.training and not bool(self.initted):
            self._init_from(flat.detach())
        dist = torch.cdist(flat.detach(), self.codebook.detach())                 # [N, K]
        indices = dist.argmin(dim=1)                                              # [N]
        quantized = F.embedding(indices, self.codebook)                           # [N, c], grad to codebook only
        codebook_loss = F.mse_loss(quantized, flat.detach())
        commitment_loss = F.mse_loss(flat, quantized.detach())
        loss = codebook_loss + self.commitment_weight * commitment_loss
        if self.straight_through:
            quantized = flat + (quantized - flat).detach()                        # gradient copied to x
        quantized = quantized.view(b, h, w, c).permute(0, 3, 1, 2).contiguous()   # [B, c, h, w]
        return quantized, indices.view(b, h, w), loss
