"""Method-independent task affinity: cosine similarity of per-task gradients on the shared encoder.

Why: the prototype affinity exists only for tpkr. Whether two tasks pull the shared encoder the same way can be
asked of any run: take each task's supervised loss on the same (fully labelled) evaluation batch, differentiate
it with respect to the encoder parameters, and compare the gradient directions. +1 = the tasks agree, 0 =
unrelated, -1 = conflicting (the "gradient conflict" of PCGrad-style analyses).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..methods import forward_step
from ..objectives.losses import task_loss


def task_gradients(exp, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """[T, P] flattened gradients of each task's loss w.r.t. the shared encoder's parameters (one batch)."""
    params = [p for p in exp.model.encoder.parameters() if p.requires_grad]
    preds = forward_step(exp.model, exp.method, images).predictions
    every = torch.ones(images.shape[0], device=images.device)
    grads = []
    for i, t in enumerate(exp.tasks):
        loss = task_loss(t, preds[t.name].float(), targets[t.name], every)
        g = torch.autograd.grad(loss, params, retain_graph=i < len(exp.tasks) - 1, allow_unused=True)
        grads.append(torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, params)]))
    return torch.stack(grads)


def gradient_affinity(exp, batches: int = 4, batch_size: int = 8, progress: bool = True) -> np.ndarray:
    """T×T cosine similarity of per-task encoder gradients, averaged over ``batches`` evaluation batches.

    Evaluation images carry every task's ground truth, so no partial-label setting biases the comparison.
    The model stays in eval mode (batch-norm statistics are not touched); parameters are not updated.
    """
    exp.model.eval()
    exp.method.eval()
    n = min(len(exp.eval_set), batches * batch_size)
    starts = list(range(0, n, batch_size))
    total = torch.zeros(len(exp.tasks), len(exp.tasks))
    for start in tqdm(starts, desc="gradient affinity", disable=not progress, leave=False):
        items = [exp.eval_set[i] for i in range(start, min(n, start + batch_size))]
        images = torch.stack([it["image"] for it in items]).to(exp.device)
        targets = {t.name: torch.stack([it[t.name] for it in items]).to(exp.device) for t in exp.tasks}
        g = F.normalize(task_gradients(exp, images, targets).float(), dim=1)
        total += (g @ g.t()).cpu()
    cos = (total / max(len(starts), 1)).clamp(-1, 1)
    cos = (cos + cos.t()) / 2
    cos.fill_diagonal_(1.0)
    return cos.numpy()


def gradient_affinity_heatmap(matrix: np.ndarray, names: list[str], title: str | None = None):
    """Diverging heatmap: conflicting task pairs (negative cosine) stand out in red."""
    from .affinity import affinity_heatmap

    return affinity_heatmap(matrix, names, title=title or "Gradient cosine on the shared encoder", xlabel="task",
                            ylabel="task", zmin=-1, zmax=1, colorscale="RdBu")
