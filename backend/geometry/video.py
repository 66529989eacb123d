"""Whole-video stage: lift a source video and render it along a target path, a chunk of frames at a time.

This is EasyCreator steps 1-2 as a pipeline stage (``progress``/``cancel`` keywords, see
:mod:`backend.progress`): memory stays bounded by ``chunk_frames`` (81 frames at 512x512 are 21 M
points), results are concatenated on the output device. Conventions as in
:mod:`backend.geometry.render`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.errors import ValidationError

from .cameras import DepthKind, as_camera_tensors, to_tensor
from .lift import DEFAULT_EDGE_THRESHOLD, lift_frames
from .render import RenderResult, render_points


def reproject_video(
    frames: torch.Tensor | np.ndarray,
    depth: torch.Tensor | np.ndarray,
    K: torch.Tensor | np.ndarray,
    world_to_camera: torch.Tensor | np.ndarray,
    target_K: torch.Tensor | np.ndarray,
    target_world_to_camera: torch.Tensor | np.ndarray,
    width: int,
    height: int,
    *,
    depth_kind: DepthKind = "z",
    max_depth: float = math.inf,
    edge_threshold: float | None = DEFAULT_EDGE_THRESHOLD,
    chunk_frames: int = 8,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    **render_options,
) -> RenderResult:
    """Render source frame ``i`` (``frames (F,H,W,3)``, ``depth (F,H,W)``, cameras ``K``/``world_to_camera``)
    into target camera ``i`` (``target_K``/``target_world_to_camera``, ``width x height`` pixels).

    ``point_index`` of the result holds, per target pixel, the source pixel it came from as
    ``frame * H * W + y * W + x`` (-1 where unseen). ``render_options`` go to
    :func:`backend.geometry.render.splat_points`. Raises :class:`protocol.errors.Cancelled` between
    chunks when ``cancel()`` turns True.
    """
    depth_t = to_tensor(depth)
    if depth_t.ndim != 3:
        raise ValidationError(f"depth must have shape (F,H,W), got {tuple(depth_t.shape)}")
    if chunk_frames < 1:
        raise ValidationError(f"chunk_frames must be >= 1, got {chunk_frames}")
    num_frames = depth_t.shape[0]
    device = depth_t.device if device is None else torch.device(device)
    K_s, w2c_s = as_camera_tensors(K, world_to_camera, num_frames, device)
    K_t, w2c_t = as_camera_tensors(target_K, target_world_to_camera, num_frames, device)
    frames_t = to_tensor(frames)
    parts: list[RenderResult] = []
    for start in range(0, num_frames, chunk_frames):
        check_cancel(cancel)
        stop = min(num_frames, start + chunk_frames)
        points = lift_frames(frames_t[start:stop].to(device), depth_t[start:stop].to(device),
                             K_s[start:stop], w2c_s[start:stop], depth_kind=depth_kind,
                             max_depth=max_depth, edge_threshold=edge_threshold)
        view = render_points(points, K_t[start:stop], w2c_t[start:stop], width, height, **render_options)
        winner = view.point_index.clamp(min=0)
        source_pixel = points.frame_index[winner] * points.source_height * points.source_width
        source_pixel = source_pixel + points.pixel_index[winner] + start * points.source_height * points.source_width
        view.point_index = torch.where(view.mask, source_pixel, -1) if points.num_points else view.point_index
        parts.append(view)
        if progress is not None:
            progress(stop, num_frames, f"rendered {stop}/{num_frames} frames along the new path")
    return RenderResult(
        rgb=torch.cat([p.rgb for p in parts]), depth=torch.cat([p.depth for p in parts]),
        mask=torch.cat([p.mask for p in parts]), point_index=torch.cat([p.point_index for p in parts]),
    )
