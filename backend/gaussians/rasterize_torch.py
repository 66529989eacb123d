"""Pure-PyTorch reference rasteriser for 3D Gaussians (CPU, tests, small scenes); differentiable.

Follows 3DGS / gsplat ``rasterization(..., rasterize_mode="classic")``:

1. Means to camera space with ``world_to_camera`` (OpenCV: x right, y down, z forward);
   Gaussians closer than ``near_plane`` are culled.
2. EWA splatting: camera covariance ``W R S S^T R^T W^T`` projected with the perspective Jacobian
   (``x/z`` and ``y/z`` clamped to 1.3x the field of view as in 3DGS) and dilated by ``eps2d``
   = 0.3 px^2 on the diagonal; screen bounding box as gsplat 1.5.3 (opacity-aware, <= 3.33 sigma).
3. Colour from SH (degree 0..3) for the direction camera-centre -> mean, ``+0.5``, clamped at 0.
4. Sorted by camera depth; per 16x16 tile, per-pixel front-to-back alpha compositing with
   ``alpha = min(0.999, opacity * exp(-0.5 d^T Sigma^-1 d))`` (skipped below 1/255) and early
   termination once transmittance would drop below 1e-4 (that Gaussian and all behind it are
   skipped, like the CUDA kernels). Tiles process Gaussians in depth chunks and stop when every
   pixel of the tile has terminated.

Pixel ``(row i, column j)`` has its centre at ``(u, v) = (j + 0.5, i + 0.5)`` (``protocol.camera``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.checkpoint

from .colorspace import linear_to_srgb, srgb_to_linear
from .gaussian_set import GaussianSet
from .sh import eval_sh

ALPHA_MAX = 0.999
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4
EPS2D = 0.3  # 3DGS / gsplat screen-space dilation, px^2
#: Blender 5.3 Cycles' default pixel filter (Blackman-Harris, 1.5 px wide) acts on native splats
#: like a Gaussian blur of this variance (px^2): single splats, discs at 0-70 degrees and discs
#: carpeting a ground plane rendered by Cycles (256 samples) agree best with the reference
#: rasteriser in ``antialiased`` mode at 0.2 (alpha 29-53 dB, colour 28-45 dB; 0.25: up to -0.8 dB;
#: the plain 1/12 px^2 dilation the fit used before, in linear light: 27-52 dB / 27-44 dB, because a
#: plain dilation adds coverage to sub-pixel splats that a pixel filter only spreads). 2026-12-02.
CYCLES_FILTER_VARIANCE = 0.2
CHECKPOINT_MIN_WORK = 2**26  # pixels x Gaussians above which tiles are recomputed in backward


@dataclass(frozen=True)
class ImageFormation:
    """How a renderer turns Gaussians into pixels, as the rasterisers' keyword arguments:
    ``eps2d`` screen dilation (px^2), ``antialiased`` (the dilation keeps each splat's integrated
    alpha, i.e. acts as a pixel filter) and ``linear_light`` (sRGB colours composited in linear light)."""

    eps2d: float = EPS2D
    antialiased: bool = False
    linear_light: bool = False

    def kwargs(self) -> dict:
        return {"eps2d": self.eps2d, "antialiased": self.antialiased, "linear_light": self.linear_light}


#: 3DGS / gsplat's classic image formation (what the rasterisers do by default).
GSPLAT_IMAGE = ImageFormation()
#: Blender 5.3's Cycles rendering native splats with its default pixel filter and the "Standard"
#: view transform: colours converted to linear light and composited there (measured: a lone
#: semi-transparent splat over black agrees 42 dB this way, 28 dB composited in sRGB), each splat
#: blurred by the pixel filter (:data:`CYCLES_FILTER_VARIANCE`). Fitting uses it, so what the fit
#: optimises is what the artist renders in Blender.
CYCLES_IMAGE = ImageFormation(eps2d=CYCLES_FILTER_VARIANCE, antialiased=True, linear_light=True)


@dataclass
class RenderOutput:
    """One rendered view: ``rgb`` (H, W, 3), ``alpha`` (H, W), ``depth`` (H, W).

    ``depth`` is the alpha-normalised expected camera-space z (metres) of the composited Gaussians
    (gsplat's ``"ED"`` mode); 0 where nothing was hit.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


def composite_background(rgb: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor | None,
                         linear_light: bool) -> torch.Tensor:
    """Final colour from premultiplied ``rgb`` (H, W, 3) and ``alpha`` (H, W): ``background`` (RGB,
    sRGB-encoded like the colours) behind it; with ``linear_light`` the composite is in linear light
    and the result is encoded back to sRGB, as Cycles does with the "Standard" view transform."""
    if background is not None:
        bg = torch.as_tensor(background, device=rgb.device, dtype=rgb.dtype).reshape(3)
        if linear_light:
            bg = srgb_to_linear(bg)
        rgb = rgb + (1.0 - alpha).unsqueeze(-1) * bg
    return linear_to_srgb(rgb) if linear_light else rgb


def view_colors(means: torch.Tensor, sh: torch.Tensor, sh_degree: int, camera_centre: torch.Tensor,
                linear_light: bool) -> torch.Tensor:
    """(N, 3) colours seen from ``camera_centre``: SH for the direction centre -> mean, + 0.5,
    clamped at 0 (gsplat); linearised for ``linear_light`` compositing."""
    dirs = torch.nn.functional.normalize(means - camera_centre, dim=-1)
    colors = torch.clamp_min(eval_sh(sh_degree, sh, dirs) + 0.5, 0.0)
    return srgb_to_linear(colors) if linear_light else colors


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotation matrices from (N, 4) wxyz quaternions (normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


@dataclass
class ProjectedGaussians:
    """Screen-space Gaussians for one camera, sorted front to back, already culled."""

    means2d: torch.Tensor  # (M, 2) pixels
    conics: torch.Tensor  # (M, 3) inverse 2D covariance (a, b, c) for [[a, b], [b, c]]
    radii: torch.Tensor  # (M, 2) half-size of the screen bounding box in x and y, pixels (no gradient)
    depths: torch.Tensor  # (M,) camera z, metres
    colors: torch.Tensor  # (M, 3)
    opacities: torch.Tensor  # (M,)
    ids: torch.Tensor | None = None  # (M,) int64: each one's row in the projected GaussianSet


def project_gaussians(
    gaussians: GaussianSet,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = EPS2D,
    antialiased: bool = False,
    linear_light: bool = False,
) -> ProjectedGaussians:
    """Project, cull and depth-sort ``gaussians`` for one pinhole camera (K and w2c as float tensors).

    ``eps2d`` (px^2) is added to the diagonal of every screen covariance (3DGS's 0.3 by default).
    ``antialiased`` scales each opacity by ``sqrt(det(cov2d) / det(cov2d + eps2d I))`` so the dilation
    keeps each splat's footprint (its integrated alpha), as a pixel filter does: gsplat's
    ``rasterize_mode="antialiased"`` (Mip-Splatting's 2D filter). ``linear_light`` converts the
    (sRGB-encoded) colours to linear light for compositing (see :func:`composite_background`)."""
    dtype = gaussians.means.dtype
    K = K.to(gaussians.device, dtype)
    w2c = world_to_camera.to(gaussians.device, dtype)
    R, t = w2c[:3, :3], w2c[:3, 3]
    means_cam = gaussians.means @ R.T + t
    z = means_cam[:, 2]
    keep = (z > near_plane) & (z < far_plane)
    idx = torch.nonzero(keep).squeeze(1)
    means_cam, z = means_cam[idx], z[idx]

    rot = quat_to_rotmat(gaussians.quats[idx])
    m = rot * torch.exp(gaussians.log_scales[idx]).unsqueeze(1)  # R S
    cov_world = m @ m.transpose(1, 2)
    cov_cam = R @ cov_world @ R.T

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    tx = z * torch.clamp(means_cam[:, 0] / z, -lim_x_neg, lim_x_pos)
    ty = z * torch.clamp(means_cam[:, 1] / z, -lim_y_neg, lim_y_pos)
    zeros = torch.zeros_like(z)
    jac = torch.stack(
        [fx / z, zeros, -fx * tx / (z * z), zeros, fy / z, -fy * ty / (z * z)], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = jac @ cov_cam @ jac.transpose(1, 2)
    a = cov2d[:, 0, 0] + eps2d
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 1] + eps2d
    det = a * c - b * b
    valid = det > 0
    det = det.clamp_min(1e-12)
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    u = fx * means_cam[:, 0] / z + cx
    v = fy * means_cam[:, 1] / z + cy
    means2d = torch.stack([u, v], dim=-1)
    opacities = torch.sigmoid(gaussians.logit_opacities[idx])
    if antialiased:
        det_undilated = cov2d[:, 0, 0] * cov2d[:, 1, 1] - b * b
        opacities = opacities * torch.sqrt((det_undilated / det).clamp(1e-12, 1.0))
    with torch.no_grad():
        # gsplat 1.5.3: opacity-aware extent, min(3.33, sqrt(2 ln(opacity / (1/255)))) std-devs per
        # axis; the box then contains every pixel where alpha >= 1/255, so culling loses nothing
        extend = torch.sqrt(2.0 * torch.log((opacities / ALPHA_MIN).clamp_min(1.0))).clamp_max(3.33)
        radii = torch.stack([torch.ceil(extend * torch.sqrt(a)), torch.ceil(extend * torch.sqrt(c))], dim=-1)
        rx, ry = radii[:, 0], radii[:, 1]
        on_screen = (u + rx > 0) & (u - rx < width) & (v + ry > 0) & (v - ry < height)
        valid = valid & on_screen & (opacities >= ALPHA_MIN) & (rx > 0) & (ry > 0)

    colors = view_colors(gaussians.means[idx], gaussians.sh[idx], gaussians.sh_degree, -R.T @ t, linear_light)

    sel = torch.nonzero(valid).squeeze(1)
    order = sel[torch.argsort(z[sel].detach(), stable=True)]
    return ProjectedGaussians(
        means2d=means2d[order],
        conics=conics[order],
        radii=radii[order],
        depths=z[order],
        colors=colors[order],
        opacities=opacities[order],
        ids=idx[order],
    )


def _composite_tile(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    depths: torch.Tensor,
    pix: torch.Tensor,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Front-to-back compositing of one tile's depth-sorted Gaussians over pixel centres ``pix`` (P, 2).

    Returns premultiplied ``rgb`` (P, 3), ``alpha`` (P,) and alpha-weighted depth (P,)."""
    n_pix = pix.shape[0]
    dtype = means2d.dtype
    rgb = pix.new_zeros(n_pix, 3, dtype=dtype)
    depth = pix.new_zeros(n_pix, dtype=dtype)
    trans = pix.new_ones(n_pix, dtype=dtype)
    alive = torch.ones(n_pix, dtype=torch.bool, device=pix.device)
    pix_x, pix_y = pix[:, 0:1], pix[:, 1:2]
    for start in range(0, means2d.shape[0], chunk):
        sl = slice(start, start + chunk)
        dx = pix_x - means2d[sl, 0]  # (P, G) pixel offsets from each Gaussian's centre
        dy = pix_y - means2d[sl, 1]
        con = conics[sl]
        power = -0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) - con[:, 1] * dx * dy
        alpha = torch.clamp_max(opacities[sl] * torch.exp(power), ALPHA_MAX)
        alpha = torch.where((alpha >= ALPHA_MIN) & (power <= 0), alpha, torch.zeros_like(alpha))
        one_minus = 1.0 - alpha
        # inclusive transmittance after each Gaussian, starting from this chunk's incoming T
        t_incl = trans[:, None] * torch.cumprod(one_minus, dim=1)
        t_excl = t_incl / one_minus
        # early termination: a Gaussian that would push T below the threshold (and all behind it)
        # is skipped, exactly like the CUDA kernels' ``next_T <= 1e-4 -> done``
        contributes = (t_incl.detach() > TRANSMITTANCE_MIN) & alive[:, None]
        weights = torch.where(contributes, alpha * t_excl, torch.zeros_like(alpha))
        rgb = rgb + weights @ colors[sl]
        depth = depth + weights @ depths[sl]
        # incoming T for the next chunk: T after the last contributing Gaussian
        trans = trans * torch.prod(torch.where(contributes, one_minus, torch.ones_like(one_minus)), dim=1)
        alive = contributes[:, -1]
        if not bool(alive.any()):
            break
    return rgb, 1.0 - trans, depth


def rasterize_torch(
    gaussians: GaussianSet,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    width: int,
    height: int,
    *,
    background: torch.Tensor | None = None,
    tile_size: int = 16,
    chunk: int = 256,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    checkpoint_tiles: bool | None = None,
    eps2d: float = EPS2D,
    antialiased: bool = False,
    linear_light: bool = False,
) -> RenderOutput:
    """Render ``gaussians`` with the dense reference rasteriser (see module docstring); differentiable.

    ``tile_size`` (pixels) and ``chunk`` (Gaussians per depth chunk) trade speed for memory;
    ``checkpoint_tiles`` recomputes each tile in backward instead of storing its intermediates
    (~1.5x slower, memory ~ one tile); ``None`` = only for big jobs (pixels x Gaussians > 2^26)."""
    proj = project_gaussians(gaussians, K, world_to_camera, width, height, near_plane=near_plane,
                             far_plane=far_plane, eps2d=eps2d, antialiased=antialiased, linear_light=linear_light)
    device, dtype = gaussians.device, gaussians.means.dtype
    if checkpoint_tiles is None:
        checkpoint_tiles = width * height * len(proj.depths) > CHECKPOINT_MIN_WORK
    rgb = torch.zeros(height, width, 3, device=device, dtype=dtype)
    alpha = torch.zeros(height, width, device=device, dtype=dtype)
    depth = torch.zeros(height, width, device=device, dtype=dtype)
    rgb_tiles, alpha_tiles, depth_tiles = [], [], []
    u, v = proj.means2d[:, 0].detach(), proj.means2d[:, 1].detach()
    rx, ry = proj.radii[:, 0], proj.radii[:, 1]
    for y0 in range(0, height, tile_size):
        y1 = min(y0 + tile_size, height)
        for x0 in range(0, width, tile_size):
            x1 = min(x0 + tile_size, width)
            ids = torch.nonzero((u + rx > x0) & (u - rx < x1) & (v + ry > y0) & (v - ry < y1)).squeeze(1)
            if ids.numel() == 0:
                continue
            ys, xs = torch.meshgrid(
                torch.arange(y0, y1, device=device, dtype=dtype) + 0.5,
                torch.arange(x0, x1, device=device, dtype=dtype) + 0.5,
                indexing="ij",
            )
            pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)
            tile_inputs = (proj.means2d[ids], proj.conics[ids], proj.opacities[ids], proj.colors[ids],
                           proj.depths[ids], pix)
            if checkpoint_tiles and torch.is_grad_enabled():
                # keep only the tile's inputs for backward and recompute the (P, G) intermediates:
                # memory stays ~ one tile instead of the whole image's pixel x Gaussian products
                t_rgb, t_alpha, t_depth = torch.utils.checkpoint.checkpoint(
                    _composite_tile, *tile_inputs, chunk, use_reentrant=False)
            else:
                t_rgb, t_alpha, t_depth = _composite_tile(*tile_inputs, chunk)
            shape = (y1 - y0, x1 - x0)
            rgb_tiles.append((y0, y1, x0, x1, t_rgb.reshape(*shape, 3)))
            alpha_tiles.append(t_alpha.reshape(shape))
            depth_tiles.append(t_depth.reshape(shape))
    # assemble without in-place writes into tensors that need grad
    if rgb_tiles:
        rgb = _assemble([(y0, y1, x0, x1, t) for (y0, y1, x0, x1, t) in rgb_tiles], rgb)
        alpha = _assemble([(*b[:4], t) for b, t in zip(rgb_tiles, alpha_tiles)], alpha)
        depth = _assemble([(*b[:4], t) for b, t in zip(rgb_tiles, depth_tiles)], depth)
    rgb = composite_background(rgb, alpha, background, linear_light)
    depth = torch.where(alpha > 0, depth / alpha.clamp_min(1e-10), torch.zeros_like(depth))
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth)


def _assemble(tiles: list[tuple[int, int, int, int, torch.Tensor]], canvas: torch.Tensor) -> torch.Tensor:
    """Place tile tensors into a zero canvas with index_put (keeps autograd through the tiles)."""
    height, width = canvas.shape[:2]
    flat = canvas.reshape(height * width, -1)
    index_parts, value_parts = [], []
    for y0, y1, x0, x1, t in tiles:
        ys = torch.arange(y0, y1, device=canvas.device)
        xs = torch.arange(x0, x1, device=canvas.device)
        index_parts.append((ys[:, None] * width + xs[None, :]).reshape(-1))
        value_parts.append(t.reshape(index_parts[-1].shape[0], -1))
    index = torch.cat(index_parts)
    values = torch.cat(value_parts)
    flat = flat.index_put((index,), values)
    return flat.reshape(canvas.shape)
