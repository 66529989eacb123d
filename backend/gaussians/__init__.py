"""3D Gaussian sets, rasterisers (gsplat on CUDA, fast sparse-pair torch, dense torch reference) and
per-frame fitting."""

from . import colorspace
from .fit import FitConfig, FitResult, FitView, fit_frame
from .gaussian_set import (
    SH_C0,
    GaussianSet,
    gaussians_from_points,
    gaussians_from_surface,
    initial_gaussians,
    rgb_to_sh_dc,
    sh_coeff_count,
    sh_dc_to_rgb,
)
from .losses import photometric_loss, psnr, ssim
from .rasterize import MissingDependencyError, gsplat_available, gsplat_status, rasterize
from .rasterize_torch import RenderOutput
from .sequence import FittedFrame, SequenceFrame, WarmStart, fit_sequence, warm_start

__all__ = [
    "SH_C0",
    "FitConfig",
    "FitResult",
    "FitView",
    "FittedFrame",
    "GaussianSet",
    "MissingDependencyError",
    "RenderOutput",
    "SequenceFrame",
    "WarmStart",
    "fit_frame",
    "fit_sequence",
    "gaussians_from_points",
    "gaussians_from_surface",
    "gsplat_available",
    "gsplat_status",
    "initial_gaussians",
    "photometric_loss",
    "psnr",
    "rasterize",
    "rgb_to_sh_dc",
    "sh_coeff_count",
    "sh_dc_to_rgb",
    "ssim",
    "warm_start",
    "colorspace",
]
