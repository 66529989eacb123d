"""Lift video frames with depth into world-space point clouds (EasyCreator step 1).

Conventions: see :mod:`backend.geometry.cameras` (OpenCV cameras, pixel centres at +0.5, depth in
metres, ``"z"`` planar or ``"ray"`` distance). Each kept pixel becomes one point at the back-projection
of its pixel centre, coloured by the pixel, with the world patch the pixel covers: tangents
``tangent_u``/``tangent_v`` (half the step to the neighbouring pixels on the same surface, see
:func:`pixel_footprint_tangents`) and ``radius`` = the longer of the two, ``0.5 * z / f`` on a
fronto-parallel surface at planar depth ``z`` and larger on surfaces seen at a grazing angle.

Dropped pixels:
- invalid depth: ``<= 0``, NaN/inf, or beyond ``max_depth`` (planar z);
- pixels outside an optional ``keep_mask``;
- *flying pixels* (edge-aware filter): a pixel is dropped when one of its 8 neighbours is nearer by
  more than ``edge_threshold`` of that neighbour's depth, i.e. ``z - z_n > edge_threshold * z_n``.
  At every depth step this removes the rim on the far side, where monocular depth smears the
  foreground into the background (points floating in mid-air), and keeps the near side's silhouette.
  Smooth surfaces survive: a plane at 80 degrees to the view changes depth by ~1% per pixel at
  f = 500 px, far below the default 5%.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from protocol.errors import ValidationError

from .cameras import DepthKind, as_camera_tensors, depth_to_planar, rigid_inverse, to_tensor
from .points import PointFrames

DEFAULT_EDGE_THRESHOLD = 0.05
DEFAULT_MAX_FOOTPRINT_STRETCH = 4.0


def _neighbour_tangent(world: torch.Tensor, z: torch.Tensor, valid: torch.Tensor, dim: int,
                       threshold: float) -> torch.Tensor:
    """Half the world step to a same-surface neighbour along image axis ``dim`` (the longer of the two
    sides), ``(F,H,W,3)``; NaN where neither neighbour lies on the same surface."""
    length = world.shape[dim]
    a = [slice(None)] * 4
    b = [slice(None)] * 4
    a[dim], b[dim] = slice(0, length - 1), slice(1, length)
    step = world[tuple(b)] - world[tuple(a)]
    za, zb = z[tuple(a[:3])], z[tuple(b[:3])]
    same = valid[tuple(a[:3])] & valid[tuple(b[:3])] & ((za - zb).abs() <= threshold * torch.minimum(za, zb))
    length_sq = torch.where(same, (step * step).sum(-1), -1.0)  # -1 marks "no neighbour"
    pad_shape = list(length_sq.shape)
    pad_shape[dim] = 1
    pad = torch.full(pad_shape, -1.0, device=world.device)
    before_len = torch.cat([pad, length_sq], dim=dim)
    after_len = torch.cat([length_sq, pad], dim=dim)
    zero = torch.zeros_like(step.narrow(dim, 0, 1))
    before = torch.cat([zero, step], dim=dim)
    after = torch.cat([step, zero], dim=dim)
    chosen = torch.where((after_len >= before_len)[..., None], after, before)
    missing = torch.maximum(before_len, after_len) < 0
    return torch.where(missing[..., None], torch.nan, 0.5 * chosen)


def pixel_footprint_tangents(
    world: torch.Tensor, z: torch.Tensor, valid: torch.Tensor, K: torch.Tensor, camera_to_world: torch.Tensor,
    same_surface_threshold: float = DEFAULT_EDGE_THRESHOLD,
    max_stretch: float = DEFAULT_MAX_FOOTPRINT_STRETCH,
) -> tuple[torch.Tensor, torch.Tensor]:
    """World half-steps ``(tangent_u, tangent_v)``, each ``(F,H,W,3)`` metres, spanning each pixel's patch.

    ``world (F,H,W,3)`` are back-projected pixel centres, ``z`` planar depth, ``K (F,3,3)``,
    ``camera_to_world (F,4,4)``. Along each image axis the tangent is half the world step to the
    neighbour on the same surface (relative depth jump <= ``same_surface_threshold``; the longer side
    when both are), so surfaces seen at a grazing angle get the elongated footprint they really
    have. Without a same-surface neighbour the fronto-parallel step ``0.5 * z / f`` along the camera
    axis is used. Lengths are capped at ``max_stretch`` times the fronto-parallel value.
    """
    fronto_u = 0.5 * z / K[:, 0, 0, None, None]
    fronto_v = 0.5 * z / K[:, 1, 1, None, None]
    axis_u = camera_to_world[:, None, None, :3, 0]
    axis_v = camera_to_world[:, None, None, :3, 1]
    tangents = []
    for dim, fronto, axis in ((2, fronto_u, axis_u), (1, fronto_v, axis_v)):
        tangent = _neighbour_tangent(world, z, valid, dim, same_surface_threshold)
        tangent = torch.where(torch.isnan(tangent), fronto[..., None] * axis, tangent)
        length = tangent.norm(dim=-1, keepdim=True)
        cap = (max_stretch * fronto)[..., None]
        tangents.append(torch.where(length > cap, tangent * (cap / length.clamp(min=1e-30)), tangent))
    return tangents[0], tangents[1]


def frames_to_float(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(F,H,W,3)`` uint8 (0..255) or float (0..1) frames as float32 in [0, 1]."""
    frames_t = to_tensor(frames)
    if frames_t.ndim != 4 or frames_t.shape[-1] != 3:
        raise ValidationError(f"frames must have shape (F,H,W,3), got {tuple(frames_t.shape)}")
    if frames_t.dtype == torch.uint8:
        return frames_t.to(torch.float32) / 255.0
    if not frames_t.is_floating_point():
        raise ValidationError(f"frames must be uint8 or float, got {frames_t.dtype}")
    return frames_t.to(torch.float32)


def flying_pixel_mask(z_depth: torch.Tensor, valid: torch.Tensor, edge_threshold: float) -> torch.Tensor:
    """``(F,H,W)`` bool, True where a valid pixel has an 8-neighbour nearer by > ``edge_threshold`` (relative).

    ``z_depth`` is planar depth in metres; invalid pixels never make their neighbours fly.
    """
    far = torch.where(valid, z_depth, torch.full_like(z_depth, math.inf))
    nearest_neighbour = -F.max_pool2d(-far.unsqueeze(1), kernel_size=3, stride=1, padding=1).squeeze(1)
    return valid & (far - nearest_neighbour > edge_threshold * nearest_neighbour)


def lift_frames(
    frames: torch.Tensor | np.ndarray,
    depth: torch.Tensor | np.ndarray,
    K: torch.Tensor | np.ndarray,
    world_to_camera: torch.Tensor | np.ndarray,
    *,
    depth_kind: DepthKind = "z",
    max_depth: float = math.inf,
    edge_threshold: float | None = DEFAULT_EDGE_THRESHOLD,
    keep_mask: torch.Tensor | np.ndarray | None = None,
    max_footprint_stretch: float = DEFAULT_MAX_FOOTPRINT_STRETCH,
    device: torch.device | str | None = None,
) -> PointFrames:
    """Back-project every valid pixel of ``frames (F,H,W,3)`` with ``depth (F,H,W)`` to world points.

    ``K`` is ``(3,3)`` or ``(F,3,3)`` pixels, ``world_to_camera`` ``(4,4)`` or ``(F,4,4)`` (OpenCV).
    ``edge_threshold=None`` (or 0) disables the flying-pixel filter. ``keep_mask (F,H,W)`` bool keeps
    only the pixels where it is True (e.g. repaired or static pixels). Returns float32 points on
    ``device`` (default: the device of ``depth``). ``max_footprint_stretch`` caps a point's radius
    at that many times its fronto-parallel value (see :func:`pixel_footprint_tangents`).
    """
    depth_t = to_tensor(depth)
    if device is None:
        device = depth_t.device
    frames_t = to_tensor(frames).to(device)
    if frames_t.ndim != 4 or frames_t.shape[-1] != 3:
        raise ValidationError(f"frames must have shape (F,H,W,3), got {tuple(frames_t.shape)}")
    num_frames, height, width, _ = frames_t.shape
    depth_t = depth_t.to(device=device, dtype=torch.float32)
    if depth_t.shape != (num_frames, height, width):
        raise ValidationError(
            f"depth must have shape {(num_frames, height, width)} to match the frames, got {tuple(depth_t.shape)}"
        )
    if not max_depth > 0:
        raise ValidationError(f"max_depth must be positive, got {max_depth}")
    K_t, w2c = as_camera_tensors(K, world_to_camera, num_frames, device)
    z = depth_to_planar(depth_t, K_t, depth_kind)
    valid = torch.isfinite(z) & (z > 0) & (z <= max_depth)
    if keep_mask is not None:
        keep_t = to_tensor(keep_mask).to(device)
        if keep_t.shape != (num_frames, height, width) or keep_t.dtype != torch.bool:
            raise ValidationError(f"keep_mask must be a bool tensor of shape {(num_frames, height, width)}")
    else:
        keep_t = None
    if edge_threshold:
        if edge_threshold < 0:
            raise ValidationError(f"edge_threshold must be >= 0, got {edge_threshold}")
        valid = valid & ~flying_pixel_mask(z, valid, edge_threshold)
    if keep_t is not None:
        valid = valid & keep_t

    v = torch.arange(height, device=device, dtype=torch.float32)[None, :, None] + 0.5
    u = torch.arange(width, device=device, dtype=torch.float32)[None, None, :] + 0.5
    fx, fy = K_t[:, 0, 0, None, None], K_t[:, 1, 1, None, None]
    yn = (v - K_t[:, 1, 2, None, None]) / fy
    xn = (u - K_t[:, 0, 2, None, None] - K_t[:, 0, 1, None, None] * yn) / fx
    z_safe = torch.where(valid, z, torch.zeros_like(z))
    cam = torch.stack([xn * z_safe, yn * z_safe, z_safe], dim=-1)  # (F,H,W,3)
    c2w = rigid_inverse(w2c)
    world = torch.einsum("fij,fhwj->fhwi", c2w[:, :3, :3], cam) + c2w[:, None, None, :3, 3]
    flat = torch.nonzero(valid.reshape(-1)).squeeze(1)
    pixels_per_frame = height * width
    tangent_u, tangent_v = pixel_footprint_tangents(world, z_safe, valid, K_t, c2w,
                                                    edge_threshold or DEFAULT_EDGE_THRESHOLD,
                                                    max_footprint_stretch)
    tangent_u = tangent_u.reshape(-1, 3).index_select(0, flat)
    tangent_v = tangent_v.reshape(-1, 3).index_select(0, flat)
    counts = valid.reshape(num_frames, -1).sum(dim=1).cpu()
    offsets = torch.zeros(num_frames + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    return PointFrames(
        xyz=world.reshape(-1, 3).index_select(0, flat),
        rgb=frames_to_float(frames_t.reshape(-1, 3).index_select(0, flat)[None, None]).reshape(-1, 3),
        radius=torch.maximum(tangent_u.norm(dim=-1), tangent_v.norm(dim=-1)),
        frame_index=flat // pixels_per_frame, pixel_index=flat % pixels_per_frame, offsets=offsets,
        source_height=height, source_width=width, tangent_u=tangent_u, tangent_v=tangent_v,
    )
