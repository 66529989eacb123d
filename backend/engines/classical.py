"""The ``classical`` fill engine: temporal propagation, then OpenCV Telea inpainting, temporally smoothed.

Runs on the CPU with no weights; the embedded default.

1. **Temporal propagation.** The frames are renders of one point cloud sequence along the target
   camera path, so every frame is aligned to the same (moving) target camera. A hole pixel
   ``(f, y, x)`` is filled with the value of the same pixel ``(y, x)`` in the nearest frame in time
   where it was seen (both neighbours averaged on a tie), up to ``max_gap`` frames away.
   *Limits:* this is exact for static content seen by a static target camera; when the target
   camera moves, a pixel maps to a different scene point in each frame, so propagation is right
   only where the camera moves slowly relative to the scene (the usual case between neighbouring
   frames) and ``max_gap`` bounds the error. Moving objects leave ghosts of where they were.
2. **Spatial inpainting.** Pixels never seen within ``max_gap`` frames are filled per frame with
   ``cv2.inpaint`` (Telea, radius ``radius_px``).
3. **Temporal smoothing.** Those spatially filled pixels are averaged over a Gaussian window in
   time (``smooth_sigma`` frames) over the frames where the same pixel was also spatially filled,
   so the fill does not flicker with noise at the hole's border.

Seen pixels are returned exactly as given. ``context`` (frames of other trajectories) is accepted
and not used: those frames are not aligned to this camera, so pixel-wise propagation cannot use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from backend.engines.inpaint_types import (
    FirstFrameEdit,
    InpaintContext,
    apply_first_frame_edit,
    validate_fill_inputs,
)
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.errors import ValidationError


def nearest_seen_indices(holes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every (f, y, x): index of the latest frame <= f and earliest frame >= f where the pixel is seen.

    ``holes``: (F, H, W) bool. Returns two (F, H, W) int32 arrays, -1 where no such frame exists.
    """
    num_frames = holes.shape[0]
    previous = np.full(holes.shape, -1, dtype=np.int32)
    following = np.full(holes.shape, -1, dtype=np.int32)
    last = np.full(holes.shape[1:], -1, dtype=np.int32)
    for index in range(num_frames):
        last = np.where(holes[index], last, index)
        previous[index] = last
    last = np.full(holes.shape[1:], -1, dtype=np.int32)
    for index in range(num_frames - 1, -1, -1):
        last = np.where(holes[index], last, index)
        following[index] = last
    return previous, following


def propagate_temporally(frames: np.ndarray, holes: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill hole pixels from the same pixel in the nearest frame (in time) where it was seen.

    Returns (filled frames as float32 (F, H, W, 3), still-missing (F, H, W) bool).
    """
    previous, following = nearest_seen_indices(holes)
    frame_index = np.arange(holes.shape[0], dtype=np.int32)[:, None, None]
    gap_previous = np.where(previous >= 0, frame_index - previous, np.iinfo(np.int32).max)
    gap_following = np.where(following >= 0, following - frame_index, np.iinfo(np.int32).max)
    use_previous = holes & (gap_previous <= max_gap) & (gap_previous <= gap_following)
    use_following = holes & (gap_following <= max_gap) & (gap_following <= gap_previous)

    values = frames.astype(np.float32)
    rows, cols = np.indices(holes.shape[1:])
    from_previous = values[np.clip(previous, 0, None), rows[None], cols[None]]
    from_following = values[np.clip(following, 0, None), rows[None], cols[None]]
    both = (use_previous & use_following)[..., None]
    only_previous = (use_previous & ~use_following)[..., None]
    only_following = (use_following & ~use_previous)[..., None]
    filled = np.where(both, 0.5 * (from_previous + from_following), values)
    filled = np.where(only_previous, from_previous, filled)
    filled = np.where(only_following, from_following, filled)
    missing = holes & ~(use_previous | use_following)
    return filled, missing


def smooth_in_time(values: np.ndarray, where: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian average over time of ``values`` (F, H, W, C) at pixels marked in ``where`` (F, H, W).

    Each marked pixel becomes the weighted mean over neighbouring frames where the same pixel is
    also marked; unmarked pixels are unchanged.
    """
    if sigma_frames <= 0 or values.shape[0] < 2 or not where.any():
        return values
    radius = max(1, int(np.ceil(2.0 * sigma_frames)))
    total = np.zeros(values.shape, dtype=np.float32)
    weight_sum = np.zeros(where.shape + (1,), dtype=np.float32)
    num_frames = values.shape[0]
    for offset in range(-radius, radius + 1):
        weight = float(np.exp(-0.5 * (offset / sigma_frames) ** 2))
        lo, hi = max(0, -offset), min(num_frames, num_frames - offset)
        if lo >= hi:
            continue
        mask = where[lo + offset:hi + offset, ..., None].astype(np.float32) * weight
        total[lo:hi] += values[lo + offset:hi + offset] * mask
        weight_sum[lo:hi] += mask
    smoothed = total / np.maximum(weight_sum, 1e-12)
    return np.where(where[..., None], smoothed, values)


def inpaint_frame_telea(frame: np.ndarray, missing: np.ndarray, radius_px: float) -> np.ndarray:
    """``cv2.inpaint`` (Telea) of one (H, W, 3) uint8 frame where ``missing`` (H, W) is True."""
    import cv2

    if not missing.any():
        return frame
    if missing.all():
        return np.full_like(frame, 128)
    return cv2.inpaint(frame, missing.astype(np.uint8) * 255, float(radius_px), cv2.INPAINT_TELEA)


class ClassicalFill:
    """Temporal propagation + Telea inpainting + temporal smoothing (see the module docstring).

    ``max_gap``: frames to look back/forward for a seen pixel; ``radius_px``: Telea radius;
    ``smooth_sigma``: temporal Gaussian sigma (frames) for the spatially filled pixels (0 = off).
    """

    def __init__(self, models_dir: Path | None = None, *, max_gap: int = 12, radius_px: float = 5.0,
                 smooth_sigma: float = 2.0, **unused: Any) -> None:
        if unused:
            raise ValidationError(f"unknown options for the classical fill engine: {', '.join(sorted(unused))}")
        if max_gap < 0 or radius_px <= 0 or smooth_sigma < 0:
            raise ValidationError("classical fill needs max_gap >= 0, radius_px > 0 and smooth_sigma >= 0")
        self.max_gap = int(max_gap)
        self.radius_px = float(radius_px)
        self.smooth_sigma = float(smooth_sigma)
        self.name = "classical"

    def fill(self, frames: np.ndarray, holes: np.ndarray, prompt: str = "", *,
             context: InpaintContext | None = None, edit: FirstFrameEdit | None = None,
             progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> np.ndarray:
        """Fill ``holes`` (True = fill) in ``frames`` (F, H, W, 3) uint8; the prompt and context are unused."""
        frames, holes = validate_fill_inputs(frames, holes)
        frames, holes = apply_first_frame_edit(frames, holes, edit)
        num_frames = frames.shape[0]
        check_cancel(cancel)
        filled, missing = propagate_temporally(frames, holes, self.max_gap)
        spatial = filled.copy()
        base = np.clip(np.rint(filled), 0, 255).astype(np.uint8)
        for index in range(num_frames):
            check_cancel(cancel)
            if missing[index].any():
                spatial[index] = inpaint_frame_telea(base[index], missing[index], self.radius_px)
            if progress is not None:
                progress(index + 1, num_frames, "classical fill")
        smoothed = smooth_in_time(spatial, missing, self.smooth_sigma)
        out = np.clip(np.rint(smoothed), 0, 255).astype(np.uint8)
        out[~holes] = frames[~holes]
        return out
