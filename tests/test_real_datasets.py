"""Real-benchmark readers on tiny fixtures written in the published formats (tests/fixtures_real.py)."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlwb.config import ExperimentConfig
from mtlwb.data import build_datasets
from mtlwb.data.augment import AugmentOptions, augment_batch, augment_sample
from mtlwb.data.id_masks import read_npy
from mtlwb.data.pascal import PascalContext, edges_from_labelmap
from mtlwb.data.registry import REGISTRY, SETTINGS_DIR, resolve_label_split
from mtlwb.tasks import make_tasks
from tests.helpers.fixtures_real import (
    PASCAL_IDS,
    onelabel_table,
    write_cityscapes,
    write_mask_npy,
    write_mask_pt,
    write_nyuv2,
    write_pascal,
    write_pascal_id_rows,
    write_pascal_id_sets,
)


def _cfg(dataset: str, root, **kw) -> ExperimentConfig:
    return ExperimentConfig(dataset=dataset, data_root=str(root), device="cpu", progress=False, **kw)


# --- NYUv2 ------------------------------------------------------------------------------------------

def test_nyuv2_loads_at_any_size_with_published_mask(tmp_path):
    root = write_nyuv2(tmp_path / "nyuv2")
    table = onelabel_table(8, 3)
    write_mask_pt(root / SETTINGS_DIR / "onelabel.pth", table)
    tasks, train, val, labelled = build_datasets(_cfg("nyuv2", root).data_request)
    assert [t.name for t in tasks] == ["semantic", "depth", "normal"] and tasks[0].channels == 13
    assert (len(train), len(val)) == (8, 4)
    item = train[0]
    assert item["image"].shape == (3, 24, 32) and item["semantic"].shape == (24, 32)
    assert item["semantic"].dtype == torch.int64 and item["semantic"].min() >= -1
    assert item["depth"].shape == (1, 24, 32) and item["normal"].shape == (3, 24, 32)
    np.testing.assert_array_equal(labelled, table)
    # a reordered task list picks the published columns by name
    _, _, _, swapped = build_datasets(_cfg("nyuv2", root, tasks=["normal", "semantic"]).data_request)
    np.testing.assert_array_equal(swapped, table[:, [2, 0]])


def test_nyuv2_missing_published_mask_warns_and_generates(tmp_path):
    root = write_nyuv2(tmp_path / "nyuv2")
    with pytest.warns(UserWarning, match="randomlabels.pth"):
        _, _, _, labelled = build_datasets(_cfg("nyuv2", root, label_setting="randomlabel").data_request)
    assert labelled.shape == (8, 3) and (labelled.sum(1) >= 1).all() and (labelled.sum(1) <= 2).all()


def test_mask_of_another_dataset_is_refused_by_name(tmp_path):
    root = write_nyuv2(tmp_path / "nyuv2")
    path = write_mask_pt(root / SETTINGS_DIR / "onelabel.pth", onelabel_table(10, 3))
    with pytest.raises(ValueError, match=str(path)):
        build_datasets(_cfg("nyuv2", root).data_request)
    write_mask_pt(path, onelabel_table(8, 2))                    # wrong T
    with pytest.raises(ValueError, match="onelabel.pth"):
        build_datasets(_cfg("nyuv2", root).data_request)
    path.write_bytes(path.read_bytes()[:40])                      # truncated
    with pytest.raises(ValueError, match="onelabel.pth"):
        build_datasets(_cfg("nyuv2", root).data_request)


def test_truncated_npy_is_named(tmp_path):
    root = write_nyuv2(tmp_path / "nyuv2")
    bad = root / "train" / "depth" / "3.npy"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(ValueError, match=str(bad)):
        build_datasets(_cfg("nyuv2", root, label_setting="full").data_request)


def test_missing_folder_is_named(tmp_path):
    root = write_nyuv2(tmp_path / "nyuv2")
    for f in (root / "val" / "normal").iterdir():
        f.unlink()
    (root / "val" / "normal").rmdir()
    with pytest.raises(FileNotFoundError, match="val/normal"):
        build_datasets(_cfg("nyuv2", root, label_setting="full").data_request)
    with pytest.raises(FileNotFoundError, match="no cityscapes7 dataset"):
        _cfg("cityscapes7", tmp_path / "nowhere", tasks=["semantic", "depth"]).check_paths()


# --- Cityscapes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,classes", [("cityscapes7", 7), ("cityscapes19", 19)])
def test_cityscapes_variants(tmp_path, name, classes):
    root = write_cityscapes(tmp_path / "cs")
    write_mask_pt(root / SETTINGS_DIR / "onelabel.pth", onelabel_table(6, 2))
    tasks, train, val, labelled = build_datasets(_cfg(name, root, tasks=["semantic", "depth"]).data_request)
    assert tasks[0].channels == classes and (len(train), len(val)) == (6, 3)
    item = train[1]
    assert item["semantic"].max() < classes and item["semantic"].min() >= -1
    assert item["depth"].shape == (1, 16, 32) and (item["depth"] == 0).any()
    if name == "cityscapes7":                                   # MTPSL's onelabel file is for the 7-class setting
        np.testing.assert_array_equal(labelled, onelabel_table(6, 2))
    with pytest.raises(ValueError, match="not annotated"):
        _cfg(name, root, tasks=["semantic", "normal"])


def test_cityscapes_wrong_shape_is_named(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    bad = root / "train" / "depth" / "2.npy"
    np.save(bad, np.zeros((16, 32), np.float32))                # [H, W] instead of [H, W, 1]
    with pytest.raises(ValueError, match=rf"{bad}.*expected shape \(16, 32, 1\)"):
        build_datasets(_cfg("cityscapes7", root, tasks=["semantic", "depth"], label_setting="full").data_request)


# --- PASCAL-Context ----------------------------------------------------------------------------------

ALL_PASCAL = ["semantic", "parts", "saliency", "normal", "edge"]


def test_pascal_items(tmp_path):
    root = write_pascal(tmp_path / "pascal")
    ds = PascalContext(root, "train", make_tasks(ALL_PASCAL, 21), size=(16, 20))
    assert len(ds) == len(PASCAL_IDS["train"])
    no_person, person = ds[0], ds[1]
    assert no_person["image"].shape == (3, 16, 20) and 0 <= no_person["image"].min() <= no_person["image"].max() <= 1
    assert (no_person["parts"] == -1).all()                   # no person: parts say nothing
    assert set(person["parts"].unique().tolist()) <= set(range(7)) and person["parts"].max() > 0
    assert person["semantic"].min() == -1 and person["semantic"].max() <= 20
    assert set(person["saliency"].unique().tolist()) == {0, 1}
    normal = person["normal"]
    assert normal.shape == (3, 16, 20) and (normal[:, :, -1] == 0).all()   # sky: not an NYUD class
    assert (normal[:, 0, 0] != 0).any()                                     # wall: kept
    assert person["edge"].shape == (1, 16, 20) and person["edge"].sum() > 0
    # without the ImageSets/Parts cache the .mat itself says whether a person is there
    ds.person_ids = None
    assert (ds[0]["parts"] == -1).all() and ds[1]["parts"].max() > 0


def test_pascal_registry_and_npy_masks(tmp_path):
    root = write_pascal(tmp_path / "pascal")
    table = onelabel_table(4, 5)
    table[0, 4] = 1                                             # 4 images, 5 tasks: every task labelled once
    write_mask_npy(root / SETTINGS_DIR / "randomlabels.npy", table)
    cfg = _cfg("pascal_context", root, tasks=["semantic", "saliency"], label_setting="randomlabel")
    tasks, train, val, labelled = build_datasets(cfg.data_request)
    assert [t.channels for t in tasks] == [21, 2] and (len(train), len(val)) == (4, 2)
    assert train[0]["image"].shape == (3, 512, 512)             # the papers' fixed size
    np.testing.assert_array_equal(labelled, table[:, [0, 2]])
    assert REGISTRY["pascal_context"].default_tasks == tuple(ALL_PASCAL)


def test_pascal_published_id_keyed_splits(tmp_path):
    """The release's files are keyed by image id, not by row: {task key: ids} (.npy) and {id: [0/1]×5} (.pth)."""
    root = write_pascal(tmp_path / "pascal")
    ids = PASCAL_IDS["train"]
    table = np.array([[1, 0, 0, 0, 1], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]], np.float32)
    write_pascal_id_sets(root / SETTINGS_DIR / "onelabel.npy", table[::-1], ids[::-1])   # order must not matter
    cfg = _cfg("pascal_context", root, tasks=["edge", "semantic", "parts"], label_setting="onelabel")
    np.testing.assert_array_equal(build_datasets(cfg.data_request)[3], table[:, [4, 0, 1]])
    rows = write_pascal_id_rows(tmp_path / "new_onelabel.pth", table, ids)
    cfg = _cfg("pascal_context", root, tasks=["saliency", "normal"], label_setting=str(rows))
    np.testing.assert_array_equal(build_datasets(cfg.data_request)[3], table[:, [2, 3]])
    cfg = _cfg("pascal_context", root, tasks=["semantic", "parts"], label_setting="onelabel", train_samples=2)
    np.testing.assert_array_equal(build_datasets(cfg.data_request)[3], table[:2, :2])         # a prefix of the split
    write_pascal_id_sets(root / SETTINGS_DIR / "onelabel.npy", table, ["2099_000001"] + ids[1:])
    with pytest.raises(ValueError, match="ids not in the training split"):
        build_datasets(_cfg("pascal_context", root, tasks=["semantic"], label_setting="onelabel").data_request)
    write_pascal_id_rows(rows, table[:3], ids[:3])
    with pytest.raises(ValueError, match=r"no row for training images \['2008_000008'\]"):
        build_datasets(_cfg("pascal_context", root, tasks=["semantic"], label_setting=str(rows)).data_request)


def test_pickled_mask_file_cannot_run_code(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    root = write_pascal(tmp_path / "pascal")
    path = root / SETTINGS_DIR / "onelabel.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array({"semseg": Boom()}, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        build_datasets(_cfg("pascal_context", root, tasks=["semantic"], label_setting="onelabel").data_request)
    write_pascal_id_sets(path, np.eye(5, dtype=np.float32)[:4], PASCAL_IDS["train"])
    path.write_bytes(path.read_bytes()[:-20])                        # truncated download
    with pytest.raises(ValueError, match=r"onelabel.npy': cannot read \(pickle data was truncated\)"):
        build_datasets(_cfg("pascal_context", root, tasks=["semantic"], label_setting="onelabel").data_request)


def test_pascal_corrupt_png_and_missing_files_are_named(tmp_path):
    root = write_pascal(tmp_path / "pascal")
    tasks = make_tasks(["semantic", "saliency"], 21)
    bad = root / "sal_distill" / f"{PASCAL_IDS['train'][2]}.png"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(ValueError, match=str(bad)):
        PascalContext(root, "train", tasks, size=(8, 8))
    bad.unlink()
    with pytest.raises(FileNotFoundError, match=str(bad)):
        PascalContext(root, "train", tasks, size=(8, 8))
    mat = root / "pascal-context" / "trainval" / f"{PASCAL_IDS['val'][0]}.mat"
    mat.write_bytes(b"not a mat file at all" * 3)
    with pytest.raises(ValueError, match=str(mat)):
        PascalContext(root, "val", make_tasks(["edge"], 21), size=(8, 8))


def test_edges_are_one_pixel_wide():
    labels = np.zeros((10, 12), np.int32)
    labels[:, 6:] = 3
    edge = edges_from_labelmap(labels)
    assert (edge.sum(1) <= 1).all() and edge[1:-1].sum() == 8      # one pixel wide (ends may erode at the border)
    assert set(np.unique(edge)) == {0.0, 1.0}
    assert edges_from_labelmap(np.ones((5, 5))).sum() == 0


# --- augmentation -------------------------------------------------------------------------------------

def _batch(n=3, h=12, w=16):
    g = torch.Generator().manual_seed(0)
    normal = torch.nn.functional.normalize(torch.randn(n, 3, h, w, generator=g), dim=1)
    return {"image": torch.rand(n, 3, h, w, generator=g), "semantic": torch.randint(-1, 5, (n, h, w), generator=g),
            "depth": torch.rand(n, 1, h, w, generator=g) + 1.0, "normal": normal, "index": torch.arange(n)}


def test_augment_is_deterministic_and_keeps_label_values():
    tasks = make_tasks(["semantic", "depth", "normal"], 5)
    batch = _batch()
    a = augment_batch(batch, tasks, torch.Generator().manual_seed(3))
    b = augment_batch(batch, tasks, torch.Generator().manual_seed(3))
    for k in ("image", "semantic", "depth", "normal"):
        assert torch.equal(a[k], b[k]) and a[k].shape == batch[k].shape and a[k].dtype == batch[k].dtype
    assert set(a["semantic"].unique().tolist()) <= set(range(-1, 5))
    assert a["image"].min() >= 0 and a["image"].max() <= 1
    assert torch.equal(a["index"], batch["index"])


def test_scale_divides_depth_and_flip_negates_normal_x():
    tasks = make_tasks(["semantic", "depth", "normal"], 5)
    item = {k: v[0] for k, v in _batch().items() if k != "index"}
    item["depth"] = torch.full_like(item["depth"], 3.0)
    out = augment_sample(item, tasks, torch.Generator().manual_seed(0),
                         AugmentOptions(scales=(1.5,), flip=False, brightness=0, contrast=0, saturation=0))
    assert torch.allclose(out["depth"], torch.full_like(out["depth"], 2.0))
    no_scale = AugmentOptions(scales=(1.0,), flip=True, brightness=0, contrast=0, saturation=0)
    flipped = 0
    for seed in range(8):
        out = augment_sample(item, tasks, torch.Generator().manual_seed(seed), no_scale)
        if torch.equal(out["semantic"], item["semantic"]):
            assert torch.equal(out["normal"], item["normal"])
        else:
            flipped += 1
            assert torch.equal(out["semantic"], item["semantic"].flip(-1))
            assert torch.equal(out["normal"][0], -item["normal"][0].flip(-1))
            assert torch.equal(out["normal"][1:], item["normal"][1:].flip(-1))
    assert 0 < flipped < 8


def test_config_validates_new_fields():
    with pytest.raises(ValueError, match="augment"):
        ExperimentConfig(augment="yes")
    with pytest.raises(ValueError, match="channels_last"):
        ExperimentConfig(channels_last=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ExperimentConfig(dataset="pascal_context", tasks=ALL_PASCAL, augment=True, channels_last=True)


# --- the real published split files (MTPSL's release, ../shared/published-splits) ----------------------------
PUBLISHED = Path(__file__).resolve().parents[1].parent / "shared" / "published-splits"
needs_published = pytest.mark.skipif(not PUBLISHED.is_dir(), reason=f"published split files not found at {PUBLISHED} "
                                     "(the shared/ folder beside the repository; see its README.md)")
PASCAL_KEYS = {"semseg": "semantic", "human_parts": "parts", "sal": "saliency", "normals": "normal", "edge": "edge"}
# git blob ids of DiffusionMTL's copies (prismformore/Multi-Task-Transformer @ 862bac7,
# DiffusionMTL/data/ssl_mapping/pascal/{onelabel,randomlabels}.npy), read from that repository's history
DIFFUSIONMTL_BLOBS = {"onelabel.npy": "2a447b8e3d1e8c516ba446b12433f359daee411e",
                      "randomlabels.npy": "ecf2fa83fea8ffd99ffd7144f46f3a31464fadd3"}


def _published_split(tmp_path, dataset: str, folder: str, file: str, setting: str, n: int, ids=None, **kw):
    """The table and provenance the registry resolves for ``setting`` with the real file in <data_root>/settings/."""
    root = tmp_path / dataset
    (root / SETTINGS_DIR).mkdir(parents=True)
    (root / SETTINGS_DIR / file).symlink_to(PUBLISHED / folder / file)
    cfg = ExperimentConfig(dataset=dataset, data_root=str(root), label_setting=setting, **kw)
    return resolve_label_split(REGISTRY[dataset], cfg.data_request, n, ids)


def _pascal_ids(name: str) -> tuple[dict, list[str]]:
    sets = read_npy(PUBLISHED / "pascal_context" / name)
    return sets, sorted({str(i) for members in sets.values() for i in members})


@needs_published
def test_published_nyuv2_onelabel_and_randomlabels(tmp_path):
    table, source = _published_split(tmp_path, "nyuv2", "nyuv2", "onelabel.pth", "onelabel", 795)
    assert table.shape == (795, 3) and (table.sum(1) == 1).all() and table.sum(0).tolist() == [265, 265, 265]
    assert source["source"] == "file" and source["published"] and source["fallback"] is False
    assert source["sha256"] == hashlib.sha256((PUBLISHED / "nyuv2" / "onelabel.pth").read_bytes()).hexdigest()
    table, _ = _published_split(tmp_path / "r", "nyuv2", "nyuv2", "randomlabels.pth", "randomlabel", 795)
    per_image = table.sum(1)
    assert ((per_image == 1).sum(), (per_image == 2).sum()) == (405, 390)
    assert table.sum(0).tolist() == [392, 408, 385]                       # semantic, depth, normal
    swapped, _ = _published_split(tmp_path / "s", "nyuv2", "nyuv2", "randomlabels.pth", "randomlabel", 795,
                                  tasks=["normal", "semantic"])
    np.testing.assert_array_equal(swapped, table[:, [2, 0]])
    with pytest.raises(ValueError, match=r"800 rows|795 rows"):          # not the file of another split size
        _published_split(tmp_path / "x", "nyuv2", "nyuv2", "onelabel.pth", "onelabel", 800)


@needs_published
def test_published_cityscapes_onelabel(tmp_path):
    table, _ = _published_split(tmp_path, "cityscapes7", "cityscapes", "onelabel.pth", "onelabel", 2975,
                                tasks=["semantic", "depth"])
    assert table.shape == (2975, 2) and (table.sum(1) == 1).all() and table.sum(0).tolist() == [1487, 1488]


@needs_published
@pytest.mark.parametrize("name, setting", [("onelabel.npy", "onelabel"), ("randomlabels.npy", "randomlabel")])
def test_published_pascal_splits_map_task_keys_to_columns(tmp_path, name, setting):
    sets, ids = _pascal_ids(name)
    assert len(ids) == 4998                                               # every training image of PASCAL-Context
    table, _ = _published_split(tmp_path, "pascal_context", "pascal_context", name, setting, len(ids), ids,
                                tasks=ALL_PASCAL)
    for key, task in PASCAL_KEYS.items():                                 # semseg -> semantic, human_parts -> parts...
        members = {str(i) for i in sets[key]}
        np.testing.assert_array_equal(table[:, ALL_PASCAL.index(task)], [sid in members for sid in ids])
    counts = dict(zip(ALL_PASCAL, table.sum(0).tolist()))
    if setting == "onelabel":
        assert (table.sum(1) == 1).all() and all(999 <= c <= 1000 for c in counts.values())
    else:
        assert counts == {"parts": 847, "edge": 2557, "semantic": 2450, "normal": 2480, "saliency": 2445}
        assert (table.sum(1) >= 1).all() and (table.sum(1) <= 4).all()
    picked, _ = _published_split(tmp_path / "p", "pascal_context", "pascal_context", name, setting, len(ids), ids,
                                 tasks=["edge", "semantic"])
    np.testing.assert_array_equal(picked, table[:, [4, 0]])


def _git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@needs_published
@pytest.mark.parametrize("name, setting", [("onelabel.npy", "onelabel"), ("randomlabels.npy", "randomlabel")])
def test_pascal_files_in_diffusionmtl_format_are_mtpsls(tmp_path, name, setting):
    """README's question, answered from the files: DiffusionMTL's {task key: ids} files are MTPSL's, byte for byte,
    and its derived {image id: [0/1] x 5} form (numpy-string keys, as its get_task_mapping writes them) gives the
    same table."""
    assert _git_blob_id(PUBLISHED / "pascal_context" / name) == DIFFUSIONMTL_BLOBS[name]
    sets, ids = _pascal_ids(name)
    rows = {np.str_(sid): [int(sid in {str(i) for i in sets[k]}) for k in PASCAL_KEYS] for sid in ids}
    derived = tmp_path / f"new_{setting}.pth"
    torch.save(rows, derived)
    by_sets, _ = _published_split(tmp_path, "pascal_context", "pascal_context", name, setting, len(ids), ids,
                                  tasks=ALL_PASCAL)
    cfg = ExperimentConfig(dataset="pascal_context", data_root=str(tmp_path / "none"), label_setting=str(derived),
                           tasks=ALL_PASCAL)
    by_rows, source = resolve_label_split(REGISTRY["pascal_context"], cfg.data_request, len(ids), ids)
    np.testing.assert_array_equal(by_rows, by_sets)
    assert source["source"] == "file" and source["path"] == str(derived) and not source["published"]
