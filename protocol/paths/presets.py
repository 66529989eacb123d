"""Turn a :class:`PathSpec` into per-frame OpenCV cameras.

Every move is a rigid change of the camera expressed in the *source camera's own frame* (OpenCV:
x right, y down, z forward, metres), so a moving source camera carries the new path along::

    target_camera_to_world[i] = source_camera_to_world[s(i)] @ delta(t_i)

where ``s(i)`` is the time map (``i``, or the frozen frame for bullet time) and ``t_i`` the progress
(``gradual``: smoothstep ``3u^2 - 2u^3`` of ``u = i / (N - 1)``; ``direct``: 1 from frame 0).
A move at progress ``t`` is the full move with its amount scaled by ``t`` (zoom factors by
``factor ** t``), so gradual paths start exactly at the source pose.

The pivot sits ``pivot_depth`` metres along the source optical axis. Moves and their signs:

- ``orbit left/right/up/down``: rotate about the pivot around the camera's vertical (y) or
  horizontal (x) axis; the camera centre moves left/right/up/down and keeps looking at the pivot.
- ``dolly in/out``: translate along +z / -z by ``amount * pivot distance``.
- ``zoom in/out``: multiply fx, fy by ``factor`` / ``1 / factor`` (principal point unchanged).
- ``dolly_zoom in/out``: dolly by ``amount * d`` and scale the focal length by ``d' / d`` so the
  pivot plane keeps its image size.
- ``pan left/right``, ``tilt up/down``: rotate about the camera centre (view turns that way).
- ``roll left/right``: rotate about the view axis; ``right`` dips the camera's right side
  (the image content turns counter-clockwise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..camera import Camera, rigid_inverse
from ..errors import ValidationError
from .spec import Move, PathSpec, parse_path_spec


@dataclass(frozen=True)
class CameraPath:
    """Output cameras plus, per output frame, the source frame whose content it shows (time map)."""

    cameras: list[Camera]
    source_frames: list[int]

    def __len__(self) -> int:
        return len(self.cameras)


def _rotation(axis: str, angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    R = np.eye(4)
    if axis == "x":
        R[1:3, 1:3] = [[c, -s], [s, c]]
    elif axis == "y":
        R[0, 0], R[0, 2], R[2, 0], R[2, 2] = c, s, -s, c
    else:
        R[:2, :2] = [[c, -s], [s, c]]
    return R


def _translation(z: float) -> np.ndarray:
    T = np.eye(4)
    T[2, 3] = z
    return T


# (rotation axis, sign) so that a positive amount moves as named; derivations in tests/cameras.
_ORBIT_AXES = {"left": ("y", 1.0), "right": ("y", -1.0), "up": ("x", -1.0), "down": ("x", 1.0)}
_TURN_AXES = {("pan", "right"): ("y", 1.0), ("pan", "left"): ("y", -1.0),
              ("tilt", "up"): ("x", 1.0), ("tilt", "down"): ("x", -1.0),
              ("roll", "right"): ("z", 1.0), ("roll", "left"): ("z", -1.0)}


def move_delta(move: Move, progress: float, pivot_distance: float) -> tuple[np.ndarray, float, float]:
    """Local camera-to-camera transform for ``move`` at ``progress`` in [0, 1].

    Returns ``(delta 4x4, focal multiplier, new pivot distance)``; ``delta`` maps the moved
    camera's coordinates to the current camera's (both OpenCV, metres).
    """
    t, d = float(progress), float(pivot_distance)
    if move.kind == "orbit":
        axis, sign = _ORBIT_AXES[move.direction]
        angle = sign * math.radians(move.amount) * t
        # about the pivot (0, 0, d): +angle about y moves the centre to -x (left); +angle about x
        # moves it to +y (down, OpenCV), hence "up" is the negative angle.
        R = _rotation(axis, angle)
        return _translation(d) @ R @ _translation(-d), 1.0, d
    if move.kind in ("dolly", "dolly_zoom"):
        travel = (1.0 if move.direction == "in" else -1.0) * move.amount * d * t
        focal = (d - travel) / d if move.kind == "dolly_zoom" else 1.0
        return _translation(travel), focal, d - travel
    if move.kind == "zoom":
        factor = move.amount ** t
        return np.eye(4), factor if move.direction == "in" else 1.0 / factor, d
    axis, sign = _TURN_AXES[(move.kind, move.direction)]
    return _rotation(axis, sign * math.radians(move.amount) * t), 1.0, d


def progress_curve(timing: str, num_frames: int) -> np.ndarray:
    """Per-frame progress in [0, 1]: smoothstep ease for ``gradual``, all ones for ``direct``."""
    if timing == "direct" or num_frames == 1:
        return np.ones(num_frames)
    u = np.linspace(0.0, 1.0, num_frames)
    return u * u * (3.0 - 2.0 * u)


def source_frame_map(spec: PathSpec, num_frames: int, num_sources: int) -> list[int]:
    """Source frame shown at each output frame: identity, or the frozen frame for bullet time."""
    if spec.freeze_frame is None:
        if num_sources not in (1, num_frames):
            raise ValidationError(f"{num_sources} source cameras for {num_frames} output frames; give 1 or {num_frames}")
        return list(range(num_frames)) if num_sources == num_frames else [0] * num_frames
    if not 0 <= spec.freeze_frame < num_sources:
        raise ValidationError(
            f"bullet-time frame {spec.freeze_frame} is outside the source clip (frames 0..{num_sources - 1})")
    return [spec.freeze_frame] * num_frames


def _pivot_depths(pivot_depth: float | Sequence[float], num_sources: int) -> np.ndarray:
    depths = np.broadcast_to(np.asarray(pivot_depth, dtype=np.float64), (num_sources,)) \
        if np.ndim(pivot_depth) == 0 else np.asarray(pivot_depth, dtype=np.float64)
    if depths.shape != (num_sources,):
        raise ValidationError(f"pivot_depth must be one number or one per source camera ({num_sources}), "
                              f"got {depths.shape[0]} values")
    if not np.all(np.isfinite(depths)) or np.any(depths <= 0):
        raise ValidationError("pivot_depth must be positive and finite (metres along the source view axis)")
    return depths


def build_path(spec: PathSpec | str, sources: Sequence[Camera], pivot_depth: float | Sequence[float],
               num_frames: int | None = None) -> CameraPath:
    """Per-frame cameras and time map for ``spec`` relative to ``sources``.

    ``sources`` holds one camera per source frame (or a single camera for a still image, then
    ``num_frames`` sets the length); ``pivot_depth`` is metres along each source optical axis (one
    value, or one per source). Intrinsics come from the source camera, times any zoom.
    """
    if isinstance(spec, str):
        spec = parse_path_spec(spec)
    if len(sources) == 0:
        raise ValidationError("need at least one source camera to build a path")
    n_out = len(sources) if num_frames is None else int(num_frames)
    if n_out < 1:
        raise ValidationError(f"num_frames must be at least 1, got {num_frames}")
    depths = _pivot_depths(pivot_depth, len(sources))
    frames = source_frame_map(spec, n_out, len(sources))
    progress = progress_curve(spec.timing, n_out)
    cameras = []
    for i, (src_index, t) in enumerate(zip(frames, progress)):
        src = sources[src_index]
        delta, focal, d = np.eye(4), 1.0, depths[src_index]
        for move in spec.moves:
            step, f, d = move_delta(move, t, d)
            delta, focal = delta @ step, focal * f
            if d <= 1e-6 * depths[src_index]:
                raise ValidationError(f"frame {i}: the path passes through the pivot; use a smaller dolly")
        K = src.K.copy()
        K[0, 0] *= focal
        K[1, 1] *= focal
        K[0, 1] *= focal
        c2w = src.camera_to_world @ delta
        cameras.append(Camera(K, rigid_inverse(c2w), src.width, src.height))
    return CameraPath(cameras, frames)


def make_path(spec: PathSpec | str, sources: Sequence[Camera], pivot_depth: float | Sequence[float],
              num_frames: int | None = None) -> list[Camera]:
    """Per-frame cameras only (see :func:`build_path` for the time map)."""
    return build_path(spec, sources, pivot_depth, num_frames).cameras
