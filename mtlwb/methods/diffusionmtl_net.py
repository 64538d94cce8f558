"""The networks of DiffusionMTL (``diffusionmtl.py``): noise schedule, timestep embedding, cross-attention blocks and
the multi-task conditioned denoiser.

Layout facts read from the public code (prismformore/DiffusionMTL, ``models/diffusion/mtdnet.py``,
``models/diffusion_net.py``); the code here is our own.

* Schedule: β linear in √β from 1e-3 to 1e-2 over S steps (``make_beta_schedule("linear")``), ᾱ_s = Π (1 − β);
  the forward process q(x_s | x_0) and the Gaussian posterior q(x_{s−1} | x_s, x_0) of DDPM (variance clipped at
  1e-20 before its log). The denoiser predicts x_0 directly (the code's ``parameterization = "x0"``).
* Timestep embedding: DiT's — [cos, sin] of s·10000^(−i/128), i < 128 (256 frequencies), then Linear-SiLU-Linear to
  the width; added to every position of the noisy map after its per-task 3×3 input convolution.
* Cross-attention block (shared by all tasks): the *condition* tokens are the queries; the noisy-map tokens are the
  keys/values and are first refined by their own pre-norm MLP (kv ← kv + MLP(LN(kv))); then
  q ← q + Attn(LN(q), LN'(kv)) and q ← q + MLP(LN(q)); q and kv go on to the next block. The attention is
  multi-head, scaled dot product, q and kv projections without bias. After the last block the condition stream is
  the output.
* Tokens: both maps are resized (bilinear) to 1/``token_stride`` of the feature grid (1/4 in the code); the output is
  resized back and added to the embedded noisy map (a residual), then a per-task readout (1×1 conv, then 3×3
  conv-ReLU stages) gives the x_0 estimate in feature space.
* Initialisation: Linear layers Xavier-uniform with zero bias, the timestep MLP's weights N(0, 0.02²), the
  condition's 3×3 convolution Kaiming-normal (fan-out) with zero bias; everything else PyTorch's default.

One deviation on purpose: the code resizes with ``scale_factor`` 0.25 and 4, which fails (a shape mismatch at the
residual) when the feature grid is not divisible by 4; here the tokens are resized to ``grid // stride`` and back to
the exact grid (identical numbers when divisible).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

# the published layout (arch="reference"): width = ResNet-18's last stage, 4 blocks of 4 heads, tokens at 1/4,
# readout 1×1 → 3×3 (512) → 3×3 (512) → 3×3 (512), ReLU after each 3×3, 2 BasicBlocks per preliminary decoder
REFERENCE_LAYOUT = {"width": 512, "depth": 4, "heads": 4, "mlp_ratio": 4.0, "token_stride": 4, "readout_width": 512,
                    "readout_convs": 3, "preliminary_blocks": 2}
FREQUENCIES = 256          # sinusoidal features of the timestep (DiT)


def sinusoidal_embedding(s: torch.Tensor, dim: int = FREQUENCIES, max_period: float = 10000.0) -> torch.Tensor:
    """Timesteps [B] -> [B, dim]: cos then sin of s · max_period^(−i / (dim/2)), i < dim/2."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=s.device) / half)
    angles = s.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedding(nn.Module):
    """s [B] -> [B, width]: sinusoidal features, then Linear-SiLU-Linear."""

    def __init__(self, width: int, frequencies: int = FREQUENCIES) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, width), nn.SiLU(), nn.Linear(width, width))
        nn.init.normal_(self.mlp[0].weight, std=0.02)
        nn.init.normal_(self.mlp[2].weight, std=0.02)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(s, self.frequencies).to(self.mlp[0].weight.dtype))


def mlp(width: int, ratio: float) -> nn.Sequential:
    hidden = int(width * ratio)
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))


class ConditionedCrossBlock(nn.Module):
    """One block: the condition tokens (queries) read the noisy task tokens (keys/values). Tokens [B, N, C]."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"diffusionmtl: heads={heads} must divide the width {width}")
        self.heads = heads
        self.norm_kv_mlp = nn.LayerNorm(width)
        self.kv_mlp = mlp(width, mlp_ratio)
        self.norm_query = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.to_q = nn.Linear(width, width, bias=False)
        self.to_kv = nn.Linear(width, 2 * width, bias=False)
        self.out = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width)
        self.query_mlp = mlp(width, mlp_ratio)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        return x.view(B, N, self.heads, C // self.heads).transpose(1, 2)               # [B, heads, N, C/heads]

    def attend(self, query: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        k, v = self.to_kv(kv).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(self._heads(self.to_q(query)), self._heads(k), self._heads(v))
        return self.out(out.transpose(1, 2).flatten(2))                               # [B, N, C]

    def forward(self, query: torch.Tensor, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kv = kv + self.kv_mlp(self.norm_kv_mlp(kv))
        query = query + self.attend(self.norm_query(query), self.norm_kv(kv))
        query = query + self.query_mlp(self.norm_mlp(query))
        return query, kv


def _tokens(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[B, C, h, w] -> resized to grid -> [B, N, C]."""
    if tuple(x.shape[-2:]) != grid:
        x = F.interpolate(x, size=grid, mode="bilinear", align_corners=False)
    return x.flatten(2).transpose(1, 2)


class Denoiser(nn.Module):
    """(x_s, s, condition) -> the readout feature from which x_0 is estimated, one task at a time.

    ``in_channels``: task -> channels of its diffused map (the width for feature diffusion, the task's prediction
    channels for prediction diffusion). Output [B, out_channels, h, w] on the grid of x_s.
    """

    def __init__(self, in_channels: Mapping[str, int], width: int, depth: int, heads: int, mlp_ratio: float,
                 token_stride: int, readout_width: int, readout_convs: int, out_channels: int) -> None:
        super().__init__()
        self.token_stride = token_stride
        self.blocks = nn.ModuleList(ConditionedCrossBlock(width, heads, mlp_ratio) for _ in range(depth))
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.embed = nn.ModuleDict({t: nn.Conv2d(c, width, 3, padding=1) for t, c in in_channels.items()})
        self.readout = nn.ModuleDict({t: readout(width, readout_width, out_channels, readout_convs)
                                      for t in in_channels})
        self.time = TimestepEmbedding(width)

    def forward(self, task: str, x: torch.Tensor, s: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = self.embed[task](x) + self.time(s)[:, :, None, None].to(x.dtype)    # [B, C, h, w]
        h, w = x.shape[-2:]
        grid = (max(1, h // self.token_stride), max(1, w // self.token_stride))
        query, kv = _tokens(condition, grid), _tokens(x, grid)                  # [B, N, C] each
        for block in self.blocks:
            query, kv = block(query, kv)
        y = query.transpose(1, 2).reshape(x.shape[0], -1, *grid)
        if grid != (h, w):
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return self.readout[task](y + x)


def readout(width: int, hidden: int, out: int, convs: int) -> nn.Sequential:
    """1×1 conv, then ``convs`` 3×3 conv-ReLU stages: width -> hidden -> ... -> out (the last one out -> out)."""
    layers: list[nn.Module] = [nn.Conv2d(width, width, 1)]
    widths = [width] + [hidden] * max(0, convs - 2) + [out] * min(convs, 2)
    for cin, cout in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class Condition(nn.Module):
    """The multi-task condition: the concatenated (detached) preliminary predictions of all tasks -> 3×3 conv."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.conv.bias)

    def forward(self, predictions: torch.Tensor) -> torch.Tensor:
        return self.conv(predictions)


class DiffusionSchedule(nn.Module):
    """The S-step DDPM schedule (buffers, not saved in checkpoints: they follow from S and the β range).

    Timesteps are s = 0 … S−1; the chain starts at x_{S−1} ~ q(x_{S−1} | x_0) and the denoiser is called at
    s = S−1, …, 0 (S calls); between calls x_{s−1} is drawn from q(x_{s−1} | x_s, x̂_0).
    """

    def __init__(self, steps: int, beta_start: float, beta_end: float) -> None:
        super().__init__()
        self.steps = steps
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
        alphas = 1.0 - betas
        bar = torch.cumprod(alphas, 0)
        bar_prev = torch.cat([bar.new_ones(1), bar[:-1]])
        variance = betas * (1.0 - bar_prev) / (1.0 - bar)
        table = {"sqrt_bar": bar.sqrt(), "sqrt_one_minus_bar": (1.0 - bar).sqrt(),
                 "posterior_x0": betas * bar_prev.sqrt() / (1.0 - bar),
                 "posterior_xs": (1.0 - bar_prev) * alphas.sqrt() / (1.0 - bar),
                 "posterior_log_variance": variance.clamp_min(1e-20).log(), "betas": betas}
        for name, values in table.items():
            self.register_buffer(name, values.float(), persistent=False)

    def q_sample(self, x0: torch.Tensor, s: int, noise: torch.Tensor) -> torch.Tensor:
        """x_s = √ᾱ_s x_0 + √(1 − ᾱ_s) ε."""
        return self.sqrt_bar[s] * x0 + self.sqrt_one_minus_bar[s] * noise

    def posterior_sample(self, x0_hat: torch.Tensor, xs: torch.Tensor, s: int, noise: torch.Tensor) -> torch.Tensor:
        """x_{s−1} ~ q(x_{s−1} | x_s, x̂_0) = N(c1_s x̂_0 + c2_s x_s, σ_s²), s ≥ 1."""
        mean = self.posterior_x0[s] * x0_hat + self.posterior_xs[s] * xs
        return mean + (0.5 * self.posterior_log_variance[s]).exp() * noise
