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
import re
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..core.io import atomic_write_json
from ..tasks import IMAGE_LEVEL_TASKS
from .scenes import (
    CAMERA_VIEW_EDGES,
    CAMERA_VIEW_NAMES,
    CLASS_NAMES,
    IMAGE_LABEL_NAMES,
    KEYS,
    NUM_CLASSES,
    OBJECT_CLASS_NAMES,
    camera_view,
    render_scene_with_labels,
    scene_image_labels,
)
from .style import DEFAULT_STYLE, SceneStyle, resolve_style, style_record

SPLITS = ("train", "val")
GENERATOR = "mtlwb.scenes"
VERSION = 1                 # of the dense layout; the image-level labels have their own ("image_labels" in meta)
IMAGE_LABELS_FILE = "image_labels.json"
# 1: dominant_class, num_objects, num_objects_placed, camera_height, camera_pitch; 2: + camera_view
IMAGE_LABELS_VERSION = 2
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
    """What ``meta.json`` says about the image-level labels (their names, version, class names and the pitch
    edges of camera_view)."""
    return {"version": IMAGE_LABELS_VERSION, "file": f"{{train,val}}/{IMAGE_LABELS_FILE}",
            "names": list(IMAGE_LABEL_NAMES), "dominant_class_names": list(OBJECT_CLASS_NAMES),
            "camera_view_names": list(CAMERA_VIEW_NAMES), "camera_view_pitch_edges": list(CAMERA_VIEW_EDGES)}


def _labels_version(meta: dict | None) -> int:
    """Version of the image-level labels a meta.json announces; 0 = none (generated before they existed)."""
    info = meta.get("image_labels") if isinstance(meta, dict) else None
    version = info.get("version", 1) if isinstance(info, dict) else 0
    return version if isinstance(version, int) else 0


def has_image_labels(root: str | Path) -> bool:
    """True when meta.json announces the current image-level labels (it is written after their files) and every
    split has them; False for a copy without them or with an older version's (``missing_image_labels``)."""
    root = Path(root)
    return (_labels_version(_read_meta(root)) >= IMAGE_LABELS_VERSION
            and all((root / split / IMAGE_LABELS_FILE).is_file() for split in SPLITS))


def missing_image_labels(root: str | Path) -> list[str]:
    """The image-level labels (``IMAGE_LABEL_NAMES``) that the copy at ``root`` lacks: all of them before they
    existed, the newer ones for an older version's copy, none for a current one."""
    if has_image_labels(root):
        return []
    info = (_read_meta(Path(root)) or {}).get("image_labels")
    names = info.get("names") if isinstance(info, dict) else None
    have = set(names) if isinstance(names, list) else set()
    return [n for n in IMAGE_LABEL_NAMES if n not in have]


def _label_columns(rows: list[dict[str, float]]) -> dict[str, list]:
    return {name: [r[name] for r in rows] for name in IMAGE_LABEL_NAMES}


def derive_image_labels(table: dict[str, list]) -> dict[str, list]:
    """An older version's label table with the labels that are functions of its stored ones added, without
    rendering: camera_view from camera_pitch (``scenes.camera_view`` on the very float the generator used, read
    back exactly from JSON, so the values are those a generator writes). Labels it cannot derive stay absent."""
    table = dict(table)
    if "camera_view" not in table and isinstance(table.get("camera_pitch"), list):
        table["camera_view"] = [camera_view(p) for p in table["camera_pitch"]]
    return table


def _derived_columns(path: Path, n: int) -> dict[str, list] | None:
    """``derive_image_labels`` of a split's label file, columns in ``IMAGE_LABEL_NAMES`` order; None when the file
    cannot be read or still lacks a label (or a value): then everything is recomputed from the seeds."""
    try:
        table = derive_image_labels(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if any(not isinstance(table.get(k), list) or len(table[k]) != n for k in IMAGE_LABEL_NAMES):
        return None
    return {k: table[k] for k in IMAGE_LABEL_NAMES}


def add_image_labels(root: str | Path, progress: bool = True) -> Path:
    """Bring a complete dataset's image-level labels up to date in place (``missing_image_labels``).

    A copy generated before they existed (no "image_labels" in meta) gets them recomputed from each scene's seed
    (geometry and primary rays only); an older version's copy gets the new labels derived from its stored ones
    (camera_view from camera_pitch; exactly the values the generator writes). The dense files are read and
    written by nobody, each split's ``image_labels.json`` is written atomically, and ``meta.json`` is rewritten
    atomically last, so a reader sees either the old labels or all of the new ones.
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
    tables = {split: _derived_columns(root / split / IMAGE_LABELS_FILE, meta[f"n_{split}"])
              if _labels_version(meta) else None for split in SPLITS}
    total = sum(meta[f"n_{split}"] for split in SPLITS if tables[split] is None)
    style = SceneStyle(**meta.get("style", style_record(DEFAULT_STYLE)))
    with tqdm(total=total, desc="image-level labels", disable=not progress or not total) as bar:
        for split in SPLITS:
            if tables[split] is None:
                rows = []
                for i in range(meta[f"n_{split}"]):
                    rows.append(scene_image_labels(scene_seed(meta["seed"], split, i), meta["height"],
                                                   meta["width"], style))
                    bar.update(1)
                tables[split] = _label_columns(rows)
            atomic_write_json(root / split / IMAGE_LABELS_FILE, tables[split])
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


DEFAULT_SCENES = {"n_train": 2000, "n_val": 500, "height": 64, "width": 80}
_SIZE_IN_NAME = re.compile(r"scenes-(\d+)x(\d+)$")


def scene_size_from_root(root: str | Path) -> dict[str, int]:
    """``{"height": H, "width": W}`` from a root named ``scenes-<H>x<W>`` (e.g. data/scenes-32x40), else {}.

    Why: a sweep or notebook that names ``data_root: data/scenes-32x40`` should get 32x40 scenes generated on a
    fresh clone, not the 64x80 default under a misleading name.
    """
    m = _SIZE_IN_NAME.search(Path(root).name)
    return {"height": int(m.group(1)), "width": int(m.group(2))} if m else {}


def ensure_dataset(root: str | Path = "data/scenes-64x80", tasks: Sequence[str] = (), image_labels: bool = False,
                   progress: bool = True, **kwargs) -> Path:
    """Generate the built-in scenes at ``root`` unless a complete copy is already there.

    A copy generated before image-level labels existed, or before some of them did (an older labels version in
    meta.json, e.g. without camera_view), is extended in place (``add_image_labels``: atomic, the dense files
    untouched) when ``image_labels`` is set or ``tasks`` names an image-level task, and says which labels it adds.
    A root named ``scenes-<H>x<W>`` is generated at that size unless ``height``/``width`` are given.
    """
    root = Path(root)
    if not dataset_is_complete(root):
        given = {k: v for k, v in kwargs.items() if not (k in ("height", "width") and v is None)}
        return generate_dataset(root, progress=progress, **{**DEFAULT_SCENES, **scene_size_from_root(root), **given})
    wanted = image_labels or any(t in IMAGE_LEVEL_TASKS for t in tasks)
    if wanted and not has_image_labels(root):
        print(f"{root}: adding the image-level labels {missing_image_labels(root)} in place (the dense files stay "
              "as they are)")
        add_image_labels(root, progress=progress)
    return root
