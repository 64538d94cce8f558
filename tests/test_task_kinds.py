"""Task kinds are objects: a new kind is one class plus ``register_kind`` and works end to end (heads, loss, metrics,
Δ_MTL sign, joint-space encodings, one epoch of training); no module outside ``mtlwb/tasks`` branches on a kind."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

import mtlwb
from mtlwb.methods import build_method, forward_step
from mtlwb.methods.encodings import clean_target, encode_label, encode_prediction, valid_mask
from mtlwb.models import MultiTaskNet
from mtlwb.objectives.losses import LossOptions, task_loss
from mtlwb.objectives.metrics import MultiTaskMeter, delta_mtl
from mtlwb.tasks import TaskSpec, kinds, registered_kinds, semantic
from mtlwb.tasks.encoding import regression_unit
from mtlwb.tasks.kinds import TaskKind, register_kind
from mtlwb.tasks.meters import NAN, TaskMeter
from mtlwb.tasks.target_forms import value_forms

PACKAGE = Path(mtlwb.__file__).resolve().parent


class ScalarMapMeter(TaskMeter):
    """Mean absolute error over the finite pixels of the split."""

    def _update(self, pred, target):
        valid = torch.isfinite(target)
        err = (pred[valid].double() - target[valid].double()).abs()
        self._add("count", torch.tensor(float(err.numel()), dtype=torch.float64, device=pred.device))
        self._add("abs", err.sum())

    def compute(self):
        n = self._get("count")
        return {"map_mae": self._get("abs") / n if n else NAN}


class ScalarMap(TaskKind):
    """A dense per-pixel real value (a curvature- or shading-like map), NaN where undefined; L1; MAE."""

    name = "scalar_map"
    fixed_channels = 1
    joint_space = "values"
    meter_class = ScalarMapMeter
    metric_directions = {"map_mae": True}
    target_forms = value_forms(0.25, multiplicative=False)

    def valid(self, task, target):
        return torch.isfinite(target)

    def pixel_loss(self, task, pred, target, weight, options):
        return (pred - torch.nan_to_num(target)).abs(), weight

    def encode_prediction(self, task, pred, **_):
        return regression_unit(task, pred)

    def encode_label(self, task, target, **_):
        return regression_unit(task, torch.nan_to_num(target)) * self.valid(task, target)


def _curvature() -> TaskSpec:
    """A task of the toy kind (primary metric map_mae, lower is better)."""
    return TaskSpec("curvature", "scalar_map", 1, "map_mae", True, loc=0.8, scale=0.5)


@pytest.fixture
def scalar_map(monkeypatch):
    """The toy kind registered for one test (the registry is put back afterwards)."""
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))
    return register_kind(ScalarMap())


def _curvature_target(generator: torch.Generator, batch: int = 4, size: int = 8) -> torch.Tensor:
    target = torch.rand(batch, 1, size, size, generator=generator) + 0.3
    target[:, :, :2, :3] = float("nan")                                   # undefined pixels
    return target


def test_a_registered_kind_is_what_its_tasks_resolve_to(scalar_map):
    assert _curvature().kind_object is scalar_map and "scalar_map" in registered_kinds()
    assert not _curvature().image_level
    with pytest.raises(ValueError, match=r"TaskSpec.channels=3 for 'c': a scalar_map task has 1"):
        TaskSpec("c", "scalar_map", 3, "map_mae", True)
    with pytest.raises(ValueError, match="already ScalarMap"):
        class Other(ScalarMap):
            pass
        register_kind(Other())


def test_an_unregistered_kind_is_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"TaskSpec.kind='scalar_map': allowed \('segmentation', 'saliency'"):
        TaskSpec("curvature", "scalar_map", 1, "map_mae", True)


def test_the_toy_kind_through_heads_loss_metrics_and_delta(scalar_map):
    curv = _curvature()
    torch.manual_seed(0)
    tasks = [semantic(5), curv]
    model = MultiTaskNet(tasks, "resnet_small")
    method = build_method("supervised", tasks, model.feature_channels)
    images = torch.rand(4, 3, 16, 16)
    preds = forward_step(model, method, images).predictions
    assert preds["curvature"].shape == (4, 1, 16, 16)                    # a dense head of the kind's width

    g = torch.Generator().manual_seed(1)
    pred = torch.randn(4, 1, 8, 8, generator=g).requires_grad_()
    target = _curvature_target(g)
    labelled = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = task_loss(curv, pred, target, labelled, LossOptions())
    valid = torch.isfinite(target)
    by_hand = sum(((pred[i] - target[i]).abs()[valid[i]].mean() for i in (0, 2)), torch.zeros(())) / 4
    assert torch.allclose(loss, by_hand)
    loss.backward()
    assert torch.all(pred.grad[1] == 0) and torch.all(pred.grad[3] == 0)   # unlabelled rows: no gradient
    assert torch.all(pred.grad[~valid] == 0) and torch.isfinite(pred.grad).all()

    meter = MultiTaskMeter([curv])
    meter.update({"curvature": pred.detach()}, {"curvature": target})
    mae = meter.compute()["curvature"]["map_mae"]
    assert mae == pytest.approx(float((pred.detach() - target).abs()[valid].double().mean()))

    base = {"curvature": {"map_mae": 0.5}}
    assert delta_mtl({"curvature": {"map_mae": 0.4}}, base, [curv], "stl") == pytest.approx(20.0)
    assert delta_mtl({"curvature": {"map_mae": 0.6}}, base, [curv], "stl") == pytest.approx(-20.0)
    # a non-primary metric's direction comes from the kind: a primary "other" key, map_mae asked by override
    other = TaskSpec("curvature", "scalar_map", 1, "other", False)
    assert delta_mtl({"curvature": {"map_mae": 0.4}}, base, [other], "stl", {"curvature": "map_mae"}) \
        == pytest.approx(20.0)


def test_the_toy_kind_in_the_joint_spaces(scalar_map):
    curv = _curvature()
    g = torch.Generator().manual_seed(2)
    target = _curvature_target(g)
    labelled = torch.tensor([1.0, 0.0, 1.0, 1.0])
    clean = clean_target(curv, target, labelled)
    label = encode_label(curv, clean)
    pred = encode_prediction(curv, torch.randn(4, 1, 8, 8, generator=g))
    mask = valid_mask(curv, target, labelled)
    assert torch.isfinite(label).all() and ((pred >= 0) & (pred <= 1)).all()
    assert torch.equal(mask[1], torch.zeros_like(mask[1]))                # unlabelled sample: no valid position
    assert torch.equal(mask[0].bool(), torch.isfinite(target[0]))


class _WithCurvature(Dataset):
    """A dataset's items plus a curvature-like map derived from depth: log(depth), NaN where depth is missing."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        depth = item["depth"]
        item["curvature"] = torch.where(depth > 0, depth.clamp_min(1e-6).log(), float("nan"))
        return item


def test_one_epoch_of_supervised_training_with_the_toy_kind(scalar_map, tiny_config):
    curv = _curvature()
    cfg = tiny_config(method="supervised", tasks=["semantic", "depth"], epochs=1, label_setting="randomlabel")
    exp = mtlwb.build_experiment(cfg)
    exp.tasks = [*exp.tasks, curv]
    exp.model = MultiTaskNet(exp.tasks, cfg.backbone)
    exp.method = build_method("supervised", exp.tasks, exp.model.feature_channels, loss_options=cfg.loss_options)
    exp.labelled = torch.cat([exp.labelled, exp.labelled[:, 1:2]], dim=1)  # curvature labelled where depth is
    exp.method.use_label_table(exp.labelled)
    exp.train_set, exp.eval_set = _WithCurvature(exp.train_set), _WithCurvature(exp.eval_set)
    head = {k: v.detach().clone() for k, v in exp.model.heads["curvature"].named_parameters()}
    record = mtlwb.train(cfg, exp)
    assert record["status"] == "completed"
    assert math.isfinite(record["history"][-1]["train"]["curvature"])
    assert math.isfinite(record["final"]["curvature"]["map_mae"])
    moved = [k for k, v in exp.model.heads["curvature"].named_parameters() if not torch.equal(v, head[k])]
    assert moved                                                          # its head learned from its loss


# -- no kind branches outside mtlwb/tasks ---------------------------------------------------------------------------
def _kind_branches(root: Path) -> list[str]:
    """Comparisons and table look-ups on a task's kind (``x.kind == …``, ``x.kind in …``, ``table[x.kind]``) and
    comparisons of a name holding a kind with a kind's name, in every module of ``root`` outside ``tasks/``."""
    names = set(registered_kinds())
    found = []

    def strings(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(strings(e) for e in node.elts)) if node.elts else set()
        return set()

    for path in sorted(root.rglob("*.py")):
        if "tasks" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                on_kind = any(isinstance(o, ast.Attribute) and o.attr == "kind" and not _is_dtype(o)
                              for o in operands)
                kind_name = any(isinstance(o, ast.Name) and "kind" in o.id for o in operands) and \
                    any(strings(o) & names for o in operands)
                if on_kind or kind_name:
                    found.append(where)
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Attribute) \
                    and node.slice.attr == "kind":
                found.append(where)
    return found


def _is_dtype(node: ast.Attribute) -> bool:
    """numpy's ``dtype.kind`` (a character code), not a task's kind."""
    return isinstance(node.value, ast.Name) and node.value.id == "dtype" or \
        isinstance(node.value, ast.Attribute) and node.value.attr == "dtype"


def test_no_module_outside_tasks_branches_on_a_task_kind():
    assert _kind_branches(PACKAGE) == []


def test_the_branch_finder_finds_branches(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "tasks").mkdir(parents=True)
    (pkg / "a.py").write_text('def f(t, kind, dtype):\n'
                              '    if t.kind == "depth":\n        return 1\n'
                              '    if kind in ("segmentation", "edge"):\n        return 2\n'
                              '    if dtype.kind == "f":\n        return 3\n'
                              '    return TABLE[t.kind]\n')
    (pkg / "tasks" / "k.py").write_text('def g(t):\n    return t.kind == "depth"\n')
    assert _kind_branches(pkg) == ["pkg/a.py:2", "pkg/a.py:4", "pkg/a.py:8"]


@pytest.mark.parametrize("name", mtlwb.tasks.TASK_NAMES)
def test_each_kinds_random_target_is_shaped_typed_and_scored_as_a_loaders(name):
    """Benchmarks and tests draw ground truth from the kind (``random_target``) instead of branching on it: per item
    it has the shape and dtype of the kind's placeholder (what a loader gives), the same seed gives the same target,
    and the task's loss scores it (finite, > 0) against a random prediction."""
    task = mtlwb.tasks.make_tasks([name], 7)[0]
    kind, size = task.kind_object, (6, 8)
    target = kind.random_target(task, 3, size, torch.Generator().manual_seed(0))
    again = kind.random_target(task, 3, size, torch.Generator().manual_seed(0))
    placeholder = kind.placeholder(task, size)
    assert target.shape == (3, *placeholder.shape) and target.dtype == placeholder.dtype
    assert torch.equal(target, again)
    shape = (3, task.channels) if task.image_level else (3, task.channels, *size)
    pred = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    loss = task_loss(task, pred, target, torch.ones(3))
    assert torch.isfinite(loss) and loss > 0
