"""ReCamMaster ``camera_extrinsics.json`` (also InfCam's ``camera_extrinsics_10types.json``).

Layout: ``{"frame0": {"cam01": "[a b c 0] [d e f 0] [g h i 0] [tx ty tz 1] ", ...}, ..., "frame80": ...}``.
Each string holds the rows of the **transposed** camera-to-world matrix (translation in the last
row) in Unreal Engine conventions: camera axes (forward, right, up), centimetres. ReCamMaster's
loader transposes, reorders the columns to (right, -up, forward), divides the translation by 100
and then only uses poses relative to frame 0, every 4th frame of exactly 81.

Mapping used here, chosen so ReCamMaster's loader yields our relative poses exactly: an OpenCV
point ``p`` maps to Unreal ``A p`` with ``A`` = rows ``(0, 0, 1), (1, 0, 0), (0, -1, 0)``
(forward = z, right = x, up = -y) for both the world and the camera axes. The file carries no
intrinsics and no image size: reading needs ``intrinsics`` (a Camera whose K and size are used),
defaulting to ReCamMaster's 832x480 output with a 24 mm lens on its 23.76 mm sensor.
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
    CameraPathData,
    FormatConstraintWarning,
    LossyFormatWarning,
    camera_from_c2w_opencv,
    file_error,
    load_json,
    require_cameras,
)

UE_FROM_OPENCV = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
RECAMMASTER_FRAMES = 81
CM_PER_M = 100.0
_ROW = re.compile(r"\[([^\[\]]*)\]")


def default_recammaster_camera() -> Camera:
    """ReCamMaster's output size (832x480) with a 24 mm lens on a 23.76 mm-wide sensor."""
    fov_x = 2.0 * math.degrees(math.atan(23.76 / 2.0 / 24.0))
    return Camera.from_fov(fov_x, 832, 480)


def _ue_matrix_from_camera(cam: Camera) -> np.ndarray:
    """Unreal c2w (columns forward, right, up; centimetres) for an OpenCV camera."""
    c2w = cam.camera_to_world
    R, t = c2w[:3, :3], c2w[:3, 3]
    M = np.eye(4)
    M[:3, 0] = UE_FROM_OPENCV @ R[:, 2]    # forward
    M[:3, 1] = UE_FROM_OPENCV @ R[:, 0]    # right
    M[:3, 2] = -UE_FROM_OPENCV @ R[:, 1]   # up
    M[:3, 3] = CM_PER_M * (UE_FROM_OPENCV @ t)
    return M


def _camera_c2w_from_ue(M: np.ndarray) -> np.ndarray:
    """ReCamMaster's loader conversion followed by our world mapping back to OpenCV."""
    loaded = M[:, [1, 2, 0, 3]].copy()
    loaded[:3, 1] *= -1.0
    loaded[:3, 3] /= CM_PER_M
    out = np.eye(4)
    out[:3, :] = UE_FROM_OPENCV.T @ loaded[:3, :]
    return out


def _format_matrix(M: np.ndarray) -> str:
    rows = M.T  # the file stores the transpose, row by row
    return "".join("[" + " ".join(f"{v:.9g}" for v in row) + "] " for row in rows)


def write_recammaster(path: str | os.PathLike, cameras: Sequence[Camera], camera_name: str = "cam01") -> None:
    """Write one trajectory as ``camera_name`` of ``frame0..frameN-1``; warns: intrinsics are lost."""
    cams = require_cameras(cameras)
    warnings.warn(f"{os.fspath(path)}: ReCamMaster camera_extrinsics.json stores poses only; intrinsics "
                  "(focal length, principal point) and image size are lost", LossyFormatWarning, stacklevel=3)
    if len(cams) != RECAMMASTER_FRAMES:
        warnings.warn(f"{os.fspath(path)}: ReCamMaster expects exactly {RECAMMASTER_FRAMES} frames "
                      f"(it uses every 4th); writing {len(cams)}", FormatConstraintWarning, stacklevel=3)
    doc = {f"frame{i}": {camera_name: _format_matrix(_ue_matrix_from_camera(c))} for i, c in enumerate(cams)}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)


def _parse_matrix(path: str | os.PathLike, key: str, text: object) -> np.ndarray:
    if not isinstance(text, str):
        raise file_error(path, f"{key} must be a string of 4 bracketed rows")
    rows = _ROW.findall(text)
    try:
        values = [[float(v) for v in row.split()] for row in rows]
    except ValueError as exc:
        raise file_error(path, f"{key}: not a number ({exc})") from exc
    if len(values) != 4 or any(len(r) != 4 for r in values):
        raise file_error(path, f"{key} needs 4 bracketed rows of 4 numbers, got {text!r}")
    M = np.array(values).T
    if not np.all(np.isfinite(M)):
        raise file_error(path, f"{key} contains NaN or infinity")
    return M


def read_recammaster_doc(path: str | os.PathLike, doc: dict, camera_name: str = "cam01",
                         intrinsics: Camera | None = None) -> CameraPathData:
    """Cameras of trajectory ``camera_name``; K and size from ``intrinsics`` (see module docstring)."""
    frames = []
    for key in doc:
        match = re.fullmatch(r"frame(\d+)", str(key))
        if match is None:
            raise file_error(path, f"unexpected key {key!r}; ReCamMaster files have frame0, frame1, ...")
        frames.append((int(match.group(1)), key))
    if not frames:
        raise file_error(path, "no frames")
    frames.sort()
    if [f for f, _ in frames] != list(range(len(frames))):
        raise file_error(path, "frame keys must run frame0, frame1, ... without gaps")
    template = intrinsics or default_recammaster_camera()
    cameras = []
    for index, key in frames:
        entry = doc[key]
        if not isinstance(entry, dict) or camera_name not in entry:
            available = sorted(entry) if isinstance(entry, dict) else []
            raise file_error(path, f"{key} has no camera {camera_name!r} (has {available})")
        M = _parse_matrix(path, f"{key}.{camera_name}", entry[camera_name])
        cameras.append(camera_from_c2w_opencv(path, index, _camera_c2w_from_ue(M), template.K,
                                              template.width, template.height))
    return CameraPathData(cameras, None, None, {"camera_names": sorted(doc[frames[0][1]])})


def read_recammaster(path: str | os.PathLike, camera_name: str = "cam01",
                     intrinsics: Camera | None = None) -> CameraPathData:
    return read_recammaster_doc(path, load_json(path), camera_name, intrinsics)
