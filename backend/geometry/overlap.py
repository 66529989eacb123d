"""Overlap between two trajectories and top-K context frames for temporal packing.

When trajectory b is generated after trajectory a, the frames of a whose *repaired* (inpainted)
content b will see again are packed as context so both views agree. For frame ``i`` (both
trajectories show the same moment at index ``i``) we lift a's frame with its depth, render it into
b's camera ``i`` with a z-buffer, and count the pixels of b won by repaired points of a: repaired
content that is in b's view and not hidden behind other scene points. Conventions as in
:mod:`backend.geometry.render`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from protocol.errors import ValidationError

from .cameras import DepthKind, as_camera_tensors, to_tensor
from .lift import lift_frames
from .render import render_points


@dataclass
class TrajectoryOverlap:
    """Per frame of trajectory a: repaired pixels of a, and pixels of b showing them (both ``(F,)``)."""

    repaired_pixels: torch.Tensor  # int64, hole area of a that was repaired
    visible_in_b: torch.Tensor  # int64, pixels of b's frame won by a's repaired points

    @property
    def visible_fraction(self) -> torch.Tensor:
        """``visible_in_b / repaired_pixels`` (0 where nothing was repaired), float32 ``(F,)``."""
        return self.visible_in_b.to(torch.float32) / self.repaired_pixels.clamp(min=1).to(torch.float32)


def trajectory_overlap(
    depth_a: torch.Tensor | np.ndarray,
    repaired_a: torch.Tensor | np.ndarray,
    K_a: torch.Tensor | np.ndarray,
    world_to_camera_a: torch.Tensor | np.ndarray,
    K_b: torch.Tensor | np.ndarray,
    world_to_camera_b: torch.Tensor | np.ndarray,
    width_b: int,
    height_b: int,
    *,
    depth_kind: DepthKind = "z",
    max_depth: float = math.inf,
    **render_options,
) -> TrajectoryOverlap:
    """How much of trajectory a's repaired area each frame of trajectory b sees.

    ``depth_a (F,H,W)`` is the depth of a's finished (repaired) video in metres, ``repaired_a (F,H,W)``
    bool marks its repaired pixels (the holes before inpainting), cameras are OpenCV ``K`` (pixels)
    and ``world_to_camera``, one per frame (or one shared).
    """
    depth_t = to_tensor(depth_a)
    repaired = to_tensor(repaired_a).to(depth_t.device)
    if depth_t.ndim != 3 or repaired.shape != depth_t.shape or repaired.dtype != torch.bool:
        raise ValidationError("depth_a must be (F,H,W) and repaired_a a bool mask of the same shape")
    num_frames, height, width = depth_t.shape
    colour = torch.zeros(num_frames, height, width, 3, device=depth_t.device)
    points = lift_frames(colour, depth_t, K_a, world_to_camera_a, depth_kind=depth_kind,
                         max_depth=max_depth, edge_threshold=None)
    K_bt, w2c_bt = as_camera_tensors(K_b, world_to_camera_b, num_frames, points.device)
    view_b = render_points(points, K_bt, w2c_bt, width_b, height_b, **render_options)
    point_repaired = repaired.reshape(num_frames, -1)[points.frame_index, points.pixel_index]
    winner = view_b.point_index.clamp(min=0)
    won_by_repaired = view_b.mask & point_repaired[winner]
    return TrajectoryOverlap(
        repaired_pixels=repaired.reshape(num_frames, -1).sum(dim=1),
        visible_in_b=won_by_repaired.reshape(num_frames, -1).sum(dim=1),
    )


def select_context_frames(overlap: TrajectoryOverlap | torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` frames with the largest visible repaired area, in temporal order.

    ``overlap`` is a :class:`TrajectoryOverlap` or a per-frame score ``(F,)``; ties go to the earlier
    frame; frames with no visible repaired area are never picked (so fewer than ``k`` may return).
    """
    scores = overlap.visible_in_b if isinstance(overlap, TrajectoryOverlap) else to_tensor(overlap)
    if scores.ndim != 1:
        raise ValidationError(f"scores must be one value per frame, got shape {tuple(scores.shape)}")
    if k < 0:
        raise ValidationError(f"k must be >= 0, got {k}")
    frame_ids = torch.arange(scores.numel(), device=scores.device)
    # stable sort by descending score keeps earlier frames first among equal scores
    order = torch.sort(-scores.to(torch.float64), stable=True).indices
    chosen = order[:k]
    chosen = chosen[scores[chosen] > 0]
    return torch.sort(frame_ids[chosen]).values
