"""Foreground/background split of the reference video, and the background video with the foreground removed.

Masks are ``(F, H, W)`` bool, True = foreground (the moving object). Either the user's mask sequence
(a Blender Movie Clip mask or object-index pass) or an automatic split from motion: a pixel is
foreground when its lifted point is inconsistent with the static background across frames
(:func:`backend.geometry.static_point_mask`: some frame in the window sees *through* it), cleaned
with a morphological opening (isolated specks go) and a dilation (the rim of the object, where
depth is mixed, goes with it).

The background video is the reference video with the foreground's pixels filled by the inpainting
engine (``classical``: temporal propagation recovers the background the object uncovers in other
frames) and their depth filled from the farther side of each hole (:func:`fill_depth_holes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from backend.geometry import fill_depth_holes, lift_frames, static_point_mask
from backend.progress import CancelFn, ProgressFn
from protocol.errors import ValidationError

MOTION_WINDOW = 8


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


def motion_foreground_masks(frames: np.ndarray, depth: torch.Tensor, K: np.ndarray, world_to_camera: np.ndarray, *,
                            tolerance: float = 0.02, window: int = MOTION_WINDOW, open_px: int = 1,
                            dilate_px: int = 2) -> np.ndarray:
    """Automatic foreground ``(F,H,W)`` bool from motion (module docstring).

    ``depth (F,H,W)`` planar z in metres, cameras ``K (F,3,3)`` and ``world_to_camera (F,4,4)`` (OpenCV).
    ``tolerance``: relative depth margin of the see-through test. A single frame has no motion: all False.
    """
    num_frames, height, width = depth.shape
    if num_frames < 2:
        return np.zeros((num_frames, height, width), dtype=bool)
    points = lift_frames(frames, depth, K, world_to_camera, edge_threshold=None)
    static = static_point_mask(points, depth=depth, K=K, world_to_camera=world_to_camera,
                               consistency_tolerance=tolerance, window=window)
    dynamic = torch.zeros(num_frames * height * width, dtype=torch.bool, device=points.device)
    flat = points.frame_index * (height * width) + points.pixel_index
    dynamic[flat[~static]] = True
    return clean_mask(dynamic.reshape(num_frames, height, width).cpu().numpy(), open_px, dilate_px)


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
    filled = engine.fill(frames, holes, prompt, progress=progress, cancel=cancel)
    holes_t = torch.from_numpy(holes).to(depth.device)
    if holes.all():
        raise ValidationError("the foreground mask covers every pixel: there is no background to build on")
    if depth_engine is None:
        bg_depth = fill_depth_holes(depth, holes_t)
    else:
        estimate = depth_engine.predict(filled, reference=depth.cpu().numpy(), reference_mask=~holes, cancel=cancel)
        bg_depth = torch.where(holes_t, torch.as_tensor(estimate, device=depth.device, dtype=torch.float32), depth)
    return BackgroundVideo(filled, bg_depth, holes)
