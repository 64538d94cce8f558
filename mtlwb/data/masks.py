"""Partial-annotation settings: which training image is labelled for which task.

A setting is a [N, T] table of {0, 1} (row = image, column = task, in the
order of the experiment's task list). Tables are generated from a seed and
saved next to the dataset in the published MTPSL/JTR format
(``torch.save({'labels_weights': FloatTensor[N, T]})``), so every run of a
setting sees the same labels, and the published files load the same way.

Settings:
- ``full``: every image labelled for every task.
- ``onelabel``: exactly one task per image, balanced (counts differ by <= 1).
- ``randomlabel``: a uniformly random non-empty, not-all subset per image
  (as NYUv2 ``randomlabels``; needs T >= 2).
- ``ratio:<task>=<r>,...``: each listed task labelled on exactly round(r*N)
  images chosen at random, unlisted tasks on all; r in (0, 1].
- a path to a ``.pt``/``.pth`` (``{'labels_weights': ...}``) or ``.npy`` file.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..core.io import atomic_torch_save

NAMED_SETTINGS = ("full", "onelabel", "randomlabel")
MASK_FILE_SUFFIXES = (".pt", ".pth", ".npy")


def parse_ratios(setting: str, task_names: list[str]) -> dict[str, float]:
    """``ratio:depth=1.0,semantic=0.1`` -> {task: ratio}; every task present."""
    body = setting[len("ratio:"):]
    ratios = dict.fromkeys(task_names, 1.0)
    for item in filter(None, body.split(",")):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in task_names:
            raise ValueError(f"label_setting={setting!r}: expected 'ratio:<task>=<r>,...' with tasks "
                             f"from {task_names}; got item {item!r}")
        try:
            r = float(value)
        except ValueError:
            raise ValueError(f"label_setting={setting!r}: ratio for {name!r} is not a number") from None
        if not 0.0 < r <= 1.0:
            raise ValueError(f"label_setting={setting!r}: ratio for {name!r} must be in (0, 1], got {r} "
                             "(a ratio of 0 leaves the task with no labels)")
        ratios[name] = r
    return ratios


def check_setting(setting: str, task_names: list[str]) -> None:
    """Refuse a malformed setting before any work (file contents are checked at load)."""
    if setting in NAMED_SETTINGS:
        if setting == "randomlabel" and len(task_names) < 2:
            raise ValueError("label_setting='randomlabel' needs at least 2 tasks "
                             f"(a non-empty, not-all subset); tasks={task_names}")
        return
    if setting.startswith("ratio:"):
        parse_ratios(setting, task_names)
        return
    if Path(setting).suffix in MASK_FILE_SUFFIXES:
        if not Path(setting).is_file():
            raise ValueError(f"label_setting={setting!r}: mask file does not exist")
        return
    raise ValueError(f"label_setting={setting!r}: allowed {list(NAMED_SETTINGS)}, 'ratio:<task>=<r>,...' "
                     f"or a path to a mask file ({', '.join(MASK_FILE_SUFFIXES)})")


def make_mask(setting: str, n: int, task_names: list[str], seed: int = 0) -> np.ndarray:
    """Generate the [N, T] float32 table of a named or ratio setting."""
    check_setting(setting, task_names)
    t = len(task_names)
    rng = np.random.default_rng(seed)
    if setting == "full":
        return np.ones((n, t), np.float32)
    if setting == "onelabel":
        owner = rng.permutation(np.arange(n) % t)
        return np.eye(t, dtype=np.float32)[owner]
    if setting == "randomlabel":
        subsets = np.arange(1, 2**t - 1)                      # exclude empty and all
        codes = rng.choice(subsets, size=n)
        return ((codes[:, None] >> np.arange(t)) & 1).astype(np.float32)
    ratios = parse_ratios(setting, task_names)
    mask = np.zeros((n, t), np.float32)
    for j, name in enumerate(task_names):
        k = max(1, int(round(ratios[name] * n)))
        mask[rng.permutation(n)[:k], j] = 1.0
    return mask


# what a mask file of each suffix must hold, for the message that refuses one that does not
EXPECTED_FORMAT = {
    ".npy": "a numpy .npy file (numpy.save) of an [N, T] array of 0/1",
    ".pt": "a torch file (torch.save) of {'labels_weights': FloatTensor[N, T]} as MTPSL's and JTR's label "
           "settings, or of an [N, T] tensor",
}
NPY_MAGIC = b"\x93NUMPY"
PICKLE_PROTOCOL_2 = b"\x80"   # first byte of torch's legacy (pre-zip) format and of every pickle since protocol 2


def header_problem(path: Path) -> str | None:
    """What is wrong with the start of a mask file for its suffix's format, or None. A .npy file starts with
    numpy's header; a torch file is a zip archive (torch.save) or a pickle. A text file named ``.pt`` is caught
    here: the unpickler's own error for it (``KeyError: 101``, its first byte) names neither file nor format."""
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if path.suffix == ".npy":
        ok, what = head == NPY_MAGIC, "no numpy .npy header"
    else:
        ok = zipfile.is_zipfile(path) or head.startswith(PICKLE_PROTOCOL_2)
        what = "not a torch file: neither a torch.save zip archive nor a pickle"
    return None if ok else f"{what}; a text file, or a truncated one?"


def read_mask_object(path: str | Path) -> object:
    """The object a mask file holds; ValueError in one line, naming the file and the format its suffix implies."""
    path = Path(path)
    expected = EXPECTED_FORMAT[".npy" if path.suffix == ".npy" else ".pt"]
    try:
        problem = header_problem(path)
        obj = None if problem else np.load(path) if path.suffix == ".npy" else torch.load(
            path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as e:   # unreadable, truncated
        problem = (str(e).strip().split(". ")[0].splitlines() or [type(e).__name__])[0]
    if problem:
        raise ValueError(f"mask file {str(path)!r}: cannot read it ({problem}); expected {expected}")
    return obj


def load_mask_file(path: str | Path, n: int, task_names: list[str]) -> np.ndarray:
    """Read a published mask file and check it against N and T."""
    path = Path(path)
    table = mask_table(read_mask_object(path), str(path))
    check_mask_table(table, n, task_names, str(path))
    check_every_task_labelled(table, task_names, str(path))
    return table


def mask_table(obj: object, origin: str) -> np.ndarray:
    """A loaded mask file, an [N, T] array or MTPSL's ``{'labels_weights': FloatTensor[N, T]}``, as float32."""
    if isinstance(obj, dict):
        if "labels_weights" not in obj:
            raise ValueError(f"mask file {origin!r}: cannot read (expected a dict with key 'labels_weights')")
        obj = obj["labels_weights"]
    if isinstance(obj, torch.Tensor):
        obj = obj.numpy()
    return np.asarray(obj, np.float32)


def check_mask_table(table: np.ndarray, n: int, task_names: list[str], origin: str) -> None:
    """Shape (n, T) and only 0/1 entries, naming the file otherwise."""
    if table.shape != (n, len(task_names)):
        raise ValueError(f"mask file {origin!r}: shape {table.shape}, expected (N, T) = "
                         f"({n}, {len(task_names)}) for tasks {task_names}")
    if not np.isin(table, (0.0, 1.0)).all():
        raise ValueError(f"mask file {origin!r}: entries must be 0 or 1")


def check_every_task_labelled(table: np.ndarray, task_names: list[str], origin: str) -> None:
    empty = [name for j, name in enumerate(task_names) if table[:, j].sum() == 0]
    if empty:
        raise ValueError(f"label_setting={origin!r} leaves tasks {empty} with no labelled image")


def file_sha256(path: str | Path) -> str:
    """The checksum a run record gives for the mask file it used (MTPSL's files are a few MB at most)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mask_cache_path(data_root: str | Path, setting: str, task_names: list[str], seed: int, n: int) -> Path:
    slug = setting if setting in NAMED_SETTINGS else "ratio-" + hashlib.sha1(setting.encode()).hexdigest()[:8]
    return Path(data_root) / "masks" / f"{slug}-{'+'.join(task_names)}-n{n}-seed{seed}.pt"


def label_mask(setting: str, data_root: str | Path, n: int, task_names: list[str], seed: int = 0) -> np.ndarray:
    """The table of a setting for a dataset: loaded from file, or generated once and saved."""
    if Path(setting).suffix in MASK_FILE_SUFFIXES:
        return load_mask_file(setting, n, task_names)
    path = mask_cache_path(data_root, setting, task_names, seed, n)
    if path.exists():
        return load_mask_file(path, n, task_names)
    table = make_mask(setting, n, task_names, seed)
    check_every_task_labelled(table, task_names, setting)
    atomic_torch_save(path, {"labels_weights": torch.from_numpy(table)})
    return table
