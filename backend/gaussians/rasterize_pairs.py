"""Fast pure-PyTorch rasteriser for 3D Gaussians: sparse (Gaussian, pixel) pairs, no Python loops.

Same image formation as the tile reference (:mod:`.rasterize_torch`, the checked reference; the
agreement is tested): the same projection, culling, depth sort, SH colours, 0.3 px^2 dilation,
``alpha = min(0.999, opacity * exp(-0.5 d^T Sigma^-1 d))`` skipped below 1/255 or where the
exponent is positive, front-to-back compositing with early termination once the transmittance
would drop below 1e-4. Only the evaluation differs:

1. *Ellipse culling.* Every projected Gaussian lists, row by row of its screen bounding box
   (gsplat's opacity-aware box), the span of pixels inside its ellipse ``alpha >= 1/255``, and the
   pairs whose alpha stays below 1/255 are dropped before anything is differentiated. A pixel only
   ever meets the few Gaussians that reach it (about 10-30 for one Gaussian per source pixel)
   instead of every Gaussian of its 16x16 tile.
2. *One sort.* The pairs are generated front to back (the Gaussians are depth-sorted) and sorted
   stably by pixel, so each pixel's pairs form one contiguous run in depth order.
3. *Segmented scan.* The transmittance in front of each pair is ``exp`` of a segmented cumulative
   sum of ``log(1 - alpha)`` (a global cumulative sum in float64 minus its value at the start of
   the pixel's run), and colour, depth and alpha are summed per pixel with ``index_add``.

Everything is differentiable by autograd (gathers, cumulative sums, index_add), on any device.
Pixel ``(row i, column j)`` has its centre at ``(u, v) = (j + 0.5, i + 0.5)`` (``protocol.camera``).
"""

from __future__ import annotations

import math

import torch

from .gaussian_set import GaussianSet
from .rasterize_torch import (
    ALPHA_MAX,
    ALPHA_MIN,
    EPS2D,
    TRANSMITTANCE_MIN,
    ProjectedGaussians,
    RenderOutput,
    composite_background,
    project_gaussians,
)

LOG_TRANSMITTANCE_MIN = math.log(TRANSMITTANCE_MIN)
_SPAN_TOLERANCE = 1e-2  # added to the ellipse's 2 ln(opacity * 255): float rounding never loses a pixel


def _candidate_pairs(proj: ProjectedGaussians, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gaussian, pixel)`` index pairs with alpha >= 1/255, ordered by pixel, then front to back:
    ``gaussian`` int64 rows of ``proj``, ``pixel`` int32 ``row * width + column``.

    Per Gaussian, every pixel row of its bounding box gets the span of columns inside its ellipse
    ``alpha >= 1/255`` (solved per row, widened by a tolerance); the pairs of those spans are then
    tested exactly. Computed without gradients: the pairs are only a selection;
    :func:`rasterize_pairs` re-evaluates alpha on them with autograd."""
    device = proj.means2d.device
    empty = (torch.zeros(0, dtype=torch.int64, device=device), torch.zeros(0, dtype=torch.int32, device=device))
    with torch.no_grad():
        u, v = proj.means2d[:, 0], proj.means2d[:, 1]
        rx, ry = proj.radii[:, 0], proj.radii[:, 1]
        # bounding box: columns j whose centre j + 0.5 lies within (u - rx, u + rx), same for rows
        x_lo = torch.floor(u - rx).clamp(0, width - 1)
        x_hi = torch.floor(u + rx).clamp(0, width - 1)
        y_lo = torch.floor(v - ry).clamp(0, height - 1)
        y_hi = torch.floor(v + ry).clamp(0, height - 1)
        rows_per_gaussian = (y_hi - y_lo + 1).clamp_min(0).to(torch.int64)
        n_rows = int(rows_per_gaussian.sum())
        if n_rows == 0:
            return empty
        # alpha >= 1/255  <=>  a dx^2 + 2 b dx dy + c dy^2 <= 2 ln(opacity * 255) (conic a, b, c)
        two_t = 2.0 * torch.log((proj.opacities / ALPHA_MIN).clamp_min(1.0)) + _SPAN_TOLERANCE
        first_row = (torch.cumsum(rows_per_gaussian, 0) - rows_per_gaussian).to(u.dtype)
        rid = torch.repeat_interleave(torch.arange(u.shape[0], device=device), rows_per_gaussian,
                                      output_size=n_rows)
        r_first, r_y_lo, r_u, r_v, r_x_lo, r_x_hi, con_a, con_b, con_c, r_two_t = torch.stack(
            [first_row, y_lo, u, v, x_lo, x_hi, proj.conics[:, 0], proj.conics[:, 1], proj.conics[:, 2], two_t],
            dim=1).index_select(0, rid).unbind(1)
        row = r_y_lo + (torch.arange(n_rows, device=device, dtype=u.dtype) - r_first)
        dy = (row + 0.5) - r_v
        discriminant = dy * dy * (con_b * con_b - con_a * con_c) + con_a * r_two_t
        half_width = torch.sqrt(discriminant.clamp_min(0.0)) / con_a
        centre = r_u - con_b * dy / con_a
        span_lo = torch.maximum(torch.ceil(centre - half_width - 0.5), r_x_lo)
        span_hi = torch.minimum(torch.floor(centre + half_width - 0.5), r_x_hi)
        span = torch.where(discriminant >= 0, span_hi - span_lo + 1, 0.0).clamp_min(0).to(torch.int64)
        total = int(span.sum())
        if total == 0:
            return empty
        first_pair = (torch.cumsum(span, 0) - span).to(u.dtype)
        pid = torch.repeat_interleave(torch.arange(n_rows, device=device), span, output_size=total)
        p_first, p_span_lo, p_row = torch.stack([first_pair, span_lo, row], dim=1).index_select(0, pid).unbind(1)
        col = p_span_lo + (torch.arange(total, device=device, dtype=u.dtype) - p_first)
        gid = rid.index_select(0, pid)
        g_u, g_v, g_a, g_b, g_c, g_opacity = torch.cat(
            [proj.means2d, proj.conics, proj.opacities[:, None]], dim=1).index_select(0, gid).unbind(1)
        dx = (col + 0.5) - g_u
        dy = (p_row + 0.5) - g_v
        power = -0.5 * (g_a * dx * dx + g_c * dy * dy) - g_b * dx * dy
        alpha = torch.clamp_max(g_opacity * torch.exp(power), ALPHA_MAX)
        keep = torch.nonzero((alpha >= ALPHA_MIN) & (power <= 0)).squeeze(1)
        gid = gid.index_select(0, keep)
        pixel = (p_row.index_select(0, keep) * width + col.index_select(0, keep)).to(torch.int32)
        # pairs come front to back (Gaussians are depth-sorted, rows and spans keep that order);
        # a stable sort by pixel keeps it within each pixel
        pixel, order = torch.sort(pixel, stable=True)
        return gid.index_select(0, order), pixel


def pair_weights(proj: ProjectedGaussians, gid: torch.Tensor, pixel: torch.Tensor,
                 width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Compositing weight ``alpha * T`` of each ``(gaussian, pixel)`` pair of :func:`_candidate_pairs`
    (the pixel's colour is ``sum(weight * colour)``) and its ``log(1 - alpha)`` (0 for pairs skipped
    by early termination; per pixel they sum to the log of the final transmittance). Differentiable."""
    dtype = proj.means2d.dtype
    row = torch.div(pixel, width, rounding_mode="floor")
    col = pixel - row * width
    # one gather of the per-Gaussian scalars (unbind: one stack, one index_add in backward)
    mean_u, mean_v, con_a, con_b, con_c, opacity = torch.cat(
        [proj.means2d, proj.conics, proj.opacities[:, None]], dim=1).index_select(0, gid).unbind(1)
    dx = (col.to(dtype) + 0.5) - mean_u
    dy = (row.to(dtype) + 0.5) - mean_v
    power = -0.5 * (con_a * dx * dx + con_c * dy * dy) - con_b * dx * dy
    alpha = torch.clamp_max(opacity * torch.exp(power), ALPHA_MAX)
    log_one_minus = torch.log1p(-alpha)
    # segmented scan: inclusive sum of log(1 - alpha) along each pixel's run, in float64 so
    # subtracting the run's start value loses nothing (the global sum grows with the pair count)
    inclusive = torch.cumsum(log_one_minus.to(torch.float64), 0)
    run_start = torch.ones_like(pixel, dtype=torch.bool)
    run_start[1:] = pixel[1:] != pixel[:-1]
    start_index = torch.cummax(torch.where(run_start, torch.arange(pixel.numel(), device=pixel.device), 0),
                               0).values
    before_run = (inclusive - log_one_minus.to(torch.float64)).index_select(0, start_index)
    log_t_incl = (inclusive - before_run).to(dtype)
    log_t_excl = log_t_incl - log_one_minus
    # early termination as in the CUDA kernels: a Gaussian that would push the transmittance
    # below 1e-4 (and every one behind it) is skipped
    contributes = log_t_incl.detach() > LOG_TRANSMITTANCE_MIN
    zeros = torch.zeros_like(alpha)
    return (torch.where(contributes, alpha * torch.exp(log_t_excl), zeros),
            torch.where(contributes, log_one_minus, zeros))


def rasterize_pairs(
    gaussians: GaussianSet,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    width: int,
    height: int,
    *,
    background: torch.Tensor | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = EPS2D,
    antialiased: bool = False,
    linear_light: bool = False,
) -> RenderOutput:
    """Render ``gaussians`` (see module docstring); differentiable; ``K`` pixels, OpenCV ``world_to_camera``.

    Returns the same :class:`RenderOutput` as the reference: ``rgb`` (H, W, 3) composited over
    ``background`` when given, ``alpha`` (H, W), ``depth`` (H, W) alpha-normalised camera z in
    metres (0 where nothing was hit)."""
    proj = project_gaussians(gaussians, K, world_to_camera, width, height, near_plane=near_plane,
                             far_plane=far_plane, eps2d=eps2d, antialiased=antialiased, linear_light=linear_light)
    device, dtype = gaussians.device, gaussians.means.dtype
    n_pix = width * height
    gid, pixel = _candidate_pairs(proj, width, height)
    rgb = torch.zeros(n_pix, 3, device=device, dtype=dtype)
    depth = torch.zeros(n_pix, device=device, dtype=dtype)
    log_trans = torch.zeros(n_pix, device=device, dtype=dtype)
    if gid.numel() > 0:
        pixel_long = pixel.to(torch.int64)
        weights, log_one_minus = pair_weights(proj, gid, pixel, width)
        colors = proj.colors.index_select(0, gid)
        rgb = rgb.index_add(0, pixel_long, weights[:, None] * colors)
        depth = depth.index_add(0, pixel_long, weights * proj.depths.index_select(0, gid))
        log_trans = log_trans.index_add(0, pixel_long, log_one_minus)
    alpha_img = (1.0 - torch.exp(log_trans)).reshape(height, width)
    rgb = rgb.reshape(height, width, 3)
    depth = depth.reshape(height, width)
    rgb = composite_background(rgb, alpha_img, background, linear_light)
    depth = torch.where(alpha_img > 0, depth / alpha_img.clamp_min(1e-10), torch.zeros_like(depth))
    return RenderOutput(rgb=rgb, alpha=alpha_img, depth=depth)
