"""Rendering styles: the default is today's renderer bit for bit; another style changes the look, not the labels."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mtlwb.data import generate as gen
from mtlwb.data.scenes import FOCAL_REL, KEYS, render_scene
from mtlwb.data.style import DEFAULT_FOCAL_REL, STYLES, SceneStyle, resolve_style

# sha256 over KEYS of render_scene(7, 32, 40), computed with the renderer before styles existed
BEFORE_STYLES = "bb44194e8bd006d2e7dc35b0e22a59621fbaf3a7e51063137bba874ab8d3b1ad"


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in KEYS:
        h.update(arrays[k].tobytes())
    return h.hexdigest()


def test_default_style_output_is_unchanged() -> None:
    assert DEFAULT_FOCAL_REL == FOCAL_REL
    assert _digest(render_scene(7, 32, 40)) == BEFORE_STYLES
    assert _digest(render_scene(7, 32, 40, style="default")) == BEFORE_STYLES
    assert _digest(render_scene(7, 32, 40, style={})) == BEFORE_STYLES        # a dict of no changes is the default


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_style_changes_the_image_not_the_labels(seed: int) -> None:
    a, b = render_scene(seed), render_scene(seed, style="B")
    for key in ("label", "depth", "normal", "edge"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], b["image"])
    assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0


def test_style_b_has_other_colour_statistics() -> None:
    """The domain gap is measurable: over 20 scenes, mean colour and contrast differ well beyond scene variation."""
    a = np.stack([render_scene(s)["image"] for s in range(20)])
    b = np.stack([render_scene(s, style="B")["image"] for s in range(20)])
    mean_a, mean_b = a.mean(axis=(1, 2)), b.mean(axis=(1, 2))       # [20, 3] per-scene mean colour
    sd = mean_a.std(axis=0)
    assert (np.abs(mean_a.mean(0) - mean_b.mean(0)) > sd).any()
    assert abs(a.std(axis=(1, 2, 3)).mean() - b.std(axis=(1, 2, 3)).mean()) > 0.02


def test_field_of_view_changes_the_geometry() -> None:
    wide = render_scene(3, style={"focal_rel": 0.6})
    assert not np.array_equal(wide["depth"], render_scene(3)["depth"])


@pytest.mark.parametrize(("style", "name"), [("C", "style='C'"), ({"hue": 1}, "unknown keys"),
                                             ({"noise": -1}, "noise"), ({"tint": (1, 0, 1)}, "tint"),
                                             ({"light": 0}, "light"), (3, "give a name")])
def test_bad_styles_are_named(style, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        resolve_style(style)


def test_generate_records_the_style_and_refuses_another(tmp_path) -> None:
    root = gen.generate_dataset(tmp_path / "b", n_train=2, n_val=1, height=16, width=16, seed=1, progress=False,
                                style="B")
    meta = json.loads((root / "meta.json").read_text())
    assert SceneStyle(**meta["style"]) == STYLES["B"]
    np.testing.assert_array_equal(np.load(root / "train" / "image" / "0.npy"),
                                  render_scene(gen.scene_seed(1, "train", 0), 16, 16, style="B")["image"])
    gen.generate_dataset(root, n_train=2, n_val=1, height=16, width=16, seed=1, progress=False, style="B")  # no-op
    with pytest.raises(ValueError, match="style"):
        gen.generate_dataset(root, n_train=2, n_val=1, height=16, width=16, seed=1, progress=False)


def test_a_root_written_before_styles_is_default_style(tmp_path) -> None:
    root = gen.generate_dataset(tmp_path / "a", n_train=2, n_val=1, height=16, width=16, progress=False)
    meta = json.loads((root / "meta.json").read_text())
    del meta["style"]
    (root / "meta.json").write_text(json.dumps(meta))
    assert gen.generate_dataset(root, n_train=2, n_val=1, height=16, width=16, progress=False) == root
    with pytest.raises(ValueError, match="style"):
        gen.generate_dataset(root, n_train=2, n_val=1, height=16, width=16, progress=False, style="B")
