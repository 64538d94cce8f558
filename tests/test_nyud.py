"""NYUD-v2 as ATRC / MTI-Net / DiffusionMTL prepared it (dataset="nyud", mtlwb/data/nyud.py): both archives'
encodings, the published split files applied to gt_sets/train.txt, and the evaluation conventions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlwb.config import ExperimentConfig
from mtlwb.data import build_datasets
from mtlwb.data.nyud import NYUD
from mtlwb.data.registry import REGISTRY, SETTINGS_DIR
from mtlwb.objectives.metrics import MultiTaskMeter
from mtlwb.tasks import make_tasks
from tests.helpers.fixtures_real import NYUD_IDS, nyud_sample, onelabel_table, write_mask_pt, write_nyud

ALL = ["semantic", "depth", "normal", "edge"]
PUBLISHED = Path(__file__).resolve().parents[1].parent / "shared" / "published-splits"
needs_published = pytest.mark.skipif(not PUBLISHED.is_dir(), reason=f"published split files not found at "
                                     f"{PUBLISHED} (the shared/ folder beside the repository; see its README.md)")


def _cfg(root, **kw) -> ExperimentConfig:
    return ExperimentConfig(dataset="nyud", data_root=str(root), device="cpu", progress=False, **kw)


@pytest.mark.parametrize("encoding", ["invpt", "atrc"])
def test_items_decode_the_stored_files(tmp_path, encoding):
    root = write_nyud(tmp_path / "nyud", encoding)
    ds = NYUD(root, "train", make_tasks(ALL, 40))
    assert len(ds) == 5 and ds.ids == NYUD_IDS["train"] and ds.image_size == (12, 16)
    item, raw = ds[1], nyud_sample(12, 16, seed=1)
    assert item["image"].shape == (3, 12, 16) and item["image"].dtype == torch.float32
    if encoding == "invpt":                                   # png: lossless
        np.testing.assert_allclose(item["image"].numpy().transpose(1, 2, 0), raw["image"] / 255.0, atol=1e-6)
    seg = item["semantic"].numpy()
    np.testing.assert_array_equal(seg, raw["segmentation"].astype(np.int64) - 1)    # 0 -> -1, 1..40 -> 0..39
    assert seg.min() == -1 and seg.max() <= 39
    np.testing.assert_array_equal(item["depth"][0].numpy(), raw["depth"])
    assert (item["depth"][0, 0, :3] == 0).all()                  # missing depth stays 0 = invalid
    normal = 2.0 * raw["normals"].astype(np.float32) / 255.0 - 1.0
    if encoding == "atrc":
        normal[-1, -1] = 0.0
        assert (item["normal"][:, -1, -1] == 0).all()
    np.testing.assert_allclose(item["normal"].numpy().transpose(1, 2, 0), normal, atol=1e-6)
    np.testing.assert_allclose(item["edge"][0].numpy(), raw["edge"] / 255.0)
    assert set(np.unique(item["edge"].numpy())) <= {0.0, 1.0}


def test_registry_published_mask_and_task_columns(tmp_path):
    root = write_nyud(tmp_path / "nyud")
    table = onelabel_table(5, 3)
    write_mask_pt(root / SETTINGS_DIR / "onelabel.pth", table)
    tasks, train, val, labelled = build_datasets(_cfg(root).data_request)
    assert [t.name for t in tasks] == ["semantic", "depth", "normal"] and tasks[0].channels == 40
    assert (len(train), len(val)) == (5, 3) and train.ids == NYUD_IDS["train"]
    np.testing.assert_array_equal(labelled, table)             # row i = the i-th id of gt_sets/train.txt
    assert train.label_split["published"] and train.label_split["source"] == "file"
    _, _, _, swapped = build_datasets(_cfg(root, tasks=["normal", "semantic"]).data_request)
    np.testing.assert_array_equal(swapped, table[:, [2, 0]])
    with pytest.raises(ValueError, match=r"no column for tasks \['edge'\]"):
        build_datasets(_cfg(root, tasks=ALL).data_request)
    tasks, _, _, full = build_datasets(_cfg(root, tasks=ALL, label_setting="full").data_request)
    assert full.shape == (5, 4) and [t.name for t in tasks] == ALL
    assert REGISTRY["nyud"].default_tasks == ("semantic", "depth", "normal")


def test_bad_files_are_named_before_training(tmp_path):
    root = write_nyud(tmp_path / "nyud")
    tasks = make_tasks(["semantic", "depth"], 40)
    bad = root / "depth" / "0006.npy"
    bad.write_bytes(bad.read_bytes()[:70])
    with pytest.raises(ValueError, match=str(bad)):
        NYUD(root, "train", tasks)
    bad.unlink()
    with pytest.raises(FileNotFoundError, match=str(bad)):
        NYUD(root, "train", tasks)
    png = root / "segmentation" / "0001.png"
    png.write_bytes(png.read_bytes()[:40])
    with pytest.raises(ValueError, match=str(png)):
        NYUD(root, "val", tasks)
    other = write_nyud(tmp_path / "sizes", ids={"train": ["a"], "val": ["b"]})
    write_nyud(tmp_path / "sizes", ids={"train": ["c"], "val": []}, h=10)
    (other / "gt_sets" / "train.txt").write_text("a\nc\n")
    with pytest.raises(ValueError, match="one image size"):
        NYUD(other, "train", tasks)
    with pytest.raises(FileNotFoundError, match="gt_sets"):
        build_datasets(_cfg(tmp_path / "nowhere").data_request)
    with pytest.raises(ValueError, match=r"not annotated in dataset 'nyud'"):
        _cfg(root, tasks=["semantic", "parts"])


def test_evaluation_follows_the_published_conventions(tmp_path):
    """mIoU over the 40 classes, depth RMSE and absErr pooled over the split's valid pixels, normal mean angle over
    valid pixels (DiffusionMTL / TaskPrompter ``evaluation/``), written here from their definitions."""
    root = write_nyud(tmp_path / "nyud", ids={"train": ["t"], "val": [f"{i:04d}" for i in range(6)]}, h=24, w=32)
    tasks = make_tasks(["semantic", "depth", "normal"], 40)
    ds = NYUD(root, "val", tasks)
    g = torch.Generator().manual_seed(0)
    meter = MultiTaskMeter(tasks)
    tp, fp, fn = np.zeros(40), np.zeros(40), np.zeros(40)
    sq = ab = n_depth = 0.0
    angles = []
    for i in range(len(ds)):
        item = ds[i]
        gt = {k: item[k][None] for k in ("semantic", "depth", "normal")}
        pred = {"semantic": torch.randn(1, 40, 24, 32, generator=g),
                "depth": gt["depth"] + torch.rand(1, 1, 24, 32, generator=g),
                "normal": torch.nn.functional.normalize(gt["normal"] + torch.randn(1, 3, 24, 32, generator=g), dim=1)}
        meter.update(pred, gt)
        label, seg = pred["semantic"].argmax(1)[0].numpy(), gt["semantic"][0].numpy()
        valid = (seg >= 0) & (seg < 40)
        for c in range(40):
            tp[c] += np.sum((seg == c) & (label == c) & valid)
            fp[c] += np.sum((seg != c) & (label == c) & valid)
            fn[c] += np.sum((seg == c) & (label != c) & valid)
        d, p = gt["depth"][0, 0].numpy(), pred["depth"][0, 0].numpy()
        ok = d != 0
        sq += np.sum((d[ok] - p[ok]) ** 2)
        ab += np.sum(np.abs(d[ok] - p[ok]))
        n_depth += ok.sum()
        gn = gt["normal"][0].numpy()
        gn_unit = gn / np.maximum(np.linalg.norm(gn, axis=0, keepdims=True), 1e-12)
        ok = np.linalg.norm(gn, axis=0) != 0
        cos = np.clip((pred["normal"][0].numpy() * gn_unit).sum(0), -1, 1)
        angles.extend(np.degrees(np.arccos(cos[ok])))
    assert (tp + fn > 0).all()                              # every class occurs: the two mIoU forms agree
    out = meter.compute()
    assert out["semantic"]["miou"] == pytest.approx(np.mean(tp / np.maximum(tp + fp + fn, 1e-8)), rel=1e-9)
    assert out["depth"]["rmse"] == pytest.approx(math.sqrt(sq / n_depth), rel=1e-6)
    assert out["depth"]["abs_err"] == pytest.approx(ab / n_depth, rel=1e-6)
    assert out["normal"]["mean_angle"] == pytest.approx(np.mean(angles), rel=1e-5)


# --- DiffusionMTL's published NYUD split files (= MTPSL's NYUv2 files, ../shared/published-splits/nyuv2) -------

@needs_published
@pytest.mark.parametrize("name, setting", [("onelabel.pth", "onelabel"), ("randomlabels.pth", "randomlabel")])
def test_published_splits_follow_gt_sets_train_order(tmp_path, name, setting):
    ids = {"train": [f"{i:04d}" for i in range(795)], "val": [f"v{i:04d}" for i in range(654)]}
    root = write_nyud(tmp_path / "nyud", ids=ids, h=2, w=3)
    (root / SETTINGS_DIR).mkdir()
    (root / SETTINGS_DIR / name).symlink_to(PUBLISHED / "nyuv2" / name)
    _, train, val, table = build_datasets(_cfg(root, label_setting=setting).data_request)
    assert (len(train), len(val)) == (795, 654) and table.shape == (795, 3)
    published = torch.load(PUBLISHED / "nyuv2" / name, weights_only=True)["labels_weights"].numpy()
    np.testing.assert_array_equal(table, published)         # row i <-> the i-th line of gt_sets/train.txt
    if setting == "onelabel":
        assert (table.sum(1) == 1).all() and table.sum(0).tolist() == [265, 265, 265]
    else:
        assert ((table.sum(1) == 1).sum(), (table.sum(1) == 2).sum()) == (405, 390)
        assert table.sum(0).tolist() == [392, 408, 385]
    assert train.label_split["sha256"] and not train.label_split["fallback"]
