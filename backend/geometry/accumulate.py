"""Static accumulation (beyond EasyCreator): fill disocclusions from other frames before inpainting.

A re-filmed frame ``t`` has holes wherever the new camera sees what the source camera at time ``t``
never saw. Where the scene is static, other source frames often did see it (the camera moved, or a
moving object uncovered it). We render frame ``t``'s own points as usual and then fill only its
holes with the *static* points of the other frames in a temporal window, z-buffered among
themselves. Dynamic content never leaks across time, and pixels frame ``t`` already shows never change.

Which points are static:
- ``foreground_mask`` (user given, ``(F,H,W)`` bool, True = dynamic): static = outside it;
- otherwise reprojection consistency: a point of frame ``s`` is dynamic when some other frame ``t``
  in the window sees *through* it: projected into source camera ``t`` it lands on a pixel whose
  depth is farther by more than ``consistency_tolerance`` (relative), i.e. at time ``t`` that
  place is empty space. Points hidden behind nearer surfaces at ``t`` give no evidence either way.
Conventions as in :mod:`backend.geometry.render`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from protocol.errors import ValidationError

from .cameras import DepthKind, as_camera_tensors, depth_to_planar, to_tensor
from .points import PointFrames
from .render import DEFAULT_MAX_SPLAT_RADIUS, RenderResult, render_points, splat_points

_PROJECTIONS_PER_BATCH = 1 << 22  # point x frame projections per batch in static_point_mask


@dataclass
class AccumulationResult:
    """``render`` = holes of ``base`` filled from static points of other frames; ``filled (F,H,W)``
    marks the pixels that came from other frames. ``render.point_index`` indexes rows of the input
    points for every pixel."""

    render: RenderResult
    base: RenderResult
    filled: torch.Tensor

    @property
    def hole_fraction_before(self) -> float:
        return float((~self.base.mask).float().mean())

    @property
    def hole_fraction_after(self) -> float:
        return float((~self.render.mask).float().mean())


def static_point_mask(
    points: PointFrames,
    *,
    foreground_mask: torch.Tensor | np.ndarray | None = None,
    depth: torch.Tensor | np.ndarray | None = None,
    K: torch.Tensor | np.ndarray | None = None,
    world_to_camera: torch.Tensor | np.ndarray | None = None,
    depth_kind: DepthKind = "z",
    consistency_tolerance: float = 0.02,
    window: int | None = None,
) -> torch.Tensor:
    """``(N,)`` bool, True for points of ``points`` judged static (see the module docstring).

    Give either ``foreground_mask (F,H,W)`` or the source ``depth (F,H,W)`` with its cameras
    ``K``/``world_to_camera``; ``window`` limits the consistency check to frames within that many
    frames (default: all).
    """
    num_frames, height, width = points.num_frames, points.source_height, points.source_width
    device = points.device
    if foreground_mask is not None:
        fg = to_tensor(foreground_mask).to(device)
        if fg.shape != (num_frames, height, width) or fg.dtype != torch.bool:
            raise ValidationError(f"foreground_mask must be a bool mask of shape {(num_frames, height, width)}")
        return ~fg.reshape(num_frames, -1)[points.frame_index, points.pixel_index]
    if depth is None or K is None or world_to_camera is None:
        raise ValidationError("static points need a foreground mask, or the source depth and cameras")
    depth_t = to_tensor(depth).to(device=device, dtype=torch.float32)
    if depth_t.shape != (num_frames, height, width):
        raise ValidationError(f"depth must have shape {(num_frames, height, width)}")
    K_t, w2c = as_camera_tensors(K, world_to_camera, num_frames, device)
    z_maps = depth_to_planar(depth_t, K_t, depth_kind)
    z_maps = torch.where(torch.isfinite(z_maps) & (z_maps > 0), z_maps, torch.zeros_like(z_maps))
    reach = num_frames - 1 if window is None else min(window, num_frames - 1)
    P = K_t @ w2c[:, :3, :]  # (F,3,4) pixel projection per source camera
    dynamic = torch.zeros(points.num_points, dtype=torch.bool, device=device)
    for s in range(num_frames):  # batched projections of frame s's points into the other frames
        a, b = int(points.offsets[s]), int(points.offsets[s + 1])
        others = [t for t in range(max(0, s - reach), min(num_frames, s + reach + 1)) if t != s]
        per_batch = max(1, _PROJECTIONS_PER_BATCH // max(b - a, 1))  # bounds the (T,n) temporaries
        for first in range(0, len(others) if a < b else 0, per_batch):
            t = torch.tensor(others[first:first + per_batch], device=device)
            hom = torch.matmul(points.xyz[a:b], P[t, :, :3].transpose(1, 2)) + P[t, None, :, 3]  # (T,n,3)
            z = hom[..., 2]
            z_safe = torch.where(z > 0, z, torch.ones_like(z))
            x = torch.floor(hom[..., 0] / z_safe).clamp(-1, width).to(torch.int64)
            y = torch.floor(hom[..., 1] / z_safe).clamp(-1, height).to(torch.int64)
            on_image = (z > 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
            seen_depth = z_maps[t[:, None], y.clamp(0, height - 1), x.clamp(0, width - 1)]
            see_through = on_image & (seen_depth > 0) & (z < seen_depth * (1.0 - consistency_tolerance))
            dynamic[a:b] |= see_through.any(dim=0)
    return ~dynamic


def _rows_per_view(group_offsets: torch.Tensor, sources: torch.Tensor, views: torch.Tensor,
                   group_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of group ``sources[k]`` drawn into view ``views[k]``, for every k, one group after another.

    Group ``s`` is ``group_rows[group_offsets[s]:group_offsets[s + 1]]`` (the row numbers themselves
    when ``group_rows`` is None). Returns ``(rows (M,), view (M,))`` int64 on the device of
    ``sources``; sorted by view when ``views`` is.
    """
    offsets = group_offsets.to(sources.device)
    counts = (offsets[1:] - offsets[:-1])[sources]
    starts = offsets[:-1][sources]
    first = torch.cumsum(counts, 0) - counts
    index = torch.repeat_interleave(starts - first, counts)
    index += torch.arange(index.numel(), device=sources.device)
    rows = index if group_rows is None else group_rows[index]
    return rows, torch.repeat_interleave(views, counts)


def _check_time_map(time_map: Sequence[int] | np.ndarray | torch.Tensor, num_frames: int,
                    device: torch.device) -> torch.Tensor:
    tm = to_tensor(np.asarray(time_map) if not isinstance(time_map, torch.Tensor) else time_map)
    if tm.ndim != 1 or tm.numel() == 0 or tm.is_floating_point() or tm.dtype == torch.bool:
        raise ValidationError("time_map must list one integer source frame per target camera")
    if int(tm.min()) < 0 or int(tm.max()) >= num_frames:
        raise ValidationError(f"time_map refers to frames outside 0..{num_frames - 1}")
    return tm.to(device=device, dtype=torch.int64)


def accumulate_static(
    points: PointFrames,
    static: torch.Tensor,
    K: torch.Tensor | np.ndarray,
    world_to_camera: torch.Tensor | np.ndarray,
    width: int,
    height: int,
    *,
    window: int | None = 12,
    stride: int = 1,
    time_map: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    **render_options,
) -> AccumulationResult:
    """Render source frame ``s = time_map[t]`` of ``points`` into target camera ``t`` and fill its holes
    with the static points (``static (N,)`` bool) of source frames ``s' != s`` with ``|s' - s| <= window``
    (every ``stride``-th offset; ``window=None`` = all frames). ``time_map`` defaults to ``t -> t``
    (one camera per source frame); with it, e.g. bullet time (every ``t`` shows one frame), the window
    is taken around the frame each camera shows, not around the camera's position in the path.
    Target cameras: OpenCV ``K``/``world_to_camera``, one per target frame.
    """
    if static.shape != (points.num_points,) or static.dtype != torch.bool:
        raise ValidationError(f"static must be a bool tensor of shape ({points.num_points},)")
    if stride < 1:
        raise ValidationError(f"stride must be >= 1, got {stride}")
    num_frames, device = points.num_frames, points.device
    if time_map is None:
        shown = torch.arange(num_frames, device=device)
        K_t, w2c = as_camera_tensors(K, world_to_camera, num_frames, device)
        base = render_points(points, K_t, w2c, width, height, **render_options)
    else:
        shown = _check_time_map(time_map, num_frames, device)
        K_t, w2c = as_camera_tensors(K, world_to_camera, shown.numel(), device)
        rows, view = _rows_per_view(points.offsets, shown, torch.arange(shown.numel(), device=device))
        tangents = None if points.tangent_u is None else (points.tangent_u[rows], points.tangent_v[rows])
        base = splat_points(points.xyz[rows], points.rgb[rows], points.radius[rows], view, K_t, w2c,
                            width, height, tangents=tangents, **render_options)
        base.point_index = torch.where(base.mask, rows[base.point_index.clamp(min=0)], -1)
    num_views = shown.numel()
    reach = num_frames - 1 if window is None else min(window, num_frames - 1)
    shifts = torch.tensor([d for d in range(-reach, reach + 1) if d != 0 and d % stride == 0],
                          dtype=torch.int64, device=device)
    static_rows = torch.nonzero(static).squeeze(1)  # frame after frame, like the points
    if shifts.numel() == 0 or static_rows.numel() == 0:
        return AccumulationResult(base, base, torch.zeros_like(base.mask))
    static_offsets = torch.zeros(num_frames + 1, dtype=torch.int64)
    static_offsets[1:] = torch.cumsum(torch.bincount(points.frame_index[static_rows], minlength=num_frames).cpu(), 0)
    # (source frame, target view) pairs, sorted by view so splatting takes its per-camera path;
    # only points whose footprint can reach a hole of the base render are splatted (exact: a point
    # covers pixels at most max_splat_radius from the pixel its centre falls in)
    reach_px = int(render_options.get("max_splat_radius", DEFAULT_MAX_SPLAT_RADIUS)) + 1
    near_hole = F.max_pool2d(F.pad((~base.mask).float()[:, None], (reach_px,) * 4), 2 * reach_px + 1, stride=1,
                             padding=reach_px)[:, 0] > 0  # (T, H + 2r, W + 2r)
    P = K_t @ w2c[:, :3, :]
    kept_rows, kept_views = [], []
    for t in range(num_views):
        sources = shown[t] + shifts
        sources = sources[(sources >= 0) & (sources < num_frames)]
        rows_t, _ = _rows_per_view(static_offsets, sources, sources, static_rows)
        hom = torch.addmm(P[t, :, 3], points.xyz[rows_t], P[t, :, :3].T)
        z = hom[:, 2]
        z_safe = torch.where(z > 0, z, torch.ones_like(z))
        x = torch.floor(hom[:, 0] / z_safe).clamp(-reach_px, width + reach_px - 1).to(torch.int64) + reach_px
        y = torch.floor(hom[:, 1] / z_safe).clamp(-reach_px, height + reach_px - 1).to(torch.int64) + reach_px
        keep = (z > 0) & near_hole[t, y, x]
        kept_rows.append(rows_t[keep])
        kept_views.append(torch.full((int(keep.sum()),), t, dtype=torch.int64, device=device))
    rows, view = torch.cat(kept_rows), torch.cat(kept_views)
    if rows.numel() == 0:
        return AccumulationResult(base, base, torch.zeros_like(base.mask))
    tangents = None if points.tangent_u is None else (points.tangent_u[rows], points.tangent_v[rows])
    extra = splat_points(points.xyz[rows], points.rgb[rows], points.radius[rows], view,
                         K_t, w2c, width, height, tangents=tangents, **render_options)
    filled = ~base.mask & extra.mask
    extra_index = torch.where(extra.mask, rows[extra.point_index.clamp(min=0)], extra.point_index)
    merged = RenderResult(
        rgb=torch.where(filled[..., None], extra.rgb, base.rgb),
        depth=torch.where(filled, extra.depth, base.depth),
        mask=base.mask | filled,
        point_index=torch.where(filled, extra_index, base.point_index),
    )
    return AccumulationResult(merged, base, filled)
