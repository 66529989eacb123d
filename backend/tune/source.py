"""The source of a tuning run: video, planar depth and cameras, brought to the training resolution.

Frames are ``(F,H,W,3)`` uint8 RGB, depth ``(F,H,W)`` float32 planar z in metres (0 = unknown),
cameras OpenCV (``protocol.camera``), one per frame. :func:`prepare_source` centre-crops to the
training aspect, resizes to ``width x height`` (area filter for colour, nearest for depth) and
adjusts the intrinsics to match, so geometry stays exact: a crop shifts the principal point, a
resize scales ``fx, cx`` by ``width / crop_width`` and ``fy, cy`` by ``height / crop_height``
(pixel centres at +0.5 are preserved by that scaling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocol.camera import Camera
from protocol.errors import ValidationError


@dataclass
class TuneSource:
    """A video with depth and cameras at training resolution (see the module docstring)."""

    frames: np.ndarray  # (F,H,W,3) uint8
    depth: np.ndarray  # (F,H,W) float32 planar z, metres
    cameras: list[Camera]

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    def clip(self, start: int, length: int) -> TuneSource:
        """Frames ``start .. start + length - 1``."""
        end = start + length
        return TuneSource(self.frames[start:end], self.depth[start:end], self.cameras[start:end])


def _crop_box(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int, int, int]:
    """Largest centred ``(left, top, crop_width, crop_height)`` with the target aspect ratio."""
    target_aspect = target_width / target_height
    if width / height > target_aspect:
        crop_w, crop_h = max(1, round(height * target_aspect)), height
    else:
        crop_w, crop_h = width, max(1, round(width / target_aspect))
    return (width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h


def prepare_source(frames: np.ndarray, depth: np.ndarray, cameras: list[Camera], width: int,
                   height: int) -> TuneSource:
    """Centre-crop and resize ``frames``/``depth`` to ``width x height`` and adapt ``cameras`` (module doc)."""
    import cv2

    frames = np.asarray(frames)
    depth = np.asarray(depth, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValidationError(f"frames must be (F,H,W,3) uint8, got {frames.shape} {frames.dtype}")
    num, src_h, src_w = frames.shape[:3]
    if depth.shape != (num, src_h, src_w):
        raise ValidationError(f"depth must be {(num, src_h, src_w)} to match the frames, got {depth.shape}")
    if len(cameras) != num:
        raise ValidationError(f"need one camera per frame ({num}), got {len(cameras)}")
    left, top, crop_w, crop_h = _crop_box(src_w, src_h, width, height)
    sx, sy = width / crop_w, height / crop_h
    out_frames = np.empty((num, height, width, 3), np.uint8)
    out_depth = np.empty((num, height, width), np.float32)
    clean = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    for i in range(num):
        crop = frames[i, top:top + crop_h, left:left + crop_w]
        interpolation = cv2.INTER_AREA if sx < 1 or sy < 1 else cv2.INTER_LINEAR
        out_frames[i] = cv2.resize(crop, (width, height), interpolation=interpolation)
        out_depth[i] = cv2.resize(clean[i, top:top + crop_h, left:left + crop_w], (width, height),
                                  interpolation=cv2.INTER_NEAREST)
    out_cameras = []
    for cam in cameras:
        K = np.array(cam.K, dtype=np.float64)
        K[0, 2] -= left
        K[1, 2] -= top
        K[0] *= sx
        K[1] *= sy
        out_cameras.append(Camera(K, np.array(cam.world_to_camera, dtype=np.float64), width, height))
    return TuneSource(out_frames, out_depth, out_cameras)


def clip_length(num_frames: int, wanted: int) -> int:
    """Longest ``4k + 1 <= min(num_frames, wanted)``; ValidationError below 5 frames."""
    length = min(num_frames, wanted)
    length = 4 * ((length - 1) // 4) + 1
    if length < 5:
        raise ValidationError(f"tuning needs a video of at least 5 frames, got {num_frames}")
    return length
