"""Task-prototype knowledge retrieval for multi-task learning from partially annotated data.

Youngmin Oh, Hyung-Il Kim, Jung Uk Kim, "Task Prototype-Based Knowledge Retrieval for Multi-Task Learning from
Partially Annotated Data", AAAI 2026, arXiv 2601.07474. No public code exists. Source of what follows: a
third-party description of the paper (a paper note in the repository zhaoyang97/Paper-Notes-en,
docs/AAAI2026/autonomous_driving/task_prototype-based_knowledge_retrieval_for_multi-task_lear.md); no code. The
paper's own text could not be read, so its equation numbers are not given here.

Why: prediction-based partial-label methods (MTPSL, JTR) link tasks through predictions of *unlabelled* tasks, which
are unreliable. Here tasks are linked through learnable task prototypes instead, and no term ever reads an unlabelled
task's prediction or ground truth.

``variant="paper"`` (the default) — what the description states:
    f^q = q(f^e) := nearest z_k ∈ Z to each position of f^e     codebook Z: K entries of dim D (K = 4096, D = 1024)
    f^i = f^e + f^q                                             integrated shared feature
    L_tae = SmoothL1(I_r, I)                                    I_r: a convolutional decoder applied to f^i
    f^t: per-task decoders of f^i; V = {v_τ}: T slots (one per task) of dim d (d = 1024)
    S(f̂^t, V)_τ = cos(f̂^t, v_τ),  A(f̂^t, V) = softmax_τ(S)     task affinity
    L_tke = CE(A(f̂^t, V), onehot(t))                            each task's features pick their own slot
    L_tc: task features aggregated over the batch per task, a triplet loss (same task close, other tasks far)
    f^ta = A(f̂^t, V) · V                                        a mixture of the slots
    blocks: self-attention → cross-attention (query f^t, key/value f^ta) → FFN, several; output f^tr → heads
    L_total = L_MTL + λ1 Σ L_tae + λ2 (L_tke + L_tc)
    (training: ResNet-18, Adam lr 2e-5; PASCAL-Context 100 epochs batch 6; NYUD-v2 200 epochs batch 4)

Not given by the description, so chosen here (each an option; default in brackets):
  * f^e: the backbone's feature, through a 3×3 conv to width D when D differs from it (``embed_dim``; DiffusionMTL
    embeds its ResNet-18 features the same way). The refined f^tr goes back to the heads' width by a shared 1×1
    conv when D differs.
  * Per-task decoders (``task_blocks``): n ResNet BasicBlocks at width D (DiffusionMTL's two-block preliminary
    decoders, at size "paper"); 0 = one conv(``proj_kernel``)-BN-ReLU (size "compact", the built-in scenes).
  * f̂^t = W f^t, a shared linear map D → d at every position (``affinity_pool="position"``: A per position, so
    f^ta is a map and the cross-attention has one key per position; "mean": W of the globally pooled f^t, one
    affinity and one knowledge token per image and task). A = softmax(cos / τ) with τ = 1 [``temperature``]:
    the softmax of the cosine as written, which keeps A soft enough for f^ta to mix slots.
  * L_tke: per position, −log A[t, t], averaged over positions, images and tasks.
  * L_tc [``tc_mode="triplet"``]: x̃_bt = the pooled f̂^t of image b (W·mean f^t). ``tc_aggregate="mean"``: each
    task's batch aggregate c_t = mean_b x̃_bt; anchor x̃_bt, positive c_t, negatives c_s (s ≠ t, averaged):
    max(0, m + dist(x̃_bt, c_t) − dist(x̃_bt, c_s)). "pairs": every triplet of the batch (positive: the same task
    in another image; negative: another task in any image). ``tc_distance`` "cosine" (1 − cos, the geometry of
    A) or "euclidean"; margin m = ``tc_margin`` [0.5].
  * f^ta is projected d → D by a linear map before it serves as key and value (``knowledge="slots"``).
  * Blocks: pre-norm residual branches [``norm_first``] (f^tr = f^t + …: the heads see f^t at initialisation),
    ``layers`` [2] blocks, ``heads`` [4 compact, 8 paper], FFN ×``ffn_mult`` [2], GELU, shared across tasks
    [``share_transformer``] (tasks go in the batch).
  * The codebook: nearest entry in L2; f^q carries the gradient to the chosen entries (``vq_gradient="codebook"``:
    f^e gets its own gradient through the sum, and the codebook is trained by the reconstruction, as the description
    says), plus the VQ-VAE codebook + β·commitment term, logged as "vq" with weight ``lambda_vq`` [1] (not counted
    in L_tae; the description's Σ has one term here: one decoder). Entries start from the first batch's features.
  * λ1 = ``lambda_tae`` [1], λ2 = ``lambda_akg`` [1]; both AKG terms on every (image, task) pair [``akg_on="all"``]:
    they read features only, never a label.
  * Sizes (``size``): "paper" = K 4096, D 1024, d 1024, 8 heads, two BasicBlocks per task, image-decoder width
    256; "compact" [default, the built-in scenes on a CPU] = K 512, D = the backbone's width (128 for resnet_small,
    no embedding conv), d 128, 4 heads, one conv per task, decoder width 64: K, D and d at 1/8 of the paper's.
  * Attention is quadratic in h·w: a feature with more than ``attention_tokens`` positions (SegNet's is full
    resolution) is average-pooled by the smallest power-of-two stride s that fits; affinity, knowledge and blocks
    run on that grid and f^tr = f^t + up_s(R(pool_s f^t) − pool_s f^t) (bilinear). Stride-8 backbones at NYUv2 and
    PASCAL sizes (36×48, 64×64 positions) stay exact.
  * I_r: conv-ReLU stages that upsample ×2 while below the image size, then a linear conv (any feature stride).

``variant="first"`` — this module's first implementation, written before the description could be read: VQ with a
straight-through gradient, A from the pooled f^t with τ = 0.1, L_tc ``tc_mode="batch"`` (row-wise
KL(sg[Ā] || A_b) to the batch-mean affinity Ā) or "refined" (L_tke on the affinity of f^tr), f^ta = Σ_s A[t, s] f^s
(``knowledge="features"``: a mixture of the tasks' *features*), one post-norm cross-attention → FFN block
(``block="cross_ffn"``, ``norm_first=False``). Every choice above is its own option; ``variant`` only sets the
defaults of those left unset, ``size`` those of the sizes.

Image-level tasks (classification, regression) need nothing of their own: their f^t is a map like every task's, and
their head pools f^tr globally. So the prototypes link a dense task and an image-level one as two dense ones.

Prior knowledge of task relations (``ExperimentConfig.task_prior``, P [T, T], not in the paper), ``prior_mode``:
  * "regularize" [default when a prior is given]: L_prior = mean_t KL(P̃_t || Ā_t), P̃ = P with rows normalized,
    Ā the batch-mean image-level affinity (weighted as the AKG terms); weight ``prior_weight``, logged as "prior".
  * "init": the slots start with cosine similarities G = I + c·(S − I), S = (P + Pᵀ)/2, c = ``prior_init_cosine``
    < 1, factored as X Xᵀ (eigendecomposition, negative eigenvalues clipped, rows renormalized) and placed in a
    random T-dimensional subspace of R^d (exact when G is positive semi-definite). Needs d >= T.
  * "both"; "none": the prior is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..tasks import TaskSpec
from ..tasks.priors import row_normalized
from .base import LossTerms, Method, Refined, Step, register
from .tpkr_blocks import ReconstructionDecoder, attention_stride, retrieval_block, task_decoder
from .vq import VectorQuantizer

# The defaults a variant gives to the choices left at None.
VARIANTS: dict[str, dict] = {
    "paper": dict(vq_gradient="codebook", affinity_pool="position", temperature=1.0, tc_mode="triplet",
                  knowledge="slots", block="self_cross_ffn", norm_first=True, layers=2),
    "first": dict(vq_gradient="straight_through", affinity_pool="mean", temperature=0.1, tc_mode="batch",
                  knowledge="features", block="cross_ffn", norm_first=False, layers=1),
}
# The defaults a size gives to the sizes left at None. embed_dim 0: f^e is the backbone's feature at its own width.
SIZES: dict[str, dict] = {
    "compact": dict(codebook_size=512, embed_dim=0, proto_dim=128, heads=4, task_blocks=0, decoder_width=64),
    "paper": dict(codebook_size=4096, embed_dim=1024, proto_dim=1024, heads=8, task_blocks=2, decoder_width=256),
}
_CHOICES = {"variant": tuple(VARIANTS), "size": tuple(SIZES), "vq_gradient": ("codebook", "straight_through"),
            "affinity_pool": ("position", "mean"), "akg_on": ("all", "labelled"),
            "tc_mode": ("triplet", "batch", "refined"), "tc_distance": ("cosine", "euclidean"),
            "tc_aggregate": ("mean", "pairs"), "knowledge": ("slots", "features"),
            "block": ("self_cross_ffn", "cross_ffn"), "query_from": ("task", "knowledge"),
            "prior_mode": ("none", "regularize", "init", "both")}


@dataclass
class TPKROptions:
    variant: str = "paper"            # defaults of the choices below left at None (VARIANTS)
    size: str = "compact"             # defaults of the sizes left at None (SIZES): "paper" = the published sizes
    # sizes
    codebook_size: int | None = None  # K
    embed_dim: int | None = None      # D, width of f^e, the codebook entries and f^t; 0 = the backbone's width
    proto_dim: int | None = None      # d, width of the prototype slots
    heads: int | None = None
    task_blocks: int | None = None    # per-task decoder: n BasicBlocks, 0 = one conv-BN-ReLU
    decoder_width: int | None = None  # image decoder of L_tae
    # choices
    vq_gradient: str | None = None    # "codebook": f^q's gradient reaches the entries; "straight_through": f^e
    affinity_pool: str | None = None  # "position": A and f^ta per position; "mean": per image
    temperature: float | None = None  # τ of the affinity softmax over cosine similarities
    tc_mode: str | None = None        # "triplet" | "batch" | "refined"
    knowledge: str | None = None      # f^ta: "slots" = A·V; "features" = Σ_s A[t, s] f^s
    block: str | None = None          # "self_cross_ffn" | "cross_ffn"
    norm_first: bool | None = None    # LayerNorm before (pre-norm) or after each residual branch
    layers: int | None = None         # retrieval blocks
    # fixed defaults
    commitment: float = 0.25          # β, VQ-VAE default
    lambda_vq: float = 1.0            # weight of the VQ codebook + commitment term
    lambda_tae: float = 1.0           # λ1
    lambda_akg: float = 1.0           # λ2
    tc_margin: float = 0.5            # m of the triplet
    tc_distance: str = "cosine"
    tc_aggregate: str = "mean"
    akg_on: str = "all"
    ffn_mult: int = 2
    query_from: str = "task"          # cross-attention query: the task feature (kv f^ta) or, "knowledge", f^ta
    share_transformer: bool = True
    proj_kernel: int = 1              # kernel of the one-conv task decoder (task_blocks = 0)
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
        for name in ("variant", "size"):
            if getattr(self, name) not in _CHOICES[name]:
                raise ValueError(f"TPKROptions.{name}={getattr(self, name)!r}: allowed {_CHOICES[name]}")
        for name, value in {**VARIANTS[self.variant], **SIZES[self.size]}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name in ("codebook_size", "proto_dim", "heads", "layers", "ffn_mult", "attention_tokens"):
            if _not_int(getattr(self, name), 1):
                raise ValueError(f"TPKROptions.{name}={getattr(self, name)!r}: must be an integer >= 1")
        for name in ("embed_dim", "task_blocks"):
            if _not_int(getattr(self, name), 0):
                raise ValueError(f"TPKROptions.{name}={getattr(self, name)!r}: must be an integer >= 0")
        for name in ("commitment", "lambda_vq", "lambda_tae", "lambda_akg", "prior_weight", "tc_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"TPKROptions.{name}={getattr(self, name)}: must be >= 0")
        if self.temperature <= 0:
            raise ValueError(f"TPKROptions.temperature={self.temperature}: must be > 0")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TPKROptions.{name}={getattr(self, name)!r}: allowed {allowed}")
        if not isinstance(self.norm_first, bool):
            raise ValueError(f"TPKROptions.norm_first={self.norm_first!r}: must be true or false")
        if self.query_from == "knowledge" and self.knowledge != "features":
            raise ValueError("TPKROptions.query_from='knowledge': needs knowledge='features' (f^ta = A·V has one "
                             "token per image and task with affinity_pool='mean'; the query must be the task map)")
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


def _not_int(value: object, minimum: int) -> bool:
    return isinstance(value, bool) or not isinstance(value, int) or value < minimum


# -- the equations ----------------------------------------------------------------------------------------------------

def prototype_affinity(keys: torch.Tensor, slots: torch.Tensor, temperature: float) -> torch.Tensor:
    """keys f̂ [..., d], slots V [T, d] -> A = softmax over the T slots of cos(f̂, v_τ) / τ  [..., T]."""
    sim = F.normalize(keys, dim=-1) @ F.normalize(slots, dim=-1).t()
    return (sim / temperature).softmax(dim=-1)


def slot_knowledge(affinity: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """f^ta = A(f̂^t, V) · V: affinity [B, T, P, T] (rows over slots), slots [T, d] -> [B, T, P, d].

    Each f^ta_t (at each position p) is the convex combination of the slots with weights A_t(p).
    """
    return affinity @ slots


def _weighted_mean(per_pair: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    total = weight.sum()
    if total == 0:
        return per_pair.sum() * 0.0
    return (per_pair * weight).sum() / total


def tke_loss(affinity: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L_tke: affinity [B, T, T] or per position [B, T, P, T], weight [B, T] -> weighted mean over (b, t) of the
    cross-entropy of task t's affinity with the one-hot of slot t, −log A_b[t, t], averaged over positions."""
    if affinity.dim() == 3:
        affinity = affinity.unsqueeze(2)                                         # [B, T, 1, T]
    tasks = torch.arange(affinity.shape[1], device=affinity.device)
    own = affinity[:, tasks, :, tasks].permute(1, 0, 2).clamp_min(1e-8)          # A_b[t, p, t]: [B, T, P]
    return _weighted_mean(-own.log().mean(-1), weight)


def _distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """a [..., N, d], b [..., M, d] -> [..., N, M]: 1 − cos or the Euclidean distance."""
    if kind == "cosine":
        return 1 - F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)
    return torch.cdist(a, b)


def triplet_tc_loss(features: torch.Tensor, weight: torch.Tensor, margin: float, distance: str = "cosine",
                    aggregate: str = "mean") -> torch.Tensor:
    """L_tc as a triplet loss: features x̃ [B, T, d] of every (image, task), weight [B, T] -> scalar.

    "mean": c_t = the weighted batch mean of task t's features (unit vectors first for the cosine distance);
    per anchor (b, t): mean over the other present tasks s of max(0, m + dist(x̃_bt, c_t) − dist(x̃_bt, c_s)).
    "pairs": mean over every triplet (anchor x̃_bt, positive x̃_b't with b' ≠ b, negative x̃_b''s with s ≠ t) of
    max(0, m + dist(anchor, positive) − dist(anchor, negative)). Only features with weight > 0 take part.
    """
    B, T, _ = features.shape
    if aggregate == "mean":
        x = F.normalize(features, dim=-1) if distance == "cosine" else features
        w = weight.unsqueeze(-1)                                                 # [B, T, 1]
        centers = (x * w).sum(0) / w.sum(0).clamp_min(1e-12)                    # [T, d]
        dist = _distance(x, centers.expand(B, T, -1), distance)                  # [B, T, T]: anchor (b, t) to c_s
        positive = dist.diagonal(dim1=1, dim2=2).unsqueeze(-1)                   # [B, T, 1]
        present = weight.sum(0) > 0                                              # [T]
        others = (~torch.eye(T, dtype=torch.bool, device=x.device)) & present    # [T, T]: s ≠ t, s present
        hinge = F.relu(margin + positive - dist) * others                        # [B, T, T]
        per_anchor = hinge.sum(-1) / others.sum(-1).clamp_min(1)                 # [B, T]
        return _weighted_mean(per_anchor, weight * others.any(-1))
    x = features.reshape(B * T, -1)                                              # [N, d], N = B·T
    task = torch.arange(T, device=x.device).repeat(B)                            # [N]
    image = torch.arange(B, device=x.device).repeat_interleave(T)
    used = weight.reshape(-1) > 0
    dist = _distance(x, x, distance)                                             # [N, N]
    same_task = task[:, None] == task[None, :]
    pos = same_task & (image[:, None] != image[None, :]) & used[:, None] & used[None, :]
    neg = ~same_task & used[:, None] & used[None, :]
    valid = pos[:, :, None] & neg[:, None, :]                                    # [a, p, n]
    if not valid.any():
        return x.sum() * 0.0
    hinge = F.relu(margin + dist[:, :, None] - dist[:, None, :])                 # [a, p, n]
    return hinge[valid].mean()


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


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """[B, T, D, h, w] -> [B, T, h·w, D]."""
    return x.flatten(-2).transpose(-1, -2)


@register
class TaskPrototypeRetrieval(Method):
    """Shared feature -> f^e -> f^i = f^e + f^q -> per-task f^t -> affinity to the slots -> retrieval -> f^tr."""

    name = "tpkr"
    Options = TPKROptions

    def __init__(self, tasks: Sequence[TaskSpec], feature_channels: int, options: TPKROptions | None = None) -> None:
        super().__init__(tasks, feature_channels, options)
        o, n = self.options, len(self.tasks)
        c = self.width = o.embed_dim or feature_channels                          # D
        if o.use_retrieval and c % o.heads:
            raise ValueError(f"TPKROptions.heads={o.heads}: must divide the width D={c} (embed_dim, or the "
                             f"backbone's {feature_channels} channels when embed_dim is 0)")
        # creation order kept as first implemented (VQ, decoder, task decoders, key, slots, blocks): same seed,
        # same initial weights for variant "first"
        self.embed = nn.Conv2d(feature_channels, c, 3, padding=1) if c != feature_channels else None
        self.vq = (VectorQuantizer(c, o.codebook_size, o.commitment, straight_through=o.vq_gradient ==
                                   "straight_through") if o.use_vq else None)
        self.decoder = ReconstructionDecoder(c, o.decoder_width) if o.use_tae else None
        self.project = nn.ModuleDict({t.name: task_decoder(c, o.task_blocks, o.proj_kernel) for t in self.tasks})
        self.key = nn.Linear(c, o.proto_dim)                                      # f̂^t = W f^t
        self.slots = nn.Parameter(torch.randn(n, o.proto_dim))                    # V: [T, d]
        stacks = 1 if o.share_transformer else n
        self.retrieval = nn.ModuleList(
            nn.ModuleList(retrieval_block(o.block, c, o.heads, o.ffn_mult, o.norm_first) for _ in range(o.layers))
            for _ in range(stacks)
        ) if o.use_retrieval else None
        slots_in = o.use_retrieval and o.knowledge == "slots"
        self.knowledge_proj = nn.Linear(o.proto_dim, c) if slots_in else None     # f^ta: d -> D
        self.output = nn.Conv2d(c, feature_channels, 1) if c != feature_channels else None   # f^tr: D -> heads

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
        """Backbone feature [B, c, h, w] -> (f^i = f^e + f^q [B, D, h, w], VQ loss, code indices [B, h, w])."""
        f_e = self.embed(features) if self.embed is not None else features
        if self.vq is None:
            return f_e, f_e.new_zeros(()), None
        f_q, codes, loss = self.vq(f_e)
        return f_e + f_q, loss, codes

    def _task_features(self, f_i: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.project[t.name](f_i) for t in self.tasks], dim=1)   # f^t: [B, T, D, h, w]

    def _pooled_keys(self, ft: torch.Tensor) -> torch.Tensor:
        """f^t [B, T, D, h, w] -> x̃ = W · mean f^t [B, T, d] (= the mean of the per-position keys)."""
        return self.key(ft.mean(dim=(-2, -1)))

    def _affinity_map(self, ft: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """f^t at full resolution and on the attention grid [B, T, D, h', w'] -> A [B, T, P, T]: P = h'·w'
        positions of the grid ("position") or P = 1 from the globally pooled f^t ("mean")."""
        o = self.options
        if o.affinity_pool == "mean":
            return prototype_affinity(self._pooled_keys(ft), self.slots, o.temperature).unsqueeze(2)
        return prototype_affinity(self.key(_tokens(grid)), self.slots, o.temperature)

    def _grid(self, ft: torch.Tensor) -> tuple[torch.Tensor, int]:
        """f^t [B, T, D, h, w] -> (f^t average-pooled to at most ``attention_tokens`` positions, the stride)."""
        b, n, _, h, w = ft.shape
        s = attention_stride(h, w, self.options.attention_tokens)
        if s == 1:
            return ft, 1
        return F.avg_pool2d(ft.flatten(0, 1), s, ceil_mode=True).unflatten(0, (b, n)), s

    def _knowledge(self, grid: torch.Tensor, affinity: torch.Tensor) -> torch.Tensor:
        """f^ta as key/value tokens [B, T, L', D] for the grid f^t [B, T, D, h', w'] and A [B, T, P, T]."""
        if self.options.knowledge == "slots":
            return self.knowledge_proj(slot_knowledge(affinity, self.slots))      # [B, T, P, D]
        if affinity.shape[2] == 1:                                                # Σ_s A[t, s] f^s
            return _tokens(torch.einsum("bts,bschw->btchw", affinity[:, :, 0], grid))
        return torch.einsum("btls,bsld->btld", affinity, _tokens(grid))           # per position

    def _attend(self, grid: torch.Tensor, affinity: torch.Tensor) -> torch.Tensor:
        """f^t on the grid [B, T, D, h, w], A [B, T, P, T] -> f^tr [B, T, D, h, w] through the retrieval blocks."""
        b, n, c, h, w = grid.shape
        task_tok, know_tok = _tokens(grid), self._knowledge(grid, affinity)      # [B, T, hw, D], [B, T, L', D]
        q, kv = (task_tok, know_tok) if self.options.query_from == "task" else (know_tok, task_tok)
        if len(self.retrieval) == 1:                                               # shared: tasks go in the batch
            x, kv_flat = q.reshape(b * n, h * w, c), kv.reshape(b * n, kv.shape[2], c)
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

    def _retrieve(self, ft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f^t [B, T, D, h, w] -> (f^tr [B, T, D, h, w], A [B, T, P, T]); on a pooled grid above
        ``attention_tokens``, where f^tr = f^t + up(R(pool f^t) − pool f^t)."""
        b, n, c, h, w = ft.shape
        grid, s = self._grid(ft)
        affinity = self._affinity_map(ft, grid)
        if self.retrieval is None:
            return ft, affinity
        out = self._attend(grid, affinity)
        if s == 1:
            return out, affinity
        delta = F.interpolate((out - grid).flatten(0, 1), size=(h, w), mode="bilinear", align_corners=False)
        return ft + delta.unflatten(0, (b, n)), affinity

    # -- Method interface ---------------------------------------------------------------------------------------

    def refine(self, features: torch.Tensor, images: torch.Tensor) -> Refined:
        o = self.options
        f_i, vq_loss, codes = self._integrate(features)
        ft = self._task_features(f_i)
        ftr, affinity_map = self._retrieve(ft)
        extras = {"affinity": affinity_map.mean(2), "affinity_map": affinity_map, "vq_loss": vq_loss}
        if codes is not None:
            extras["codes"] = codes
        if o.use_akg and o.use_tc and o.tc_mode == "triplet":
            extras["keys"] = self._pooled_keys(ft)
        if o.use_akg and o.use_tc and o.tc_mode == "refined":
            extras["affinity_refined"] = self._affinity_map(ftr, self._grid(ftr)[0])
        if self.decoder is not None:
            extras["reconstruction"] = self.decoder(f_i, tuple(images.shape[-2:]))
        if self.output is not None:
            ftr = self.output(ftr.flatten(0, 1)).unflatten(0, ftr.shape[:2])    # [B, T, c, h, w]
        return Refined({t.name: ftr[:, i] for i, t in enumerate(self.tasks)}, extras)

    def losses(self, step: Step) -> LossTerms:
        o, ex = self.options, step.refined.extras
        out: dict[str, torch.Tensor] = {}
        affinity = ex["affinity"]
        weight = torch.ones_like(affinity[..., 0]) if o.akg_on == "all" else step.labelled.to(affinity.dtype)
        if o.use_vq:
            out["vq"] = o.lambda_vq * ex["vq_loss"]
        if o.use_tae:
            out["tae"] = o.lambda_tae * F.smooth_l1_loss(ex["reconstruction"], step.images)
        if o.use_akg:
            out["tke"] = o.lambda_akg * tke_loss(ex["affinity_map"], weight)
            if o.use_tc:
                if o.tc_mode == "triplet":
                    tc = triplet_tc_loss(ex["keys"], weight, o.tc_margin, o.tc_distance, o.tc_aggregate)
                elif o.tc_mode == "batch":
                    tc = tc_batch_loss(affinity, weight)
                else:
                    tc = tke_loss(ex["affinity_refined"], weight)
                out["tc"] = o.lambda_akg * tc
        if self.task_prior is not None and o.prior_regularizes:
            out["prior"] = o.prior_weight * prior_loss(affinity, weight, row_normalized(self.task_prior))
        return LossTerms(self.supervised_losses(step), out)

    def eval_summary(self, refined: Refined) -> dict[str, torch.Tensor]:
        """The T×T affinity averaged over the evaluation images, logged every epoch (its evolution is a figure)."""
        return {"affinity": refined.extras["affinity"].mean(0)}

    # -- for figures ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def task_affinity(self, features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Shared feature [B, c, h, w] -> A [B, T, T] (call in eval mode so BN statistics stay put)."""
        ft = self._task_features(self._integrate(features)[0])
        return self._affinity_map(ft, self._grid(ft)[0]).mean(2)

    @torch.no_grad()
    def task_keys(self, features: torch.Tensor) -> torch.Tensor:
        """Shared feature [B, c, h, w] -> the pooled task keys W·mean(f^t) [B, T, d] compared with the slots."""
        return self._pooled_keys(self._task_features(self._integrate(features)[0]))

    def prototype_slots(self) -> torch.Tensor:
        """The task prototype V [T, d] (a detached copy)."""
        return self.slots.detach().clone()
