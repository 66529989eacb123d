"""Double reprojection (EasyCreator training pairs): V -> render along T -> lift -> render back.

Render the source video V (with its depth) along target cameras T, lift that render with its own
rendered depth, and render it back into the source cameras. The result V'' is aligned with V and
carries the holes and stretching artefacts a real novel view would have, with mask M'' (True = seen);
V itself is the ground truth for the inpainting model. Conventions as in :mod:`backend.geometry.render`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .cameras import DepthKind, as_camera_tensors
from .lift import DEFAULT_EDGE_THRESHOLD, frames_to_float, lift_frames
from .render import RenderResult, render_points


@dataclass
class DoubleReprojection:
    """``degraded`` V'' (F,H,W,3) float32 in [0,1] and ``mask`` M'' (F,H,W) bool (True = seen), aligned
    with the source video; ``target`` is the intermediate render along the target path."""

    degraded: torch.Tensor
    mask: torch.Tensor
    target: RenderResult


def double_reprojection(
    frames: torch.Tensor | np.ndarray,
    depth: torch.Tensor | np.ndarray,
    K: torch.Tensor | np.ndarray,
    world_to_camera: torch.Tensor | np.ndarray,
    target_K: torch.Tensor | np.ndarray,
    target_world_to_camera: torch.Tensor | np.ndarray,
    *,
    target_width: int | None = None,
    target_height: int | None = None,
    depth_kind: DepthKind = "z",
    max_depth: float = math.inf,
    edge_threshold: float | None = DEFAULT_EDGE_THRESHOLD,
    device: torch.device | str | None = None,
    **render_options,
) -> DoubleReprojection:
    """Degrade ``frames (F,H,W,3)`` with ``depth (F,H,W)`` (source cameras ``K``, ``world_to_camera``)
    by a round trip through the target cameras. The target image size defaults to the source size.
    ``render_options`` go to :func:`backend.geometry.render.splat_points`.
    """
    rgb = frames_to_float(frames)
    num_frames, height, width, _ = rgb.shape
    target_width = width if target_width is None else target_width
    target_height = height if target_height is None else target_height
    points = lift_frames(rgb, depth, K, world_to_camera, depth_kind=depth_kind, max_depth=max_depth,
                         edge_threshold=edge_threshold, device=device)
    dev = points.device
    K_s, w2c_s = as_camera_tensors(K, world_to_camera, num_frames, dev)
    K_t, w2c_t = as_camera_tensors(target_K, target_world_to_camera, num_frames, dev)
    target = render_points(points, K_t, w2c_t, target_width, target_height, **render_options)
    back_points = lift_frames(target.rgb, target.depth, K_t, w2c_t, depth_kind="z",
                              edge_threshold=edge_threshold, keep_mask=target.mask)
    back = render_points(back_points, K_s, w2c_s, width, height, **render_options)
    return DoubleReprojection(degraded=back.rgb, mask=back.mask, target=target)
