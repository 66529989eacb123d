"""The inpainting interface shared by all fill engines, its typed inputs and their validation.

Every engine implements::

    fill(frames, holes, prompt, *, context=None, edit=None, progress=None, cancel=None) -> frames

- ``frames``: (F, H, W, 3) uint8 RGB, the render along the target camera path.
- ``holes``: (F, H, W) bool, True where the pixel was not seen and must be filled.
- returns (F, H, W, 3) uint8; pixels farther than the engine's feather width from any hole are
  returned exactly as given, pixels in holes are generated, and a thin band around each hole is
  blended so the seam does not show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from backend.progress import CancelFn, ProgressFn
from protocol.errors import ValidationError


@dataclass
class InpaintContext:
    """Frames already generated for other trajectories, offered as temporal context (temporal packing).

    ``frames``: (K, H, W, 3) uint8; ``repaired``: (K, H, W) bool, True where that frame was filled
    by generation (used to rank frames: the top-K by repaired area are packed); ``ids``: (K,) int,
    a caller-chosen id per frame (e.g. trajectory * 10000 + frame index) reported back by
    :meth:`top_k`.
    """

    frames: np.ndarray
    repaired: np.ndarray
    ids: np.ndarray

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames)
        self.repaired = np.asarray(self.repaired, dtype=bool)
        self.ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValidationError(f"context frames must be (K, H, W, 3) uint8, got {self.frames.shape} "
                                  f"{self.frames.dtype}")
        if self.repaired.shape != self.frames.shape[:3]:
            raise ValidationError(f"context repaired masks must be {self.frames.shape[:3]}, got "
                                  f"{self.repaired.shape}")
        if self.ids.shape[0] != self.frames.shape[0]:
            raise ValidationError(f"context needs one id per frame ({self.frames.shape[0]}), got {self.ids.shape[0]}")

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def top_k(self, k: int) -> InpaintContext:
        """The ``k`` frames with the largest repaired area (ties: earlier first), in their original order."""
        if k <= 0 or len(self) == 0:
            return InpaintContext(self.frames[:0], self.repaired[:0], self.ids[:0])
        area = self.repaired.reshape(len(self), -1).sum(axis=1)
        order = np.argsort(-area, kind="stable")[:k]
        keep = np.sort(order)
        return InpaintContext(self.frames[keep], self.repaired[keep], self.ids[keep])


@dataclass
class FirstFrameEdit:
    """Editing by first-frame guidance: an edited first frame and the region sequence to regenerate.

    ``first_frame``: (H, W, 3) uint8, the already edited frame 0 (kept as given); ``region``:
    (F, H, W) bool, True where the edit should appear in each frame. Frame 0's region is ignored
    (frame 0 is given), so the model propagates the edit from frame 0 into the marked regions of
    the later frames (the paper's editing mask whose first-frame mask is 0).
    ``first_frame_holes``: optional (H, W) bool, pixels of frame 0 still to generate (an edit rendered
    into a target camera leaves disocclusions); by default all of frame 0 is kept.
    """

    first_frame: np.ndarray
    region: np.ndarray
    first_frame_holes: np.ndarray | None = None


class InpaintEngine(Protocol):
    """What the pipelines call; see the module docstring for the conventions."""

    name: str

    def fill(self, frames: np.ndarray, holes: np.ndarray, prompt: str = "", *,
             context: InpaintContext | None = None, edit: FirstFrameEdit | None = None,
             progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> np.ndarray: ...


def validate_fill_inputs(frames: np.ndarray, holes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes/dtypes of a fill call and return (frames uint8, holes bool) as contiguous arrays."""
    frames = np.asarray(frames)
    holes = np.asarray(holes)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValidationError(f"frames must be (F, H, W, 3) RGB, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValidationError(f"frames must be uint8, got {frames.dtype}")
    if frames.shape[0] < 1 or frames.shape[1] < 2 or frames.shape[2] < 2:
        raise ValidationError(f"frames must hold at least one 2x2 frame, got {frames.shape}")
    if holes.shape != frames.shape[:3]:
        raise ValidationError(f"holes must be (F, H, W) = {frames.shape[:3]}, got {holes.shape}")
    if holes.dtype != bool:
        raise ValidationError(f"holes must be bool (True = fill), got {holes.dtype}")
    return np.ascontiguousarray(frames), np.ascontiguousarray(holes)


def apply_first_frame_edit(frames: np.ndarray, holes: np.ndarray,
                           edit: FirstFrameEdit | None) -> tuple[np.ndarray, np.ndarray]:
    """Frames/holes for first-frame guidance: frame 0 := edited frame (kept but for its ``first_frame_holes``),
    later frames' edit region -> holes."""
    if edit is None:
        return frames, holes
    first = np.asarray(edit.first_frame)
    region = np.asarray(edit.region, dtype=bool)
    if first.shape != frames.shape[1:] or first.dtype != np.uint8:
        raise ValidationError(f"edited first frame must be {frames.shape[1:]} uint8, got {first.shape} {first.dtype}")
    if region.shape != holes.shape:
        raise ValidationError(f"edit region must be {holes.shape} bool, got {region.shape}")
    frames = frames.copy()
    frames[0] = first
    holes = holes | region
    holes[0] = False
    if edit.first_frame_holes is not None:
        first_holes = np.asarray(edit.first_frame_holes, dtype=bool)
        if first_holes.shape != holes.shape[1:]:
            raise ValidationError(f"first-frame holes must be {holes.shape[1:]} bool, got {first_holes.shape}")
        holes[0] = first_holes
    return frames, holes


def feather_weights(holes: np.ndarray, feather_px: float) -> np.ndarray:
    """Per-pixel weight of generated content: 1 in holes, falling linearly to 0 at ``feather_px`` outside.

    ``holes``: (F, H, W) bool. Returns (F, H, W) float32 in [0, 1]; pixels at distance >= ``feather_px``
    (Euclidean, in pixels) from every hole get exactly 0, i.e. stay as given.
    """
    import cv2

    weights = holes.astype(np.float32)
    if feather_px <= 0:
        return weights
    for index in range(holes.shape[0]):
        if not holes[index].any():
            continue
        seen = (~holes[index]).astype(np.uint8)
        distance = cv2.distanceTransform(seen, cv2.DIST_L2, 5)
        weights[index] = np.clip(1.0 - distance / float(feather_px), 0.0, 1.0)
    return weights


def composite_fill(frames: np.ndarray, generated: np.ndarray, holes: np.ndarray, feather_px: float) -> np.ndarray:
    """Put ``generated`` into the holes of ``frames`` with a feathered seam; (F, H, W, 3) uint8 out."""
    weight = feather_weights(holes, feather_px)[..., None]
    out = frames.astype(np.float32) * (1.0 - weight) + generated.astype(np.float32) * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
