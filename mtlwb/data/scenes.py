"""Procedural indoor scenes rendered by vectorized ray casting.

Real NYUv2 cannot be downloaded here, so this module stands in for it: every
scene is a closed room (floor, four walls, ceiling) with furniture-like boxes,
spheres, cylinders and wall pictures, seen from a random camera pose. All five
targets (image, semantic label, depth, surface normal, edge) come from the same
ray hits, so they are consistent by construction.

Conventions (chosen to resemble the preprocessed NYUv2 release):

* camera frame is OpenCV's: x right, y down, z forward;
* ``depth`` is metric **z-depth** (distance along the optical axis), 0 = invalid;
* ``normal`` is a unit vector in the camera frame that faces the camera
  (``n . ray < 0``), all-zero = invalid; a floor seen by a level camera is ~(0, -1, 0);
* ``label`` is the class index as float32, ``-1`` = ignore (pixels with no hit);
* ``edge`` is 1 where the instance id differs from a 4-neighbour (on both sides),
  which covers every semantic boundary plus boundaries between objects of one class.

Pictures are texture-only: they share the wall's depth and normal, so their
segmentation must be learned from appearance. Class colours and patterns come from
class-typical ranges so that segmentation is learnable from the image.

Scene content depends only on the seed; intrinsics scale with the image size
(fx = fy = ``FOCAL_REL * width``), so a seed shows the same view at any resolution
with the same aspect ratio. Only the sensor noise depends on the resolution.
"""

from __future__ import annotations

import colorsys
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .style import SceneStyle, resolve_style, restyle_scene

CLASS_NAMES: tuple[str, ...] = ("floor", "wall", "ceiling", "furniture", "sphere", "cylinder", "picture")
NUM_CLASSES: int = len(CLASS_NAMES)
FLOOR, WALL, CEILING, FURNITURE, SPHERE, CYLINDER, PICTURE = range(NUM_CLASSES)
IGNORE_LABEL = -1
FOCAL_REL = 0.81  # fx / width, like NYUv2's Kinect (518.8 px at 640 px wide)
KEYS = ("image", "label", "depth", "normal", "edge")
OBJECT_CLASSES = (FURNITURE, SPHERE, CYLINDER, PICTURE)        # the classes of dominant_class, in this order
OBJECT_CLASS_NAMES = tuple(CLASS_NAMES[c] for c in OBJECT_CLASSES)
# camera_view is derived from camera_pitch and last, so that a file extended with it (generate.add_image_labels)
# has the columns of a generated one in the same order
IMAGE_LABEL_NAMES = ("dominant_class", "num_objects", "num_objects_placed", "camera_height", "camera_pitch",
                     "camera_view")
# the camera pitch is drawn uniform in this range (radians above the horizon: −22.9° to 6.9°, mostly looking down)
CAMERA_PITCH_RANGE = (-0.4, 0.12)
CAMERA_VIEW_NAMES = ("down", "tilted", "level")
# camera_view cuts the pitch (degrees) at the terciles of that uniform draw, −13.0° and −3.1°: the three classes are
# equally likely by construction (a balanced classification task, unlike dominant_class, ~75 % furniture)
CAMERA_VIEW_EDGES = tuple(math.degrees(CAMERA_PITCH_RANGE[0] + (CAMERA_PITCH_RANGE[1] - CAMERA_PITCH_RANGE[0]) * k / 3)
                          for k in (1, 2))

_EPS = 1e-4
_STRIPES, _CHECKER, _NOISE = 0, 1, 2
# instance ids of the room surfaces; objects follow from _N_ROOM on
_ROOM_FLOOR, _ROOM_CEIL, _WALL_X0, _WALL_X1, _WALL_Z0, _WALL_Z1 = range(6)
_N_ROOM = 6
_KIND_ROOM, _KIND_BOX, _KIND_SPHERE, _KIND_CYL, _KIND_PIC = range(5)


@dataclass(frozen=True)
class _Material:
    """Class-typical appearance ranges: what makes a class recognisable from colour and texture."""

    patterns: tuple[int, ...]
    freq: tuple[float, float]  # pattern cycles per metre
    hue: tuple[float, float]
    sat: tuple[float, float]
    val: tuple[float, float]
    contrast: tuple[float, float]


_MATERIALS: dict[int, _Material] = {
    FLOOR: _Material((_CHECKER, _STRIPES), (1.0, 3.0), (0.04, 0.12), (0.3, 0.7), (0.3, 0.6), (0.2, 0.5)),
    WALL: _Material((_NOISE,), (0.3, 1.0), (0.0, 1.0), (0.0, 0.25), (0.65, 0.9), (0.05, 0.15)),
    CEILING: _Material((_NOISE,), (0.2, 0.6), (0.0, 1.0), (0.0, 0.06), (0.85, 0.97), (0.02, 0.06)),
    FURNITURE: _Material((_STRIPES,), (6.0, 14.0), (0.03, 0.11), (0.45, 0.85), (0.25, 0.55), (0.2, 0.45)),
    SPHERE: _Material((_NOISE, _CHECKER), (2.0, 5.0), (0.0, 1.0), (0.75, 1.0), (0.6, 0.95), (0.1, 0.3)),
    CYLINDER: _Material((_STRIPES,), (3.0, 8.0), (0.45, 0.7), (0.2, 0.55), (0.45, 0.8), (0.3, 0.6)),
    PICTURE: _Material((_CHECKER, _NOISE, _STRIPES), (6.0, 16.0), (0.0, 1.0), (0.5, 1.0), (0.4, 1.0), (0.6, 0.9)),
}


@dataclass
class _Scene:
    """Everything sampled from the seed; independent of the output resolution."""

    room: np.ndarray  # (3,) extents: x, ceiling height, z
    cam: np.ndarray  # (3,) camera centre, world frame (y up)
    rot: np.ndarray  # (3, 3) camera-to-world rotation, columns = camera x, y, z axes
    light: np.ndarray  # (3,)
    light_power: float
    ambient: float
    box_c: np.ndarray  # (Kb, 3) centres
    box_h: np.ndarray  # (Kb, 3) half extents
    box_yaw: np.ndarray  # (Kb,)
    sph_c: np.ndarray  # (Ks, 3)
    sph_r: np.ndarray  # (Ks,)
    cyl_c: np.ndarray  # (Kc, 3) x, bottom y, z
    cyl_r: np.ndarray  # (Kc,)
    cyl_top: np.ndarray  # (Kc,) top y
    pic_wall: np.ndarray  # (Kp,) room instance id of the wall
    pic_rect: np.ndarray  # (Kp, 4) along-wall min/max, y min/max
    inst_cls: np.ndarray  # (N,) class per instance
    inst_kind: np.ndarray  # (N,) geometry kind per instance
    mat: np.ndarray  # (N, _MAT_COLS) packed per-instance texture parameters, see _materials
    gain: np.ndarray  # (3,) white balance
    gamma: float
    noise_sigma: float


# ----------------------------------------------------------------------------- sampling


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _camera_rotation(yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world rotation for a y-up world; pitch > 0 looks up, no roll."""
    fwd = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    up = np.array([0.0, 1.0, 0.0])
    down = -(up - fwd * fwd[1])
    down /= np.linalg.norm(down)
    right = np.cross(down, fwd)  # right-handed camera: x = y cross z
    return np.stack([right, down, fwd], axis=1)


def _free(x: float, z: float, r: float, taken: list[tuple[float, float, float]]) -> bool:
    return all((x - a) ** 2 + (z - b) ** 2 > (r + c) ** 2 for a, b, c in taken)


def _place(rng: np.random.Generator, room: np.ndarray, r: float, taken: list) -> tuple[float, float] | None:
    """Rejection-sample a floor footprint of radius r; bounded tries keep it deterministic and cheap."""
    for _ in range(12):
        x = rng.uniform(r + 0.05, room[0] - r - 0.05)
        z = rng.uniform(r + 0.05, room[2] - r - 0.05)
        if _free(x, z, r, taken):
            taken.append((x, z, r))
            return x, z
    return None


def _sample_boxes(rng: np.random.Generator, room: np.ndarray, taken: list) -> tuple[list, list, list]:
    cs, hs, yaws = [], [], []
    for _ in range(int(rng.integers(1, 5))):
        half = np.array([rng.uniform(0.15, 0.8), rng.uniform(0.15, 0.9), rng.uniform(0.15, 0.6)])
        yaw = 0.0 if rng.random() < 0.5 else rng.uniform(-math.pi, math.pi)
        r = float(np.hypot(half[0], half[2]))
        if r * 2 + 0.2 > min(room[0], room[2]):
            continue
        xz = _place(rng, room, r, taken)
        if xz is not None:
            cs.append([xz[0], half[1], xz[1]])
            hs.append(half)
            yaws.append(yaw)
    return cs, hs, yaws


def _sample_spheres(rng: np.random.Generator, room: np.ndarray, taken: list, boxes: tuple) -> tuple[list, list]:
    cs, rs = [], []
    for _ in range(int(rng.integers(1, 4))):
        r = rng.uniform(0.12, 0.4)
        if boxes[0] and rng.random() < 0.4:  # rest on top of a box when it fits
            k = int(rng.integers(0, len(boxes[0])))
            c, h = boxes[0][k], boxes[1][k]
            if r <= min(h[0], h[2]):
                cs.append([c[0], 2 * h[1] + r, c[2]])
                rs.append(r)
                continue
        xz = _place(rng, room, r, taken)
        if xz is not None:
            cs.append([xz[0], r, xz[1]])
            rs.append(r)
    return cs, rs


def _sample_cylinders(rng: np.random.Generator, room: np.ndarray, taken: list) -> tuple[list, list, list]:
    cs, rs, tops = [], [], []
    for _ in range(int(rng.integers(0, 3))):
        r, h = rng.uniform(0.1, 0.35), rng.uniform(0.3, 1.6)
        xz = _place(rng, room, r, taken)
        if xz is not None:
            cs.append([xz[0], 0.0, xz[1]])
            rs.append(r)
            tops.append(h)
    return cs, rs, tops


def _sample_pictures(rng: np.random.Generator, room: np.ndarray) -> tuple[list, list]:
    walls, rects = [], []
    for _ in range(int(rng.integers(1, 5))):
        wall = int(rng.integers(_WALL_X0, _WALL_Z1 + 1))
        length = room[2] if wall in (_WALL_X0, _WALL_X1) else room[0]
        w, h = min(rng.uniform(0.4, 1.4), length - 0.4), rng.uniform(0.3, 1.0)
        a = rng.uniform(0.2, length - 0.2 - w)
        y = rng.uniform(0.9, max(0.9, room[1] - 0.25 - h))
        walls.append(wall)
        rects.append([a, a + w, y, y + h])
    return walls, rects


def _sample_material(rng: np.random.Generator, cls: int) -> tuple:
    m = _MATERIALS[cls]
    hue = _u(rng, m.hue)
    col_a = np.array(colorsys.hsv_to_rgb(hue, _u(rng, m.sat), _u(rng, m.val)))
    if cls == PICTURE:  # pictures: two unrelated colours, high contrast
        col_b = np.array(colorsys.hsv_to_rgb(rng.random(), _u(rng, m.sat), _u(rng, m.val) * 0.4))
    else:
        col_b = col_a * (1.0 - _u(rng, m.contrast))
    ptype = m.patterns[int(rng.integers(0, len(m.patterns)))]
    dirs = rng.normal(size=(3, 2))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    mults = rng.uniform(0.6, 2.2, size=3)
    return ptype, _u(rng, m.freq), rng.uniform(0, math.pi), rng.uniform(0, 2 * math.pi), col_a, col_b, dirs, mults


_MAT_COLS = 17  # ptype, freq, stripe wave (2), phase, colour a (3), colour b - a (3), noise waves (6)


def _materials(rng: np.random.Generator, classes: list[int]) -> np.ndarray:
    """One packed row per instance so texturing needs a single gather per pixel."""
    mat = np.zeros((len(classes), _MAT_COLS), dtype=np.float32)
    for i, cls in enumerate(classes):
        ptype, freq, angle, phase, col_a, col_b, dirs, mults = _sample_material(rng, cls)
        if cls == CYLINDER:
            angle = math.pi / 2  # rings around the vertical axis
        k = 2 * math.pi * freq
        waves = dirs * (k * mults)[:, None]
        mat[i] = [ptype, freq, k * math.cos(angle), k * math.sin(angle), phase, *col_a, *(col_b - col_a),
                  *waves[:, 0], *waves[:, 1]]  # fmt: skip
    return mat


def _sample_scene(rng: np.random.Generator) -> _Scene:
    """Draw a whole scene from rng; no dependence on resolution so any size shows the same room."""
    room = np.array([rng.uniform(3.0, 7.0), rng.uniform(2.4, 3.2), rng.uniform(3.0, 7.0)])
    cam = np.array([rng.uniform(0.5, room[0] - 0.5), rng.uniform(1.0, 1.7), rng.uniform(0.5, room[2] - 0.5)])
    to_centre = math.atan2(room[0] / 2 - cam[0], room[2] / 2 - cam[2])
    rot = _camera_rotation(to_centre + rng.uniform(-0.7, 0.7), rng.uniform(*CAMERA_PITCH_RANGE))
    taken: list[tuple[float, float, float]] = [(cam[0], cam[2], 0.45)]
    boxes = _sample_boxes(rng, room, taken)
    spheres = _sample_spheres(rng, room, taken, boxes)
    cyls = _sample_cylinders(rng, room, taken)
    pics = _sample_pictures(rng, room)
    light = np.array([rng.uniform(0.3, room[0] - 0.3), room[1] - 0.15, rng.uniform(0.3, room[2] - 0.3)])
    counts = (len(boxes[0]), len(spheres[0]), len(cyls[0]), len(pics[0]))
    classes = [FLOOR, CEILING, WALL, WALL, WALL, WALL]
    kinds = [_KIND_ROOM] * _N_ROOM
    for cls, kind, n in zip((FURNITURE, SPHERE, CYLINDER, PICTURE), range(1, 5), counts, strict=True):
        classes += [cls] * n
        kinds += [kind] * n
    mat = _materials(rng, classes)
    mat[[_WALL_X1, _WALL_Z0, _WALL_Z1]] = mat[_WALL_X0]  # one paint for all walls, like a real room
    return _Scene(
        room=_f32(room), cam=_f32(cam), rot=_f32(rot), light=_f32(light),
        light_power=rng.uniform(4.0, 10.0), ambient=rng.uniform(0.25, 0.45),
        box_c=_f32(boxes[0], 3), box_h=_f32(boxes[1], 3), box_yaw=_f32(boxes[2]),
        sph_c=_f32(spheres[0], 3), sph_r=_f32(spheres[1]),
        cyl_c=_f32(cyls[0], 3), cyl_r=_f32(cyls[1]), cyl_top=_f32(cyls[2]),
        pic_wall=np.array(pics[0], dtype=np.int64), pic_rect=_f32(pics[1], 4),
        inst_cls=np.array(classes), inst_kind=np.array(kinds), mat=mat,
        gain=_f32(rng.uniform(0.92, 1.08, size=3)), gamma=rng.uniform(0.85, 1.15),
        noise_sigma=rng.uniform(0.004, 0.02),
    )  # fmt: skip


def _f32(values, cols: int | None = None) -> np.ndarray:
    """Geometry is sampled in float64 and stored as float32: rendering in float32 is ~1.5x faster."""
    arr = np.asarray(values, dtype=np.float32)
    return arr.reshape(-1, cols) if cols else arr


# ----------------------------------------------------------------------------- intersections
# All take origins o of shape (P, 3) or (1, 3) and directions d of shape (P, 3) (not
# necessarily unit) and return the ray parameter t of the first hit with t > eps, inf on a miss.


def _room_exit(o: np.ndarray, d: np.ndarray, room: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera is inside the room, so the visible surface is where the ray leaves the box."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_axes = (np.where(d > 0, room, 0.0) - o) / d
    t_axes[~np.isfinite(t_axes) | (t_axes < 0)] = np.inf
    axis = np.argmin(t_axes, axis=1)
    t = np.take_along_axis(t_axes, axis[:, None], axis=1)[:, 0]
    positive = np.take_along_axis(d, axis[:, None], axis=1)[:, 0] > 0
    # axis 0 -> walls x0/x1, axis 1 -> floor/ceiling, axis 2 -> walls z0/z1
    ids = np.array([[_WALL_X0, _WALL_X1], [_ROOM_FLOOR, _ROOM_CEIL], [_WALL_Z0, _WALL_Z1]])
    return t, ids[axis, positive.astype(np.int64)]


def _hit_spheres(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
    oc = o[None] - c[:, None]  # (K, P|1, 3)
    a = np.einsum("pi,pi->p", d, d)
    b = np.einsum("kpi,pi->kp", np.broadcast_to(oc, (len(c), len(d), 3)), d)
    cc = np.einsum("kpi,kpi->kp", oc, oc) - (r * r)[:, None]
    disc = b * b - a * cc
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    return np.where((disc >= 0) & (t > _EPS), t, np.inf)


def _hit_boxes(o: np.ndarray, d: np.ndarray, c: np.ndarray, h: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Slab test in each box's local frame (boxes are only rotated about the vertical)."""
    cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    ox, oy, oz = (o[None, :, i] - c[:, None, i] for i in range(3))
    lo = (cos * ox + sin * oz, oy, -sin * ox + cos * oz)
    ld = (cos * d[None, :, 0] + sin * d[None, :, 2], d[None, :, 1], -sin * d[None, :, 0] + cos * d[None, :, 2])
    t_near, t_far = None, None
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(3):
            inv = 1.0 / ld[i]
            hi = h[:, i : i + 1]
            t1, t2 = (-hi - lo[i]) * inv, (hi - lo[i]) * inv
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            t_near = near if t_near is None else np.maximum(t_near, near)
            t_far = far if t_far is None else np.minimum(t_far, far)
        return np.where((t_near <= t_far) & (t_near > _EPS), t_near, np.inf)


def _hit_cylinders(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Vertical cylinders standing on the floor: side wall plus top cap (the bottom is never visible)."""
    ox, oz = o[None, :, 0] - c[:, None, 0], o[None, :, 2] - c[:, None, 2]
    oy, dx, dy, dz = o[None, :, 1], d[None, :, 0], d[None, :, 1], d[None, :, 2]
    bottom, top = c[:, None, 1], top[:, None]
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    disc = b * b - a * (ox * ox + oz * oz - (r * r)[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(disc)) / a
        y = oy + t_side * dy
        t_side = np.where((disc >= 0) & (t_side > _EPS) & (y >= bottom) & (y <= top), t_side, np.inf)
        t_cap = (top - oy) / dy
        cx, cz = ox + t_cap * dx, oz + t_cap * dz
        cap_ok = (t_cap > _EPS) & (cx * cx + cz * cz <= (r * r)[:, None])
    return np.minimum(t_side, np.where(cap_ok, t_cap, np.inf))


def _object_hits(scene: _Scene, o: np.ndarray, d: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(first instance id, t of shape (K, P)) for every non-empty object group."""
    groups = []
    base = _N_ROOM
    if len(scene.box_c):
        groups.append((base, _hit_boxes(o, d, scene.box_c, scene.box_h, scene.box_yaw)))
    base += len(scene.box_c)
    if len(scene.sph_c):
        groups.append((base, _hit_spheres(o, d, scene.sph_c, scene.sph_r)))
    base += len(scene.sph_c)
    if len(scene.cyl_c):
        groups.append((base, _hit_cylinders(o, d, scene.cyl_c, scene.cyl_r, scene.cyl_top)))
    return groups


def _trace(scene: _Scene, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit distance and instance id per ray."""
    t, inst = _room_exit(o, d, scene.room)
    for base, tk in _object_hits(scene, o, d):
        k = np.argmin(tk, axis=0)
        tmin = np.take_along_axis(tk, k[None], axis=0)[0]
        closer = tmin < t
        t = np.where(closer, tmin, t)
        inst = np.where(closer, base + k, inst)
    return t, inst


def _occluded(scene: _Scene, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Shadow rays towards the point light; only objects can block it (the room is convex)."""
    o = p + n * 2e-3
    d = scene.light[None] - o
    blocked = np.zeros(len(p), dtype=bool)
    for _, tk in _object_hits(scene, o, d):
        blocked |= (tk < 1.0).any(axis=0)
    return blocked


# ----------------------------------------------------------------------------- surface attributes


def _apply_pictures(scene: _Scene, p: np.ndarray, inst: np.ndarray) -> np.ndarray:
    """Pictures are flat decals: relabel wall hits that fall inside a picture's rectangle."""
    base = _N_ROOM + len(scene.box_c) + len(scene.sph_c) + len(scene.cyl_c)
    for k, (wall, rect) in enumerate(zip(scene.pic_wall, scene.pic_rect, strict=True)):
        along = p[:, 2] if wall in (_WALL_X0, _WALL_X1) else p[:, 0]
        inside = (inst == wall) & (along >= rect[0]) & (along <= rect[1]) & (p[:, 1] >= rect[2]) & (p[:, 1] <= rect[3])
        inst = np.where(inside, base + k, inst)
    return inst


_ROOM_NORMALS = np.array(
    [[0, 1, 0], [0, -1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float32
)  # inward normals of floor, ceiling, x0, x1, z0, z1


def _box_normals(scene: _Scene, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    c, h, yaw = scene.box_c[idx], scene.box_h[idx], scene.box_yaw[idx]
    cos, sin = np.cos(yaw), np.sin(yaw)
    q = p - c
    local = np.stack([cos * q[:, 0] + sin * q[:, 2], q[:, 1], -sin * q[:, 0] + cos * q[:, 2]], axis=1)
    axis = np.argmax(np.abs(local) / h, axis=1)
    n_local = np.zeros_like(local)
    rows = np.arange(len(p))
    n_local[rows, axis] = np.sign(local[rows, axis])
    lx, lz = n_local[:, 0], n_local[:, 2]
    return np.stack([cos * lx - sin * lz, n_local[:, 1], sin * lx + cos * lz], axis=1)


def _cyl_normals(scene: _Scene, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    c, r, top = scene.cyl_c[idx], scene.cyl_r[idx], scene.cyl_top[idx]
    radial = np.stack([p[:, 0] - c[:, 0], np.zeros_like(p[:, 0]), p[:, 2] - c[:, 2]], axis=1)
    dist = np.linalg.norm(radial, axis=1)
    on_cap = np.abs(p[:, 1] - top) < np.abs(dist - r)
    side = radial / np.maximum(dist, 1e-9)[:, None]
    return np.where(on_cap[:, None], np.array([0.0, 1.0, 0.0], dtype=np.float32), side)


def _world_normals(scene: _Scene, p: np.ndarray, inst: np.ndarray) -> np.ndarray:
    """Analytic normals from the hit point and the hit instance (pictures keep their wall's normal)."""
    n = np.zeros_like(p)
    kind = scene.inst_kind[inst]
    room = kind == _KIND_ROOM
    n[room] = _ROOM_NORMALS[inst[room]]
    pic = kind == _KIND_PIC
    if pic.any():
        k = inst[pic] - (_N_ROOM + len(scene.box_c) + len(scene.sph_c) + len(scene.cyl_c))
        n[pic] = _ROOM_NORMALS[scene.pic_wall[k]]
    m = kind == _KIND_BOX
    if m.any():
        n[m] = _box_normals(scene, p[m], inst[m] - _N_ROOM)
    m = kind == _KIND_SPHERE
    if m.any():
        k = inst[m] - _N_ROOM - len(scene.box_c)
        radial = p[m] - scene.sph_c[k]
        n[m] = radial / np.linalg.norm(radial, axis=1, keepdims=True)  # not / r: float32 hits drift off the surface
    m = kind == _KIND_CYL
    if m.any():
        n[m] = _cyl_normals(scene, p[m], inst[m] - _N_ROOM - len(scene.box_c) - len(scene.sph_c))
    return n


def _albedo(scene: _Scene, p: np.ndarray, n: np.ndarray, inst: np.ndarray) -> np.ndarray:
    """Per-instance procedural texture, mapped on the plane facing the dominant normal axis."""
    m = scene.mat[inst]
    axis = np.argmax(np.abs(n), axis=1)
    u = np.where(axis == 0, p[:, 2], p[:, 0])[:, None]
    v = np.where(axis == 1, p[:, 2], p[:, 1])[:, None]
    ptype, f, ph = m[:, 0], m[:, 1:2], m[:, 4:5]
    stripes = 0.5 + 0.5 * np.sin(u * m[:, 2:3] + v * m[:, 3:4] + ph)
    checker = (np.floor(f * u + ph) + np.floor(f * v + ph)) % 2
    noise = 0.5 + np.sin(u * m[:, 11:14] + v * m[:, 14:17] + ph).sum(axis=1, keepdims=True) / 6.0
    val = np.where((ptype == _STRIPES)[:, None], stripes, np.where((ptype == _CHECKER)[:, None], checker, noise))
    return m[:, 5:8] + m[:, 8:11] * val


def _shade(scene: _Scene, p: np.ndarray, n: np.ndarray, albedo: np.ndarray, shadows: bool) -> np.ndarray:
    to_light = scene.light[None] - p
    dist2 = np.einsum("pi,pi->p", to_light, to_light)
    lambert = np.clip(np.einsum("pi,pi->p", n, to_light) / np.sqrt(dist2), 0.0, None)
    if shadows:
        lambert = np.where(_occluded(scene, p, n), 0.0, lambert)
    direct = scene.light_power * lambert / (1.0 + dist2)
    return albedo * (scene.ambient + direct)[:, None]


def _edges(inst: np.ndarray) -> np.ndarray:
    """Both pixels of every 4-neighbour pair with different instance ids."""
    e = np.zeros(inst.shape, dtype=bool)
    dh = inst[:, 1:] != inst[:, :-1]
    dv = inst[1:] != inst[:-1]
    e[:, 1:] |= dh
    e[:, :-1] |= dh
    e[1:] |= dv
    e[:-1] |= dv
    return e


@functools.lru_cache(maxsize=8)
def _pixel_dirs(height: int, width: int, focal_rel: float = FOCAL_REL) -> np.ndarray:
    """Camera-frame ray directions with z = 1, so the hit parameter t is the z-depth."""
    f = focal_rel * width
    x = (np.arange(width) + 0.5 - width / 2) / f
    y = (np.arange(height) + 0.5 - height / 2) / f
    dirs = np.stack(np.broadcast_arrays(x[None, :], y[:, None], np.ones((1, 1))), axis=-1).reshape(-1, 3)
    dirs = dirs.astype(np.float32)
    dirs.setflags(write=False)
    return dirs


# ----------------------------------------------------------------------------- public API


def _check_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int | np.integer) or value < 16 or value % 8:
            raise ValueError(f"{name}={value!r}: must be an integer >= 16 and divisible by 8")


def _instances(scene: _Scene, height: int, width: int, focal_rel: float = FOCAL_REL) -> tuple[np.ndarray, ...]:
    """Primary rays: (ray directions d, hit parameter t, valid, hit points p, instance id per ray, -1 = no hit)."""
    d = _pixel_dirs(height, width, focal_rel) @ scene.rot.T
    o = scene.cam[None]
    t, inst = _trace(scene, o, d)
    valid = np.isfinite(t)
    inst = np.where(valid, inst, -1)
    p = o + np.where(valid, t, 0.0)[:, None] * d
    inst = _apply_pictures(scene, p, inst)
    return d, t, valid, p, inst


def camera_view(pitch: float) -> int:
    """Index into ``CAMERA_VIEW_NAMES`` of a camera pitch in degrees: 0 down (pitch < −13.0°), 1 tilted (up to
    −3.1°), 2 level (the rest); a pitch on an edge belongs to the class above it (``CAMERA_VIEW_EDGES``)."""
    if not math.isfinite(pitch):
        raise ValueError(f"pitch={pitch!r}: must be a finite number of degrees")
    return int(sum(pitch >= edge for edge in CAMERA_VIEW_EDGES))


def _image_labels(scene: _Scene, inst: np.ndarray) -> dict[str, float]:
    """Image-level labels from the geometry and the instance map of the rendered view; draws nothing from the rng.

    dominant_class: index into ``OBJECT_CLASS_NAMES`` of the object class (furniture, sphere, cylinder, picture)
    covering the most pixels, the lowest index on ties, -1 when no object is visible; num_objects: objects with at
    least one visible pixel; num_objects_placed: every object the scene holds, in view or not; camera_height: the
    camera centre above the floor (m); camera_pitch: the optical axis above the horizon (degrees, < 0 = down);
    camera_view: ``camera_view(camera_pitch)``, the pitch in three equally likely classes (down, tilted, level).
    """
    obj = inst >= _N_ROOM
    area = np.bincount(scene.inst_cls[inst[obj]], minlength=NUM_CLASSES)[list(OBJECT_CLASSES)]
    pitch = math.degrees(math.asin(float(np.clip(scene.rot[1, 2], -1.0, 1.0))))
    return {
        "dominant_class": int(np.argmax(area)) if area.sum() else IGNORE_LABEL,
        "num_objects": int(np.unique(inst[obj]).size),
        "num_objects_placed": int(len(scene.inst_cls) - _N_ROOM),
        "camera_height": float(scene.cam[1]),
        "camera_pitch": pitch,
        "camera_view": camera_view(pitch),
    }


def _render(scene: _Scene, height: int, width: int, rng: np.random.Generator,
            shadows: bool, focal_rel: float = FOCAL_REL) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    d, t, valid, p, inst = _instances(scene, height, width, focal_rel)
    labels = _image_labels(scene, inst)
    safe = np.where(valid, inst, 0)
    n = _world_normals(scene, p, safe)
    color = _shade(scene, p, n, _albedo(scene, p, n, safe), shadows)
    color = np.clip(color * scene.gain, 0.0, 1.0) ** scene.gamma
    color += rng.standard_normal(color.shape, dtype=np.float32) * np.float32(scene.noise_sigma)
    n_cam = (n @ scene.rot) * valid[:, None]
    label = np.where(valid, scene.inst_cls[safe], IGNORE_LABEL)
    inst_img = inst.reshape(height, width)
    arrays = {
        "image": np.clip(color, 0.0, 1.0).reshape(height, width, 3).astype(np.float32),
        "label": label.reshape(height, width).astype(np.float32),
        "depth": np.where(valid, t, 0.0).reshape(height, width, 1).astype(np.float32),
        "normal": n_cam.reshape(height, width, 3).astype(np.float32),
        "edge": _edges(inst_img)[..., None].astype(np.float32),
    }
    return arrays, labels


def render_scene(seed: int, height: int = 64, width: int = 80, shadows: bool = True,
                 style: str | dict | SceneStyle = "default") -> dict[str, np.ndarray]:
    """Render one scene; the same seed always gives identical arrays (and the same room at any size).

    ``style`` (``data/style.py``): the look of the rendering; the same seed gives the same room in every style.

    Returns float32 arrays: image (H,W,3) in [0,1], label (H,W) with -1 ignore,
    depth (H,W,1) z-depth in metres with 0 invalid, normal (H,W,3) camera frame,
    edge (H,W,1) in {0,1}.
    """
    return render_scene_with_labels(seed, height, width, shadows, style)[0]


def render_scene_with_labels(seed: int, height: int = 64, width: int = 80, shadows: bool = True,
                             style: str | dict | SceneStyle = "default",
                             ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """``render_scene``'s arrays and the scene's image-level labels (``IMAGE_LABEL_NAMES``, see ``_image_labels``).

    The labels are read off the sampled geometry and the rendered instance map without drawing from the rng, so
    the dense arrays are exactly those of ``render_scene`` (they were before the labels existed).
    """
    _check_size(height, width)
    look = resolve_style(style)
    rng = np.random.default_rng(seed)
    return _render(restyle_scene(_sample_scene(rng), look), height, width, rng, shadows, look.focal_rel)


def scene_image_labels(seed: int, height: int = 64, width: int = 80,
                       style: str | dict | SceneStyle = "default") -> dict[str, float]:
    """The image-level labels of scene ``seed`` without shading it: primary rays only (adds them to old datasets);
    a style changes them only through its camera (``focal_rel``)."""
    _check_size(height, width)
    scene = _sample_scene(np.random.default_rng(seed))
    return _image_labels(scene, _instances(scene, height, width, resolve_style(style).focal_rel)[4])


def render_batch(
    seeds: Sequence[int], height: int = 64, width: int = 80, shadows: bool = True,
    style: str | dict | SceneStyle = "default",
) -> dict[str, np.ndarray]:
    """Render several scenes stacked as [N, ...]; each equals ``render_scene(seed)`` for its seed."""
    _check_size(height, width)
    out = {k: [] for k in KEYS}
    for seed in seeds:
        for k, v in render_scene(seed, height, width, shadows, style).items():
            out[k].append(v)
    if not out["image"]:
        raise ValueError("seeds: must contain at least one seed")
    return {k: np.stack(v) for k, v in out.items()}
