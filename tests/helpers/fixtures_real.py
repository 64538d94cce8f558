"""Writers of tiny datasets in exactly the published on-disk formats (NYUv2 / Cityscapes as MTAN
preprocessed them, PASCAL_MT, MTPSL mask files), so the real readers are tested without the real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image


def write_nyuv2(root: Path, n_train: int = 8, n_val: int = 4, h: int = 24, w: int = 32, seed: int = 0) -> Path:
    """<root>/{train,val}/{image,label,depth,normal}/<i>.npy; label 0..12 and -1, depth 0 = invalid."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            label = rng.integers(-1, 13, (h, w)).astype(np.float32)
            depth = rng.uniform(0.5, 10.0, (h, w, 1)).astype(np.float32)
            depth[0, 0] = 0.0
            normal = rng.normal(size=(h, w, 3)).astype(np.float32)
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            normal[0, 0] = 0.0
            _save(root / split / "image" / f"{i}.npy", rng.uniform(0, 1, (h, w, 3)).astype(np.float32))
            _save(root / split / "label" / f"{i}.npy", label)
            _save(root / split / "depth" / f"{i}.npy", depth)
            _save(root / split / "normal" / f"{i}.npy", normal)
    return root


def write_cityscapes(root: Path, n_train: int = 6, n_val: int = 3, h: int = 16, w: int = 32,
                     seed: int = 0) -> Path:
    """<root>/{train,val}/{image,label_7,label_19,depth}/<i>.npy; depth [H, W, 1] with 0 = invalid."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            depth = rng.uniform(0.0, 0.1, (h, w, 1)).astype(np.float32)
            depth[:2] = 0.0
            _save(root / split / "image" / f"{i}.npy", rng.uniform(0, 1, (h, w, 3)).astype(np.float32))
            _save(root / split / "label_7" / f"{i}.npy", rng.integers(-1, 7, (h, w)).astype(np.float32))
            _save(root / split / "label_19" / f"{i}.npy", rng.integers(-1, 19, (h, w)).astype(np.float32))
            _save(root / split / "depth" / f"{i}.npy", depth)
    return root


PASCAL_IDS = {"train": ["2008_000002", "2008_000003", "2008_000007", "2008_000008"],
              "val": ["2008_000009", "2008_000016"]}
PERSON_IDS = {"2008_000003", "2008_000008", "2008_000016"}


def parts_anno(labelmap_shape: tuple[int, int], with_person: bool) -> dict:
    """A PASCAL-Part ``anno`` struct: imname, objects(class, class_ind, mask, parts(part_name, mask))."""
    h, w = labelmap_shape
    obj_dt = [("class", object), ("class_ind", object), ("mask", object), ("parts", object)]
    part_dt = [("part_name", object), ("mask", object)]
    objects = []
    chair = np.zeros((h, w), np.uint8)
    chair[-3:, -3:] = 1
    objects.append(("chair", np.array([[9]], np.uint8), chair, np.zeros((0, 0))))
    if with_person:
        body = np.zeros((h, w), np.uint8)
        body[2:10, 2:8] = 1
        head, torso, foot = (np.zeros((h, w), np.uint8) for _ in range(3))
        head[2:4, 3:6] = 1
        torso[4:8, 2:8] = 1
        foot[8:10, 2:4] = 1
        parts = np.array([[("head", head), ("torso", torso), ("lfoot", foot)]], dtype=part_dt)
        objects.append(("person", np.array([[15]], np.uint8), body, parts))
    arr = np.empty((1, len(objects)), dtype=obj_dt)
    for j, o in enumerate(objects):
        arr[0, j] = o
    return {"imname": "x", "objects": arr}


def write_pascal(root: Path, h: int = 20, w: int = 24, seed: int = 0) -> Path:
    """The PASCAL_MT layout: JPEGImages, ImageSets/{Context,Parts}, semseg/pascal-context, human_parts,
    sal_distill, normals_distill, pascal-context/trainval (LabelMap)."""
    rng = np.random.default_rng(seed)
    for split, ids in PASCAL_IDS.items():
        _text(root / "ImageSets" / "Context" / f"{split}.txt", "\n".join(ids) + "\n")
        parts_index = {i: [15, 9] if i in PERSON_IDS else [9] for i in ids}
        _text(root / "ImageSets" / "Parts" / f"{split}.txt", json.dumps(parts_index))
        for k, sid in enumerate(ids):
            hh, ww = h + k, w                                       # sizes vary, as in PASCAL
            _img(root / "JPEGImages" / f"{sid}.jpg", rng.integers(0, 256, (hh, ww, 3), dtype=np.uint8))
            seg = rng.integers(0, 21, (hh, ww), dtype=np.uint8)
            seg[0] = 255
            _img(root / "semseg" / "pascal-context" / f"{sid}.png", seg)
            sal = np.zeros((hh, ww), np.uint8)
            sal[hh // 4:, ww // 4:] = 230
            _img(root / "sal_distill" / f"{sid}.png", sal)
            _img(root / "normals_distill" / f"{sid}.png", rng.integers(0, 256, (hh, ww, 3), dtype=np.uint8))
            labelmap = np.full((hh, ww), 440, np.uint16)                 # wall (normals valid)
            labelmap[:, ww // 2:] = 360                                  # sky (normals invalid)
            labelmap[hh // 2:, :4] = 284                                 # person
            _mat(root / "pascal-context" / "trainval" / f"{sid}.mat", {"LabelMap": labelmap})
            _mat(root / "human_parts" / f"{sid}.mat", {"anno": parts_anno((hh, ww), sid in PERSON_IDS)})
    return root


def write_mask_pt(path: Path, table: np.ndarray) -> Path:
    """MTPSL's format: torch.save({'labels_weights': FloatTensor[N, T]})."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"labels_weights": torch.as_tensor(table, dtype=torch.float32)}, path)
    return path


def write_mask_npy(path: Path, table: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(table, np.float32))
    return path


def onelabel_table(n: int, t: int) -> np.ndarray:
    return np.eye(t, dtype=np.float32)[np.arange(n) % t]


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _img(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _mat(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, data)


PASCAL_FILE_KEYS = ("semseg", "human_parts", "sal", "normals", "edge")   # the release's task keys and column order


def write_pascal_id_sets(path: Path, table: np.ndarray, ids: list[str]) -> Path:
    """The published PASCAL-Context split: np.save of {task key: [image ids labelled for it]}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, {k: [sid for sid, on in zip(ids, table[:, j]) if on] for j, k in enumerate(PASCAL_FILE_KEYS)})
    return path


def write_pascal_id_rows(path: Path, table: np.ndarray, ids: list[str]) -> Path:
    """Its derived form (new_onelabel.pth): torch.save of {image id: [0/1] × 5} in PASCAL_FILE_KEYS order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({sid: [int(v) for v in row] for sid, row in zip(ids, table)}, path)
    return path


NYUD_IDS = {"train": ["0003", "0004", "0006", "0009", "0012"], "val": ["0001", "0002", "0013"]}


def nyud_sample(h: int, w: int, seed: int) -> dict[str, np.ndarray]:
    """Raw contents of one NYUD-v2 sample as stored: image uint8, segmentation uint8 (0 = unlabelled, 1..40),
    depth float32 metres (0 = missing), normals uint8 RGB (decoded 2v/255 - 1), edge uint8 {0, 255}."""
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, 41, (h, w)).astype(np.uint8)
    depth = rng.uniform(0.7, 9.9, (h, w)).astype(np.float32)
    depth[0, :3] = 0.0
    return {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "segmentation": seg, "depth": depth,
            "normals": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            "edge": (rng.random((h, w)) > 0.85).astype(np.uint8) * 255}


def write_nyud(root: Path, encoding: str = "invpt", ids: dict[str, list[str]] | None = None, h: int = 12,
               w: int = 16, seed: int = 0) -> Path:
    """NYUD-v2 as the multi-task line prepared it: <root>/gt_sets/{train,val}.txt and, per id,
    ``encoding="invpt"`` (InvPT's NYUDv2.tar.gz, DiffusionMTL's link): images/.png, segmentation/.png,
    depth/.npy, normals/.png, edge/.png; ``"atrc"`` (MTI-Net's NYUD_MT.tgz, ATRC): images/.jpg, segmentation/.png,
    depth/.npy, normals/.npy (float, [-1, 1]), edge/.npy (float {0, 1})."""
    ids = ids or NYUD_IDS
    for split, names in ids.items():
        _text(root / "gt_sets" / f"{split}.txt", "\n".join(names) + "\n")
        for k, sid in enumerate(names):
            s = nyud_sample(h, w, seed + 1000 * (split == "val") + k)
            _img(root / "segmentation" / f"{sid}.png", s["segmentation"])
            _save(root / "depth" / f"{sid}.npy", s["depth"])
            if encoding == "invpt":
                _img(root / "images" / f"{sid}.png", s["image"])
                _img(root / "normals" / f"{sid}.png", s["normals"])
                _img(root / "edge" / f"{sid}.png", s["edge"])
            else:
                path = root / "images" / f"{sid}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(s["image"]).save(path, quality=100)
                normals = 2.0 * s["normals"].astype(np.float32) / 255.0 - 1.0
                normals[-1, -1] = 0.0                                       # a zero vector: no valid normal
                _save(root / "normals" / f"{sid}.npy", normals)
                _save(root / "edge" / f"{sid}.npy", s["edge"].astype(np.float32) / 255.0)
    return root
