"""Fit a Gaussian sequence frame by frame with a warm start, yielding each frame as it finishes.

Warm-start strategy (keeps static content temporally coherent):

1. Frame 0 is initialised from its lifted points (:func:`initial_gaussians`: surface-aligned discs
   when the frame carries pixel tangents, isotropic Gaussians otherwise) and fitted with
   ``config.iterations`` steps.
2. For frame t > 0 the new lifted points are compared with the previous frame's *fitted* Gaussians
   on a voxel grid (cell = ``cell_size`` metres, default twice the median initial std-dev, i.e.
   about one source pixel at the median depth; pipelines with noisy depth should pass roughly
   the depth noise in metres so static content is not re-initialised), looking at the 3x3x3
   neighbourhood of each cell:
   - previous Gaussians with at least one new point nearby *of the same colour* (the mean colour of
     the new points in a neighbouring cell within ``WARM_START_COLOR_TOLERANCE`` of the point colour
     the Gaussian was initialised from, not its fitted colour, which the colour solve sharpens) are **kept with
     their fitted parameters** (position, shape, opacity, SH): static content starts where it ended;
   - previous Gaussians with no new point nearby are **dropped** (content that moved away or
     disappeared);
   - new points with no kept Gaussian nearby are **initialised fresh** (newly visible or moved
     content).
3. The merged set is fitted with ``warm_iterations`` steps (default ``config.iterations // 2``).

The generator yields :class:`FittedFrame` right after each frame, so exports (USD/PLY) can be written
while later frames are still being fitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.errors import ValidationError

from .fit import FitConfig, FitView, fit_frame
from .gaussian_set import GaussianSet, gaussians_from_points, initial_gaussians

#: largest colour change (per channel, [0, 1]) for which a previous frame's Gaussian stands for a new
#: point: on the sliding-square scene (textured square moving 1/7 of its width per frame) keeping
#: Gaussians by position alone left frames 1.. at 23 dB after 3 steps, below the unfitted 25.8 dB
WARM_START_COLOR_TOLERANCE = 0.1
#: cells around fresh points in which kept Gaussians are re-initialised as well (their fit leaned on
#: neighbours that changed); with 3 the merged start of a moving-square frame scores 28.2 dB before
#: fitting, against 23.7 dB without the band and 25.8 dB for a fresh initialisation
CHANGE_BAND_CELLS = 3.0
#: near dropped Gaussians, a new point is left out for a kept one only within this many cells
#: (3x3x3 voxels of this size): with whole cells the kept and fresh Gaussians left one-cell cracks
#: along every changed region (merged start 24.4 dB on the moving square, worse than a fresh
#: start, 27.0 dB; 29.9 dB with 0.25)
COVERED_CELLS = 0.25
_COORD_LIMIT = 2**20 - 1
_KEY_BASE = 2**21


@dataclass
class SequenceFrame:
    """One frame's input: lifted ``points`` (N, 3) metres, ``colors`` (N, 3) in [0, 1], footprint
    ``radius`` (N,) metres, the views that supervise it, and optionally the pixel tangents
    ``tangent_u``/``tangent_v`` (N, 3) metres of ``backend.geometry.PointFrames`` (surface-aligned
    initialisation)."""

    points: np.ndarray | torch.Tensor
    colors: np.ndarray | torch.Tensor
    radius: np.ndarray | torch.Tensor
    views: Sequence[FitView | tuple]
    tangent_u: np.ndarray | torch.Tensor | None = None
    tangent_v: np.ndarray | torch.Tensor | None = None


@dataclass
class FittedFrame:
    """A finished frame: its index, fitted Gaussians and fitting statistics (``dropped_invalid``:
    Gaussians the export dropped as unusable, see ``backend.export.sanitize``)."""

    index: int
    gaussians: GaussianSet
    losses: list[float] = field(default_factory=list)
    psnr_per_view: list[float] = field(default_factory=list)
    kept_from_previous: int = 0
    initialised: int = 0
    dropped_from_previous: int = 0
    dropped_invalid: int = 0


@dataclass
class WarmStart:
    """Result of merging a previous fitted set with a new frame's initial set."""

    gaussians: GaussianSet
    kept: int
    initialised: int
    dropped: int
    #: (N, 3) the colour each merged Gaussian is matched by next frame (``reference_colors``)
    reference_colors: torch.Tensor


def _voxel_keys(points: torch.Tensor, cell_size: float) -> torch.Tensor:
    coords = torch.floor(points / cell_size).long().clamp(-_COORD_LIMIT, _COORD_LIMIT) + _COORD_LIMIT + 1
    return (coords[:, 0] * _KEY_BASE + coords[:, 1]) * _KEY_BASE + coords[:, 2]


def _near_any(query: torch.Tensor, reference: torch.Tensor, cell_size: float,
              query_colors: torch.Tensor | None = None, reference_colors: torch.Tensor | None = None,
              color_tolerance: float = 0.0) -> torch.Tensor:
    """(Nq,) bool: a reference point lies in the 3x3x3 voxel neighbourhood of each query point.

    With colours, a neighbouring voxel only counts when the mean colour of its reference points is
    within ``color_tolerance`` (largest channel difference) of the query point's colour."""
    if reference.shape[0] == 0:
        return torch.zeros(query.shape[0], dtype=torch.bool, device=query.device)
    ref_keys, inverse = torch.unique(_voxel_keys(reference, cell_size), return_inverse=True)
    mean_colors = None
    if query_colors is not None and reference_colors is not None:
        sums = torch.zeros(ref_keys.shape[0], 3, device=query.device).index_add_(0, inverse, reference_colors)
        counts = torch.bincount(inverse, minlength=ref_keys.shape[0]).clamp_min(1)
        mean_colors = sums / counts[:, None]
    hit = torch.zeros(query.shape[0], dtype=torch.bool, device=query.device)
    offsets = torch.tensor([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)],
                           dtype=query.dtype, device=query.device)
    for offset in offsets:
        keys = _voxel_keys(query + offset * cell_size, cell_size)
        slot = torch.searchsorted(ref_keys, keys).clamp_max(ref_keys.shape[0] - 1)
        found = ref_keys[slot] == keys
        if mean_colors is not None:
            found &= (mean_colors[slot] - query_colors).abs().amax(dim=1) <= color_tolerance
        hit |= found
    return hit


def warm_start(previous: GaussianSet, new_init: GaussianSet, cell_size: float,
               color_tolerance: float = WARM_START_COLOR_TOLERANCE,
               reference_colors: torch.Tensor | None = None) -> WarmStart:
    """Merge ``previous`` (fitted, frame t-1) with ``new_init`` (initialised from frame t's points).

    See the module docstring for the rule; ``cell_size`` is the voxel edge in metres. A previous
    Gaussian is kept only where the new points nearby have its colour (largest channel difference
    <= ``color_tolerance``, colours in [0, 1]): textured content that moved is initialised afresh
    instead of keeping last frame's pattern; new points are only replaced by kept Gaussians.
    ``reference_colors`` (N, 3): the colour to compare per previous Gaussian, default its fitted
    colour. :func:`fit_sequence` passes the point colour each Gaussian was initialised from: the
    colour solve sharpens fitted colours away from the (blurred) point colours, and compared with
    those almost nothing textured was kept.
    """
    if cell_size <= 0:
        raise ValidationError(f"warm-start cell size must be positive, got {cell_size}")
    prev = previous.to(new_init.device)
    prev_colors = prev.base_colors if reference_colors is None else reference_colors.to(new_init.device)
    if prev_colors.shape != (len(prev), 3):
        raise ValidationError(f"reference_colors must be ({len(prev)}, 3), got {tuple(prev_colors.shape)}")
    keep_prev = _near_any(prev.means, new_init.means, cell_size, prev_colors, new_init.base_colors,
                          color_tolerance)
    covered_new = _near_any(new_init.means, prev.means[keep_prev], cell_size)
    # where anything changed (fresh points), the kept neighbours' fit compensated for neighbours
    # that are gone: re-initialise a band of CHANGE_BAND_CELLS cells around the fresh points too
    band = _near_any(prev.means, new_init.means[~covered_new], CHANGE_BAND_CELLS * cell_size)
    keep_prev &= ~band
    kept = prev.masked(keep_prev)
    # next to dropped Gaussians a new point is left out only where a kept one sits right on it (the
    # one-cell test left one-cell cracks between kept and fresh Gaussians along changed regions);
    # elsewhere the one-cell test stands, so static content does not pile up duplicates
    changed = ~covered_new | _near_any(new_init.means, prev.means[~keep_prev], cell_size)
    covered_new = torch.where(changed, _near_any(new_init.means, kept.means, COVERED_CELLS * cell_size),
                              _near_any(new_init.means, kept.means, cell_size))
    fresh = new_init.masked(~covered_new)
    merged = GaussianSet.concatenate([kept, fresh])
    colors = torch.cat([prev_colors[keep_prev], new_init.base_colors[~covered_new]])
    return WarmStart(merged, kept=len(kept), initialised=len(fresh), dropped=len(prev) - len(kept),
                     reference_colors=colors)


def fit_sequence(
    frames: Iterable[SequenceFrame],
    config: FitConfig | None = None,
    *,
    warm_iterations: int | None = None,
    cell_size: float | None = None,
    opacity: float | None = None,
    sh_degree: int = 0,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Iterator[FittedFrame]:
    """Fit each frame in order with a warm start from the previous one; yield frames as they finish.

    ``progress`` counts optimiser steps over the whole sequence when ``frames`` has a length,
    otherwise over the current frame. ``opacity`` given: isotropic Gaussians of that initial
    opacity on every frame (:func:`gaussians_from_points`); ``None``: :func:`initial_gaussians`.
    """
    config = config or FitConfig()
    warm_steps = config.iterations // 2 if warm_iterations is None else int(warm_iterations)
    n_frames = len(frames) if isinstance(frames, Sequence) else None
    previous: GaussianSet | None = None
    previous_colors: torch.Tensor | None = None  # the point colour each of ``previous`` started from
    done_steps = 0
    for index, frame in enumerate(frames):
        check_cancel(cancel)
        if opacity is None:
            init = initial_gaussians(frame.points, frame.colors, frame.radius, frame.tangent_u, frame.tangent_v,
                                     sh_degree=sh_degree, device=device)
        else:
            init = gaussians_from_points(frame.points, frame.colors, frame.radius, opacity=opacity,
                                         sh_degree=sh_degree, device=device)
        if previous is None:
            merged, kept, fresh, dropped = init, 0, len(init), 0
            merged_colors = init.base_colors
            steps = config.iterations
        else:
            cell = cell_size if cell_size is not None else 2.0 * float(torch.exp(init.log_scales[:, 0]).median())
            ws = warm_start(previous, init, cell, reference_colors=previous_colors)
            merged, kept, fresh, dropped = ws.gaussians, ws.kept, ws.initialised, ws.dropped
            merged_colors = ws.reference_colors
            steps = warm_steps
        total = config.iterations + (n_frames - 1) * warm_steps if n_frames else steps
        if len(merged) == 0:  # nothing to fit (e.g. a frame without valid depth): an empty frame
            done_steps += steps
            yield FittedFrame(index=index, gaussians=merged, kept_from_previous=0, initialised=0,
                              dropped_from_previous=dropped)
            continue  # the next frame warm-starts from the last frame that had Gaussians

        def frame_progress(step: int, _total: int, message: str, _base: int = done_steps,
                           _index: int = index, _grand_total: int = total) -> None:
            if progress is not None:
                progress(min(_base + step, _grand_total) if n_frames else step, _grand_total,
                         f"frame {_index}: {message}")

        result = fit_frame(merged, frame.views, config, iterations=steps, progress=frame_progress,
                           cancel=cancel)
        done_steps += steps
        previous = result.gaussians
        previous_colors = merged_colors[result.survivors.to(merged_colors.device)]
        yield FittedFrame(index=index, gaussians=result.gaussians, losses=result.losses,
                          psnr_per_view=result.psnr_per_view, kept_from_previous=kept,
                          initialised=fresh, dropped_from_previous=dropped)
