"""Scene geometry from a depth map: the camera's intrinsics and surface normals by finite differences.

Why: depth and surface normals are two views of one surface, so the normals of a pixel follow from the depth of its
neighbours and the camera. That is the relation MTPSL's and JTR's cross-task terms are meant to learn between a
labelled depth map and an unlabelled normal map; computing it exactly gives a *geometric oracle*
(``data/pseudo_labels.py``): what the information in labelled depth is worth to the normals when nothing has to be
learnt.

Conventions are the built-in scenes' (``data/scenes.py``): camera frame x right, y down, z forward; pixel (row v,
column u) looks along ((u − cx)/fx, (v − cy)/fy, 1) with u, v the integer indices of pixel centres; depth is the
z-depth, 0 = invalid; a normal is a unit vector facing the camera (n · ray < 0), all-zero = invalid.

Back-projection P(v, u) = depth · ((u − cx)/fx, (v − cy)/fy, 1); the tangents along rows and columns are differences
of neighbouring points, the normal their cross product. Each tangent is the central difference where the surface
continues on both sides, the one-sided difference where it continues on one side only (an occluding edge, an invalid
neighbour, the image border) or where the other side bends away (a crease: a box's edge, a wall corner), and
undefined where it continues on neither: the pixel's normal is then invalid. "The surface continues" is a depth step
of at most ``max_step`` times the nearer depth. On a plane any in-plane differences give its exact normal; on curved
surfaces the central difference is second-order accurate. Measured against the scenes' rendered normals
(``tests/test_geometry.py``): a mean angle of about 1.2° at 32x40 (most pixels exact, the error at creases and
occluding edges, where a pixel's neighbours sit on other surfaces) and under 0.1° at 288x384.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

# largest relative depth step between neighbouring pixels still taken as one surface (beyond it: an occluding edge)
MAX_STEP = 0.5
# a side's difference is preferred to the central one when the other side's chord bends more than BEND_RATIO times
# as much, plus BEND_SLACK degrees: the other side crosses a crease (a box's edge, a wall corner) or an occlusion
BEND_RATIO = 2.0
BEND_SLACK = 0.25


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera in pixel units: focal lengths and principal point (indices of pixel centres)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Intrinsics.{name}={value!r}: must be a number > 0 (pixels)")


def scenes_intrinsics(root: str | Path, height: int, width: int) -> Intrinsics:
    """The built-in scenes' camera at ``height`` x ``width``: fx = fy = focal_rel · width (``focal_rel`` of the
    root's meta.json style, the default camera's 0.81 when it names none), principal point at the image centre
    (``scenes._pixel_dirs``: column u looks along (u + 0.5 − W/2) / f)."""
    meta = Path(root) / "meta.json"
    focal_rel = 0.81
    if meta.is_file():
        focal_rel = float((json.loads(meta.read_text()).get("style") or {}).get("focal_rel", focal_rel))
    f = focal_rel * width
    return Intrinsics(f, f, width / 2 - 0.5, height / 2 - 0.5)


def back_project(depth: torch.Tensor, camera: Intrinsics) -> torch.Tensor:
    """depth [..., H, W] (z-depth) → camera-frame points [..., 3, H, W]."""
    h, w = depth.shape[-2:]
    x = (torch.arange(w, dtype=depth.dtype, device=depth.device) - camera.cx) / camera.fx      # [W]
    y = (torch.arange(h, dtype=depth.dtype, device=depth.device) - camera.cy) / camera.fy      # [H]
    return torch.stack([depth * x, depth * y[:, None], depth], dim=-3)


def _shifted(x: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """x at index i + k along ``dim`` (negative), zeros beyond the border."""
    n = x.shape[dim]
    out = torch.zeros_like(x)
    if abs(k) < n:
        if k >= 0:
            out.narrow(dim, 0, n - k).copy_(x.narrow(dim, k, n - k))
        else:
            out.narrow(dim, -k, n + k).copy_(x.narrow(dim, 0, n + k))
    return out


def _bend(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between chords a, b [..., 3, H, W] → [..., H, W]."""
    cos = (a * b).sum(-3) / (a.norm(dim=-3) * b.norm(dim=-3)).clamp_min(torch.finfo(a.dtype).tiny)
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


def _tangent(points: torch.Tensor, depth: torch.Tensor, dim: int, max_step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Tangent along ``dim`` (−1: columns, −2: rows) of points [..., 3, H, W] (depth [..., H, W]; the points' channel
    axis is −3, so ``dim`` names the same axis of both), and where it is defined [..., H, W].

    The forward chord P[i+1] − P[i] is usable where the surface continues to i + 1 (valid depth, a step of at most
    ``max_step`` of the nearer depth); likewise the backward chord. Where both are, their mean (central difference)
    unless one side's next chord bends away from it much more than the other's does: then that side straddles a
    crease or an edge, and the other side's chord alone is the tangent of the pixel's surface.
    """
    def continues(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a > 0) & (b > 0) & ((a - b).abs() <= max_step * torch.minimum(a, b))

    d = {k: _shifted(depth, dim, k) for k in (-2, -1, 1, 2)}
    p = {k: _shifted(points, dim, k) for k in (-2, -1, 1, 2)}
    forward_ok, backward_ok = continues(depth, d[1]), continues(depth, d[-1])
    forward, backward = p[1] - points, points - p[-1]                                  # [..., 3, H, W]
    zero = torch.zeros_like(depth)
    bend_forward = torch.where(forward_ok & continues(d[1], d[2]), _bend(forward, p[2] - p[1]), zero)
    bend_backward = torch.where(backward_ok & continues(d[-1], d[-2]), _bend(backward, p[-1] - p[-2]), zero)
    only_forward = forward_ok & (~backward_ok | (bend_backward > BEND_RATIO * bend_forward + BEND_SLACK))
    only_backward = backward_ok & ~only_forward & (~forward_ok | (bend_forward > BEND_RATIO * bend_backward
                                                                  + BEND_SLACK))
    central = 0.5 * (forward + backward)
    tangent = torch.where(only_forward.unsqueeze(-3), forward,
                          torch.where(only_backward.unsqueeze(-3), backward, central))
    return tangent, forward_ok | backward_ok


def normals_from_depth(depth: torch.Tensor, camera: Intrinsics, max_step: float = MAX_STEP) -> torch.Tensor:
    """Camera-frame unit normals [..., 3, H, W] facing the camera from a z-depth map [..., H, W] (0 = invalid).

    All-zero (invalid) where the depth is invalid and where the surface does not continue to a neighbour along a
    row or a column (an isolated pixel, a one-pixel sliver between depth steps): see the module docstring.
    """
    if depth.dim() < 2:
        raise ValueError(f"normals_from_depth: depth must be [..., H, W], got shape {tuple(depth.shape)}")
    depth = torch.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0)
    points = back_project(depth, camera)                                                    # [..., 3, H, W]
    along_u, ok_u = _tangent(points, depth, -1, max_step)
    along_v, ok_v = _tangent(points, depth, -2, max_step)
    normal = torch.linalg.cross(along_v, along_u, dim=-3)     # x right, y down: (down × right) faces the camera
    length = normal.norm(dim=-3, keepdim=True)
    ok = (ok_u & ok_v).unsqueeze(-3) & (length > 0)
    normal = normal / length.clamp_min(torch.finfo(normal.dtype).tiny)
    facing = torch.where((normal * points).sum(-3, keepdim=True) > 0, -normal, normal)   # n · ray < 0
    return torch.where(ok, facing, torch.zeros_like(facing))
