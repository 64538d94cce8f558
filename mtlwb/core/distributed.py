"""Multi-process data-parallel training under torchrun (``torchrun --nproc_per_node N -m mtlwb.cli train ...``).

Why explicit gradient averaging instead of wrapping in DistributedDataParallel:
the trainer never calls ``model.forward`` as one unit; it runs
``model.encode -> method.refine -> model.decode`` and then the method's losses,
which may run the method's own networks (MTPSL mapping nets, JTR's joint
network, several passes, deep copies). DDP only synchronises gradients of
parameters reached through its own ``forward``, so it would silently skip
them. Averaging every trainable parameter's gradient after ``backward``
(``sync_gradients``) is what DDP computes, for any method. Ranks start from
rank 0's parameters and buffers, so they stay bit-identical.

What is per rank: every loss term is computed on the rank's own batch
(global batch = batch_size x world size), BatchNorm statistics are per rank
(buffers are re-broadcast from rank 0 each epoch), and batch-level terms
such as TPKR's task-consistency (a batch-mean affinity) see only the local
batch. The supervised losses are exactly data-parallel under both
normalizations (``losses.py``): the published per-sample balance divides by
the rank's batch size, and the per-labelled mean divides by the labelled
weight summed over all ranks (``global_sum``), so a rank whose batch lacks a
task does not halve that task's gradient. Methods that only add per-sample
terms divided by the batch size are exactly data-parallel; batch-level ones
are a per-rank approximation.

Single process (WORLD_SIZE unset or 1): every helper is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment variables."""
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU); idempotent."""
    info = env_info()
    if not info.enabled:
        return info
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(info.local_rank)   # so "cuda" means this rank's GPU
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=info.rank, world_size=info.world_size)
    return info


_SINGLE = False      # inside ``single_process()``


@contextlib.contextmanager
def single_process() -> Iterator[None]:
    """Within the block, ``current()`` reports one process, so no loss calls a collective: for work that only rank
    0 does (the mechanism diagnostics), where a collective would wait for ranks that never join it."""
    global _SINGLE
    before, _SINGLE = _SINGLE, True
    try:
        yield
    finally:
        _SINGLE = before


def current() -> DistInfo:
    """The running group's info (single-process default when none, and inside ``single_process()``)."""
    if not _SINGLE and dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def is_main() -> bool:
    return current().is_main


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def train_sampler(dataset: Dataset, seed: int, drop_last: bool) -> DistributedSampler | None:
    """Each rank's shard of a shuffled epoch; ``seed`` is the epoch seed, so resume replays it."""
    info = current()
    if not info.enabled:
        return None
    return DistributedSampler(dataset, info.world_size, info.rank, shuffle=True, seed=seed, drop_last=drop_last)


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if not current().enabled:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def _comm_device() -> torch.device:
    """Where collective buffers must live: the rank's GPU for nccl, CPU for gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sync_gradients(params: Iterable[torch.Tensor]) -> None:
    """Average gradients over ranks (a parameter without a gradient on some rank counts as zero there)."""
    info = current()
    if not info.enabled:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    # A parameter no rank touched keeps grad None, as in one process (Adam then skips it).
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8, device=_comm_device())
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    params = [p for p, h in zip(params, has.tolist()) if h]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of a (detached) tensor over ranks; the tensor itself in one process. Used for loss denominators."""
    if not current().enabled:
        return x
    y = x.detach().to(_comm_device(), copy=True)
    dist.all_reduce(y)
    return y.to(x.device)


def reduce_means(totals: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
    """Per-rank sums and counts of logged terms -> global means over every rank's batches."""
    info = current()
    if not info.enabled:
        return {k: totals[k] / counts[k] for k in totals}
    keys: list[list[str]] = [[] for _ in range(info.world_size)]
    dist.all_gather_object(keys, sorted(totals))
    names = sorted(set().union(*keys))
    t = torch.tensor([[totals.get(k, 0.0), float(counts.get(k, 0))] for k in names], dtype=torch.float64,
                     device=_comm_device())
    dist.all_reduce(t)
    t = t.cpu()
    return {k: float(t[i, 0] / t[i, 1]) for i, k in enumerate(names) if t[i, 1] > 0}
