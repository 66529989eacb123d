"""The thickness floor: no Gaussian thinner than MIN_SCALE_RATIO x its largest axis, at
initialisation and after fitting (Blender 5.3's Cycles under-covers thinner discs)."""

from __future__ import annotations

import pytest
import torch

from backend.gaussians import FitConfig, FitView, fit_frame, gaussians_from_surface
from backend.gaussians.gaussian_set import MIN_SCALE_RATIO, floor_scale_ratio
from backend.pipelines.reshoot.synthetic import room_fit_case
from protocol.errors import ValidationError


def _ratios(log_scales: torch.Tensor) -> torch.Tensor:
    scales = torch.exp(log_scales)
    return scales.min(dim=-1).values / scales.max(dim=-1).values


def test_floor_raises_only_the_thin_axes_and_keeps_the_largest() -> None:
    log_scales = torch.log(torch.tensor([[1.0, 0.5, 0.01], [0.2, 0.2, 0.2], [0.001, 2.0, 0.9]]))
    floored = torch.exp(floor_scale_ratio(log_scales, 0.3))
    expected = torch.tensor([[1.0, 0.5, 0.3], [0.2, 0.2, 0.2], [0.6, 2.0, 0.9]])
    torch.testing.assert_close(floored, expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(floor_scale_ratio(log_scales, 0.0), log_scales)
    with pytest.raises(ValidationError, match="min_scale_ratio"):
        floor_scale_ratio(log_scales, 1.5)


def test_surface_discs_and_fitted_gaussians_keep_the_floor() -> None:
    """Room scene, 48x36: the discs start at the floor and the fit (which, unconstrained, thins
    them further) ends on or above it; with the floor off the thin discs stay far below."""
    case = room_fit_case(48, 36)
    points = case.points
    discs = gaussians_from_surface(points.xyz, points.rgb, points.tangent_u, points.tangent_v)
    assert float(_ratios(discs.log_scales).min()) >= MIN_SCALE_RATIO * (1 - 1e-4)
    views = [FitView(*view) for view in case.views]
    with pytest.raises(ValidationError, match="min_scale_ratio"):
        fit_frame(discs, views, FitConfig(min_scale_ratio=-0.1))
    fitted = fit_frame(discs, views, FitConfig(iterations=3)).gaussians
    assert float(_ratios(fitted.log_scales).min()) >= MIN_SCALE_RATIO * (1 - 1e-4)
    thin = gaussians_from_surface(points.xyz, points.rgb, points.tangent_u, points.tangent_v, min_scale_ratio=0.0)
    free = fit_frame(thin, views, FitConfig(iterations=3, min_scale_ratio=0.0)).gaussians
    assert float(_ratios(free.log_scales).median()) < 0.5 * MIN_SCALE_RATIO
