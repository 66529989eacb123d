"""What the exporters write: only Gaussians that every reader (Blender 5.3, splat viewers) can use.

A Gaussian is dropped when any parameter is NaN or infinite, when its activated scale
``exp(log_scale)`` overflows to infinity or underflows to 0 on any axis, or when its quaternion has
(near) zero length (no rotation can be read from it). The kept quaternions are normalised (unit,
wxyz), so a PLY's ``rot_*`` and a USD's ``orientations`` are rotations as written. Dropped rows
are counted and logged, never silently turned into something else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from backend.gaussians.gaussian_set import GaussianSet

LOG = logging.getLogger(__name__)
MIN_QUATERNION_NORM = 1e-6


@dataclass
class ExportableGaussians:
    """The Gaussians to write (unit quaternions) and how many were dropped as unusable."""

    gaussians: GaussianSet
    dropped: int


def invalid_gaussian_rows(gaussians: GaussianSet) -> torch.Tensor:
    """(N,) bool: Gaussians no reader can use (see module docstring)."""
    g = gaussians.detach()
    finite = (torch.isfinite(g.means).all(1) & torch.isfinite(g.log_scales).all(1) & torch.isfinite(g.quats).all(1)
              & torch.isfinite(g.logit_opacities) & torch.isfinite(g.sh).flatten(1).all(1))
    scales = torch.exp(g.log_scales.float())  # float32, as the files store them
    usable_scale = (torch.isfinite(scales) & (scales > 0)).all(1)
    usable_rotation = g.quats.double().norm(dim=1) >= MIN_QUATERNION_NORM
    return ~(finite & usable_scale & usable_rotation)


def exportable_gaussians(gaussians: GaussianSet, what: str = "Gaussians") -> ExportableGaussians:
    """Drop unusable Gaussians and normalise the quaternions of the rest; ``what`` names the set in
    the log line (e.g. ``"frame 12 of gaussians"``)."""
    g = gaussians.detach()
    bad = invalid_gaussian_rows(g)
    dropped = int(bad.sum())
    if dropped:
        LOG.warning("%s: dropped %d of %d Gaussians with NaN/infinite values, zero scales or zero "
                    "quaternions before export", what, dropped, len(g))
        g = g.masked(~bad)
    quats = g.quats / g.quats.norm(dim=1, keepdim=True).clamp_min(MIN_QUATERNION_NORM)
    return ExportableGaussians(GaussianSet(g.means, g.log_scales, quats, g.logit_opacities, g.sh, g.sh_degree),
                               dropped)
