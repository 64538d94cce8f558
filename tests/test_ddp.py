"""Two CPU processes (gloo) train one tiny experiment and end with identical parameters."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from mtlwb.config import ExperimentConfig
from mtlwb.data import generate_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(root, run_dir) -> ExperimentConfig:
    return ExperimentConfig(dataset="scenes", data_root=str(root), run_dir=str(run_dir), epochs=2, batch_size=2,
                            train_samples=8, eval_samples=4, device="cpu", progress=False, augment=True,
                            label_setting="randomlabel", seed=3)


def _worker(rank: int, world: int, port: int, root: str, run_dir: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from mtlwb.core import distributed
    from mtlwb.experiment.loop import build_experiment, train

    try:
        cfg = _config(root, run_dir)
        distributed.init_from_env("cpu")
        exp = build_experiment(cfg)
        torch.manual_seed(100 + rank)                   # ranks start apart: the broadcast must align them
        with torch.no_grad():
            for p in exp.model.parameters():
                p.add_(torch.randn_like(p) * 0.01 * rank)
        init = {k: v.clone() for k, v in exp.model.state_dict().items()}
        record = train(cfg, exp)
        torch.save({"init": init, "final": exp.model.state_dict(), "record": record}, f"{out}/rank{rank}.pt")
    finally:
        distributed.cleanup()


def test_two_ranks_train_to_identical_parameters(tmp_path):
    root = generate_dataset(tmp_path / "scenes", n_train=8, n_val=4, height=32, width=40, progress=False)
    run_dir = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(root), str(run_dir), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for k, v in r0["final"].items():
        assert torch.equal(v, r1["final"][k]), k                     # bit-identical, buffers included
    moved = [k for k, v in r0["final"].items() if v.is_floating_point() and not torch.equal(v, r0["init"][k])]
    assert moved                                                     # it trained
    assert r0["record"]["status"] == "completed" and r0["record"]["final"]
    assert r1["record"]["final"] == {}                               # only rank 0 evaluates and writes
    assert (run_dir / "metrics.json").is_file() and (run_dir / "checkpoint.pt").is_file()
    assert len(r0["record"]["history"]) == 2 and "total" in r0["record"]["history"][-1]["train"]


def _grad_worker(rank: int, world: int, port: int, reduction: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    from mtlwb.core import distributed

    try:
        distributed.init_from_env("cpu")
        x, target, labelled = _shared_batch()
        w = torch.nn.Parameter(torch.tensor(0.5))
        rows = slice(2 * rank, 2 * rank + 2)          # rank 1's half has no depth label at all
        from mtlwb.objectives.losses import task_loss
        from mtlwb.tasks import DEPTH

        task_loss(DEPTH, w * x[rows], target[rows], labelled[rows], reduction).backward()
        distributed.sync_gradients([w])
        torch.save(w.grad, f"{out}/grad{rank}.pt")
    finally:
        distributed.cleanup()


def _shared_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 3, 3, generator=g) + 0.5
    target = torch.rand(4, 1, 3, 3, generator=g) * 3 + 0.1
    return x, target, torch.tensor([1.0, 1.0, 0.0, 0.0])


@pytest.mark.parametrize("reduction", ["batch", "labelled"])
def test_two_ranks_give_the_single_process_gradient_when_a_rank_lacks_a_task(tmp_path, reduction):
    """The issue's case: one rank's batch has no label for the task; the averaged gradient must not be halved."""
    from mtlwb.objectives.losses import task_loss
    from mtlwb.tasks import DEPTH

    x, target, labelled = _shared_batch()
    w = torch.nn.Parameter(torch.tensor(0.5))
    task_loss(DEPTH, w * x, target, labelled, reduction).backward()
    mp.spawn(_grad_worker, args=(2, _free_port(), reduction, str(tmp_path)), nprocs=2, join=True)
    g0, g1 = (torch.load(tmp_path / f"grad{r}.pt") for r in (0, 1))
    assert torch.equal(g0, g1)
    assert g0.item() == pytest.approx(w.grad.item(), rel=1e-6)
