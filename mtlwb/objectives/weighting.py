"""Loss-weighting schemes that combine per-task supervised losses.

They are independent of the partial-label method, so any method can be run
with any scheme (as in LibMTL). Each scheme is an ``nn.Module`` so learnable
weights join the optimizer via ``.parameters()`` and any state (e.g. DWA's
loss history) travels in ``state_dict()`` and resumes from checkpoints.

Under partial labels a task may have no labelled sample in a batch; its loss
is then an attached exact zero (see ``losses.py``). ``combine`` takes an
optional ``active`` flag per task so such tasks are left out entirely: for a
learnable scheme the regulariser of an unlabelled task would otherwise still
pull its weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


class Weighting(nn.Module):
    """Base class: a fixed set of task names and a weighted sum over active tasks."""

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        names = tuple(task_names)
        if not names:
            raise ValueError("Weighting: task_names is empty")
        if len(set(names)) != len(names):
            raise ValueError(f"Weighting: task_names={list(names)} has duplicates")
        self.task_names = names

    def combine(self, losses: Mapping[str, torch.Tensor], active: Mapping[str, bool] | None = None) -> torch.Tensor:
        """Scalar training loss from the per-task losses; inactive tasks contribute nothing."""
        on = self._active_tasks(losses, active)
        terms = [self._term(i, losses[name]) for i, name in enumerate(self.task_names) if name in on]
        if not terms:
            # Stay attached to the graph so a backward() on an all-unlabelled batch is a no-op.
            return sum(losses[n] for n in self.task_names) * 0.0
        return torch.stack(terms).sum()

    def weights(self) -> dict[str, float]:
        """Current per-task weights, for logging."""
        return dict.fromkeys(self.task_names, 1.0)

    def epoch_end(self, epoch_losses: Mapping[str, float]) -> None:
        """Mean per-task training loss of the finished epoch; only history-based schemes use it."""
        self._check_keys(epoch_losses, "epoch_losses")

    def _term(self, index: int, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def _check_keys(self, table: Mapping[str, object], what: str) -> None:
        missing = [n for n in self.task_names if n not in table]
        extra = [n for n in table if n not in self.task_names]
        if missing or extra:
            raise ValueError(f"{type(self).__name__}: {what} missing tasks {missing}, unknown tasks {extra}")

    def _active_tasks(self, losses: Mapping[str, torch.Tensor], active: Mapping[str, bool] | None) -> set[str]:
        self._check_keys(losses, "losses")
        if active is None:
            return set(self.task_names)
        unknown = [n for n in active if n not in self.task_names]
        if unknown:
            raise ValueError(f"{type(self).__name__}: active names unknown tasks {unknown}")
        return {n for n in self.task_names if active.get(n, True)}


class Equal(Weighting):
    """Plain sum of the task losses (weight 1 each): the baseline every scheme is compared to."""


class Uncertainty(Weighting):
    """Homoscedastic-uncertainty weighting (Kendall, Gal, Cipolla, CVPR 2018).

    Learns s_t = log σ_t² per task and minimises Σ_t exp(−s_t) L_t + s_t: a noisy
    task gets a large s_t and a small weight, and the +s_t term stops σ from
    growing without bound. This is the common (LibMTL / MTAN) simplified form;
    the paper's regression form has factors 1/2, which rescale but do not change
    the optimum of s_t (exp(s_t) = L_t). The s_t are parameters of this module:
    add ``weighting.parameters()`` to the optimizer. Inactive (unlabelled)
    tasks are skipped so their s_t receive no gradient; otherwise the lone +s_t
    term would push s_t to −∞ on every unlabelled batch.
    """

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__(task_names)
        self.log_vars = nn.Parameter(torch.zeros(len(self.task_names)))

    def _term(self, index: int, loss: torch.Tensor) -> torch.Tensor:
        s = self.log_vars[index]
        return torch.exp(-s) * loss + s

    def weights(self) -> dict[str, float]:
        w = torch.exp(-self.log_vars.detach()).tolist()
        return dict(zip(self.task_names, w, strict=True))


class DWA(Weighting):
    """Dynamic Weight Average (Liu, Johns, Davison, CVPR 2019, MTAN).

    w_t = T · softmax_t(r_t / τ), r_t = L_t(e−1) / L_t(e−2), from the mean
    training loss of the last two finished epochs; a task whose loss falls
    slowly gets more weight. Weights are 1 until two epochs have finished. The
    last two epoch losses are persistent buffers, so a resumed checkpoint
    continues with the same weights. Under partial labels pass each task's mean
    over its labelled batches only. A ratio with a zero or non-finite
    denominator is taken as 1 (no evidence the task is speeding up or slowing).
    """

    def __init__(self, task_names: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(task_names)
        if temperature <= 0:
            raise ValueError(f"DWA: temperature={temperature} must be > 0")
        self.temperature = temperature
        n = len(self.task_names)
        # history[0] = epoch e−2, history[1] = epoch e−1.
        self.register_buffer("history", torch.zeros(2, n, dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("current_weights", torch.ones(n, dtype=torch.float64))

    def epoch_end(self, epoch_losses: Mapping[str, float]) -> None:
        super().epoch_end(epoch_losses)
        latest = torch.tensor([float(epoch_losses[n]) for n in self.task_names], dtype=torch.float64)
        self.history[0] = self.history[1]
        self.history[1] = latest.to(self.history.device)
        self.epochs_seen += 1
        if int(self.epochs_seen) >= 2:
            self.current_weights.copy_(self._dwa_weights())

    def _dwa_weights(self) -> torch.Tensor:
        prev, last = self.history[0], self.history[1]
        usable = (prev != 0) & torch.isfinite(prev) & torch.isfinite(last)
        ratio = torch.where(usable, last / torch.where(usable, prev, torch.ones_like(prev)), torch.ones_like(prev))
        return len(self.task_names) * torch.softmax(ratio / self.temperature, dim=0)

    def _term(self, index: int, loss: torch.Tensor) -> torch.Tensor:
        return self.current_weights[index].to(loss.dtype) * loss

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.current_weights.tolist(), strict=True))


WEIGHTINGS: dict[str, type[Weighting]] = {"equal": Equal, "uncertainty": Uncertainty, "dwa": DWA}


def build_weighting(name: str, task_names: Sequence[str]) -> Weighting:
    """Scheme by config name; unknown names are refused with the allowed list."""
    if name not in WEIGHTINGS:
        raise ValueError(f"weighting={name!r}: allowed {sorted(WEIGHTINGS)}")
    return WEIGHTINGS[name](task_names)

