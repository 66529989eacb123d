"""nerfstudio ``camera_path`` JSON (what ``ns-render camera-path`` and the nerfstudio Blender add-on use).

Layout written here (nerfstudio's keys plus explicit intrinsics)::

    {"camera_type": "perspective", "render_width": W, "render_height": H, "fps": fps,
     "seconds": N / fps, "smoothness_value": 0, "is_cycle": false, "crop": null,
     "camera_path": [{"camera_to_world": [16 floats, row-major, OpenGL/Blender camera axes],
                      "fov": vertical FOV in degrees, "aspect": 1,
                      "fx": px, "fy": px, "cx": px, "cy": px,     # Recast 4D addition
                      "source_frame": int}, ...]}                 # Recast 4D addition (bullet time)

nerfstudio itself derives ``fx = fy = (H/2)/tan(fov/2)`` and a centred principal point; the explicit
``fx, fy, cx, cy`` keep non-square pixels and lens shift. Files without them are read the nerfstudio way.
Pixel centres: nerfstudio samples rays at pixel + 0.5, the same as Recast 4D.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence

import numpy as np

from ...camera import Camera
from .common import (
    OPENGL_FROM_OPENCV,
    CameraPathData,
    LossyFormatWarning,
    as_matrix,
    camera_from_c2w_opencv,
    file_error,
    load_json,
    require_cameras,
)


def write_nerfstudio(path: str | os.PathLike, cameras: Sequence[Camera], fps: float,
                     source_frames: Sequence[int] | None = None) -> None:
    """Write ``cameras`` as a nerfstudio camera_path JSON (all cameras must share one image size)."""
    cams = require_cameras(cameras)
    sizes = {(c.width, c.height) for c in cams}
    if len(sizes) > 1:
        raise file_error(path, f"nerfstudio camera paths have one render size, cameras have {sorted(sizes)}")
    if any(abs(c.K[0, 1]) > 1e-12 for c in cams):
        warnings.warn(f"{os.fspath(path)}: nerfstudio JSON has no skew term; K[0, 1] is dropped",
                      LossyFormatWarning, stacklevel=3)
    width, height = sizes.pop()
    entries = []
    for i, cam in enumerate(cams):
        c2w_gl = cam.camera_to_world @ OPENGL_FROM_OPENCV
        entry = {
            "camera_to_world": [float(v) for v in c2w_gl.reshape(-1)],
            "fov": math.degrees(2.0 * math.atan(0.5 * height / cam.fy)),
            "aspect": 1.0,
            "fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy,
        }
        if source_frames is not None:
            entry["source_frame"] = int(source_frames[i])
        entries.append(entry)
    doc = {"camera_type": "perspective", "render_width": width, "render_height": height,
           "fps": float(fps), "seconds": len(cams) / float(fps), "smoothness_value": 0,
           "is_cycle": False, "crop": None, "camera_path": entries}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)


def read_nerfstudio_doc(path: str | os.PathLike, doc: dict) -> CameraPathData:
    """Parse an already-loaded nerfstudio camera_path document."""
    if doc.get("camera_type", "perspective") != "perspective":
        raise file_error(path, f"camera_type {doc.get('camera_type')!r} is not supported (perspective only)")
    try:
        width, height = int(doc["render_width"]), int(doc["render_height"])
        entries = doc["camera_path"]
    except (KeyError, TypeError, ValueError) as exc:
        raise file_error(path, f"needs render_width, render_height and camera_path ({exc})") from exc
    if not isinstance(entries, list) or not entries:
        raise file_error(path, "camera_path must be a non-empty list")
    cameras, frames = [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "camera_to_world" not in entry:
            raise file_error(path, f"camera {i} has no camera_to_world")
        c2w_gl = as_matrix(path, i, entry["camera_to_world"], "camera_to_world")
        try:
            if all(k in entry for k in ("fx", "fy", "cx", "cy")):
                fx, fy, cx, cy = (float(entry[k]) for k in ("fx", "fy", "cx", "cy"))
            else:
                fov = float(entry["fov"])
                if not 0.0 < fov < 180.0:
                    raise ValueError(f"fov {fov} is not in (0, 180) degrees")
                fx = fy = 0.5 * height / math.tan(math.radians(fov) / 2.0)
                cx, cy = 0.5 * width, 0.5 * height
        except (KeyError, TypeError, ValueError) as exc:
            raise file_error(path, f"camera {i} needs fx, fy, cx, cy or a vertical fov ({exc})") from exc
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        cameras.append(camera_from_c2w_opencv(path, i, c2w_gl @ OPENGL_FROM_OPENCV, K, width, height))
        frames.append(entry.get("source_frame"))
    source_frames = [int(f) for f in frames] if all(f is not None for f in frames) else None
    fps = doc.get("fps")
    if fps is None and doc.get("seconds"):
        fps = len(cameras) / float(doc["seconds"])
    return CameraPathData(cameras, None if fps is None else float(fps), source_frames)


def read_nerfstudio(path: str | os.PathLike) -> CameraPathData:
    """Read a nerfstudio camera_path JSON (with or without explicit intrinsics)."""
    return read_nerfstudio_doc(path, load_json(path))
