"""GEN3C video-input ``camera.npz``: ``w2c`` ``[T, 4, 4]`` (OpenCV-like, y down) and ``intrinsics``
``[T, 3, 3]`` in pixels. Lossless for poses and K. The image size is not part of GEN3C's file
(it comes from ``rgb.mp4``); we add an ``image_size`` ``[W, H]`` key, which GEN3C ignores, and
without it the reader needs ``width``/``height`` or falls back to twice the principal point.
GEN3C processes ``120 N + 1`` frames; other counts are written with a warning.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Sequence

import numpy as np

from ...camera import Camera, stack_cameras
from .common import CameraPathData, FormatConstraintWarning, checked_camera, file_error, require_cameras


def write_gen3c(path: str | os.PathLike, cameras: Sequence[Camera]) -> None:
    cams = require_cameras(cameras)
    sizes = {(c.width, c.height) for c in cams}
    if len(sizes) > 1:
        raise file_error(path, f"GEN3C videos have one frame size, cameras have {sorted(sizes)}")
    if (len(cams) - 1) % 120 != 0:
        warnings.warn(f"{os.fspath(path)}: GEN3C processes 120*N+1 frames (121, 241, ...); writing {len(cams)}",
                      FormatConstraintWarning, stacklevel=3)
    K, w2c = stack_cameras(cams)
    with open(path, "wb") as fh:  # a file object keeps numpy from appending ".npz" to the name
        np.savez(fh, w2c=w2c.astype(np.float32), intrinsics=K.astype(np.float32),
                 image_size=np.array(sizes.pop(), dtype=np.int64))


def read_gen3c(path: str | os.PathLike, width: int | None = None, height: int | None = None) -> CameraPathData:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise file_error(path, f"not a readable .npz archive ({exc})") from exc
    for key in ("w2c", "intrinsics"):
        if key not in arrays:
            raise file_error(path, f"missing array {key!r} (has {sorted(arrays)})")
    w2c = np.asarray(arrays["w2c"], dtype=np.float64)
    K = np.asarray(arrays["intrinsics"], dtype=np.float64)
    if w2c.ndim != 3 or w2c.shape[1:] != (4, 4) or len(w2c) == 0:
        raise file_error(path, f"w2c must be [T, 4, 4], got {list(w2c.shape)}")
    if K.shape != (len(w2c), 3, 3):
        raise file_error(path, f"intrinsics must be [T={len(w2c)}, 3, 3], got {list(K.shape)}")
    if "image_size" in arrays and width is None and height is None:
        size = np.asarray(arrays["image_size"]).reshape(-1)
        if size.shape != (2,):
            raise file_error(path, f"image_size must be [W, H], got {list(size.shape)}")
        width, height = int(size[0]), int(size[1])
    cams = []
    for i in range(len(w2c)):
        w = width if width is not None else int(round(2.0 * K[i, 0, 2]))
        h = height if height is not None else int(round(2.0 * K[i, 1, 2]))
        cams.append(checked_camera(path, i, lambda i=i, w=w, h=h: Camera(K[i], _orthonormal(w2c[i]), w, h)))
    return CameraPathData(cams)


def _orthonormal(w2c: np.ndarray) -> np.ndarray:
    """Snap a float32-rounded rotation back to exactly orthonormal (leaves bad matrices to validation)."""
    out = w2c.copy()
    U, S, Vt = np.linalg.svd(out[:3, :3])
    if np.allclose(S, 1.0, atol=1e-4):
        out[:3, :3] = U @ Vt
    return out
