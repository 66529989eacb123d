"""Foreground/background split of the reference video, and the background video with the foreground removed.

Masks are ``(F, H, W)`` bool, True = foreground (the moving object). Either the user's mask sequence
(a Blender Movie Clip mask or object-index pass), a SAM2 video engine's masks, or an automatic split
from motion (:mod:`.motion_split`: a pixel is foreground when some frame in the window sees *through*
its lifted point, with a margin that adapts to the depth's noise and scale drift), cleaned here with
a morphological opening (isolated specks go) and a dilation (the rim of the object, where depth is
mixed, goes with it).

The background video is the reference video with the foreground's pixels filled by the inpainting
engine (``classical``: temporal propagation recovers the background the object uncovers in other
frames) and their depth filled from the farther side of each hole (:func:`fill_depth_holes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from backend.geometry import fill_depth_holes
from backend.progress import CancelFn, ProgressFn
from protocol.errors import ValidationError


@dataclass
class BackgroundVideo:
    """The reference video without its foreground: colours, planar depth (metres), the filled pixels."""

    frames: np.ndarray  # (F,H,W,3) uint8
    depth: torch.Tensor  # (F,H,W) float32 planar z, metres
    filled: np.ndarray  # (F,H,W) bool, pixels that were foreground and got generated


def clean_mask(mask: np.ndarray, open_px: int = 1, dilate_px: int = 2) -> np.ndarray:
    """Per frame: opening with a ``2*open_px+1`` square, then dilation by ``dilate_px`` pixels."""
    import cv2

    out = np.empty_like(mask, dtype=bool)
    for i, frame in enumerate(np.asarray(mask, dtype=np.uint8)):
        if open_px > 0:
            frame = cv2.morphologyEx(frame, cv2.MORPH_OPEN, np.ones((2 * open_px + 1,) * 2, np.uint8))
        if dilate_px > 0:
            frame = cv2.dilate(frame, np.ones((2 * dilate_px + 1,) * 2, np.uint8))
        out[i] = frame > 0
    return out


def validate_masks(masks: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """A user mask sequence as ``(F,H,W)`` bool (nonzero = foreground); one mask is used for every frame."""
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = np.broadcast_to(masks, shape)
    if masks.shape != shape:
        raise ValidationError(f"foreground masks must have shape {shape} (one per frame), got {masks.shape}")
    return np.ascontiguousarray(masks != 0)


def background_video(engine: Any, frames: np.ndarray, depth: torch.Tensor, foreground: np.ndarray, prompt: str = "",
                     *, depth_engine: Any = None, progress: ProgressFn | None = None,
                     cancel: CancelFn | None = None) -> BackgroundVideo:
    """Remove the foreground: fill its pixels with ``engine`` and their depth (module docstring).

    ``depth_engine`` (optional, e.g. depth-anything) estimates the filled pixels' depth aligned to the
    known background depth instead of propagating it from the hole's farther side.
    """
    holes = np.ascontiguousarray(foreground, dtype=bool)
    if not holes.any():
        return BackgroundVideo(frames.copy(), depth.clone(), holes.copy())
    # the holes are the foreground mask: the rest of each frame is background, a clean donor
    clean_donors = {"holes_cover_motion": True} if getattr(engine, "accepts_holes_cover_motion", False) else {}
    filled = engine.fill(frames, holes, prompt, progress=progress, cancel=cancel, **clean_donors)
    holes_t = torch.from_numpy(holes).to(depth.device)
    if holes.all():
        raise ValidationError("the foreground mask covers every pixel: there is no background to build on")
    if depth_engine is None:
        bg_depth = fill_depth_holes(depth, holes_t)
    else:
        estimate = depth_engine.predict(filled, reference=depth.cpu().numpy(), reference_mask=~holes, cancel=cancel)
        bg_depth = torch.where(holes_t, torch.as_tensor(estimate, device=depth.device, dtype=torch.float32), depth)
    return BackgroundVideo(filled, bg_depth, holes)
