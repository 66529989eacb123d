"""The animated background: a sparse deformation model over the outpainted background Gaussians.

CoCo4D equips the static background with a deformation network and optimises it on the reference
video and every ring view's refined pseudo-video with an L1 reconstruction loss and total variation.
Our design (cheaper, and exact where the reference sees the motion): per frame ``t`` and per
*animated* Gaussian ``i``, a displacement ``dx[t, i]`` (metres, world frame) and a colour change
``dc[t, i]`` (RGB in [0, 1], added to the DC colour), with ``dx[0] = dc[0] = 0`` (frame 0 is the
outpainted static scene).

1. **project** (initialisation): every supervising video (the background video from the reference
   cameras, each ring view's refined pseudo-video from its static camera) is compared with its own
   frame 0. A Gaussian visible in a view (its centre projects to a pixel whose frame-0 depth agrees
   within ``visibility_tolerance``) takes, for frame ``t``, that pixel's colour change and its depth
   change along the camera ray. The reference video comes first; ring views only set Gaussians the
   reference does not see. Gaussians that never change by more than ``change_threshold`` stay
   static (no parameters): the model is sparse, the wall does not drift;
2. **optimise**: Adam on ``dx, dc`` over random (view, frame) pairs of all those videos, at
   ``fit_scale`` of the frame size, with loss ``L1(render_t, target_t) + tv_weight * TV_t`` where
   ``TV_t = mean |d[t+1] - d[t]|`` over the animated Gaussians (temporal total variation of both
   displacement, in units of the scene scale, and colour).

``frame(t)`` gives the Gaussians of frame ``t``; the pipeline writes them as USD time samples
(``/Recast4D/background``) and per-frame PLY. Cameras are OpenCV, depth planar z in metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from backend.gaussians import SH_C0, GaussianSet, rasterize
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.camera import Camera
from protocol.errors import ValidationError

from .outpaint import BackgroundScene, scaled_view

#: Optimisation steps when ``AnimationSettings.iterations`` is unset: CUDA, CPU (reference rasteriser).
DEVICE_ANIMATION_STEPS: dict[str, int] = {"cuda": 300, "cpu": 6}


@dataclass
class AnimationSettings:
    """How the background animation is built (module docstring); ``iterations = None``: device default."""

    enabled: bool = True
    iterations: int | None = None
    tv_weight: float = 0.1
    lr_displacement: float = 1e-3  # per step, times the scene scale (metres)
    lr_color: float = 1e-2
    visibility_tolerance: float = 0.03  # relative depth agreement of a Gaussian with a view's frame 0
    change_threshold: float = 4.0 / 255.0  # colour change (or relative depth change) that animates
    max_displacement: float = 0.25  # relative to the depth: larger initial depth changes are not motion
    seed: int = 0

    def validate(self) -> AnimationSettings:
        """Raises :class:`ValidationError` naming the bad ``animation.*`` field."""
        if self.iterations is not None and self.iterations < 0:
            raise ValidationError(f"animation.iterations must be >= 0, got {self.iterations}")
        for name in ("tv_weight", "lr_displacement", "lr_color", "visibility_tolerance", "change_threshold",
                     "max_displacement"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValidationError(f"animation.{name} must be a non-negative number, got {value!r}")
        return self

    def for_device(self, device_type: str) -> AnimationSettings:
        steps = DEVICE_ANIMATION_STEPS.get(device_type, DEVICE_ANIMATION_STEPS["cuda"])
        return replace(self, iterations=steps if self.iterations is None else self.iterations)


@dataclass
class SupervisingVideo:
    """One video that supervises the animation: frames, one camera per frame (static ring: the same)."""

    frames: np.ndarray  # (F,H,W,3) uint8
    cameras: list[Camera]
    frame0_depth: torch.Tensor  # (H,W) planar z of frame 0 in cameras[0] (0 = unknown)


@dataclass
class AnimatedBackground:
    """Static Gaussians plus per-frame displacement and colour change of the animated ones."""

    base: GaussianSet
    animated: torch.Tensor  # (D,) int64 indices into base
    displacement: torch.Tensor  # (F,D,3) metres, world frame; row 0 is zero
    color_change: torch.Tensor  # (F,D,3) RGB change; row 0 is zero
    losses: list[float] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.displacement.shape[0])

    def frame(self, index: int) -> GaussianSet:
        """The Gaussians of frame ``index`` (detached)."""
        return _deformed(self.base, self.animated, self.displacement[index], self.color_change[index]).detach()


def _deformed(base: GaussianSet, animated: torch.Tensor, dx: torch.Tensor, dc: torch.Tensor) -> GaussianSet:
    means = base.means.index_add(0, animated, dx)
    sh = base.sh.clone()
    sh[animated, 0] = sh[animated, 0] + dc / SH_C0
    return GaussianSet(means, base.log_scales, base.quats, base.logit_opacities, sh, base.sh_degree)


def supervising_videos(background_frames: np.ndarray, background_depth: torch.Tensor, cameras: list[Camera],
                       scene: BackgroundScene) -> list[SupervisingVideo]:
    """The reference background video first, then every ring view's refined pseudo-video."""
    from backend.geometry import splat_points
    from protocol.camera import stack_cameras

    videos = [SupervisingVideo(background_frames, list(cameras), background_depth[0])]
    for view in scene.views:
        K, w2c = stack_cameras([view.camera])
        index = torch.zeros(scene.xyz.shape[0], dtype=torch.int64, device=scene.xyz.device)
        depth = splat_points(scene.xyz, scene.rgb, scene.radius, index, K, w2c, view.camera.width,
                             view.camera.height).depth[0]
        videos.append(SupervisingVideo(view.pseudo_video, [view.camera] * len(view.pseudo_video), depth))
    return videos


def _project(means: torch.Tensor, camera: Camera) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel ``(x, y)`` int64 and planar depth ``z`` of each centre in ``camera``."""
    w2c = torch.as_tensor(camera.world_to_camera, dtype=torch.float32, device=means.device)
    K = torch.as_tensor(camera.K, dtype=torch.float32, device=means.device)
    cam = means @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    hom = cam @ K.T
    safe = torch.where(z > 1e-6, z, torch.ones_like(z))
    return torch.floor(hom[:, 0] / safe).to(torch.int64), torch.floor(hom[:, 1] / safe).to(torch.int64), z


def initial_deformation(base: GaussianSet, videos: list[SupervisingVideo], settings: AnimationSettings,
                        depths: list[torch.Tensor | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1 of the module docstring: per-Gaussian ``(F,N,3)`` displacement and colour change.

    ``depths[v]`` (optional) is video ``v``'s planar depth ``(F,H,W)``: with it the displacement
    follows the depth change along the ray; without it only colour changes are taken.
    """
    num_frames = len(videos[0].frames)
    n = len(base)
    device = base.device
    displacement = torch.zeros(num_frames, n, 3, device=device)
    color = torch.zeros(num_frames, n, 3, device=device)
    claimed = torch.zeros(n, dtype=torch.bool, device=device)
    depths = depths or [None] * len(videos)
    means = base.means.detach()
    for video, depth in zip(videos, depths, strict=True):
        if len(video.frames) != num_frames:
            raise ValidationError(f"every supervising video needs {num_frames} frames, got {len(video.frames)}")
        camera = video.cameras[0]
        x, y, z = _project(means, camera)
        height, width = video.frame0_depth.shape
        inside = (z > 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
        xs, ys = x.clamp(0, width - 1), y.clamp(0, height - 1)
        d0 = video.frame0_depth.to(device)[ys, xs]
        visible = inside & (d0 > 0) & ((z - d0).abs() <= settings.visibility_tolerance * d0) & ~claimed
        if not bool(visible.any()):
            continue
        rows = visible.nonzero().squeeze(1)
        frames = torch.as_tensor(video.frames, device=device)
        first = frames[0, ys[rows], xs[rows]].float() / 255.0
        centre = torch.as_tensor(camera.center, dtype=torch.float32, device=device)
        for t in range(1, num_frames):
            if video.cameras[t] is not camera and not np.allclose(video.cameras[t].world_to_camera,
                                                                  camera.world_to_camera):
                continue  # a moving reference camera: leave it to the optimisation
            color[t, rows] = frames[t, ys[rows], xs[rows]].float() / 255.0 - first
            if depth is not None:
                dt = torch.as_tensor(depth[t], device=device, dtype=torch.float32)[ys[rows], xs[rows]]
                ratio = torch.where(dt > 0, dt / d0[rows], torch.ones_like(dt))
                ratio = torch.where((ratio - 1).abs() <= settings.max_displacement, ratio, torch.ones_like(ratio))
                displacement[t, rows] = (ratio - 1)[:, None] * (means[rows] - centre)
        claimed |= visible
    return displacement, color


def animate_background(scene: BackgroundScene, videos: list[SupervisingVideo], settings: AnimationSettings,
                       *, fit_scale: float = 1.0, reference_depth: torch.Tensor | None = None,
                       progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> AnimatedBackground:
    """Steps 1 and 2 of the module docstring; ``reference_depth (F,H,W)`` is the background video's depth."""
    settings = settings.validate()
    base = scene.gaussians.detach()
    device = base.device
    num_frames = len(videos[0].frames)
    iterations = int(settings.iterations or 0)
    dx0, dc0 = initial_deformation(base, videos, settings, [reference_depth] + [None] * (len(videos) - 1))
    moving = (dc0.abs().amax(dim=(0, 2)) > settings.change_threshold)
    depth_scale = (base.means - base.means.mean(0)).norm(dim=1).median().clamp(min=1e-6)
    moving |= dx0.norm(dim=2).amax(dim=0) > settings.change_threshold * depth_scale
    animated = moving.nonzero().squeeze(1)
    displacement = dx0[:, animated].clone()
    color = dc0[:, animated].clone()
    result = AnimatedBackground(base, animated, displacement, color)
    if iterations == 0 or animated.numel() == 0 or num_frames < 2:
        return result
    dx = displacement[1:].clone().requires_grad_(True)
    dc = color[1:].clone().requires_grad_(True)
    optimiser = torch.optim.Adam([{"params": [dx], "lr": settings.lr_displacement * float(depth_scale)},
                                  {"params": [dc], "lr": settings.lr_color}])
    generator = torch.Generator().manual_seed(settings.seed)
    pairs = [(v, t) for v in range(len(videos)) for t in range(1, num_frames)]
    views: dict[tuple[int, int], tuple[torch.Tensor, Camera]] = {}
    zero = torch.zeros(1, animated.numel(), 3, device=device)
    for step in range(iterations):
        check_cancel(cancel)
        v, t = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
        if (v, t) not in views:
            fit_view = scaled_view(videos[v].frames[t], videos[v].cameras[t], fit_scale)
            views[(v, t)] = (torch.as_tensor(fit_view.image, device=device), fit_view.camera)
        target, camera = views[(v, t)]
        render = rasterize(_deformed(base, animated, dx[t - 1], dc[t - 1]), camera).rgb
        full_dx, full_dc = torch.cat([zero, dx]), torch.cat([zero, dc])
        tv = (full_dx[1:] - full_dx[:-1]).abs().mean() / depth_scale + (full_dc[1:] - full_dc[:-1]).abs().mean()
        loss = (render - target).abs().mean() + settings.tv_weight * tv
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        result.losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, iterations, f"animating the background: step {step + 1}/{iterations}")
    result.displacement = torch.cat([zero, dx.detach()])
    result.color_change = torch.cat([zero, dc.detach()])
    return result
