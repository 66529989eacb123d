"""Closed-form colours for fixed Gaussian geometry: a weighted linear least-squares solve.

With the geometry (means, scales, rotations, opacities) held fixed, a rendered pixel is linear in
the Gaussians' colours *in compositing space*: ``c_p = sum_i w_pi x_i + T_p bg`` with ``w_pi =
alpha_pi T_pi`` the compositing weight of Gaussian ``i`` at pixel ``p`` (:func:`pair_weights`),
``T_p`` the pixel's final transmittance and ``x_i`` the colour (linear light when the image
formation composites there, as Cycles does). So the colours that best reproduce every view at once
solve one sparse, symmetric positive-definite system per channel::

    (A^T M A + ridge I) x = A^T M (t - T bg) + ridge x0

(``A`` stacks every view's pair weights, ``M`` the per-pixel view weights, ``t`` the target pixels
in compositing space, ``x0`` the current colours). It is solved by conjugate gradients with a
Jacobi preconditioner: each iteration is one sparse product each way (two ``index_add`` over the
pairs), about as much work as one forward render and no autograd. A few Adam steps cannot get there: on the demo the 2-4 CPU steps
leave the colours close to the initial point colours, which are blurred by the depth splatting.

The ridge is a real regulariser, not only for Gaussians that no pixel sees: one Gaussian per source
pixel, each overlapping its neighbours, makes ``A^T M A`` nearly singular, and the unregularised
solution alternates neighbours' colours far outside [0, 1], which the final clip then ruins. On the
demo's frames (2 views, 20-30k Gaussians, scored against the ground truth from the target camera)
a ridge of 1e-3 x the mean diagonal (30 iterations) gives 27.0 / 23.5 dB on frames 0 / 12, 0.1
gives 30.3 / 25.4, 0.3 (:data:`DEFAULT_RIDGE`) 30.4 / 25.7, 1.0 29.0 / 25.8; with the ridge, 10
iterations are as good as 20 or 30 (the colours before the solve: 22.9 / 23.8 dB).

Only the view-independent (DC) colour is solved; Gaussian sets with higher SH degrees are refused
(:class:`~protocol.errors.ValidationError`): their colour is not linear in one unknown per channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from protocol.camera import Camera
from protocol.errors import ValidationError

from .colorspace import linear_to_srgb, srgb_to_linear
from .gaussian_set import GaussianSet, rgb_to_sh_dc, sh_dc_to_rgb
from .rasterize import _camera_tensors
from .rasterize_pairs import _candidate_pairs, pair_weights
from .rasterize_torch import CYCLES_IMAGE, ImageFormation, project_gaussians

DEFAULT_ITERATIONS = 10  # conjugate-gradient steps
DEFAULT_RIDGE = 0.3  # relative to the mean diagonal of A^T M A (module docstring: why this large)


class _ViewSystem:
    """One view's pairs: row (Gaussian index into the whole set), pixel, weight (mask folded in)."""

    def __init__(self, gaussians: GaussianSet, image: torch.Tensor, camera: Camera,
                 weight: torch.Tensor | None, formation: ImageFormation, background: torch.Tensor) -> None:
        device, dtype = gaussians.device, gaussians.means.dtype
        K, w2c, width, height = _camera_tensors(camera, None, None, None, None, device, dtype)
        proj = project_gaussians(gaussians, K, w2c, width, height, **formation.kwargs())
        gid, pixel = _candidate_pairs(proj, width, height)
        weights, log_one_minus = pair_weights(proj, gid, pixel, width)
        pixel = pixel.to(torch.int64)
        n_pix = width * height
        transmittance = torch.exp(torch.zeros(n_pix, device=device, dtype=dtype).index_add(0, pixel, log_one_minus))
        target = image.reshape(n_pix, 3).to(dtype)
        bg = background.to(device=device, dtype=dtype)
        if formation.linear_light:
            target, bg = srgb_to_linear(target), srgb_to_linear(bg)
        self.rows = proj.ids.index_select(0, gid)
        self.pixel = pixel
        self.weights = weights
        self.mask = torch.ones(n_pix, device=device, dtype=dtype) if weight is None else \
            weight.reshape(n_pix).to(dtype).clamp_min(0.0)
        self.residual_target = target - transmittance[:, None] * bg  # what the Gaussians must add
        self.n_pix = n_pix

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``A x``: (n_pix, 3) premultiplied colour of the Gaussians ``x`` (N, 3)."""
        out = torch.zeros(self.n_pix, x.shape[1], device=x.device, dtype=x.dtype)
        return out.index_add(0, self.pixel, self.weights[:, None] * x.index_select(0, self.rows))

    def apply_transpose(self, y: torch.Tensor, n: int) -> torch.Tensor:
        """``A^T y``: (n, 3) from per-pixel values ``y`` (n_pix, 3)."""
        out = torch.zeros(n, y.shape[1], device=y.device, dtype=y.dtype)
        return out.index_add(0, self.rows, self.weights[:, None] * y.index_select(0, self.pixel))

    def diagonal(self, n: int) -> torch.Tensor:
        """Diagonal of ``A^T M A`` (n,)."""
        mask = self.mask.index_select(0, self.pixel)
        return torch.zeros(n, device=self.weights.device, dtype=self.weights.dtype).index_add(
            0, self.rows, mask * self.weights * self.weights)


@torch.no_grad()
def solve_colors(
    gaussians: GaussianSet,
    views: Sequence[tuple[torch.Tensor, Camera, torch.Tensor | None]],
    *,
    image: ImageFormation = CYCLES_IMAGE,
    background: torch.Tensor | tuple[float, float, float] = (0.0, 0.0, 0.0),
    iterations: int = DEFAULT_ITERATIONS,
    ridge: float = DEFAULT_RIDGE,
) -> GaussianSet:
    """Gaussians with the colours that reproduce ``views`` best in least squares (module docstring).

    ``views``: ``(image (H, W, 3) in [0, 1], camera, weight (H, W) or None)`` as fitting prepares
    them; a weight of 0 leaves a pixel out. ``iterations``: conjugate-gradient steps; ``ridge``:
    the pull toward the current colours, relative to the mean diagonal of ``A^T M A``. Colours are
    clipped to [0, 1] after the solve. Geometry, opacities and the returned set's tensors are
    detached copies."""
    if gaussians.sh_degree != 0:
        raise ValidationError(f"the colour solve handles SH degree 0 only (view-independent colour), "
                              f"got degree {gaussians.sh_degree}")
    if iterations < 0:
        raise ValidationError(f"colour-solve iterations must be >= 0, got {iterations}")
    if ridge <= 0:
        raise ValidationError(f"the colour solve's ridge must be > 0, got {ridge}")
    g = gaussians.detach()
    n = len(g)
    if n == 0 or iterations == 0 or len(views) == 0:
        return g.clone()
    bg = torch.as_tensor(background, device=g.device, dtype=g.means.dtype).reshape(3)
    systems = [_ViewSystem(g, img, cam, w, image, bg) for img, cam, w in views]
    x0 = sh_dc_to_rgb(g.sh[:, 0])
    if image.linear_light:
        x0 = srgb_to_linear(x0)
    diag = torch.zeros(n, device=g.device, dtype=g.means.dtype)
    for s in systems:
        diag = diag + s.diagonal(n)
    seen = diag > 0
    lam = ridge * float(diag[seen].mean()) if bool(seen.any()) else ridge

    def normal(x: torch.Tensor) -> torch.Tensor:
        out = lam * x
        for s in systems:
            out = out + s.apply_transpose(s.mask[:, None] * s.apply(x), n)
        return out

    rhs = lam * x0
    for s in systems:
        rhs = rhs + s.apply_transpose(s.mask[:, None] * s.residual_target, n)
    inv_diag = 1.0 / (diag + lam)[:, None]
    x = x0.clone()
    r = rhs - normal(x)
    z = inv_diag * r
    p = z.clone()
    rz = (r * z).sum(0)
    for _ in range(iterations):
        q = normal(p)
        step = rz / (p * q).sum(0).clamp_min(1e-30)
        x = x + step * p
        r = r - step * q
        z = inv_diag * r
        rz_new = (r * z).sum(0)
        p = z + (rz_new / rz.clamp_min(1e-30)) * p
        rz = rz_new
    colors = x.clamp(0.0, 1.0)
    if image.linear_light:
        colors = linear_to_srgb(colors)
    sh = g.sh.clone()
    sh[:, 0] = rgb_to_sh_dc(colors)
    return GaussianSet(g.means.clone(), g.log_scales.clone(), g.quats.clone(), g.logit_opacities.clone(), sh,
                       g.sh_degree)
