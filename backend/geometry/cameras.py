"""Camera tensors and depth conventions for the torch geometry code.

Conventions (same as :mod:`protocol.camera`):
- OpenCV camera axes: x right, y down, z forward; ``world_to_camera`` is a rigid 4x4 (metres).
- ``K`` is 3x3 in pixels; pixel ``(x, y)`` (column, row) covers ``[x, x+1) x [y, y+1)``, its centre
  is at ``(x + 0.5, y + 0.5)``.
- Depth maps are float, metres, one value per pixel, ``0`` (or non-finite) = no depth.
  ``"z"`` (planar) depth is the camera-space z of the surface point; ``"ray"`` depth is its
  Euclidean distance from the camera centre along the pixel-centre ray. ``ray = z * |K^-1 [u, v, 1]|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from protocol.camera import Camera
from protocol.errors import CameraError, ValidationError

DepthKind = Literal["z", "ray"]
DEPTH_KINDS: tuple[str, ...] = ("z", "ray")


def to_tensor(data: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``torch.as_tensor`` that also accepts numpy views with negative strides (e.g. ``a[::-1]``)."""
    if isinstance(data, torch.Tensor):
        return data
    return torch.as_tensor(np.ascontiguousarray(data))


def as_camera_tensors(
    K: torch.Tensor | np.ndarray,
    world_to_camera: torch.Tensor | np.ndarray,
    num_frames: int,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and broadcast intrinsics ``(3,3)|(F,3,3)`` and poses ``(4,4)|(F,4,4)`` to float32 batches.

    Returns ``(K (F,3,3), world_to_camera (F,4,4))`` on ``device``. Raises :class:`CameraError` on bad
    shapes, non-finite values or non-positive focal lengths.
    """
    K_t = to_tensor(K).to(device=device, dtype=torch.float32)
    w_t = to_tensor(world_to_camera).to(device=device, dtype=torch.float32)
    if K_t.shape == (3, 3):
        K_t = K_t.expand(num_frames, 3, 3)
    if w_t.shape == (4, 4):
        w_t = w_t.expand(num_frames, 4, 4)
    if K_t.shape != (num_frames, 3, 3):
        raise CameraError(f"intrinsics K must be (3,3) or ({num_frames},3,3), got {tuple(K_t.shape)}")
    if w_t.shape != (num_frames, 4, 4):
        raise CameraError(
            f"world_to_camera must be (4,4) or ({num_frames},4,4), got {tuple(w_t.shape)}"
        )
    if not bool(torch.isfinite(K_t).all()) or not bool(torch.isfinite(w_t).all()):
        raise CameraError("camera intrinsics or poses contain NaN or infinity")
    if bool((K_t[:, 0, 0] <= 0).any()) or bool((K_t[:, 1, 1] <= 0).any()):
        raise CameraError("focal lengths fx, fy must be positive")
    return K_t.contiguous(), w_t.contiguous()


def cameras_to_tensors(
    cameras: Sequence[Camera], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """``(K (F,3,3), world_to_camera (F,4,4), width, height)`` float32 tensors from protocol cameras.

    All cameras must share one image size (a trajectory renders to one video).
    """
    if len(cameras) == 0:
        raise CameraError("need at least one camera")
    sizes = {(c.width, c.height) for c in cameras}
    if len(sizes) != 1:
        raise CameraError(f"all cameras of a trajectory must share one image size, got {sorted(sizes)}")
    width, height = sizes.pop()
    K = torch.tensor(np.stack([c.K for c in cameras]), dtype=torch.float32, device=device)
    w2c = torch.tensor(np.stack([c.world_to_camera for c in cameras]), dtype=torch.float32, device=device)
    return K, w2c, width, height


def rigid_inverse(transform: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid 4x4 transforms ``(...,4,4)`` (transpose the rotation, rotate the translation)."""
    R = transform[..., :3, :3]
    t = transform[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    out = torch.zeros_like(transform)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


def pixel_ray_norms(K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``|K^-1 [u, v, 1]|`` at every pixel centre, shape ``(F,H,W)``: ray depth = z depth * this."""
    device = K.device
    u = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    v = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
    cx, cy, skew = K[:, 0, 2, None, None], K[:, 1, 2, None, None], K[:, 0, 1, None, None]
    y = (v[None, :, None] - cy) / fy
    x = (u[None, None, :] - cx - skew * y) / fx
    return torch.sqrt(x * x + y * y + 1.0)


def depth_to_planar(depth: torch.Tensor, K: torch.Tensor, depth_kind: DepthKind) -> torch.Tensor:
    """Convert a ``(F,H,W)`` depth map of kind ``"z"`` or ``"ray"`` to planar z depth (metres)."""
    check_depth_kind(depth_kind)
    if depth_kind == "z":
        return depth
    return depth / pixel_ray_norms(K, depth.shape[-2], depth.shape[-1])


def planar_to_depth(z_depth: torch.Tensor, K: torch.Tensor, depth_kind: DepthKind) -> torch.Tensor:
    """Convert planar z depth ``(F,H,W)`` to ``depth_kind`` (``"z"`` unchanged, ``"ray"`` = z * ray norm)."""
    check_depth_kind(depth_kind)
    if depth_kind == "z":
        return z_depth
    return z_depth * pixel_ray_norms(K, z_depth.shape[-2], z_depth.shape[-1])


def check_depth_kind(depth_kind: str) -> None:
    if depth_kind not in DEPTH_KINDS:
        raise ValidationError(f"depth_kind must be 'z' (planar) or 'ray' (distance along ray), got {depth_kind!r}")


def project_points(
    points_world: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project world points ``(N,3)`` with per-point cameras ``K (N,3,3)|(3,3)``, ``w2c (N,4,4)|(4,4)``.

    Returns ``(u, v, z)``: pixel coordinates (pixel centres at +0.5) and camera-space z (metres).
    ``u, v`` are meaningless where ``z <= 0``.
    """
    R = world_to_camera[..., :3, :3]
    t = world_to_camera[..., :3, 3]
    cam = (R @ points_world.unsqueeze(-1)).squeeze(-1) + t
    z = cam[..., 2]
    safe_z = torch.where(z > 0, z, torch.ones_like(z))
    xn = cam[..., 0] / safe_z
    yn = cam[..., 1] / safe_z
    u = K[..., 0, 0] * xn + K[..., 0, 1] * yn + K[..., 0, 2]
    v = K[..., 1, 1] * yn + K[..., 1, 2]
    return u, v, z
