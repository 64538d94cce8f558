"""Image-level tasks (classification, regression) next to dense ones: labels from the scene geometry, heads,
losses, metrics, Δ_MTL, data and config checks, every method training on a mixed task list, figures."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch

import mtlwb
from mtlwb.data import ensure_dataset, generate_dataset, has_image_labels, missing_image_labels
from mtlwb.data.augment import augment_sample
from mtlwb.data.folder import MultiTaskFolder
from mtlwb.data.generate import IMAGE_LABELS_FILE, IMAGE_LABELS_VERSION, scene_seed
from mtlwb.data.scenes import (
    CAMERA_PITCH_RANGE,
    CAMERA_VIEW_EDGES,
    CAMERA_VIEW_NAMES,
    CEILING,
    FLOOR,
    FURNITURE,
    OBJECT_CLASSES,
    SPHERE,
    WALL,
    _camera_rotation,
    _f32,
    _render,
    _sample_scene,
    camera_view,
    render_scene,
    render_scene_with_labels,
    scene_image_labels,
)
from mtlwb.methods import METHODS
from mtlwb.models.heads import ImageLevelHead
from mtlwb.models.mtl_net import MultiTaskNet
from mtlwb.objectives.losses import LossOptions, task_loss
from mtlwb.objectives.metrics import MultiTaskMeter, delta_mtl, make_meter
from mtlwb.tasks import (
    CAMERA_VIEW,
    CLASS_NAMES,
    DEPTH,
    DOMINANT_CLASS,
    IMAGE_LEVEL_TASKS,
    NUM_OBJECTS,
    TaskSpec,
    make_tasks,
    semantic,
)

MIXED = ["semantic", "depth", "normal", "dominant_class", "num_objects", "camera_height"]
VIEW_MIXED = ["semantic", "depth", "normal", "camera_view", "num_objects", "camera_height"]   # sweeps/heterogeneous
REG2 = TaskSpec("reg2", "regression", 2, "mae", True, loc=1.0, scale=0.5)


# --- labels from the geometry --------------------------------------------------------------------------------------

def _hand_scene(objects_in_front: bool):
    """A 6 × 3 × 6 m room, camera at (3, 1.3, 3) looking along +z, 0.1 rad up; a box 2 m in front (or not) and a
    sphere 2 m behind the camera, where no ray can see it."""
    scene = _sample_scene(np.random.default_rng(0))
    box_c = [[3.0, 0.4, 5.0]] if objects_in_front else []
    box_h = [[0.4, 0.4, 0.4]] if objects_in_front else []
    classes = [FLOOR, CEILING, WALL, WALL, WALL, WALL] + [FURNITURE] * len(box_c) + [SPHERE]
    kinds = [0] * 6 + [1] * len(box_c) + [2]
    return dataclasses.replace(
        scene, room=_f32([6.0, 3.0, 6.0]), cam=_f32([3.0, 1.3, 3.0]), rot=_f32(_camera_rotation(0.0, 0.1)),
        light=_f32([3.0, 2.85, 3.0]), box_c=_f32(box_c, 3), box_h=_f32(box_h, 3), box_yaw=_f32([0.0] * len(box_c)),
        sph_c=_f32([[3.0, 0.3, 1.0]], 3), sph_r=_f32([0.3]), cyl_c=_f32([], 3), cyl_r=_f32([]), cyl_top=_f32([]),
        pic_wall=np.zeros(0, dtype=np.int64), pic_rect=_f32([], 4), inst_cls=np.array(classes),
        inst_kind=np.array(kinds), mat=scene.mat[:len(classes)].copy())


def test_image_labels_of_a_hand_built_scene():
    arrays, labels = _render(_hand_scene(True), 32, 40, np.random.default_rng(1), True)
    assert labels["num_objects_placed"] == 2                      # the box and the sphere
    assert labels["num_objects"] == 1                             # the sphere is behind the camera
    assert labels["dominant_class"] == OBJECT_CLASSES.index(FURNITURE) == 0
    assert (arrays["label"] == FURNITURE).any() and not (arrays["label"] == SPHERE).any()
    assert labels["camera_height"] == pytest.approx(1.3)
    assert labels["camera_pitch"] == pytest.approx(math.degrees(0.1), abs=1e-4)
    assert labels["camera_view"] == CAMERA_VIEW_NAMES.index("level") == 2        # 5.7° up
    _, labels = _render(_hand_scene(False), 32, 40, np.random.default_rng(1), True)
    assert labels["num_objects"] == 0 and labels["num_objects_placed"] == 1
    assert labels["dominant_class"] == -1                          # no object in view: undefined


def test_labels_agree_with_the_dense_label_map_and_draw_no_randomness():
    for seed in range(12):
        arrays, labels = render_scene_with_labels(seed, 32, 40)
        dense = render_scene(seed, 32, 40)
        for key in dense:                                         # the dense arrays are those of render_scene
            np.testing.assert_array_equal(arrays[key], dense[key])
        assert scene_image_labels(seed, 32, 40) == labels         # no shading, the same labels
        area = np.array([(arrays["label"] == c).sum() for c in OBJECT_CLASSES])
        expected = int(area.argmax()) if area.sum() else -1
        assert labels["dominant_class"] == expected
        assert 0 <= labels["num_objects"] <= labels["num_objects_placed"]
        assert 1.0 <= labels["camera_height"] <= 1.7 and -23.0 <= labels["camera_pitch"] <= 7.0
        assert labels["camera_view"] == camera_view(labels["camera_pitch"])


def test_camera_view_cuts_the_pitch_at_the_terciles_of_its_draw():
    lo, hi = (math.degrees(v) for v in CAMERA_PITCH_RANGE)
    assert (lo, hi) == (pytest.approx(-22.918, abs=1e-3), pytest.approx(6.875, abs=1e-3))
    low, high = CAMERA_VIEW_EDGES                                   # three equal thirds of the uniform range
    assert (low, high) == (pytest.approx(-12.987, abs=1e-3), pytest.approx(-3.056, abs=1e-3))
    assert low - lo == pytest.approx(high - low) == pytest.approx(hi - high)
    pitches = {lo: 0, -20.0: 0, math.nextafter(low, -math.inf): 0, low: 1, -8.0: 1, math.nextafter(high, -math.inf): 1,
               high: 2, 0.0: 2, hi: 2}                               # an edge belongs to the class above it
    assert {p: camera_view(p) for p in pitches} == pitches
    assert camera_view(-40.0) == 0 and camera_view(30.0) == 2       # outside the draw: the nearest class
    with pytest.raises(ValueError, match=r"pitch=nan: must be a finite number of degrees"):
        camera_view(float("nan"))


def test_camera_view_is_a_registered_three_class_task_named_for_figures():
    from mtlwb.figures.predictions import class_name

    assert CAMERA_VIEW == make_tasks(["camera_view"], 7)[0] and "camera_view" in IMAGE_LEVEL_TASKS
    assert (CAMERA_VIEW.kind, CAMERA_VIEW.channels, CAMERA_VIEW.primary_metric) == ("classification", 3, "accuracy")
    assert CLASS_NAMES["camera_view"] == CAMERA_VIEW_NAMES == ("down", "tilted", "level")
    assert [class_name(CAMERA_VIEW, i) for i in (-1, 0, 1, 2)] == ["undefined", "down", "tilted", "level"]


# --- generator, loader, extension in place ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hetero") / "scenes"
    generate_dataset(root, n_train=10, n_val=4, height=32, width=40, seed=3, progress=False)
    return root


def test_generator_writes_the_image_labels(small_root):
    table = json.loads((small_root / "train" / IMAGE_LABELS_FILE).read_text())
    assert all(len(v) == 10 for v in table.values())
    for i in (0, 7):
        expected = scene_image_labels(scene_seed(3, "train", i), 32, 40)
        assert {k: table[k][i] for k in expected} == expected
    assert table["camera_view"] == [camera_view(p) for p in table["camera_pitch"]]
    meta = json.loads((small_root / "meta.json").read_text())
    assert meta["image_labels"]["dominant_class_names"] == ["furniture", "sphere", "cylinder", "picture"]
    assert meta["image_labels"]["version"] == IMAGE_LABELS_VERSION == 2
    assert meta["image_labels"]["names"][-1] == "camera_view"
    assert meta["image_labels"]["camera_view_names"] == ["down", "tilted", "level"]
    assert meta["image_labels"]["camera_view_pitch_edges"] == list(CAMERA_VIEW_EDGES)
    ds = MultiTaskFolder(small_root, "train", make_tasks(MIXED + ["camera_view"], 7))
    item = ds[7]
    assert item["dominant_class"].dtype == torch.int64 and item["dominant_class"].shape == ()
    assert item["camera_view"].dtype == torch.int64 and item["camera_view"].item() == table["camera_view"][7]
    assert item["num_objects"].shape == (1,) and item["num_objects"].item() == table["num_objects"][7]
    assert item["camera_height"].item() == pytest.approx(table["camera_height"][7])


def test_an_old_dataset_is_refused_by_name_then_extended_in_place(small_root, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(small_root, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["image_labels"]
    (old / "meta.json").write_text(json.dumps(meta))
    for split in ("train", "val"):
        (old / split / IMAGE_LABELS_FILE).unlink()
    assert not has_image_labels(old)
    with pytest.raises(FileNotFoundError, match=r"need image-level labels.*mtlwb generate --root"):
        MultiTaskFolder(old, "train", make_tasks(["depth", "num_objects"], 7))
    MultiTaskFolder(old, "train", make_tasks(["depth"], 7))      # dense tasks alone still load
    dense = (old / "train" / "depth" / "3.npy").read_bytes()
    ensure_dataset(old, tasks=["semantic"], progress=False)      # no image-level task asked: nothing added
    assert not has_image_labels(old)
    ensure_dataset(old, tasks=["num_objects"], progress=False)
    assert has_image_labels(old)
    for split in ("train", "val"):
        added, generated = (json.loads((r / split / IMAGE_LABELS_FILE).read_text()) for r in (old, small_root))
        assert added == generated
    assert (old / "train" / "depth" / "3.npy").read_bytes() == dense
    assert json.loads((old / "meta.json").read_text()) == json.loads((small_root / "meta.json").read_text())


def _as_version_1(new, old):
    """A copy of ``new`` as the version-1 generator wrote it: no camera_view in the label files or in meta.json."""
    shutil.copytree(new, old)
    meta = json.loads((old / "meta.json").read_text())
    meta["image_labels"] = {"version": 1, "file": "{train,val}/image_labels.json",
                            "names": ["dominant_class", "num_objects", "num_objects_placed", "camera_height",
                                      "camera_pitch"],
                            "dominant_class_names": ["furniture", "sphere", "cylinder", "picture"]}
    (old / "meta.json").write_text(json.dumps(meta, indent=2))
    for split in ("train", "val"):
        table = json.loads((old / split / IMAGE_LABELS_FILE).read_text())
        del table["camera_view"]
        (old / split / IMAGE_LABELS_FILE).write_text(json.dumps(table))
    return old


def test_a_version_1_copy_gains_camera_view_from_its_stored_pitch_exactly_as_generated(small_root, tmp_path,
                                                                                        monkeypatch, capsys):
    from mtlwb.data import generate as generate_module
    from mtlwb.figures.dataset import image_label_table

    old = _as_version_1(small_root, tmp_path / "v1")
    assert not has_image_labels(old) and missing_image_labels(old) == ["camera_view"]
    assert missing_image_labels(small_root) == []
    with pytest.raises(FileNotFoundError, match=r"\['camera_view'\] need image-level labels that .* lacks.*"
                                                 r"mtlwb generate --root"):
        MultiTaskFolder(old, "train", make_tasks(["depth", "camera_view"], 7))
    MultiTaskFolder(old, "train", make_tasks(["depth", "num_objects"], 7))     # its version-1 labels still load
    table = image_label_table(old, "train", [0, 7])                              # derived on the fly, not written
    generated = json.loads((small_root / "train" / IMAGE_LABELS_FILE).read_text())
    assert list(table["camera_view"]) == [CAMERA_VIEW_NAMES[generated["camera_view"][i]] for i in (0, 7)]
    assert "camera_view" not in json.loads((old / "train" / IMAGE_LABELS_FILE).read_text())
    dense = (old / "val" / "normal" / "2.npy").read_bytes()

    def no_rendering(*args, **kwargs):
        raise AssertionError("a version-1 copy must be extended from its stored labels, not re-rendered")

    monkeypatch.setattr(generate_module, "scene_image_labels", no_rendering)
    ensure_dataset(old, tasks=["semantic", "camera_view"], progress=False)
    assert "adding the image-level labels ['camera_view'] in place" in capsys.readouterr().out
    assert has_image_labels(old)
    for split in ("train", "val"):
        added, generated = (json.loads((r / split / IMAGE_LABELS_FILE).read_text()) for r in (old, small_root))
        assert added == generated and list(added) == list(generated)           # same values, same column order
    assert (old / "val" / "normal" / "2.npy").read_bytes() == dense
    assert json.loads((old / "meta.json").read_text()) == json.loads((small_root / "meta.json").read_text())
    ensure_dataset(old, tasks=["camera_view"], progress=False)                 # up to date: nothing said or done
    assert capsys.readouterr().out == ""


def test_a_version_1_copy_whose_labels_cannot_be_extended_is_recomputed_from_the_seeds(small_root, tmp_path):
    old = _as_version_1(small_root, tmp_path / "v1")
    path = old / "train" / IMAGE_LABELS_FILE
    table = json.loads(path.read_text())
    del table["camera_pitch"]                                                   # nothing to derive camera_view from
    path.write_text(json.dumps(table))
    ensure_dataset(old, image_labels=True, progress=False)
    for split in ("train", "val"):
        added, generated = (json.loads((r / split / IMAGE_LABELS_FILE).read_text()) for r in (old, small_root))
        assert added == generated


def test_scale_crop_keeps_image_level_labels():
    tasks = make_tasks(["depth", "dominant_class", "num_objects"], 7)
    item = {"image": torch.rand(3, 16, 20), "depth": torch.rand(1, 16, 20) + 1, "dominant_class": torch.tensor(2),
            "num_objects": torch.tensor([4.0])}
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        out = augment_sample(item, tasks, gen)
        assert torch.equal(out["dominant_class"], item["dominant_class"])
        assert torch.equal(out["num_objects"], item["num_objects"])


# --- heads -------------------------------------------------------------------------------------------------------

def test_heads_give_one_vector_per_image():
    tasks = [semantic(7), DEPTH, DOMINANT_CLASS, NUM_OBJECTS, REG2]
    net = MultiTaskNet(tasks).eval()
    with torch.no_grad():
        preds, _ = net(torch.rand(2, 3, 32, 40))
    assert preds["semantic"].shape == (2, 7, 32, 40) and preds["depth"].shape == (2, 1, 32, 40)
    assert preds["dominant_class"].shape == (2, 4)
    assert preds["num_objects"].shape == (2, 1) and preds["reg2"].shape == (2, 2)
    head = ImageLevelHead(64, 3, loc=5.0, scale=2.0)             # any feature resolution (SegNet: full size)
    for size in ((4, 5), (32, 40)):
        assert head(torch.rand(2, 64, *size)).shape == (2, 3)
    torch.nn.init.zeros_(head.mlp[2].weight)
    torch.nn.init.zeros_(head.mlp[2].bias)
    assert torch.equal(head(torch.rand(1, 64, 4, 5)), torch.full((1, 3), 5.0))   # output = loc + scale · MLP


# --- losses ------------------------------------------------------------------------------------------------------

def _image_batch(task, b=4):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(b, task.channels, generator=g, requires_grad=True)
    if task.kind == "classification":
        target = torch.randint(0, task.channels, (b,), generator=g)
    else:
        target = torch.randn(b, task.channels, generator=g) * task.scale + task.loc
    return pred, target


@pytest.mark.parametrize("reduction", ["batch", "labelled"])
@pytest.mark.parametrize("regression", ["l1", "smooth_l1"])
@pytest.mark.parametrize("task", [DOMINANT_CLASS, NUM_OBJECTS, REG2], ids=lambda t: t.name)
def test_unlabelled_image_level_sample_gets_zero_gradient_and_no_influence(task, reduction, regression):
    options = LossOptions(reduction=reduction, regression=regression)
    pred, target = _image_batch(task)
    labelled = torch.tensor([1.0, 0.0, 1.0, 0.0])
    task_loss(task, pred, target, labelled, options).backward()
    assert pred.grad[[1, 3]].abs().sum() == 0 and pred.grad[[0, 2]].abs().sum() > 0
    poisoned = target.clone()
    if task.kind == "classification":
        poisoned[[1, 3]] = -1
    else:
        poisoned[[1, 3]] = float("nan")
    assert torch.equal(task_loss(task, pred, target, labelled, options),
                       task_loss(task, pred, poisoned, labelled, options))
    zero = task_loss(task, pred, target, torch.zeros(4), options)
    assert zero.item() == 0.0 and zero.requires_grad


def test_image_level_losses_by_hand():
    logits = torch.zeros(4, 4)
    target = torch.tensor([0, -1, 2, 1])                          # sample 1: undefined label
    labelled = torch.tensor([1.0, 1.0, 1.0, 0.0])
    ce = math.log(4.0)
    assert task_loss(DOMINANT_CLASS, logits, target, labelled, "batch").item() == pytest.approx(2 * ce / 4)
    assert task_loss(DOMINANT_CLASS, logits, target, labelled, "labelled").item() == pytest.approx(ce)
    pred = torch.tensor([[3.3], [6.3], [0.3], [9.9]])             # errors 0, 3, 3 counts; scale 1.5 → 0, 2, 2
    values = torch.tensor([[3.3], [3.3], [3.3], [0.0]])
    assert task_loss(NUM_OBJECTS, pred, values, labelled, "batch").item() == pytest.approx((0 + 2 + 2) / 4)
    smooth = LossOptions(regression="smooth_l1")                  # standardized error 2: 2 − 0.5
    assert task_loss(NUM_OBJECTS, pred, values, labelled, smooth).item() == pytest.approx(2 * 1.5 / 4)


# --- metrics and Δ_MTL ---------------------------------------------------------------------------------------------

def test_accuracy_and_mae_by_hand():
    acc = make_meter(DOMINANT_CLASS)
    acc.update(torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0]]), torch.tensor([0, 2]))       # 1 of 2
    acc.update(torch.tensor([[0, 0, 0, 5.0], [0, 0, 5.0, 0]]), torch.tensor([3, -1]))      # 1 of 1, one undefined
    assert acc.compute() == {"accuracy": pytest.approx(2 / 3)}
    mae = make_meter(REG2)
    mae.update(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[1.5, 2.0], [1.0, -2.0]]))
    out = mae.compute()
    assert out["mae"] == pytest.approx((0.5 + 0 + 1 + 2) / 4)
    assert out["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 4) / 4))
    with pytest.raises(ValueError, match=r"expected \[B, 4\]"):
        acc.update(torch.zeros(2, 4, 3, 3), torch.zeros(2, dtype=torch.long))
    meter = MultiTaskMeter([DOMINANT_CLASS, NUM_OBJECTS])
    meter.update({"dominant_class": torch.eye(4)[:2] * 3, "num_objects": torch.tensor([[2.0], [4.0]])},
                 {"dominant_class": torch.tensor([0, 0]), "num_objects": torch.tensor([[3.0], [3.0]])})
    assert meter.compute() == {"dominant_class": {"accuracy": 0.5}, "num_objects": {"mae": 1.0, "rmse": 1.0}}


def test_delta_mtl_sign_for_image_level_tasks():
    base = {"num_objects": {"mae": 1.0}, "dominant_class": {"accuracy": 0.5}}
    better_mae = {"num_objects": {"mae": 0.8}, "dominant_class": {"accuracy": 0.5}}
    worse_acc = {"num_objects": {"mae": 1.0}, "dominant_class": {"accuracy": 0.4}}
    tasks = [NUM_OBJECTS, DOMINANT_CLASS]
    assert delta_mtl(better_mae, base, tasks, "b") == pytest.approx(+10.0)     # lower MAE: +20 % / 2 tasks
    assert delta_mtl(worse_acc, base, tasks, "b") == pytest.approx(-10.0)
    rmse = {"num_objects": {"mae": 1.0, "rmse": 2.0}, "dominant_class": {"accuracy": 0.5}}
    lower_rmse = {"num_objects": {"mae": 1.0, "rmse": 1.0}, "dominant_class": {"accuracy": 0.5}}
    assert delta_mtl(lower_rmse, rmse, tasks, "b", metric_keys={"num_objects": "rmse"}) == pytest.approx(+25.0)


# --- configuration: refused before any work -------------------------------------------------------------------------

def test_bad_image_level_input_is_refused_by_name(tiny_root, tmp_path):
    with pytest.raises(ValueError, match=r"unknown \['room_size'\]|distinct task names"):
        mtlwb.ExperimentConfig(tasks=["semantic", "room_size"])
    with pytest.raises(ValueError, match=r"\['num_objects'\] not annotated in dataset 'nyuv2'.*built-in scenes"):
        mtlwb.ExperimentConfig(dataset="nyuv2", data_root="data/nyuv2", tasks=["semantic", "num_objects"])
    with pytest.raises(ValueError, match=r"regression_loss='l2': allowed \['l1', 'smooth_l1'\]"):
        mtlwb.ExperimentConfig(tasks=["depth", "camera_height"], regression_loss="l2")
    with pytest.raises(ValueError, match=r"TaskSpec.kind='ranking'"):
        TaskSpec("x", "ranking", 1, "m", False)
    mask = np.ones((24, 3), np.float32)
    mask[:, 2] = 0                                                 # no image labelled for camera_height
    path = tmp_path / "mask.npy"
    np.save(path, mask)
    cfg = mtlwb.ExperimentConfig(data_root=str(tiny_root), tasks=["semantic", "depth", "camera_height"],
                                 label_setting=str(path), run_dir=str(tmp_path / "run"), progress=False)
    with pytest.raises(ValueError, match=r"leaves tasks \['camera_height'\] with no labelled image"):
        mtlwb.build_experiment(cfg)


@pytest.mark.parametrize("method", ["supervised", "jtr"])
def test_the_sweep_task_list_with_camera_view_builds_and_trains(tiny_config, method):
    exp = mtlwb.build_experiment(tiny_config(tasks=VIEW_MIXED, label_setting="onelabel"))
    assert exp.labelled.sum(0).min() > 0
    assert set(exp.train_set[0]) >= set(VIEW_MIXED) and exp.train_set[0]["camera_view"].dtype == torch.int64
    record = mtlwb.train(tiny_config(tasks=VIEW_MIXED, method=method, label_setting="randomlabel",
                                     train_samples=8, eval_samples=8))
    assert record["status"] == "completed"
    assert all(math.isfinite(v) for v in record["history"][-1]["train"].values())
    assert set(record["final"]["camera_view"]) == {"accuracy"}


def test_onelabel_and_randomlabel_over_the_mixed_task_list(tiny_config):
    for setting in ("onelabel", "randomlabel"):
        exp = mtlwb.build_experiment(tiny_config(tasks=MIXED, label_setting=setting))
        counts = exp.labelled.sum(0)
        assert counts.shape == (len(MIXED),) and (counts > 0).all()
        if setting == "onelabel":
            assert (exp.labelled.sum(1) == 1).all() and counts.max() - counts.min() <= 1


# --- methods --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["onelabel", "randomlabel"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_one_epoch_with_mixed_tasks(tiny_config, method, setting):
    record = mtlwb.train(tiny_config(tasks=MIXED, method=method, label_setting=setting))
    assert record["status"] == "completed"
    assert all(math.isfinite(v) for v in record["history"][-1]["train"].values())
    assert set(record["final"]) == set(MIXED)
    assert set(record["final"]["dominant_class"]) == {"accuracy"}
    assert set(record["final"]["num_objects"]) == {"mae", "rmse"}
    assert record["tasks"][4]["scale"] == NUM_OBJECTS.scale         # loc / scale are recorded with the task


@pytest.mark.parametrize("method,options", [("jtr", {"image_level_encoding": "none"}),
                                            ("mtpsl", {"image_level_encoding": "none"}),
                                            ("jtr", {"views": 3, "photometric": "randaugment"}),
                                            ("mtpsl", {"views": 2, "arch": "compact"})])
def test_method_options_for_image_level_tasks_train(tiny_config, method, options):
    record = mtlwb.train(tiny_config(tasks=MIXED, method=method, method_options=options, augment=True,
                                     label_setting="randomlabel", train_samples=16, eval_samples=8))
    assert record["status"] == "completed"


def test_mtpsl_pairs_include_image_level_tasks_only_when_broadcast():
    from mtlwb.methods.base import build_method
    tasks = make_tasks(MIXED, 7)
    broadcast = build_method("mtpsl", tasks, 16)
    none = build_method("mtpsl", tasks, 16, {"image_level_encoding": "none"})
    assert len(broadcast.stems) == 6 and broadcast.mapping.out.gamma.shape[1] == 6 * 5
    assert len(none.stems) == 3 and none.mapping.out.gamma.shape[1] == 3 * 2
    with pytest.raises(ValueError, match="at least 2 tasks in its pairs"):
        build_method("mtpsl", make_tasks(["depth", "num_objects", "camera_height"], 7), 16,
                     {"image_level_encoding": "none"})


# --- figures -------------------------------------------------------------------------------------------------------

def test_figures_with_image_level_tasks(tiny_config, tiny_root):
    from mtlwb.analysis import records
    from mtlwb.figures import dataset as dataset_figures
    from mtlwb.figures import predictions

    cfg = tiny_config(tasks=MIXED, method="supervised", train_samples=8, eval_samples=8)
    record = mtlwb.train(cfg)
    exp = mtlwb.load_experiment(cfg.resolved_run_dir, device="cpu")
    fig = predictions.prediction_grid(exp.model, exp.method, exp.eval_set, exp.tasks, indices=[0, 1])
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == 2 * len(MIXED) * 4
    row = titles[4 * 4:4 * 5]                                     # image 0, num_objects
    true = exp.eval_set[0]["num_objects"].item()
    assert row[1] == f"num_objects: {true:.2f}" and row[2].startswith("predicted: ")
    assert titles[3 * 4 + 1].startswith("dominant_class: ")
    frame = records.final_metrics_frame(record)
    assert {"accuracy", "mae"} <= set(frame.metric)
    mtlwb.figures.metric_curves(record)
    grid = dataset_figures.sample_grid(exp.eval_set, exp.tasks, [0], table=np.eye(6)[[3]])
    first = grid.layout.annotations[0].text
    assert "dominant_class=" in first and "num_objects=" in first and "✗" in first
    assert len(grid.layout.annotations) == 1 + 3                  # image + the three dense maps
