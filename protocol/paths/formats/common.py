"""Shared pieces of the camera-path file formats: the result type, warnings, file-error helpers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...camera import Camera, rigid_inverse
from ...errors import CameraError, ValidationError

# OpenCV camera axes <-> OpenGL/Blender camera axes (x right, y up, looking down -z).
OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
MAX_JSON_BYTES = 256 * 1024 * 1024


class CameraFormatWarning(UserWarning):
    """Base class of the warnings the camera-path formats emit."""


class LossyFormatWarning(CameraFormatWarning):
    """Writing to this format drops information; the message says what is lost."""


class FormatConstraintWarning(CameraFormatWarning):
    """The file is written, but the consuming tool expects something else (e.g. a frame count)."""


@dataclass
class CameraPathData:
    """What a camera-path file holds: per-frame OpenCV cameras, the frame rate when the file has one,
    and for each frame the source frame whose content it shows (bullet time) when the file has it."""

    cameras: list[Camera]
    fps: float | None = None
    source_frames: list[int] | None = None
    extras: dict = field(default_factory=dict)


def file_error(path: str | os.PathLike, problem: str) -> ValidationError:
    """A :class:`ValidationError` that names the file and the problem."""
    return ValidationError(f"camera path file {os.fspath(path)!r}: {problem}")


def checked_camera(path: str | os.PathLike, index: int, build: Callable[[], Camera]) -> Camera:
    """Build camera ``index`` of a file, turning a :class:`CameraError` into a file-named error."""
    try:
        return build()
    except CameraError as exc:
        raise file_error(path, f"camera {index}: {exc.message}") from exc


def as_matrix(path: str | os.PathLike, index: int, values: object, what: str) -> np.ndarray:
    """``values`` (16 or 12 numbers, or nested) as a finite 4x4 matrix, else a file-named error."""
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise file_error(path, f"camera {index}: {what} is not a list of numbers") from exc
    if arr.size == 12:
        arr = np.concatenate([arr, [0.0, 0.0, 0.0, 1.0]])
    if arr.size != 16:
        raise file_error(path, f"camera {index}: {what} needs 16 (or 12) numbers, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise file_error(path, f"camera {index}: {what} contains NaN or infinity")
    return arr.reshape(4, 4)


def camera_from_c2w_opencv(path: str | os.PathLike, index: int, c2w: np.ndarray, K: np.ndarray,
                           width: int, height: int) -> Camera:
    """Camera from an OpenCV camera-to-world matrix; a scaled rotation is normalised (like Blender)."""
    from ...blender_camera import normalized_rotation

    def build() -> Camera:
        return Camera(K, rigid_inverse(normalized_rotation(c2w)), width, height)

    return checked_camera(path, index, build)


def require_cameras(cameras: Sequence[Camera]) -> list[Camera]:
    cams = list(cameras)
    if not cams:
        raise ValidationError("need at least one camera to write a camera path")
    for i, cam in enumerate(cams):
        if not isinstance(cam, Camera):
            raise ValidationError(f"camera {i} is a {type(cam).__name__}, not a protocol.camera.Camera")
    return cams


def load_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file, turning every failure into a file-named :class:`ValidationError`."""
    try:
        if os.path.getsize(path) > MAX_JSON_BYTES:
            raise file_error(path, f"larger than {MAX_JSON_BYTES // (1024 * 1024)} MiB")
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError as exc:
        raise file_error(path, "does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, f"cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise file_error(path, f"is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(doc, dict):
        raise file_error(path, "top level must be a JSON object")
    return doc
