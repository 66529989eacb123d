"""Pinhole cameras in the OpenCV convention, shared by the backend, the CLI and the add-on.

Convention (used everywhere inside Recast 4D):
- camera axes: x right, y down, z forward (OpenCV); Blender cameras look down their local -z with
  y up, so converting flips the y and z axes (see ``protocol.blender_camera``).
- ``world_to_camera`` is a 4x4 rigid transform (rotation + translation, no scale), metres.
- ``K`` is the 3x3 intrinsic matrix in pixels; pixel centres sit at integer + 0.5, i.e. the
  top-left pixel covers [0, 1) x [0, 1) and a point projecting to (u, v) = (0.5, 0.5) hits its centre.
- ``width``/``height`` are the image size in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import CameraError

MAX_IMAGE_SIDE = 16384
_ORTHO_TOL = 1e-4


@dataclass(frozen=True)
class Camera:
    """One pinhole camera: intrinsics ``K`` (pixels), ``world_to_camera`` (4x4, OpenCV), image size."""

    K: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        w2c = np.asarray(self.world_to_camera, dtype=np.float64)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "world_to_camera", w2c)
        validate_camera_arrays(K, w2c, int(self.width), int(self.height))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def rotation(self) -> np.ndarray:
        """3x3 world-to-camera rotation."""
        return self.world_to_camera[:3, :3]

    @property
    def camera_to_world(self) -> np.ndarray:
        """4x4 inverse of ``world_to_camera`` (rigid inverse, exact)."""
        return rigid_inverse(self.world_to_camera)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (metres)."""
        R, t = self.world_to_camera[:3, :3], self.world_to_camera[:3, 3]
        return -R.T @ t

    @classmethod
    def from_fov(
        cls, fov_x_deg: float, width: int, height: int, world_to_camera: np.ndarray | None = None
    ) -> Camera:
        """Square-pixel camera with horizontal field of view ``fov_x_deg`` and a centred principal point."""
        if not 0.0 < fov_x_deg < 180.0:
            raise CameraError(f"field of view must be in (0, 180) degrees, got {fov_x_deg}")
        f = 0.5 * width / np.tan(np.radians(fov_x_deg) / 2.0)
        K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
        return cls(K, np.eye(4) if world_to_camera is None else world_to_camera, width, height)

    def with_pose(self, world_to_camera: np.ndarray) -> Camera:
        return Camera(self.K, world_to_camera, self.width, self.height)

    def to_dict(self) -> dict:
        """Plain-data form for msgpack/JSON (lists of floats)."""
        return {
            "K": self.K.tolist(),
            "world_to_camera": self.world_to_camera.tolist(),
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Camera:
        try:
            return cls(np.asarray(data["K"], dtype=np.float64),
                       np.asarray(data["world_to_camera"], dtype=np.float64),
                       int(data["width"]), int(data["height"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CameraError(f"camera must have K (3x3), world_to_camera (4x4), width, height: {exc}") from exc


def rigid_inverse(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (or a stack ``(..., 4, 4)``) without a general matrix inverse."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def validate_camera_arrays(K: np.ndarray, w2c: np.ndarray, width: int, height: int) -> None:
    """Raise :class:`CameraError` with a readable message unless this is a usable pinhole camera."""
    if K.shape != (3, 3):
        raise CameraError(f"intrinsics K must be 3x3, got shape {K.shape}")
    if w2c.shape != (4, 4):
        raise CameraError(f"world_to_camera must be 4x4, got shape {w2c.shape}")
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise CameraError(f"image size must be 1..{MAX_IMAGE_SIDE} pixels per side, got {width}x{height}")
    if not np.all(np.isfinite(K)):
        raise CameraError("intrinsics K contain NaN or infinity")
    if not np.all(np.isfinite(w2c)):
        raise CameraError("world_to_camera contains NaN or infinity")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CameraError(f"focal lengths must be positive, got fx={K[0, 0]:g}, fy={K[1, 1]:g}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0 or K[2, 0] != 0:
        raise CameraError("K must be upper-triangular with last row [0, 0, 1]")
    if not np.allclose(w2c[3], [0.0, 0.0, 0.0, 1.0]):
        raise CameraError("world_to_camera last row must be [0, 0, 0, 1]")
    R = w2c[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=_ORTHO_TOL) or np.linalg.det(R) <= 0:
        raise CameraError("world_to_camera rotation is not orthonormal with det +1 (scale or mirror?)")


def stack_cameras(cameras: Sequence[Camera]) -> tuple[np.ndarray, np.ndarray]:
    """``(K (N,3,3), world_to_camera (N,4,4))`` float64 arrays for batched geometry code."""
    if len(cameras) == 0:
        raise CameraError("need at least one camera")
    return (np.stack([c.K for c in cameras]), np.stack([c.world_to_camera for c in cameras]))


def project_points(cam: Camera, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points ``(..., 3)`` (metres) to pixels.

    Returns ``(uv (..., 2), z (...))``: ``uv`` in pixel units with pixel centres at +0.5 (so the
    top-left pixel's centre is (0.5, 0.5)), ``z`` the planar depth along the optical axis (metres,
    negative behind the camera; ``uv`` is meaningless there).
    """
    p = np.asarray(points_world, dtype=np.float64)
    cam_pts = p @ cam.rotation.T + cam.world_to_camera[:3, 3]
    z = cam_pts[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = cam_pts @ cam.K.T
        uv = pix[..., :2] / pix[..., 2:3]
    return uv, z


def pixel_ray_lengths(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """``|K^-1 [u, v, 1]|`` at every pixel centre, shape ``(..., height, width)`` for K ``(..., 3, 3)``.

    This is the distance along the ray per metre of planar depth: ``ray = z * lengths``.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape[-2:] != (3, 3):
        raise CameraError(f"intrinsics K must be (..., 3, 3), got shape {K.shape}")
    u = np.arange(width, dtype=np.float64) + 0.5
    v = np.arange(height, dtype=np.float64) + 0.5
    fx, fy, cx, cy, skew = (K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 0, 1])
    e = (Ellipsis, None, None)
    y = (v[:, None] - cy[e]) / fy[e]
    x = (u[None, :] - cx[e] - skew[e] * y) / fx[e]
    return np.sqrt(x * x + y * y + 1.0)


def _depth_and_lengths(depth: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(depth)
    if d.ndim < 2:
        raise CameraError(f"depth must be (..., H, W), got shape {d.shape}")
    K = np.asarray(K, dtype=np.float64)
    if K.shape[-2:] != (3, 3) or K.ndim - 2 > d.ndim - 2:
        raise CameraError(f"K {K.shape} does not broadcast against depth {d.shape}")
    lengths = pixel_ray_lengths(K, d.shape[-1], d.shape[-2])
    return d, lengths


def ray_depth_to_z(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Distance along each pixel's ray (metres) -> planar z-depth (metres), shape ``(..., H, W)``.

    ``K`` is ``(3, 3)`` or ``(..., 3, 3)`` broadcasting over the leading axes of ``depth``.
    Non-finite or non-positive values (no hit) pass through unchanged. Keeps a float32 dtype.
    """
    d, lengths = _depth_and_lengths(depth, K)
    out = d / lengths
    return out.astype(d.dtype) if np.issubdtype(d.dtype, np.floating) else out


def z_to_ray_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Planar z-depth (metres) -> distance along each pixel's ray (metres); inverse of ``ray_depth_to_z``."""
    d, lengths = _depth_and_lengths(depth, K)
    out = d * lengths
    return out.astype(d.dtype) if np.issubdtype(d.dtype, np.floating) else out


def look_at(eye: Sequence[float] | np.ndarray, target: Sequence[float] | np.ndarray,
            up: Sequence[float] | np.ndarray = (0.0, -1.0, 0.0)) -> np.ndarray:
    """OpenCV world-to-camera 4x4 for a camera at ``eye`` looking at ``target`` (metres).

    ``up`` is the world direction that should appear up in the image; the default ``(0, -1, 0)``
    matches an identity OpenCV camera (image up = -y). Raises when ``up`` is parallel to the view.
    """
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    n = np.linalg.norm(forward)
    if n < 1e-12:
        raise CameraError("look_at: eye and target coincide")
    z = forward / n
    x = np.cross(-np.asarray(up, dtype=np.float64), z)
    nx = np.linalg.norm(x)
    if nx < 1e-9:
        raise CameraError("look_at: up direction is parallel to the viewing direction")
    x /= nx
    y = np.cross(z, x)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([x, y, z])
    w2c[:3, 3] = -w2c[:3, :3] @ eye
    return w2c
