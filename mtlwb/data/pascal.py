"""PASCAL-Context multi-task (the PASCAL_MT release of ASTMT, used by MTI-Net, ATRC, MTPSL).

Layout under ``<root>`` (as unpacked from PASCAL_MT.tgz; checked against the
Multi-Task-Learning-PyTorch loader):

- ``ImageSets/Context/{train,val}.txt``: one image id per line (4998 / 5105).
- ``JPEGImages/<id>.jpg``: the RGB image (sizes vary, about 500x375).
- ``semseg/VOC12/<id>.png`` if present, else ``semseg/pascal-context/<id>.png``:
  21 classes (0 = background, 1..20 = the VOC objects), 255 = ignore.
- ``human_parts/<id>.mat``: the PASCAL-Part ``anno`` struct; persons (VOC class
  15) with part masks give 7 classes (0 background + 6 part groups). An
  image with no annotated person is all ignore (-1): it says nothing about parts.
  ``ImageSets/Parts/<split>.txt`` (JSON: id -> VOC classes present), when
  there, spares opening the .mat of images without a person.
- ``sal_distill/<id>.png``: distilled saliency, 0..255, thresholded at 0.5 -> {0, 1}.
- ``normals_distill/<id>.png``: distilled normals, RGB 0..255 -> 2x/255 - 1 in
  [-1, 1]; kept only on pixels whose PASCAL-Context class (``LabelMap``) also
  exists in NYUD (the classes a NYUD-trained teacher can be trusted on), else 0
  (invalid), as the reference loader does.
- ``pascal-context/trainval/<id>.mat`` (``LabelMap``): the edge ground truth is
  the set of pixels where the 4-neighbour Laplacian of LabelMap is non-zero,
  thinned to one pixel. Thinning here is Zhang-Suen, the reference uses
  skimage's ``thin``; boundaries can differ by a pixel (the edge metric is an
  approximation anyway, see metrics.EdgeMeter).

Every sample is resized to a fixed ``size`` (512x512 in the papers): the
image bilinear, every label nearest, so ignore values stay ignore. Images
are float in [0, 1] like the MTAN npy datasets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..tasks import TaskSpec
from .folder import SPLITS

PASCAL_TASKS = ("semantic", "parts", "saliency", "normal", "edge")
PASCAL_SEMANTIC_CLASSES = 21
PASCAL_PART_CLASSES = 7
DEFAULT_SIZE = (512, 512)
PERSON = 15  # VOC class index of "person" in the PASCAL-Part annotation

# PASCAL-Part person parts -> the 6 groups of the multi-task benchmark (0 = background).
PART_GROUPS = {
    1: ("hair", "head", "lear", "rear", "lebrow", "rebrow", "leye", "reye", "mouth", "nose"),
    2: ("neck", "torso"),
    3: ("luarm", "ruarm"),
    4: ("llarm", "rlarm", "lhand", "rhand"),
    5: ("luleg", "ruleg"),
    6: ("llleg", "rlleg", "lfoot", "rfoot"),
}
PART_ID = {name: group for group, names in PART_GROUPS.items() for name in names}

# PASCAL-Context class ids (1..459, LabelMap values) whose name is also a NYUD class, plus tvmonitor;
# derived from the name lists the reference loader intersects (context_classes.json, nyu_classes.json).
NORMAL_VALID_CLASSES = np.array([
    3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43, 46, 49, 50, 51, 53, 55,
    56, 59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88, 95, 96, 101, 104, 105, 107, 111, 113, 115, 122,
    124, 135, 141, 142, 143, 146, 150, 154, 157, 158, 159, 165, 172, 174, 181, 183, 184, 191, 193, 195, 197, 199,
    202, 213, 215, 216, 219, 220, 223, 225, 228, 230, 232, 233, 238, 239, 242, 243, 246, 250, 251, 252, 255, 260,
    261, 263, 269, 272, 273, 275, 281, 283, 284, 285, 286, 287, 288, 290, 291, 292, 293, 295, 304, 307, 309, 310,
    314, 315, 319, 323, 329, 330, 331, 336, 342, 345, 349, 350, 351, 352, 355, 357, 368, 370, 371, 374, 379, 380,
    383, 384, 397, 401, 403, 405, 407, 408, 411, 412, 413, 414, 417, 419, 421, 423, 427, 429, 430, 432, 440, 441,
    442, 443, 444, 446, 454, 457])


# --- per-file readers (each names its file when it fails) --------------------

def _fail(path: Path, what: str, err: Exception | None = None) -> ValueError:
    extra = f" ({err})" if err else ""
    return ValueError(f"dataset file {path}: {what}{extra}")


def read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset file missing: {path}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise _fail(path, "unreadable or truncated image", e) from e


def read_mat(path: Path, key: str) -> np.ndarray:
    import scipy.io  # lazy: only PASCAL needs it, and every notebook kernel would pay for it

    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset file missing: {path}") from None
    except Exception as e:  # scipy raises many types (MatReadError, IndexError, ...) on a corrupt file
        raise _fail(path, "unreadable or truncated .mat", e) from e
    if key not in mat:
        raise _fail(path, f"no variable {key!r} (has {sorted(k for k in mat if not k.startswith('__'))})")
    return mat[key]


def edges_from_labelmap(labels: np.ndarray) -> np.ndarray:
    """[H, W] class map -> [H, W] float32 {0, 1}: thinned pixels where the 4-neighbour Laplacian is non-zero."""
    x = np.pad(labels.astype(np.float64), 1, mode="reflect")        # = OpenCV's default border (reflect-101)
    lap = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4.0 * x[1:-1, 1:-1]
    return zhang_suen_thin(lap != 0).astype(np.float32)


def zhang_suen_thin(mask: np.ndarray) -> np.ndarray:
    """Zhang & Suen (1984) thinning of a boolean [H, W] mask to one-pixel-wide curves."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            c = img[1:-1, 1:-1]
            # neighbours clockwise from north: P2 N, P3 NE, P4 E, P5 SE, P6 S, P7 SW, P8 W, P9 NW
            p = [img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:],
                 img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]]
            b = sum(q.astype(np.int32) for q in p)
            a = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.int32) for i in range(8))
            p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
            if step == 0:
                side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                side = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            delete = (c == 1) & (b >= 2) & (b <= 6) & (a == 1) & side
            if delete.any():
                c[delete] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def human_parts_from_anno(anno: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """PASCAL-Part ``anno`` struct -> [H, W] int64 in 0..6, or all -1 when no person has parts."""
    objects = anno[0][0][1]
    target = None
    if objects.size:
        for obj in objects[0]:
            parts = obj[3]
            if int(np.asarray(obj[1]).ravel()[0]) != PERSON or parts.size == 0:
                continue
            if target is None:
                target = np.zeros(np.asarray(obj[2]).shape, np.int64)
            for part in parts[0]:
                name = str(np.asarray(part[0]).ravel()[0])
                if name not in PART_ID:
                    raise ValueError(f"unknown human part {name!r}; known {sorted(PART_ID)}")
                target[np.asarray(part[1]).astype(bool)] = PART_ID[name]
    return target if target is not None else np.full(shape, -1, np.int64)


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W] or [H, W, C] nearest resize (labels: never blends ignore into valid values)."""
    if arr.shape[:2] == tuple(size):
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr)).float()
    t = t[None, None] if arr.ndim == 2 else t.permute(2, 0, 1)[None]
    t = F.interpolate(t, size=size, mode="nearest")[0]
    out = t[0] if arr.ndim == 2 else t.permute(1, 2, 0)
    return out.numpy().astype(arr.dtype)


class PascalContext(Dataset):
    """One split. Items: {'image' [3,S,S], 'semantic' [S,S] (21 cl.), 'parts' [S,S] (7 cl.),
    'saliency' [S,S] (2 cl.), 'normal' [3,S,S], 'edge' [1,S,S], 'index'}; -1 = ignore."""

    def __init__(self, root: str | Path, split: str, tasks: list[TaskSpec], limit: int | None = None,
                 size: tuple[int, int] = DEFAULT_SIZE, check_files: bool = True) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: allowed {SPLITS}")
        bad = [t.name for t in tasks if t.name not in PASCAL_TASKS]
        if bad:
            raise ValueError(f"tasks {bad} are not annotated in PASCAL-Context; allowed {list(PASCAL_TASKS)}")
        self.root = Path(root)
        self.tasks = list(tasks)
        self.size = tuple(size)
        ids_file = self.root / "ImageSets" / "Context" / f"{split}.txt"
        if not ids_file.is_file():
            raise FileNotFoundError(f"dataset file missing: {ids_file} (expected the PASCAL_MT layout "
                                    "<root>/{JPEGImages,ImageSets/Context,semseg,...}; see README 'Real benchmarks')")
        ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"dataset file {ids_file}: lists no image ids")
        self.ids = ids if limit is None else ids[:limit]
        self.person_ids = self._person_ids(split)
        names = {t.name for t in self.tasks}
        for folder in ["JPEGImages"] + [self._folder(n) for n in sorted(names)]:
            if folder and not (self.root / folder).is_dir():
                raise FileNotFoundError(f"dataset folder missing: {self.root / folder}")
        if check_files:
            self._check_files()

    # --- paths ---------------------------------------------------------------
    def _folder(self, task: str) -> str:
        return {"semantic": "semseg", "parts": "human_parts", "saliency": "sal_distill",
                "normal": "normals_distill", "edge": "pascal-context/trainval"}.get(task, "")

    def _image_path(self, i: int) -> Path:
        return self.root / "JPEGImages" / f"{self.ids[i]}.jpg"

    def _semseg_path(self, i: int) -> Path:
        voc = self.root / "semseg" / "VOC12" / f"{self.ids[i]}.png"
        return voc if voc.is_file() else self.root / "semseg" / "pascal-context" / f"{self.ids[i]}.png"

    def _paths(self, i: int) -> dict[str, Path]:
        """Every file sample i needs, keyed by what it is."""
        sid = self.ids[i]
        paths = {"image": self._image_path(i)}
        names = {t.name for t in self.tasks}
        if "semantic" in names:
            paths["semantic"] = self._semseg_path(i)
        if "parts" in names:
            paths["parts"] = self.root / "human_parts" / f"{sid}.mat"
        if "saliency" in names:
            paths["saliency"] = self.root / "sal_distill" / f"{sid}.png"
        if "normal" in names:
            paths["normal"] = self.root / "normals_distill" / f"{sid}.png"
        if names & {"normal", "edge"}:
            paths["labelmap"] = self.root / "pascal-context" / "trainval" / f"{sid}.mat"
        return paths

    def _person_ids(self, split: str) -> set[str] | None:
        """Ids with a person, from the optional ImageSets/Parts/<split>.txt cache (JSON id -> VOC classes)."""
        path = self.root / "ImageSets" / "Parts" / f"{split}.txt"
        if not any(t.name == "parts" for t in self.tasks) or not path.is_file():
            return None
        try:
            table = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise _fail(path, "expected JSON {image id: [VOC class ids]}", e) from e
        return {k for k, v in table.items() if PERSON in v}

    def _check_files(self) -> None:
        """Every file exists and its header / structure reads, before any training."""
        for i in range(len(self.ids)):
            for kind, path in self._paths(i).items():
                if not path.is_file():
                    raise FileNotFoundError(f"dataset file missing: {path}")
                if path.suffix == ".mat":
                    key = "anno" if kind == "parts" else "LabelMap"
                    import scipy.io

                    try:
                        found = [v[0] for v in scipy.io.whosmat(path)]
                    except Exception as e:  # scipy: MatReadError, IndexError, ... on a corrupt file
                        raise _fail(path, "unreadable or truncated .mat", e) from e
                    if key not in found:
                        raise _fail(path, f"no variable {key!r} (has {found})")
                    continue
                try:
                    with Image.open(path) as im:
                        im.verify()                      # PNG: chunk CRCs to IEND; catches truncation
                except (OSError, SyntaxError, ValueError) as e:
                    raise _fail(path, "unreadable or truncated image", e) from e
                if path.suffix == ".jpg":
                    with open(path, "rb") as f:
                        f.seek(-2, 2)
                        if f.read(2) != b"\xff\xd9":
                            raise _fail(path, "truncated JPEG (no end-of-image marker)")

    # --- items ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        paths = self._paths(i)
        try:
            with Image.open(paths["image"]) as im:
                rgb = im.convert("RGB")
                hw = (rgb.height, rgb.width)
                rgb = rgb.resize(self.size[::-1], Image.BILINEAR)
        except (OSError, SyntaxError, ValueError) as e:
            raise _fail(paths["image"], "unreadable or truncated image", e) from e
        image = np.asarray(rgb, np.float32) / 255.0                                      # [S, S, 3]
        item: dict[str, torch.Tensor | int] = {
            "index": i, "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))}
        labelmap = None
        if "labelmap" in paths:
            labelmap = read_mat(paths["labelmap"], "LabelMap")
            if labelmap.shape != hw:
                raise _fail(paths["labelmap"], f"LabelMap shape {labelmap.shape}, expected the image's {hw}")
        for t in self.tasks:
            item[t.name] = self._target(t.name, paths, hw, labelmap)
        return item

    def _target(self, name: str, paths: dict[str, Path], hw: tuple[int, int],
                labelmap: np.ndarray | None) -> torch.Tensor:
        if name == "semantic":
            seg = read_png(paths["semantic"]).astype(np.int64)
            if seg.ndim != 2:
                raise _fail(paths["semantic"], f"shape {seg.shape}, expected a single-channel [H, W] label map")
            seg[seg == 255] = -1
            if seg.max(initial=-1) >= PASCAL_SEMANTIC_CLASSES:
                raise _fail(paths["semantic"], f"class {seg.max()} >= {PASCAL_SEMANTIC_CLASSES} (255 = ignore)")
            return torch.from_numpy(_resize(_fit(seg, hw), self.size))
        if name == "parts":
            sid = paths["parts"].stem
            if self.person_ids is not None and sid not in self.person_ids:
                parts = np.full(hw, -1, np.int64)
            else:
                try:
                    parts = human_parts_from_anno(read_mat(paths["parts"], "anno"), hw)
                except (IndexError, TypeError, ValueError) as e:
                    raise _fail(paths["parts"], "not a PASCAL-Part 'anno' struct", e) from e
            return torch.from_numpy(_resize(_fit(parts, hw), self.size))
        if name == "saliency":
            sal = read_png(paths["saliency"]).astype(np.float32)
            sal = sal[..., 0] if sal.ndim == 3 else sal
            return torch.from_numpy(_resize(_fit((sal / 255.0 > 0.5).astype(np.int64), hw), self.size))
        if name == "normal":
            rgb = read_png(paths["normal"]).astype(np.float32)
            if rgb.ndim != 3 or rgb.shape[2] < 3:
                raise _fail(paths["normal"], f"shape {rgb.shape}, expected an RGB [H, W, 3] image")
            normal = _fit(2.0 * rgb[..., :3] / 255.0 - 1.0, hw)
            normal = normal * np.isin(labelmap, NORMAL_VALID_CLASSES)[..., None]
            return torch.from_numpy(np.ascontiguousarray(_resize(normal, self.size).transpose(2, 0, 1)))
        edge = edges_from_labelmap(labelmap)
        return torch.from_numpy(_resize(edge, self.size))[None]


def _fit(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Labels stored at another size than their image are resized (nearest) to it, as the reference does."""
    return _resize(arr, hw)
