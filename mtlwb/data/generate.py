"""Write the procedural scenes to disk in the preprocessed NYUv2 layout (MTAN/MTPSL/JTR).

Layout: ``<root>/{train,val}/{image,label,depth,normal,edge}/{i}.npy``, the image-level labels of each split in
``<root>/{train,val}/image_labels.json`` (one list per label, ``{"dominant_class": [...], "num_objects": [...],
...}``, row i = scene i; read once by the loader) plus ``<root>/meta.json``.
Generation happens in a sibling temp dir that is renamed into place only after
``meta.json`` (written last) is there, so a crash never leaves a half dataset at
``<root>``; readers can trust any ``<root>`` that :func:`dataset_is_complete` accepts.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..io import atomic_write_json
from .scenes import (
    CLASS_NAMES,
    IMAGE_LABEL_NAMES,
    KEYS,
    NUM_CLASSES,
    OBJECT_CLASS_NAMES,
    render_scene_with_labels,
    scene_image_labels,
)
from .style import DEFAULT_STYLE, SceneStyle, resolve_style, style_record

SPLITS = ("train", "val")
GENERATOR = "mtlwb.scenes"
VERSION = 1                 # of the dense layout; the image-level labels have their own ("image_labels" in meta)
IMAGE_LABELS_FILE = "image_labels.json"
IMAGE_LABELS_VERSION = 1
_META_PARAMS = ("n_train", "n_val", "height", "width", "seed")


def scene_seed(seed: int, split: str, index: int) -> int:
    """Seed of scene ``index`` of ``split``; the split tag keeps train and val scenes disjoint."""
    ss = np.random.SeedSequence([seed, zlib.crc32(split.encode()), index])
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def _validate(n_train: int, n_val: int, height: int, width: int, seed: int) -> None:
    for name, value in (("n_train", n_train), ("n_val", n_val)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name}={value!r}: must be an integer >= 1")
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int | np.integer) or value < 16 or value % 8:
            raise ValueError(f"{name}={value!r}: must be an integer >= 16 and divisible by 8")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be a non-negative integer")


def _read_meta(root: Path) -> dict | None:
    try:
        return json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _count_npy(folder: Path) -> int:
    try:
        with os.scandir(folder) as it:
            return sum(1 for e in it if e.name.endswith(".npy"))
    except OSError:
        return -1


def dataset_is_complete(root: str | Path) -> bool:
    """True when meta.json exists and every task folder holds exactly the announced file count."""
    root = Path(root)
    meta = _read_meta(root)
    if not isinstance(meta, dict):
        return False
    for split in SPLITS:
        n = meta.get(f"n_{split}")
        if not isinstance(n, int) or any(_count_npy(root / split / key) != n for key in KEYS):
            return False
    return True


def image_labels_meta() -> dict:
    """What ``meta.json`` says about the image-level labels (their names, version and class names)."""
    return {"version": IMAGE_LABELS_VERSION, "file": f"{{train,val}}/{IMAGE_LABELS_FILE}",
            "names": list(IMAGE_LABEL_NAMES), "dominant_class_names": list(OBJECT_CLASS_NAMES)}


def has_image_labels(root: str | Path) -> bool:
    """True when meta.json announces the image-level labels (written after their files) and every split has them."""
    root = Path(root)
    meta = _read_meta(root)
    return (isinstance(meta, dict) and isinstance(meta.get("image_labels"), dict)
            and all((root / split / IMAGE_LABELS_FILE).is_file() for split in SPLITS))


def _label_columns(rows: list[dict[str, float]]) -> dict[str, list]:
    return {name: [r[name] for r in rows] for name in IMAGE_LABEL_NAMES}


def add_image_labels(root: str | Path, progress: bool = True) -> Path:
    """Extend a complete dataset generated before image-level labels existed (no "image_labels" in meta), in place.

    The labels are recomputed from each scene's seed (geometry and primary rays only; the dense files are read
    and written by nobody), each split's ``image_labels.json`` is written atomically, and ``meta.json`` is
    rewritten atomically last, so a reader either sees no image-level labels or all of them.
    """
    root = Path(root)
    if not dataset_is_complete(root):
        raise FileNotFoundError(f"{root} is not a complete generated dataset; generate it with `mtlwb generate "
                                f"--root {root}`")
    if has_image_labels(root):
        return root
    meta = _read_meta(root) or {}
    missing = [k for k in _META_PARAMS if not isinstance(meta.get(k), int)]
    if meta.get("generator") != GENERATOR or missing:
        raise ValueError(f"{root}/meta.json: not written by {GENERATOR} (or lacks {missing}); cannot recompute "
                         "its image-level labels")
    total = meta["n_train"] + meta["n_val"]
    with tqdm(total=total, desc="image-level labels", disable=not progress) as bar:
        for split in SPLITS:
            rows = []
            for i in range(meta[f"n_{split}"]):
                rows.append(scene_image_labels(scene_seed(meta["seed"], split, i), meta["height"], meta["width"],
                                               SceneStyle(**meta.get("style", style_record(DEFAULT_STYLE)))))
                bar.update(1)
            atomic_write_json(root / split / IMAGE_LABELS_FILE, _label_columns(rows))
    atomic_write_json(root / "meta.json", {**meta, "image_labels": image_labels_meta()})
    return root


def _write_scene(split_dir: Path, index: int, arrays: dict[str, np.ndarray]) -> None:
    for key in KEYS:
        value = arrays[key]
        if key == "label":
            value = value.reshape(value.shape[:2])
        np.save(split_dir / key / f"{index}.npy", value)


def _remove_stale_tmps(root: Path) -> None:
    """Delete temp dirs left by dead generator processes (a live one may still be writing)."""
    for tmp in root.parent.glob(f"{root.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_existing(root: Path, params: dict) -> bool:
    """True when a complete dataset matching ``params`` is already at root; raises on any mismatch."""
    if not root.exists():
        return False
    if not dataset_is_complete(root):
        raise FileExistsError(
            f"{root} exists but is not a complete generated dataset (missing meta.json or files); "
            "remove it or choose another root"
        )
    meta = _read_meta(root) or {}
    meta.setdefault("style", style_record(DEFAULT_STYLE))      # roots written before styles are default-style
    diff = {k: (meta.get(k), v) for k, v in params.items() if meta.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: on disk {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{root} holds a different dataset ({detail}); remove it or choose another root")
    return True


def _generate_into(tmp: Path, params: dict, progress: bool) -> None:
    total = params["n_train"] + params["n_val"]
    with tqdm(total=total, desc=f"scenes {params['height']}x{params['width']}", disable=not progress) as bar:
        for split in SPLITS:
            split_dir = tmp / split
            for key in KEYS:
                (split_dir / key).mkdir(parents=True, exist_ok=True)
            rows = []
            for i in range(params[f"n_{split}"]):
                sid = scene_seed(params["seed"], split, i)
                arrays, labels = render_scene_with_labels(sid, params["height"], params["width"],
                                                          style=SceneStyle(**params["style"]))
                _write_scene(split_dir, i, arrays)
                rows.append(labels)
                bar.update(1)
            (split_dir / IMAGE_LABELS_FILE).write_text(json.dumps(_label_columns(rows)))
    meta = {"generator": GENERATOR, "version": VERSION, "num_classes": NUM_CLASSES,
            "class_names": list(CLASS_NAMES), **params, "image_labels": image_labels_meta()}  # fmt: skip
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def generate_dataset(
    root: str | Path,
    n_train: int = 2000,
    n_val: int = 500,
    height: int = 64,
    width: int = 80,
    seed: int = 0,
    progress: bool = True,
    style: str | dict | SceneStyle = "default",
) -> Path:
    """Render and save the dataset at ``root`` atomically; a no-op when an identical one is there.

    ``style`` (``data/style.py``: a name or a dict of parameters) is recorded in meta.json with every parameter.
    """
    _validate(n_train, n_val, height, width, seed)
    look = resolve_style(style)
    root = Path(root)
    params = dict(zip(_META_PARAMS, (int(n_train), int(n_val), int(height), int(width), int(seed)), strict=True))
    params["style"] = style_record(look)
    if _check_existing(root, params):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmps(root)
    tmp = root.parent / f"{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _generate_into(tmp, params, progress)
        try:
            os.replace(tmp, root)
        except OSError:
            if not dataset_is_complete(root):  # lost a race to a concurrent writer only if theirs is done
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
