"""Rendering styles of the procedural scenes: the same rooms, seen through another 'dataset's' look.

A second training source needs a *domain gap* to make the question of combining sources meaningful (NYUv2's
extra frames come from other rooms, other sensors, other light). A style changes how a sampled scene looks —
material palette (hue, saturation), texture contrast and frequency, lighting, white balance, tone curve, sensor
noise — and, optionally, the camera's field of view. It is applied to the scene *after* everything is drawn from
the seed, as fixed functions of the drawn values, and never draws random numbers itself: a seed gives the same
room, objects, camera pose and noise pattern in every style, so the geometry-derived labels (semantic, depth,
normal, edge) are identical across styles unless ``focal_rel`` changes the camera.

``style="default"`` is the identity and is not applied at all, so the default output is bit-identical to the
renderer without styles. A style is a name from ``STYLES`` or a dict of ``SceneStyle`` fields (unset fields keep
the default), e.g. ``{"hue_shift": 0.25, "noise": 2.0}``.
"""

from __future__ import annotations

import colorsys
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_FOCAL_REL = 0.81    # fx / width of the default camera (scenes.FOCAL_REL)

# column layout of a scene's packed material rows (scenes._materials)
_FREQ = 1                   # checker cycles per metre
_STRIPE_WAVE = slice(2, 4)  # stripe wave vector
_COLOUR_A = slice(5, 8)     # base colour (RGB)
_COLOUR_D = slice(8, 11)    # pattern colour − base colour
_NOISE_WAVES = slice(11, 17)


@dataclass(frozen=True)
class SceneStyle:
    """Factors and shifts on the drawn appearance; every default is the identity."""

    name: str = "default"
    hue_shift: float = 0.0          # rotation of every material's hue, in turns (0.5 = complementary colours)
    saturation: float = 1.0         # factor on every material's saturation (clipped to [0, 1])
    contrast: float = 1.0           # factor on the texture amplitude (pattern colour − base colour)
    texture_scale: float = 1.0      # factor on texture frequencies (finer or coarser patterns)
    light: float = 1.0              # factor on the point light's power
    ambient: float = 1.0            # factor on the ambient light
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)   # sensor white balance, per RGB channel
    gamma: float = 1.0              # factor on the tone curve's exponent
    noise: float = 1.0              # factor on the sensor noise's standard deviation
    focal_rel: float = DEFAULT_FOCAL_REL   # fx / width: another field of view (changes every label map)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tint", tuple(float(v) for v in self.tint))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"style name={self.name!r}: must be a non-empty string")
        if len(self.tint) != 3 or not all(v > 0 for v in self.tint):
            raise ValueError(f"style tint={self.tint!r}: must be three numbers > 0 (R, G, B factors)")
        for f in ("saturation", "contrast", "texture_scale", "light", "ambient", "gamma", "focal_rel"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"style {f}={v!r}: must be a number > 0")
        v = self.noise
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"style noise={v!r}: must be a number >= 0")
        if isinstance(self.hue_shift, bool) or not isinstance(self.hue_shift, (int, float)):
            raise ValueError(f"style hue_shift={self.hue_shift!r}: must be a number (turns)")

    @property
    def is_default(self) -> bool:
        return dataclasses.replace(self, name="default") == SceneStyle()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tint"] = list(self.tint)
        return d


DEFAULT_STYLE = SceneStyle()
# "B": another palette (complementary hues, paler), harsher textures, dimmer and warmer light, a noisier sensor;
# the same camera, so its labels are those of the default style for the same seed
STYLES: dict[str, SceneStyle] = {
    "default": DEFAULT_STYLE,
    "B": SceneStyle(name="B", hue_shift=0.5, saturation=0.55, contrast=1.6, texture_scale=1.8, light=0.55,
                    ambient=0.7, tint=(1.12, 1.0, 0.82), gamma=1.25, noise=3.0),
}
FIELDS = tuple(f.name for f in dataclasses.fields(SceneStyle))


def resolve_style(style: str | dict | SceneStyle | None) -> SceneStyle:
    """A style name, a dict of ``SceneStyle`` fields, or a style -> the style; refuses unknown names and keys."""
    if style is None:
        return DEFAULT_STYLE
    if isinstance(style, SceneStyle):
        return style
    if isinstance(style, str):
        if style not in STYLES:
            raise ValueError(f"style={style!r}: allowed {list(STYLES)} or a dict of {list(FIELDS)}")
        return STYLES[style]
    if isinstance(style, dict):
        unknown = sorted(set(style) - set(FIELDS))
        if unknown:
            raise ValueError(f"style: unknown keys {unknown}; allowed {list(FIELDS)}")
        return SceneStyle(**{"name": "custom", **style})
    raise ValueError(f"style={style!r}: give a name from {list(STYLES)} or a dict of {list(FIELDS)}")


def style_record(style: SceneStyle) -> dict[str, Any]:
    """What meta.json says of the style: every parameter, so two roots can be compared without the code."""
    return style.to_dict()


def _recolour(rgb: np.ndarray, style: SceneStyle) -> np.ndarray:
    """[K, 3] RGB -> hue rotated and saturation scaled (value kept)."""
    out = np.empty_like(rgb)
    for i, (r, g, b) in enumerate(np.clip(rgb, 0.0, 1.0).astype(np.float64)):
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        out[i] = colorsys.hsv_to_rgb((h + style.hue_shift) % 1.0, min(1.0, s * style.saturation), v)
    return out


def restyle_scene(scene: Any, style: SceneStyle) -> Any:
    """The scene (a ``scenes._Scene``) with the style's appearance; the same object for the default style.

    Only appearance fields change (materials, light, white balance, tone curve, noise level); geometry, pose and
    the random stream are untouched, so labels stay the same (``focal_rel`` acts on the camera, in rendering).
    """
    if style.is_default:
        return scene
    mat = scene.mat.copy()
    colour_a = mat[:, _COLOUR_A]
    colour_b = colour_a + mat[:, _COLOUR_D]
    new_a, new_b = _recolour(colour_a, style), _recolour(colour_b, style)
    mat[:, _COLOUR_A] = new_a
    mat[:, _COLOUR_D] = (new_b - new_a) * style.contrast
    for cols in (_FREQ, _STRIPE_WAVE, _NOISE_WAVES):
        mat[:, cols] *= style.texture_scale
    return dataclasses.replace(
        scene, mat=mat.astype(np.float32), light_power=scene.light_power * style.light,
        ambient=scene.ambient * style.ambient, gain=(scene.gain * np.asarray(style.tint)).astype(np.float32),
        gamma=scene.gamma * style.gamma, noise_sigma=scene.noise_sigma * style.noise)
