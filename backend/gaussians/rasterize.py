"""One entry point for rendering Gaussians: gsplat on CUDA, the fast pure-torch rasteriser elsewhere.

Three implementations of one image formation: ``"gsplat"`` (CUDA kernels), ``"fast"``
(:mod:`.rasterize_pairs`: sparse Gaussian-pixel pairs, vectorised torch, any device) and
``"torch"`` (:mod:`.rasterize_torch`: the dense tile reference the other two are checked against).

``rasterize(gaussians, camera)`` or ``rasterize(gaussians, K=..., world_to_camera=..., width=..., height=...)``
returns :class:`RenderOutput` (``rgb`` (H, W, 3), ``alpha`` (H, W), ``depth`` (H, W) expected z in
metres). Both backends use the same conventions (OpenCV camera, pixel centres at +0.5, colour =
SH + 0.5 clamped at 0, 0.3 px^2 dilation, alpha <= 0.999, transmittance cut-off 1e-4).
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import torch

from protocol.camera import Camera
from protocol.errors import Recast4DError, ValidationError

from .gaussian_set import GaussianSet
from .rasterize_pairs import rasterize_pairs
from .rasterize_torch import EPS2D, RenderOutput, composite_background, rasterize_torch, view_colors

Backend = Literal["auto", "fast", "torch", "gsplat"]
BACKENDS = ("auto", "fast", "torch", "gsplat")


class MissingDependencyError(Recast4DError):
    """An optional accelerated component (gsplat's CUDA kernels) is not usable on this machine."""

    code = "missing_dependency"


def _camera_tensors(
    camera: Camera | None,
    K: np.ndarray | torch.Tensor | None,
    world_to_camera: np.ndarray | torch.Tensor | None,
    width: int | None,
    height: int | None,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    if camera is not None:
        K, world_to_camera = camera.K, camera.world_to_camera
        width = camera.width if width is None else width
        height = camera.height if height is None else height
    if K is None or world_to_camera is None or width is None or height is None:
        raise ValidationError("rasterize needs a Camera, or K, world_to_camera, width and height")
    K_t = torch.as_tensor(K, device=device).to(dtype)
    w2c_t = torch.as_tensor(world_to_camera, device=device).to(dtype)
    if K_t.shape != (3, 3) or w2c_t.shape != (4, 4):
        raise ValidationError(f"K must be 3x3 and world_to_camera 4x4, got {tuple(K_t.shape)} and "
                              f"{tuple(w2c_t.shape)}")
    if int(width) <= 0 or int(height) <= 0:
        raise ValidationError(f"image size must be positive, got {width}x{height}")
    return K_t, w2c_t, int(width), int(height)


@functools.lru_cache(maxsize=1)
def gsplat_status() -> tuple[bool, str]:
    """``(usable, reason)`` for the gsplat CUDA rasteriser, checked once per process.

    Loads gsplat's CUDA extension (a JIT build of a few minutes the first time on a machine with
    nvcc and no prebuilt wheel), so a broken toolkit is found here rather than mid-fit."""
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    try:
        import gsplat  # noqa: F401
        from gsplat.cuda._backend import _C
    except Exception as exc:  # ImportError, build RuntimeError, OSError from the JIT loader
        return False, f"gsplat CUDA extension unavailable: {type(exc).__name__}: {exc}"
    if _C is None:
        return False, "gsplat found no CUDA toolkit to build its kernels and has no prebuilt ones"
    return True, "gsplat CUDA kernels loaded"


def gsplat_available() -> bool:
    """True when gsplat's CUDA rasteriser can run in this process (see :func:`gsplat_status`)."""
    return gsplat_status()[0]


def rasterize_gsplat(
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
    """Render with ``gsplat.rasterization`` (CUDA only; gsplat imported lazily here). With
    ``linear_light`` the colours are evaluated here (SH for each Gaussian's viewing direction,
    + 0.5, linearised) and composited by gsplat, then encoded to sRGB."""
    if gaussians.device.type != "cuda":
        raise ValidationError("the gsplat rasteriser needs the Gaussians on a CUDA device")
    usable, reason = gsplat_status()
    if not usable:
        raise MissingDependencyError(f"the gsplat rasteriser cannot run: {reason}")
    import gsplat

    bg = None
    if background is not None and not linear_light:
        bg = torch.as_tensor(background, device=gaussians.device, dtype=gaussians.means.dtype).reshape(1, 3)
    colours, sh_degree = gaussians.sh, gaussians.sh_degree
    if linear_light:
        centre = -world_to_camera[:3, :3].T @ world_to_camera[:3, 3]
        colours = view_colors(gaussians.means, gaussians.sh, sh_degree, centre, linear_light=True)
        sh_degree = None
    colors, alphas, _meta = gsplat.rasterization(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=torch.exp(gaussians.log_scales),
        opacities=torch.sigmoid(gaussians.logit_opacities),
        colors=colours,
        viewmats=world_to_camera[None],
        Ks=K[None],
        width=width,
        height=height,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        sh_degree=sh_degree,
        backgrounds=bg,
        render_mode="RGB+ED",
        rasterize_mode="antialiased" if antialiased else "classic",
        packed=False,
    )
    rgb, alpha = colors[0, ..., :3], alphas[0, ..., 0]
    if linear_light:
        rgb = composite_background(rgb, alpha, background, linear_light=True)
    return RenderOutput(rgb=rgb, alpha=alpha, depth=colors[0, ..., 3])


def rasterize(
    gaussians: GaussianSet,
    camera: Camera | None = None,
    *,
    K: np.ndarray | torch.Tensor | None = None,
    world_to_camera: np.ndarray | torch.Tensor | None = None,
    width: int | None = None,
    height: int | None = None,
    background: torch.Tensor | tuple[float, float, float] | None = None,
    backend: Backend = "auto",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = EPS2D,
    antialiased: bool = False,
    linear_light: bool = False,
) -> RenderOutput:
    """Render ``gaussians`` seen by ``camera`` (or explicit ``K`` px / ``world_to_camera`` OpenCV).

    ``backend``: ``"gsplat"`` (CUDA), ``"fast"`` (sparse pairs, vectorised torch), ``"torch"``
    (the dense tile reference), or ``"auto"`` = gsplat when the Gaussians live on a CUDA device and
    its kernels load (:func:`gsplat_status`), else ``"fast"`` (on the Gaussians' device).
    ``background``: RGB composited behind the Gaussians (``rgb + (1 - alpha) * background``).
    ``eps2d`` (px^2): added to every screen covariance's diagonal; 3DGS's 0.3 by default.
    ``antialiased``: the dilation keeps each splat's integrated alpha (gsplat's "antialiased" mode).
    ``linear_light``: sRGB colours composited in linear light, the result encoded to sRGB.
    :data:`CYCLES_IMAGE` holds the three as Blender 5.3's Cycles renders native splats.
    """
    if backend not in BACKENDS:
        raise ValidationError(f"unknown rasteriser backend {backend!r}; use one of {', '.join(BACKENDS)}")
    K_t, w2c_t, w, h = _camera_tensors(camera, K, world_to_camera, width, height,
                                       gaussians.device, gaussians.means.dtype)
    bg = None if background is None else torch.as_tensor(background, device=gaussians.device,
                                                          dtype=gaussians.means.dtype)
    use_gsplat = backend == "gsplat" or (
        backend == "auto" and gaussians.device.type == "cuda" and gsplat_available()
    )
    renderer = rasterize_gsplat if use_gsplat else rasterize_torch if backend == "torch" else rasterize_pairs
    return renderer(gaussians, K_t, w2c_t, w, h, background=bg, near_plane=near_plane, far_plane=far_plane,
                    eps2d=eps2d, antialiased=antialiased, linear_light=linear_light)
