"""Lift video frames with depth into world-space point clouds (EasyCreator step 1).

Conventions: see :mod:`backend.geometry.cameras` (OpenCV cameras, pixel centres at +0.5, depth in
metres, ``"z"`` planar or ``"ray"`` distance). Each kept pixel becomes one point at the back-projection
of its pixel centre, coloured by the pixel, with the world patch the pixel covers: tangents
``tangent_u``/``tangent_v``, half the world step to the neighbouring pixel along x / y on the same
surface (of the two neighbours, the one with the larger depth change; a fronto-parallel step where
neither lies on the surface), capped at ``max_footprint_stretch`` times the fronto-parallel length
``0.5 * z / f``; ``radius`` is the longer tangent. Surfaces seen at a grazing angle thus get the
elongated footprint they really have.

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


def _depth_step(z: torch.Tensor, valid: torch.Tensor, dim: int, threshold: float) -> torch.Tensor:
    """Planar-depth change to a same-surface neighbour along image axis ``dim`` (1 = y, 2 = x), ``(F,H,W)``.

    Of the two neighbours the one with the larger change is used (the footprint must reach the farther
    one); 0 where neither lies on the same surface (relative jump <= ``threshold``).
    """
    length = z.shape[dim]
    za, zb = z.narrow(dim, 0, length - 1), z.narrow(dim, 1, length - 1)
    step = zb - za
    same = valid.narrow(dim, 0, length - 1) & valid.narrow(dim, 1, length - 1)
    same = same & (step.abs() <= threshold * torch.minimum(za, zb))
    step = torch.where(same, step, 0.0)
    forward = torch.zeros_like(z)
    backward = torch.zeros_like(z)
    forward.narrow(dim, 0, length - 1).copy_(step)
    backward.narrow(dim, 1, length - 1).copy_(step)
    return torch.where(forward.abs() >= backward.abs(), forward, backward)


def _per_frame_matmul(vectors: torch.Tensor, matrices: torch.Tensor, counts: list[int],
                      offsets: torch.Tensor | None = None) -> torch.Tensor:
    """``matrices[f] @ v (+ offsets[f])`` for rows of ``vectors (N,3)`` grouped frame after frame."""
    out = torch.empty_like(vectors)
    start = 0
    for frame, count in enumerate(counts):
        if count:
            rows = slice(start, start + count)
            if offsets is None:
                torch.mm(vectors[rows], matrices[frame].T, out=out[rows])
            else:
                torch.addmm(offsets[frame], vectors[rows], matrices[frame].T, out=out[rows])
            start += count
    return out


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
    at that many times its fronto-parallel value.
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

    same_surface = edge_threshold or DEFAULT_EDGE_THRESHOLD
    dz_u = _depth_step(z, valid, 2, same_surface)
    dz_v = _depth_step(z, valid, 1, same_surface)
    flat = torch.nonzero(valid.reshape(-1)).squeeze(1)
    pixels_per_frame = height * width
    frame_id, pixel = flat // pixels_per_frame, flat % pixels_per_frame
    counts = torch.bincount(frame_id, minlength=num_frames).cpu()
    zs = z.reshape(-1)[flat]
    dzu, dzv = dz_u.reshape(-1)[flat], dz_v.reshape(-1)[flat]
    fx, fy, skew = K_t[:, 0, 0, None, None], K_t[:, 1, 1, None, None], K_t[:, 0, 1, None, None]
    rows = torch.arange(height, device=device, dtype=torch.float32)[None, :, None] + 0.5
    cols = torch.arange(width, device=device, dtype=torch.float32)[None, None, :] + 0.5
    yn_grid = ((rows - K_t[:, 1, 2, None, None]) / fy).expand(num_frames, height, width)
    xn_grid = (cols - K_t[:, 0, 2, None, None] - skew * yn_grid) / fx
    yn = yn_grid.reshape(-1)[flat]
    xn = xn_grid.reshape(-1)[flat]
    inv_fx, inv_fy = (1.0 / K_t[:, 0, 0])[frame_id], (1.0 / K_t[:, 1, 1])[frame_id]
    skew_term = (-K_t[:, 0, 1] / (K_t[:, 0, 0] * K_t[:, 1, 1]))[frame_id]
    ray = torch.stack([xn, yn, torch.ones_like(xn)], dim=-1)  # camera ray with unit z
    # pixel patch in camera space: X(u+1) - X(u) = dz * ray + (z + dz) * d(ray)/du, halved;
    # d(ray)/du = (1/fx, 0, 0) and d(ray)/dv = (-skew/(fx fy), 1/fy, 0)
    half_u, half_v = 0.5 * dzu, 0.5 * dzv
    far_u, far_v = 0.5 * (zs + dzu), 0.5 * (zs + dzv)
    tangent_cam_u = torch.stack([half_u * xn + far_u * inv_fx, half_u * yn, half_u], dim=-1)
    tangent_cam_v = torch.stack([half_v * xn + far_v * skew_term, half_v * yn + far_v * inv_fy, half_v], dim=-1)
    tangents = []
    for tangent, inv_focal in ((tangent_cam_u, inv_fx), (tangent_cam_v, inv_fy)):
        cap = max_footprint_stretch * 0.5 * zs * inv_focal
        length = tangent.norm(dim=-1)
        shrink = torch.where(length > cap, cap / length.clamp(min=1e-30), 1.0)
        tangents.append(tangent * shrink[:, None])
    c2w = rigid_inverse(w2c)
    per_frame = counts.tolist()
    rotation = c2w[:, :3, :3].contiguous()
    xyz = _per_frame_matmul(ray * zs[:, None], rotation, per_frame, c2w[:, :3, 3])
    tangent_u = _per_frame_matmul(tangents[0], rotation, per_frame)
    tangent_v = _per_frame_matmul(tangents[1], rotation, per_frame)
    offsets = torch.zeros(num_frames + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    return PointFrames(
        xyz=xyz,
        rgb=frames_to_float(frames_t.reshape(-1, 3).index_select(0, flat)[None, None]).reshape(-1, 3),
        radius=torch.maximum(tangent_u.norm(dim=-1), tangent_v.norm(dim=-1)),
        frame_index=frame_id, pixel_index=pixel, offsets=offsets,
        source_height=height, source_width=width, tangent_u=tangent_u, tangent_v=tangent_v,
    )
