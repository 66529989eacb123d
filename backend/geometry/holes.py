"""Depth for generated pixels when no depth network is used: background-biased hole filling.

Holes in a render along a new camera path are disocclusions: surfaces that were hidden *behind*
something nearer, so their depth is best guessed from the farther side of the hole's rim.
:func:`fill_depth_holes` finds, for every hole pixel, the nearest known pixel to its left and to
its right in the same row and takes the farther of the two; rows with no known pixel fall back to
the same rule along the column. Fully vectorised (cumulative max over indices), O(H*W).
"""

from __future__ import annotations

import torch

from protocol.errors import ValidationError


def _nearest_known_along_last_dim(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Farther of the nearest known values before and after each position (0 where neither exists)."""
    n = values.shape[-1]
    idx = torch.arange(n, device=values.device).expand_as(values)
    before = torch.where(known, idx, torch.full_like(idx, -1)).cummax(dim=-1).values
    after = torch.where(known, idx, torch.full_like(idx, n)).flip(-1).cummin(dim=-1).values.flip(-1)
    left = torch.where(before >= 0, values.gather(-1, before.clamp(min=0)), torch.zeros_like(values))
    right = torch.where(after < n, values.gather(-1, after.clamp(max=n - 1)), torch.zeros_like(values))
    return torch.maximum(left, right)


def fill_depth_holes(depth: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """Fill ``holes (F,H,W)`` bool of planar ``depth (F,H,W)`` metres from the farther side of each hole.

    Pixels outside ``holes`` with positive finite depth are kept exactly; a frame with no known depth
    at all stays 0 (nothing to propagate).
    """
    if depth.ndim != 3 or holes.shape != depth.shape or holes.dtype != torch.bool:
        raise ValidationError("depth must be (F,H,W) and holes a bool mask of the same shape")
    known = (~holes) & torch.isfinite(depth) & (depth > 0)
    d = torch.where(known, depth, torch.zeros_like(depth))
    rows = _nearest_known_along_last_dim(d, known)
    cols = _nearest_known_along_last_dim(d.transpose(1, 2), known.transpose(1, 2)).transpose(1, 2)
    guess = torch.where(rows > 0, rows, cols)
    return torch.where(known, depth, guess)
