"""Validation of request fields shared by the job kinds (``reshoot``, ``generate``, ``tune``).

Each helper returns the value in its typed form or raises :class:`ValidationError` (or
:class:`CameraError`) with a message that names the field, before any heavy work starts.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from protocol.camera import Camera
from protocol.errors import CameraError, ValidationError


def video_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """``(F, H, W, 3)`` uint8 RGB frames, at least 8x8 and one frame."""
    if frames is None:
        raise ValidationError(f"{name} are missing: send the source video as (F, H, W, 3) uint8")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValidationError(f"{name} must have shape (F, H, W, 3), got {frames.shape}")
    if frames.shape[0] == 0:
        raise ValidationError(f"{name}: the video is empty (0 frames)")
    if min(frames.shape[1:3]) < 8:
        raise ValidationError(f"{name}: {frames.shape[2]}x{frames.shape[1]} is too small (8 pixels minimum)")
    if frames.dtype != np.uint8:
        raise ValidationError(f"{name} must be uint8 RGB, got {frames.dtype}")
    return frames

def positive_float(value: Any, name: str) -> float:
    """A finite number > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name} must be a number, got {value!r}") from exc
    if not np.isfinite(value) or value <= 0:
        raise ValidationError(f"{name} must be positive and finite, got {value}")
    return value

def camera_list(raw: Any, what: str) -> list[Camera]:
    """Cameras from their plain-data form (``Camera.to_dict``); errors name the index."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValidationError(f"{what} must be a non-empty list of cameras")
    cameras = []
    for i, item in enumerate(raw):
        try:
            cameras.append(item if isinstance(item, Camera) else Camera.from_dict(item))
        except CameraError as exc:
            raise CameraError(f"{what}[{i}]: {exc}") from exc
    return cameras

def source_cameras(params: dict, n: int, w: int, h: int, warnings: list[str]) -> list[Camera]:
    """One source camera per frame from ``params["cameras"]`` (one = static), or a field-of-view guess
    (``fov_deg``, default 60) with a warning appended to ``warnings``."""
    raw = params.get("cameras")
    if raw is None:
        fov = positive_float(params.get("fov_deg", 60.0), "fov_deg")
        warnings.append(f"no source camera given: assuming a static camera with a {fov:g} degree horizontal field of view")
        return [Camera.from_fov(fov, w, h)] * n
    cameras = camera_list(raw, "cameras")
    if len(cameras) == 1:
        cameras = cameras * n
    if len(cameras) != n:
        raise ValidationError(f"got {len(cameras)} source cameras for {n} frames: send one per frame, or one for a static camera")
    for i, cam in enumerate(cameras):
        if (cam.width, cam.height) != (w, h):
            raise ValidationError(f"cameras[{i}] is {cam.width}x{cam.height} but the frames are {w}x{h}")
    return cameras

def optional_map(value: Any, name: str, shape: tuple[int, int, int], kind: type) -> np.ndarray | None:
    """An optional per-frame map of ``shape``: ``kind=bool`` gives a mask, ``float`` float32 metres."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValidationError(f"{name} must have shape {shape} (one map per frame), got {arr.shape}")
    if kind is bool:
        return arr.astype(bool)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValidationError(f"{name} must be floating point metres, got {arr.dtype}")
    return arr.astype(np.float32, copy=False)

def options_from(cls: type, raw: Any, name: str):
    """An options dataclass ``cls`` from a map; unknown keys and wrongly typed values are refused."""
    if not isinstance(raw, dict):
        raise ValidationError(f"{name} must be a map of options")
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ValidationError(f"unknown {name} options {sorted(unknown)}; known: {sorted(known)}")
    defaults = cls()
    values = {}
    for key, value in raw.items():
        default = getattr(defaults, key)
        if default is not None and value is not None and not isinstance(value, type(default)):
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            else:
                raise ValidationError(f"{name}.{key} must be {type(default).__name__}, got {value!r}")
        values[key] = value
    return cls(**values)
