"""nerfstudio / instant-ngp ``transforms.json``: the source cameras a reconstruction tool solved.

This is the *dataset* file (``ns-process-data``, instant-ngp's ``colmap2nerf.py``, NeRF synthetic),
not nerfstudio's ``camera_path`` render file (:mod:`.nerfstudio`). Layout read here::

    {"camera_model": "OPENCV" | "PINHOLE" | "SIMPLE_PINHOLE" | ...,   # optional, default pinhole
     "fl_x": px, "fl_y": px, "cx": px, "cy": px, "w": W, "h": H,      # shared intrinsics (optional)
     "camera_angle_x": rad, "camera_angle_y": rad,                    # instant-ngp / NeRF: FOV instead
     "k1": .., "k2": .., "p1": .., "p2": ..,                           # distortion (ignored, warned)
     "frames": [{"file_path": "images/frame_00001.png",
                 "transform_matrix": 4x4 camera-to-world, OpenGL/Blender camera axes,
                 "fl_x": .., "w": .., ...}, ...]}                      # per-frame intrinsics override

Conventions: ``transform_matrix`` is camera-to-world with the camera looking down its local -z,
+y up (OpenGL, as Blender), so ``c2w_opencv = transform_matrix @ diag(1, -1, -1, 1)``; a scaled
rotation is normalised. ``fl_x/fl_y`` are focal lengths in pixels; ``cx, cy`` the principal point
with pixel centres at +0.5 (COLMAP's convention, which nerfstudio copies); missing ``cx, cy`` mean
the image centre, a missing ``fl_y`` equals ``fl_x``; ``camera_angle_x`` is the full horizontal
field of view in radians (``fl_x = 0.5 W / tan(angle / 2)``). Files without ``w``/``h`` (NeRF
synthetic) need the image size from the caller (the clip's). Frames are ordered by ``file_path``
in natural order (``frame_2`` before ``frame_10``): the temporal order of a video's frames, which
the tools write in arbitrary order. instant-ngp's own loader re-orients and rescales the scene
after reading; the file itself, and so this reader, keeps the world frame the tool solved.
Distortion cannot be applied by a pinhole camera: non-zero coefficients give a warning.

:func:`write_transforms` writes the nerfstudio layout with per-frame intrinsics (lossless for
pinhole cameras without skew), so any tool that reads ``transforms.json`` can take our cameras.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Sequence

import numpy as np

from ...camera import Camera
from .common import (
    OPENGL_FROM_OPENCV,
    CameraFormatWarning,
    CameraPathData,
    LossyFormatWarning,
    as_matrix,
    camera_from_c2w_opencv,
    file_error,
    load_json,
    require_cameras,
)

PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL", "FULL_OPENCV")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers by value: ``frame_2`` < ``frame_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def is_transforms_doc(doc: dict) -> bool:
    """Whether a JSON document is a ``transforms.json`` (a ``frames`` list of ``transform_matrix``)."""
    frames = doc.get("frames")
    return isinstance(frames, list) and bool(frames) and isinstance(frames[0], dict) \
        and "transform_matrix" in frames[0]


def _number(path: str | os.PathLike, where: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise file_error(path, f"{where} must be a number, got {value!r}") from exc
    if not math.isfinite(number):
        raise file_error(path, f"{where} must be finite, got {value!r}")
    return number


def _intrinsics(path: str | os.PathLike, index: int, frame: dict, doc: dict, width: int | None,
                height: int | None) -> tuple[np.ndarray, int, int]:
    """``(K, W, H)`` of frame ``index``: per-frame keys override the shared ones."""
    def get(key: str) -> object:
        return frame.get(key, doc.get(key))

    where = f"frames[{index}]"
    w, h = get("w"), get("h")
    w = width if w is None else int(_number(path, f"{where}.w", w))
    h = height if h is None else int(_number(path, f"{where}.h", h))
    if w is None or h is None:
        raise file_error(path, f"{where}: no image size ('w', 'h'); pass the clip's width and height")
    fl_x, fl_y = get("fl_x"), get("fl_y")
    if fl_x is None and get("camera_angle_x") is not None:
        fl_x = 0.5 * w / math.tan(0.5 * _number(path, f"{where}.camera_angle_x", get("camera_angle_x")))
    if fl_y is None and get("camera_angle_y") is not None:
        fl_y = 0.5 * h / math.tan(0.5 * _number(path, f"{where}.camera_angle_y", get("camera_angle_y")))
    if fl_x is None and fl_y is None:
        raise file_error(path, f"{where}: no focal length (fl_x / fl_y or camera_angle_x)")
    fx = _number(path, f"{where}.fl_x", fl_x if fl_x is not None else fl_y)
    fy = _number(path, f"{where}.fl_y", fl_y if fl_y is not None else fl_x)
    cx = _number(path, f"{where}.cx", get("cx")) if get("cx") is not None else 0.5 * w
    cy = _number(path, f"{where}.cy", get("cy")) if get("cy") is not None else 0.5 * h
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), int(w), int(h)


def read_transforms_doc(path: str | os.PathLike, doc: dict, width: int | None = None,
                        height: int | None = None) -> CameraPathData:
    """Cameras of an already-loaded ``transforms.json``, ordered by ``file_path`` (module docstring).

    ``extras["file_paths"]`` lists each camera's ``file_path`` in that order.
    """
    model = str(doc.get("camera_model", "PINHOLE")).upper()
    if model not in PINHOLE_MODELS:
        raise file_error(path, f"camera_model {model!r} is not a pinhole model (fisheye/equirectangular "
                               f"cameras are not supported); supported: {', '.join(PINHOLE_MODELS)}")
    frames = doc.get("frames")
    if not isinstance(frames, list) or not frames:
        raise file_error(path, "'frames' must be a non-empty list")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "transform_matrix" not in frame:
            raise file_error(path, f"frames[{i}] has no transform_matrix")
    names = [str(frame.get("file_path", f"{i:06d}")) for i, frame in enumerate(frames)]
    order = sorted(range(len(frames)), key=lambda i: natural_key(names[i]))
    distorted = [k for k in DISTORTION_KEYS
                 if any(abs(float(f.get(k, doc.get(k, 0.0)) or 0.0)) > 0 for f in frames)]
    if distorted:
        warnings.warn(f"{os.fspath(path)}: lens distortion ({', '.join(distorted)}) is ignored: Recast 4D "
                      "cameras are pinhole; undistort the frames first (e.g. COLMAP image_undistorter)",
                      CameraFormatWarning, stacklevel=3)
    cameras = []
    for index in order:
        frame = frames[index]
        c2w_gl = as_matrix(path, index, frame["transform_matrix"], f"frames[{index}].transform_matrix")
        K, w, h = _intrinsics(path, index, frame, doc, width, height)
        cameras.append(camera_from_c2w_opencv(path, index, c2w_gl @ OPENGL_FROM_OPENCV, K, w, h))
    fps = doc.get("fps")
    return CameraPathData(cameras, None if fps is None else float(fps),
                          extras={"file_paths": [names[i] for i in order]})


def read_transforms(path: str | os.PathLike, width: int | None = None, height: int | None = None) -> CameraPathData:
    """Read a nerfstudio / instant-ngp ``transforms.json`` (see the module docstring)."""
    return read_transforms_doc(path, load_json(path), width, height)


def write_transforms(path: str | os.PathLike, cameras: Sequence[Camera], fps: float | None = None,
                     file_paths: Sequence[str] | None = None) -> None:
    """Write ``cameras`` as a nerfstudio ``transforms.json`` with per-frame ``fl_x, fl_y, cx, cy, w, h``.

    ``file_paths`` default to ``images/frame_00001.png``, ... (nerfstudio's names), in camera order.
    Skew (``K[0, 1]``) cannot be stored and is dropped with a :class:`LossyFormatWarning`.
    """
    cams = require_cameras(cameras)
    if file_paths is None:
        file_paths = [f"images/frame_{i + 1:05d}.png" for i in range(len(cams))]
    if len(file_paths) != len(cams):
        raise file_error(path, f"{len(file_paths)} file paths for {len(cams)} cameras")
    if any(abs(c.K[0, 1]) > 1e-12 for c in cams):
        warnings.warn(f"{os.fspath(path)}: transforms.json has no skew term; K[0, 1] is dropped",
                      LossyFormatWarning, stacklevel=2)
    frames = []
    for cam, name in zip(cams, file_paths):
        c2w_gl = cam.camera_to_world @ OPENGL_FROM_OPENCV
        frames.append({"file_path": str(name), "transform_matrix": c2w_gl.tolist(),
                       "fl_x": cam.fx, "fl_y": cam.fy, "cx": cam.cx, "cy": cam.cy,
                       "w": cam.width, "h": cam.height})
    doc: dict = {"camera_model": "PINHOLE", "frames": frames}
    if fps is not None:
        doc["fps"] = float(fps)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
