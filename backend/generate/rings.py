"""Camera rings for progressive outpainting: orbit views of the reference camera around a pivot.

A ring view ``(elevation, azimuth)`` in degrees is the reference camera (frame 0, OpenCV: x right,
y down, z forward) orbited about the pivot point ``pivot_depth`` metres straight ahead of it:
positive azimuth moves the camera to its right, positive elevation moves it up; the orbited camera
keeps looking at the pivot and keeps the intrinsics. CoCo4D's default rings: loop 1
``(0, +30), (0, -30), (+15, 0), (-15, 0)``; loop 2 ``(+15, +30), (+15, -30), (-15, +30), (-15, -30)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from protocol.camera import Camera, rigid_inverse
from protocol.errors import ValidationError

RingLoops = list[list[tuple[float, float]]]

DEFAULT_RINGS: RingLoops = [
    [(0.0, 30.0), (0.0, -30.0), (15.0, 0.0), (-15.0, 0.0)],
    [(15.0, 30.0), (15.0, -30.0), (-15.0, 30.0), (-15.0, -30.0)],
]
MAX_RING_ANGLE_DEG = 89.0
MAX_RING_VIEWS = 64


def parse_rings(raw: object) -> RingLoops:
    """Validate ``[[(elev, azim), ...], ...]`` (degrees; lists or tuples) into float pairs per loop."""
    if raw is None:
        return [list(loop) for loop in DEFAULT_RINGS]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValidationError("rings must be a non-empty list of loops, each a list of [elevation, azimuth] degrees")
    loops: RingLoops = []
    count = 0
    for i, loop in enumerate(raw):
        if not isinstance(loop, (list, tuple)) or not loop:
            raise ValidationError(f"rings[{i}] must be a non-empty list of [elevation, azimuth] pairs")
        views = []
        for j, pair in enumerate(loop):
            try:
                elevation, azimuth = (float(v) for v in pair)
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"rings[{i}][{j}] must be [elevation, azimuth] in degrees, got {pair!r}") from exc
            if not (math.isfinite(elevation) and math.isfinite(azimuth)) or \
                    max(abs(elevation), abs(azimuth)) > MAX_RING_ANGLE_DEG:
                raise ValidationError(f"rings[{i}][{j}]: angles must be finite and within +-{MAX_RING_ANGLE_DEG} deg")
            views.append((elevation, azimuth))
            count += 1
        loops.append(views)
    if count > MAX_RING_VIEWS:
        raise ValidationError(f"at most {MAX_RING_VIEWS} ring views, got {count}")
    return loops


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def orbit_camera(reference: Camera, pivot_depth: float, elevation_deg: float, azimuth_deg: float) -> Camera:
    """``reference`` orbited about the point ``pivot_depth`` metres ahead of it (module docstring)."""
    if not pivot_depth > 0:
        raise ValidationError(f"the orbit pivot must be in front of the camera, got depth {pivot_depth}")
    rotation = _rot_y(-math.radians(azimuth_deg)) @ _rot_x(-math.radians(elevation_deg))
    pivot = np.array([0.0, 0.0, float(pivot_depth)])
    move = np.eye(4)  # new camera -> reference camera coordinates
    move[:3, :3] = rotation
    move[:3, 3] = pivot - rotation @ pivot
    camera_to_world = rigid_inverse(np.asarray(reference.world_to_camera, dtype=np.float64)) @ move
    return reference.with_pose(rigid_inverse(camera_to_world))


def ring_cameras(reference: Camera, pivot_depth: float, loop: Sequence[tuple[float, float]]) -> list[Camera]:
    """The cameras of one loop, in the order given."""
    return [orbit_camera(reference, pivot_depth, e, a) for e, a in loop]
