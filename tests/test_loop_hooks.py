"""The training loop's per-epoch hooks: called once per epoch with what the epoch produced, changing no number;
the latent figures' epoch snapshots are taken through one, in one run."""

from __future__ import annotations

import json

import torch

import mtlwb
from mtlwb.experiment import loop
from mtlwb.experiment.files import CHECKPOINT, METRICS
from mtlwb.figures import latent


def _metrics(run_dir) -> list:
    record = json.loads((run_dir / METRICS).read_text())
    return [(e["epoch"], e["train"], e.get("eval")) for e in record["history"]]


def test_hooks_see_every_epoch_and_change_no_number(tiny_config, tmp_path):
    seen = []

    def look(exp, epoch, entry):
        seen.append((epoch, entry["epoch"], entry["train"], type(exp).__name__))

    with_hook = tiny_config(epochs=2, train_samples=16, run_dir=str(tmp_path / "hooked"))
    plain = tiny_config(epochs=2, train_samples=16, run_dir=str(tmp_path / "plain"))
    mtlwb.train(with_hook, hooks=[look])
    mtlwb.train(plain)
    assert [(e, n, name) for e, n, _, name in seen] == [(1, 1, "Experiment"), (2, 2, "Experiment")]
    assert _metrics(tmp_path / "hooked") == _metrics(tmp_path / "plain")          # bit-identical
    assert [s[2] for s in seen] == [m[1] for m in _metrics(tmp_path / "plain")]


def test_snapshots_come_from_one_run_and_hold_each_epochs_weights(tiny_config, tmp_path, monkeypatch):
    builds = []
    real = loop.build_experiment
    monkeypatch.setattr(loop, "build_experiment", lambda cfg: (builds.append(cfg.epochs), real(cfg))[1])
    cfg = tiny_config(method="jtr", epochs=2, lr_step=1, train_samples=16, run_dir=str(tmp_path / "snap"))
    latent.train_with_snapshots(cfg)
    assert builds == [2]                                         # trained once, not restarted per epoch
    snaps = latent.snapshot_paths(tmp_path / "snap")
    assert list(snaps) == [1, 2]
    final = torch.load(tmp_path / "snap" / CHECKPOINT, weights_only=False)
    last = torch.load(snaps[2], weights_only=False)
    assert all(torch.equal(last["model"][k], v) for k, v in final["model"].items())
    one = tiny_config(method="jtr", epochs=1, lr_step=1, train_samples=16, run_dir=str(tmp_path / "one"))
    mtlwb.train(one)                                             # epoch 1 of the same run, trained alone
    first = torch.load(snaps[1], weights_only=False)
    alone = torch.load(tmp_path / "one" / CHECKPOINT, weights_only=False)
    assert all(torch.equal(first["method"][k], v) for k, v in alone["method"].items())
    assert all(torch.equal(first["model"][k], v) for k, v in alone["model"].items())
