"""NYUD-v2 as the multi-task line of work (ASTMT, MTI-Net, ATRC, InvPT / TaskPrompter, DiffusionMTL) prepared it:
795 training and 654 validation images, 40 semantic classes, depth, surface normals and edges.

Not MTAN's 13-class NYUv2 (``dataset: nyuv2``, npy files at 288×384): this release keeps the full label set and
the images at their stored size. Layout under ``<root>`` (checked against the readers of brdav/atrc
``src/data/nyud.py``, SimonVandenhende/Multi-Task-Learning-PyTorch ``data/nyud.py`` and
prismformore/Multi-Task-Transformer ``TaskPrompter/data/nyud.py``; the two archives differ in file types only):

- ``gt_sets/{train,val}.txt``: one image id per line, in the order the published split files' rows follow.
- ``images/<id>.png`` (InvPT's ``NYUDv2.tar.gz``, the archive DiffusionMTL's README links) or ``images/<id>.jpg``
  (MTI-Net's ``NYUD_MT.tgz``, the one ATRC downloads): RGB, read as float in [0, 1].
- ``segmentation/<id>.png``: 8-bit class map, 0 = unlabelled (ignored, -1 here), 1…40 = the 40 classes (0…39 here;
  "we ignore the background class (40-way classification)", as every reader above does).
- ``depth/<id>.npy``: float depth in metres, [H, W] (or [H, W, 1]); 0 = no measurement (ignored, as the published
  evaluation's ``AddIgnoreRegions`` does).
- ``normals/<id>.png``: RGB, n = 2·v/255 − 1 (InvPT), or ``normals/<id>.npy``: float [H, W, 3] in [−1, 1]
  (MTI-Net / ATRC); a zero vector is invalid (ignored).
- ``edge/<id>.png``: 8-bit, edge = v/255 (InvPT), or ``edge/<id>.npy``: float [H, W] (MTI-Net / ATRC).

Which of the two encodings a folder uses is decided per file by its suffix, so a mixed copy also reads. Every file
a sample needs is checked when the dataset is opened (exists, header readable, shape of the image's), so a missing
or truncated file is named before training. All images of a split must share one size (the loader batches them
as they are, without resizing; 425×560 in MTI-Net's and ATRC's copies).

Published partial-label splits (``<root>/settings/{onelabel,randomlabels}.pth``): the files DiffusionMTL
publishes as ``data/ssl_mapping/nyud_low/`` are MTPSL's NYUv2 files byte for byte (``{'labels_weights':
FloatTensor[795, 3]}``, columns semantic, depth, normal). Row i is applied to the i-th id of ``gt_sets/train.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..tasks import TaskSpec
from .folder import SPLITS, _header
from .pascal import read_png

NYUD_TASKS = ("semantic", "depth", "normal", "edge")
NYUD_CLASSES = 40
# task -> (folder, accepted suffixes in order of preference)
FILES = {"image": ("images", (".png", ".jpg")), "semantic": ("segmentation", (".png",)),
         "depth": ("depth", (".npy",)), "normal": ("normals", (".png", ".npy")), "edge": ("edge", (".png", ".npy"))}
LAYOUT = "<root>/{gt_sets/{train,val}.txt, images, segmentation, depth, normals, edge}"


def _fail(path: Path, what: str, err: Exception | None = None) -> ValueError:
    return ValueError(f"dataset file {path}: {what}" + (f" ({err})" if err else ""))


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset file missing: {path}") from None
    except (OSError, ValueError, EOFError) as e:
        raise _fail(path, "unreadable or truncated .npy", e) from e


class NYUD(Dataset):
    """One split. Items: {'image' [3,H,W] in [0, 1], 'semantic' [H,W] int64 (40 classes, -1 ignore),
    'depth' [1,H,W] (0 = invalid), 'normal' [3,H,W] (0 = invalid), 'edge' [1,H,W], 'index'}."""

    layout = LAYOUT

    def __init__(self, root: str | Path, split: str, tasks: list[TaskSpec], limit: int | None = None,
                 check_files: bool = True) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: allowed {SPLITS}")
        bad = [t.name for t in tasks if t.name not in NYUD_TASKS]
        if bad:
            raise ValueError(f"tasks {bad} are not annotated in NYUD-v2; allowed {list(NYUD_TASKS)}")
        self.root = Path(root)
        self.tasks = list(tasks)
        ids_file = self.root / "gt_sets" / f"{split}.txt"
        if not ids_file.is_file():
            raise FileNotFoundError(f"dataset file missing: {ids_file} (expected the layout {LAYOUT}; see README "
                                    "'Real benchmarks')")
        ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"dataset file {ids_file}: lists no image ids")
        self.ids = ids if limit is None else ids[:limit]
        for kind in ["image"] + [t.name for t in self.tasks]:
            folder = self.root / FILES[kind][0]
            if not folder.is_dir():
                raise FileNotFoundError(f"dataset folder missing: {folder} (expected the layout {LAYOUT})")
        self.image_size: tuple[int, int] | None = None
        if check_files:
            self._check_files()

    def path(self, kind: str, i: int) -> Path:
        """The file of sample i for ``kind`` ("image" or a task), whichever of the accepted encodings is there."""
        folder, suffixes = FILES[kind]
        candidates = [self.root / folder / f"{self.ids[i]}{s}" for s in suffixes]
        return next((p for p in candidates if p.is_file()), candidates[0])

    def _check_files(self) -> None:
        """Every file exists and reads its header, with the image's size; all images share one size."""
        for i in range(len(self.ids)):
            image = self.path("image", i)
            hw = self._image_size(image)
            if self.image_size is None:
                self.image_size = hw
            elif hw != self.image_size:
                raise _fail(image, f"size {hw}, but {self.path('image', 0).name} is {self.image_size}: a split must "
                                   "hold one image size (the loader batches images as stored)")
            for t in self.tasks:
                path = self.path(t.name, i)
                if not path.is_file():
                    raise FileNotFoundError(f"dataset file missing: {path}")
                if path.suffix == ".npy":
                    shape, dtype = _header(path)
                    channels = 3 if t.name == "normal" else 1
                    ok = shape[:2] == hw and (len(shape) == 2 and channels == 1 or shape[2:] == (channels,))
                    if not ok or dtype.kind not in "fiu":
                        raise _fail(path, f"shape {shape} dtype {dtype}, expected {hw} (+ channels) of numbers")
                else:
                    size = self._image_size(path)
                    if size != hw:
                        raise _fail(path, f"size {size}, expected the image's {hw}")

    @staticmethod
    def _image_size(path: Path) -> tuple[int, int]:
        try:
            with Image.open(path) as im:
                im.verify()                               # PNG: chunk CRCs; catches a truncated download
                size = (im.height, im.width)
        except FileNotFoundError:
            raise FileNotFoundError(f"dataset file missing: {path}") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise _fail(path, "unreadable or truncated image", e) from e
        if path.suffix == ".jpg":
            with open(path, "rb") as f:
                f.seek(-2, 2)
                if f.read(2) != b"\xff\xd9":
                    raise _fail(path, "truncated JPEG (no end-of-image marker)")
        return size

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        rgb = read_png(self.path("image", i))
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise _fail(self.path("image", i), f"shape {rgb.shape}, expected an RGB image")
        image = rgb[..., :3].astype(np.float32) / 255.0
        item: dict[str, torch.Tensor | int] = {"index": i,
                                               "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))}
        for t in self.tasks:
            item[t.name] = self._target(t.name, self.path(t.name, i), image.shape[:2])
        return item

    def _target(self, name: str, path: Path, hw: tuple[int, int]) -> torch.Tensor:
        if name == "semantic":
            seg = read_png(path)
            if seg.ndim != 2 or seg.shape != hw:
                raise _fail(path, f"shape {seg.shape}, expected a single-channel {hw} label map")
            labels = seg.astype(np.int64) - 1                                      # 0 (unlabelled) -> -1
            if labels.max(initial=-1) >= NYUD_CLASSES:
                raise _fail(path, f"class {labels.max() + 1} > {NYUD_CLASSES} (0 = unlabelled, 1..40 = classes)")
            return torch.from_numpy(labels)
        if name == "depth":
            depth = _read_npy(path).astype(np.float32)
            return torch.from_numpy(np.ascontiguousarray(depth.reshape(1, *hw)))
        if name == "normal":
            if path.suffix == ".png":
                rgb = read_png(path)
                normal = 2.0 * rgb[..., :3].astype(np.float32) / 255.0 - 1.0
            else:
                normal = _read_npy(path).astype(np.float32)
            return torch.from_numpy(np.ascontiguousarray(normal.transpose(2, 0, 1)))
        edge = read_png(path).astype(np.float32) / 255.0 if path.suffix == ".png" else _read_npy(path)
        edge = edge[..., 0] if edge.ndim == 3 else edge
        return torch.from_numpy(np.ascontiguousarray(edge, np.float32))[None]
