"""Device choice and seeding: same seed, same numbers on the same machine."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' takes CUDA when present; asking for CUDA without one is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda': no CUDA device is available here; use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}: allowed ['auto', 'cpu', 'cuda']")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # CPU kernels are deterministic already; the switch matters (and is paid for: it imports torch._inductor,
    # seconds per notebook kernel) only where CUDA kernels run.
    if deterministic and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def epoch_seed(seed: int, epoch: int) -> int:
    """Each epoch reseeds from (seed, epoch) so a resumed run replays the same batches and noise."""
    return (seed * 1_000_003 + epoch * 7919) % 2**31


def enter_project_root() -> Path:
    """chdir to the project root (the folder with pyproject.toml above the cwd), so that notebook paths like
    ``data/...`` mean the same under JupyterLab, papermill and nbval (which start kernels in notebooks/)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "mtlwb").is_dir():
            os.chdir(folder)
            return folder
    return here
