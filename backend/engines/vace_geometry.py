"""Fitting arbitrary clips to the Wan VACE model: frame size (multiple of 16) and frame windows (4k + 1).

Pixel conventions: frames are (F, H, W, 3) uint8 RGB, holes (F, H, W) bool (True = fill).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from protocol.errors import ValidationError


@dataclass(frozen=True)
class ModelFrameLayout:
    """How a source frame maps into the model frame.

    The source (``height`` x ``width``) is resized, aspect kept, to ``resized_height`` x
    ``resized_width`` (area about ``max_pixels``), then reflect-padded by ``pad_top``/``pad_left``
    (and the rest at the bottom/right) to ``model_height`` x ``model_width``, both multiples of
    ``multiple``. Holes are resized and padded the same way, so padding copied from a hole is a hole.
    """

    height: int
    width: int
    resized_height: int
    resized_width: int
    model_height: int
    model_width: int
    pad_top: int
    pad_left: int

    @classmethod
    def plan(cls, height: int, width: int, *, max_pixels: int, multiple: int = 16) -> ModelFrameLayout:
        if height < 2 or width < 2:
            raise ValidationError(f"frames must be at least 2x2 pixels, got {height}x{width}")
        scale = math.sqrt(max_pixels / float(height * width))
        resized_h = max(multiple, int(round(height * scale)))
        resized_w = max(multiple, int(round(width * scale)))
        while resized_h * resized_w > max_pixels and min(resized_h, resized_w) > multiple:
            resized_h, resized_w = int(resized_h * 0.99), int(resized_w * 0.99)
        model_h = int(math.ceil(resized_h / multiple) * multiple)
        model_w = int(math.ceil(resized_w / multiple) * multiple)
        return cls(height, width, resized_h, resized_w, model_h, model_w,
                   (model_h - resized_h) // 2, (model_w - resized_w) // 2)

    def _pad(self, image: np.ndarray) -> np.ndarray:
        import cv2

        bottom = self.model_height - self.resized_height - self.pad_top
        right = self.model_width - self.resized_width - self.pad_left
        if self.pad_top == bottom == self.pad_left == right == 0:
            return image
        return cv2.copyMakeBorder(image, self.pad_top, bottom, self.pad_left, right, cv2.BORDER_REFLECT_101)

    def frames_to_model(self, frames: np.ndarray) -> np.ndarray:
        """(F, H, W, 3) uint8 source frames -> (F, model_height, model_width, 3) uint8."""
        import cv2

        size = (self.resized_width, self.resized_height)
        shrinking = self.resized_height * self.resized_width < self.height * self.width
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
        return np.stack([self._pad(cv2.resize(f, size, interpolation=interpolation)) for f in frames])

    def holes_to_model(self, holes: np.ndarray) -> np.ndarray:
        """(F, H, W) bool -> (F, model_height, model_width) bool; any hole coverage makes a hole."""
        import cv2

        size = (self.resized_width, self.resized_height)
        out = [self._pad((cv2.resize(h.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 1e-3)
                         .astype(np.uint8)) > 0 for h in holes]
        return np.stack(out)

    def frames_from_model(self, frames: np.ndarray) -> np.ndarray:
        """(F, model_height, model_width, 3) uint8 -> (F, H, W, 3) uint8 (padding cropped, resized back)."""
        import cv2

        top, left = self.pad_top, self.pad_left
        crop = frames[:, top:top + self.resized_height, left:left + self.resized_width]
        size = (self.width, self.height)
        return np.stack([cv2.resize(np.ascontiguousarray(f), size, interpolation=cv2.INTER_CUBIC) for f in crop])


def model_frame_count(num_frames: int, temporal_factor: int = 4) -> int:
    """Smallest ``temporal_factor * k + 1`` >= ``num_frames`` (the frame counts the Wan VAE accepts)."""
    return int(math.ceil(max(0, num_frames - 1) / temporal_factor) * temporal_factor + 1)


def plan_windows(num_frames: int, window_frames: int, overlap_frames: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` of ``window_frames`` frames covering ``range(num_frames)``.

    Uses the fewest windows whose consecutive overlap is at least ``overlap_frames``, spread evenly
    (first starts at 0, last ends at ``num_frames``). The frames a window shares with earlier ones
    are already filled when it runs, and condition it as known pixels.
    """
    if window_frames < 1 or (window_frames - 1) % 4 != 0:
        raise ValidationError(f"window_frames must be 4k + 1, got {window_frames}")
    if not 0 <= overlap_frames < window_frames:
        raise ValidationError(f"overlap_frames must be in [0, {window_frames}), got {overlap_frames}")
    if num_frames <= window_frames:
        return [(0, num_frames)]
    stride = window_frames - overlap_frames
    count = 1 + int(math.ceil((num_frames - window_frames) / stride))
    starts = np.rint(np.linspace(0, num_frames - window_frames, count)).astype(int)
    return [(int(start), int(start) + window_frames) for start in starts]


def pad_window(frames: np.ndarray, holes: np.ndarray, temporal_factor: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Pad a window to a valid frame count by repeating its last frame (and its holes)."""
    target = model_frame_count(frames.shape[0], temporal_factor)
    extra = target - frames.shape[0]
    if extra == 0:
        return frames, holes
    return (np.concatenate([frames, np.repeat(frames[-1:], extra, axis=0)]),
            np.concatenate([holes, np.repeat(holes[-1:], extra, axis=0)]))
