"""Task-prototype knowledge retrieval for multi-task learning from partially annotated data.

Youngmin Oh, Hyung-Il Kim, Jung Uk Kim, "Task Prototype-Based Knowledge Retrieval for Multi-Task Learning from
Partially Annotated Data", AAAI 2026, arXiv 2601.07474. No public code; this is a first implementation.

Why: prediction-based partial-label methods (MTPSL, JTR) link tasks through predictions of *unlabelled* tasks, which
are unreliable. Here tasks are linked through learnable task prototypes instead, and no term ever uses an unlabelled
task's prediction or ground truth as a target.

What the paper states (method section; equation numbers could not be checked, see below):
    f^q = q(f^e) := argmin_{z_k ∈ Z} ||f^e_ij - z_k||     codebook Z = {z_k}, k = 1..K, z_k ∈ R^{1×c}
    f^i = f^e + f^q                                      integrated shared feature
    L_tae = SmoothL1(I_r, I)                             I_r: convolutional decoder applied to f^i
    L_akg = L_tke + L_tc,   L_total = L_MTL + λ1 L_tae + λ2 L_akg
Only the above could be read (from third-party summaries); the full text was not reachable, hence neither its
equation numbers nor the exact forms of A, L_tke, L_tc, the transformer, nor λ1, λ2, K and the dims. Our choices
(each an option):
  * VQ term: VQ-VAE codebook + β·commitment, logged as its own term "vq" with weight ``lambda_vq`` (not inside L_tae).
  * f^t: task-specific conv(k×k)-BN-ReLU of f^i, c channels (``proj_kernel``).
  * A(f^t, V)[t, s] = softmax_s(cos(W·pool(f^t), v_s) / τ), W a shared linear c → d; pool = global mean, or per
    position then averaged (``affinity_pool``). Rows sum to 1; slot s is bound to task s by L_tke.
  * L_tke = mean_{b,t} -log A_b[t, t] (cross-entropy with target t).
  * L_tc ("task consistency", ``tc_mode``): "batch" = KL(sg[Ā] || A_b) row-wise, Ā the batch-mean affinity: the task
    association is a property of the tasks and should agree across images; "refined" = L_tke applied to A(f^tr, V):
    the task keeps its identity after retrieving other tasks' knowledge.
  * Both AKG terms on every (image, task) pair (``akg_on="all"``): they need no labels; "labelled" restricts them.
  * f^ta_t = Σ_s A[t, s] f^s; cross-attention over the h·w tokens, query f^t, key/value f^ta (``query_from``),
    post-norm (residual + LayerNorm) attention and FFN, ``layers`` deep, weights shared across tasks by default.
  * Attention is quadratic in h·w: a shared feature with more than ``attention_tokens`` positions (SegNet's is full
    resolution: 110k at 288×384) is average-pooled by the smallest power-of-two stride s that fits, R runs there and
    f^tr = f^t + up_s(R(pool_s f^t) − pool_s f^t) (bilinear). Stride-8 backbones at NYUv2 size (36×48) stay exact.
  * I_r: conv-ReLU stages that upsample ×2 while below the image size, then a linear conv (any feature stride).
  * Image-level tasks (classification, regression) need nothing of their own: their f^t is a map like every task's
    (the projection, the pooled prototype affinity and the retrieval are per task, whatever it predicts), and their
    head (``ImageLevelHead``) pools f^tr globally before its MLP. So the prototypes and the retrieval link a dense
    task and an image-level one exactly as two dense ones, and no term uses an unlabelled task's prediction.

Prior knowledge of task relations (``ExperimentConfig.task_prior``, P [T, T], not in the paper): A is the
method's own statement of how tasks relate, so a known relation can steer it (``prior_mode``, used only when a prior
is given; default "regularize"):
  * "regularize": L_prior = mean_t KL(P̃_t || Ā_t), P̃ = P with rows normalized to sum 1, Ā the batch-mean affinity
    (weighted as the AKG terms, ``akg_on``; the gradient flows through Ā into every image's A). Weight
    ``prior_weight``, logged as the auxiliary term "prior". It pulls the test-averaged affinity toward the prior
    while L_tke still asks for the whole row on the diagonal; ``prior_weight`` against ``lambda_akg`` sets the balance.
  * "init": the slots start with cosine similarities that follow the prior: the Gram target G = I + c·(S − I),
    S = (P + Pᵀ)/2 and c = ``prior_init_cosine`` < 1 (so related slots stay distinguishable), is factored as
    X Xᵀ (eigendecomposition, negative eigenvalues clipped to 0 when S is not positive semi-definite, rows of X
    renormalized to unit length), and the slots are X placed in a random T-dimensional subspace of R^d (an
    orthonormal basis from the random initial slots, which keeps their scale), so cos(v_s, v_t) = G_st exactly
    when G is PSD. A task whose features pick its own slot then gives A_t ∝ exp(G_t / τ): more mass on the tasks
    the prior relates it to, from the first step. Needs ``proto_dim`` >= T.
  * "both": both; "none": the prior is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..priors import row_normalized
from ..tasks import TaskSpec
from .base import LossTerms, Method, Refined, Step, register
from .vq import VectorQuantizer

_CHOICES = {"affinity_pool": ("mean", "position"), "akg_on": ("all", "labelled"), "tc_mode": ("batch", "refined"),
            "query_from": ("task", "knowledge"), "prior_mode": ("none", "regularize", "init", "both")}


@dataclass
class TPKROptions:
    codebook_size: int = 512          # K (paper value not read)
    commitment: float = 0.25          # β, VQ-VAE default
    lambda_vq: float = 1.0            # weight of the VQ codebook + commitment term
    lambda_tae: float = 1.0           # λ1 (paper value not read)
    lambda_akg: float = 1.0           # λ2 (paper value not read)
    proto_dim: int = 128              # d of the prototype slots
    temperature: float = 0.1          # τ of the affinity softmax over cosine similarities
    affinity_pool: str = "mean"
    akg_on: str = "all"
    tc_mode: str = "batch"
    heads: int = 4
    layers: int = 1
    ffn_mult: int = 2
    query_from: str = "task"
    share_transformer: bool = True
    proj_kernel: int = 1
    decoder_width: int = 64
    attention_tokens: int = 4096      # above this many positions, retrieval runs on a pooled grid (see header)
    use_vq: bool = True
    use_tae: bool = True
    use_akg: bool = True
    use_tc: bool = True
    use_retrieval: bool = True
    prior_mode: str = "regularize"    # with a task_prior: "regularize" the affinity, "init" the slots, "both", "none"
    prior_weight: float = 1.0         # weight of the prior term (logged as "prior")
    prior_init_cosine: float = 0.9    # slot cosine given to a pair of prior strength 1 (mode "init" / "both")

    def __post_init__(self) -> None:
        for name in ("codebook_size", "proto_dim", "heads", "layers", "ffn_mult", "attention_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"TPKROptions.{name}={getattr(self, name)}: must be an integer >= 1")
        for name in ("commitment", "lambda_vq", "lambda_tae", "lambda_akg", "prior_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"TPKROptions.{name}={getattr(self, name)}: must be >= 0")
        if self.temperature <= 0:
            raise ValueError(f"TPKROptions.temperature={self.temperature}: must be > 0")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TPKROptions.{name}={getattr(self, name)!r}: allowed {allowed}")
        if self.proj_kernel not in (1, 3):
            raise ValueError(f"TPKROptions.proj_kernel={self.proj_kernel}: allowed (1, 3)")
        if self.decoder_width < 4:
            raise ValueError(f"TPKROptions.decoder_width={self.decoder_width}: must be >= 4")
        if not 0 <= self.prior_init_cosine < 1:
            raise ValueError(f"TPKROptions.prior_init_cosine={self.prior_init_cosine}: must be in [0, 1)")

    @property
    def prior_regularizes(self) -> bool:
        return self.prior_mode in ("regularize", "both")

    @property
    def prior_initializes(self) -> bool:
        return self.prior_mode in ("init", "both")


def prototype_affinity(keys: torch.Tensor, slots: torch.Tensor, temperature: float) -> torch.Tensor:
    """keys [..., d], slots [T, d] -> softmax over the T slots of the scaled cosine similarity [..., T]."""
    sim = F.normalize(keys, dim=-1) @ F.normalize(slots, dim=-1).t()
    return (sim / temperature).softmax(dim=-1)


def _weighted_mean(per_pair: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    total = weight.sum()
    if total == 0:
        return per_pair.sum() * 0.0
    return (per_pair * weight).sum() / total


def tke_loss(affinity: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """affinity [B, T, T], weight [B, T] -> mean of -log A_b[t, t]: task t's features pick slot t."""
    own = affinity.diagonal(dim1=1, dim2=2).clamp_min(1e-8)                      # [B, T]
    return _weighted_mean(-own.log(), weight)


def tc_batch_loss(affinity: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Row-wise KL(sg[Ā] || A_b), Ā the (weighted) batch mean: one task association shared by all images."""
    w = weight.unsqueeze(-1)                                                     # [B, T, 1]
    target = (affinity.detach() * w).sum(0) / w.sum(0).clamp_min(1.0)            # [T, T]
    target = target.clamp_min(1e-8)
    kl = (target * (target.log() - affinity.clamp_min(1e-8).log())).sum(-1)      # [B, T]
    return _weighted_mean(kl, weight)


def prior_loss(affinity: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """affinity [B, T, T], weight [B, T], target P̃ [T, T] (rows sum to 1) -> mean_t KL(P̃_t || Ā_t).

    Ā is the weighted batch mean of the affinity rows (not detached: the gradient reaches every image's A); rows
    without weight in the batch are left out. 0 exactly when Ā = P̃.
    """
    w = weight.unsqueeze(-1)                                                     # [B, T, 1]
    count = w.sum(0)                                                             # [T, 1]
    mean = (affinity * w).sum(0) / count.clamp_min(1e-12)                        # Ā [T, T]
    kl = (torch.xlogy(target, target) - target * mean.clamp_min(1e-8).log()).sum(-1)   # [T]
    present = (count.squeeze(-1) > 0).to(kl.dtype)
    return _weighted_mean(kl, present)


def slots_from_prior(prior: torch.Tensor, basis: torch.Tensor, max_cosine: float) -> torch.Tensor:
    """P [T, T], basis [T, d] (random slots, d >= T) -> slots [T, d] whose cosine matrix is G = I + c·(S − I).

    S = (P + Pᵀ)/2; G is factored as X Xᵀ with negative eigenvalues clipped (the nearest PSD matrix), X's rows
    renormalized to unit length, then placed in the span of ``basis`` by an orthonormal basis Q [d, T] of it:
    slots = X Qᵀ, scaled to the basis' mean row norm. Exact when G is PSD (e.g. a chain or a block prior with c < 1).
    """
    T, d = basis.shape
    sym = (prior + prior.t()) / 2
    eye = torch.eye(T, dtype=basis.dtype, device=basis.device)
    gram = eye + max_cosine * (sym.to(basis.dtype) - eye)
    values, vectors = torch.linalg.eigh(gram.double())
    x = (vectors * values.clamp_min(0).sqrt()).to(basis.dtype)                  # [T, T], x xᵀ ≈ G
    x = F.normalize(x, dim=1)
    q, _ = torch.linalg.qr(basis.t())                                            # [d, T], orthonormal columns
    return (x @ q.t()) * basis.norm(dim=1).mean()


class RetrievalLayer(nn.Module):
    """Cross-attention block: x = LN(x + MHA(x, kv, kv)); x = LN(x + FFN(x)). Tokens [N, L, c]."""

    def __init__(self, dim: int, heads: int, ffn_mult: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim * ffn_mult), nn.GELU(), nn.Linear(dim * ffn_mult, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x, kv, kv, need_weights=False)[0])
        return self.norm2(x + self.ffn(x))


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


def attention_stride(h: int, w: int, max_tokens: int) -> int:
    """Smallest power of two s with ceil(h/s)·ceil(w/s) <= max_tokens."""
    s = 1
    while -(-h // s) * -(-w // s) > max_tokens:
        s *= 2
    return s


@register
class TaskPrototypeRetrieval(Method):
    """Shared feature -> VQ-integrated f^i -> per-task f^t -> affinity to prototypes -> retrieval -> f^tr."""

    name = "tpkr"
    Options = TPKROptions

    def __init__(self, tasks: Sequence[TaskSpec], feature_channels: int, options: TPKROptions | None = None) -> None:
        super().__init__(tasks, feature_channels, options)
        o, c, n = self.options, feature_channels, len(self.tasks)
        if o.use_retrieval and c % o.heads:
            raise ValueError(f"TPKROptions.heads={o.heads}: must divide feature_channels={c}")
        self.vq = VectorQuantizer(c, o.codebook_size, o.commitment) if o.use_vq else None
        self.decoder = ReconstructionDecoder(c, o.decoder_width) if o.use_tae else None
        k = o.proj_kernel
        self.project = nn.ModuleDict({t.name: nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, bias=False),
                                                            nn.BatchNorm2d(c), nn.ReLU(inplace=True))
                                      for t in self.tasks})
        self.key = nn.Linear(c, o.proto_dim)
        self.slots = nn.Parameter(torch.randn(n, o.proto_dim))                    # V: [T, d]
        stacks = 1 if o.share_transformer else n
        self.retrieval = nn.ModuleList(
            nn.ModuleList(RetrievalLayer(c, o.heads, o.ffn_mult) for _ in range(o.layers)) for _ in range(stacks)
        ) if o.use_retrieval else None

    @classmethod
    def check_task_prior(cls, options: TPKROptions, prior: torch.Tensor | None) -> None:
        if prior is not None and options.prior_initializes and options.proto_dim < prior.shape[0]:
            raise ValueError(f"TPKROptions.prior_mode={options.prior_mode!r}: slots built from the task_prior need "
                             f"proto_dim >= {prior.shape[0]} tasks, got proto_dim={options.proto_dim}")

    def use_task_prior(self, prior: torch.Tensor | None) -> None:
        """With ``prior_mode`` "init" / "both", the slots start from the prior (see the module docstring)."""
        super().use_task_prior(prior)
        if self.task_prior is not None and self.options.prior_initializes:
            with torch.no_grad():
                self.slots.copy_(slots_from_prior(self.task_prior, self.slots, self.options.prior_init_cosine))

    # -- pieces -----------------------------------------------------------------------------------------------

    def _integrate(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """f^e [B, c, h, w] -> (f^i = f^e + f^q, VQ loss, code indices [B, h, w]); f^i = f^e without VQ."""
        if self.vq is None:
            return features, features.new_zeros(()), None
        f_q, codes, loss = self.vq(features)
        return features + f_q, loss, codes

    def _task_features(self, f_i: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.project[t.name](f_i) for t in self.tasks], dim=1)   # [B, T, c, h, w]

    def _affinity(self, ft: torch.Tensor) -> torch.Tensor:
        """f^t [B, T, c, h, w] -> A [B, T, T], row t = task t's affinity to every slot."""
        o = self.options
        if o.affinity_pool == "mean":
            return prototype_affinity(self.key(ft.mean(dim=(-2, -1))), self.slots, o.temperature)
        tokens = ft.flatten(-2).transpose(-1, -2)                                  # [B, T, hw, c]
        return prototype_affinity(self.key(tokens), self.slots, o.temperature).mean(dim=2)

    def _retrieve(self, ft: torch.Tensor, affinity: torch.Tensor) -> torch.Tensor:
        """f^t [B, T, c, h, w], A [B, T, T] -> f^tr [B, T, c, h, w]; on a pooled grid above ``attention_tokens``."""
        b, n, c, h, w = ft.shape
        s = attention_stride(h, w, self.options.attention_tokens)
        if s == 1:
            return self._attend(ft, affinity)
        pooled = F.avg_pool2d(ft.flatten(0, 1), s, ceil_mode=True)                # [B·T, c, h/s, w/s]
        delta = self._attend(pooled.unflatten(0, (b, n)), affinity).flatten(0, 1) - pooled
        return ft + F.interpolate(delta, size=(h, w), mode="bilinear", align_corners=False).unflatten(0, (b, n))

    def _attend(self, ft: torch.Tensor, affinity: torch.Tensor) -> torch.Tensor:
        """f^t [B, T, c, h, w], A [B, T, T] -> f^tr by cross-attention with f^ta = Σ_s A_ts f^s over all h·w tokens."""
        b, n, c, h, w = ft.shape
        f_ta = torch.einsum("bts,bschw->btchw", affinity, ft)
        task_tok = ft.flatten(-2).transpose(-1, -2)                                # [B, T, hw, c]
        know_tok = f_ta.flatten(-2).transpose(-1, -2)                              # [B, T, hw, c]
        q, kv = (task_tok, know_tok) if self.options.query_from == "task" else (know_tok, task_tok)
        if len(self.retrieval) == 1:                                               # shared: tasks go in the batch
            x, kv_flat = q.reshape(b * n, h * w, c), kv.reshape(b * n, h * w, c)
            for layer in self.retrieval[0]:
                x = layer(x, kv_flat)
            out = x.view(b, n, h * w, c)
        else:
            outs = []
            for i, stack in enumerate(self.retrieval):
                x = q[:, i]
                for layer in stack:
                    x = layer(x, kv[:, i])
                outs.append(x)
            out = torch.stack(outs, dim=1)
        return out.transpose(-1, -2).reshape(b, n, c, h, w)

    # -- Method interface ---------------------------------------------------------------------------------------

    def refine(self, features: torch.Tensor, images: torch.Tensor) -> Refined:
        o = self.options
        f_i, vq_loss, codes = self._integrate(features)
        ft = self._task_features(f_i)
        affinity = self._affinity(ft)
        ftr = self._retrieve(ft, affinity) if self.retrieval is not None else ft
        extras = {"affinity": affinity, "vq_loss": vq_loss}
        if codes is not None:
            extras["codes"] = codes
        if o.use_akg and o.use_tc and o.tc_mode == "refined":
            extras["affinity_refined"] = self._affinity(ftr)
        if self.decoder is not None:
            extras["reconstruction"] = self.decoder(f_i, tuple(images.shape[-2:]))
        return Refined({t.name: ftr[:, i] for i, t in enumerate(self.tasks)}, extras)

    def losses(self, step: Step) -> LossTerms:
        o, ex = self.options, step.refined.extras
        out: dict[str, torch.Tensor] = {}
        if o.use_vq:
            out["vq"] = o.lambda_vq * ex["vq_loss"]
        if o.use_tae:
            out["tae"] = o.lambda_tae * F.smooth_l1_loss(ex["reconstruction"], step.images)
        if o.use_akg:
            affinity = ex["affinity"]
            weight = torch.ones_like(affinity[..., 0]) if o.akg_on == "all" else step.labelled.to(affinity.dtype)
            out["tke"] = o.lambda_akg * tke_loss(affinity, weight)
            if o.use_tc:
                tc = tc_batch_loss(affinity, weight) if o.tc_mode == "batch" else tke_loss(ex["affinity_refined"],
                                                                                          weight)
                out["tc"] = o.lambda_akg * tc
        if self.task_prior is not None and o.prior_regularizes:
            affinity = ex["affinity"]
            weight = torch.ones_like(affinity[..., 0]) if o.akg_on == "all" else step.labelled.to(affinity.dtype)
            out["prior"] = o.prior_weight * prior_loss(affinity, weight, row_normalized(self.task_prior))
        return LossTerms(self.supervised_losses(step), out)

    def eval_summary(self, refined: Refined) -> dict[str, torch.Tensor]:
        """The T×T affinity averaged over the evaluation images, logged every epoch (its evolution is a figure)."""
        return {"affinity": refined.extras["affinity"].mean(0)}

    # -- for figures ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def task_affinity(self, features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Shared feature [B, c, h, w] -> A [B, T, T] (call in eval mode so BN statistics stay put)."""
        return self._affinity(self._task_features(self._integrate(features)[0]))

    @torch.no_grad()
    def task_keys(self, features: torch.Tensor) -> torch.Tensor:
        """Shared feature [B, c, h, w] -> the pooled task keys W·pool(f^t) [B, T, d] compared with the slots."""
        ft = self._task_features(self._integrate(features)[0])                    # [B, T, c, h, w]
        return self.key(ft.mean(dim=(-2, -1)))

    def prototype_slots(self) -> torch.Tensor:
        """The task prototype V [T, d] (a detached copy)."""
        return self.slots.detach().clone()
