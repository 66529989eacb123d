"""Progressive outpainting of the background (CoCo4D's inpaint-project-optimise loop).

Start: the background video's first frame is lifted to points and Gaussians (reference camera,
OpenCV, metres) and fitted to that frame. Then, loop by loop and view by view over the camera rings
(:mod:`.rings`):

1. **render** the current background into the ring view, one frame per reference frame: frame
   ``t`` shows the background points of reference frame ``t`` plus every point generated so far
   (z-buffered point splats, :func:`backend.geometry.splat_points`); unseen pixels are the holes.
   The point render is the hole test (exact visibility, ~100x cheaper on a CPU than rasterising
   the Gaussians);
2. **inpaint the first frame** of that render with the inpainting engine;
3. **paste** that fill into the holes of every frame (the ring camera is static, so a pixel of the
   fill stands for the same static surface in every frame): the pseudo-video;
4. **refine** the pseudo-video with the video inpainting engine at reduced strength (default 0.7,
   :func:`.refine.refine_video`; the classical engine keeps the pasted propagation);
5. **align depth**: the fill's depth comes from the rendered depth (a depth engine aligned to it
   on the seen pixels, or the farther side of each hole without one);
6. **project**: lift the refined first frame's hole pixels into new points and Gaussians;
7. **optimise** the background Gaussians on every view so far (the reference frame + each ring
   view's refined first frame), warm-started from the previous fit (``warm_start=False``
   re-initialises from all points before each fit: the baseline of ``bench/generate.py``).
   With ``fit_iterations = 0`` nothing is optimised per view (the lifted points become Gaussians as
   they are) and the fit PSNR of the final set is evaluated once at the end.

Progress: ``progress(views done, total views, message)`` before and after every view, the message
naming the ring and the view (``"ring 1/2, view 3/4 (+15, +0): 12.5% to fill"``), and once per ring.
Hole ratios are measured per ring view with the same point render before the view's loop starts
and after it ends, so a test can check that each loop covers the views it asked for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from backend.gaussians import FitConfig, FitView, GaussianSet, fit_frame, gaussians_from_points
from backend.geometry import PointFrames, fill_depth_holes, lift_frames, splat_points
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.camera import Camera, stack_cameras
from protocol.errors import ValidationError

from .refine import refine_video
from .rings import DEFAULT_RINGS, RingLoops, orbit_camera
from .split import BackgroundVideo

#: Per-device defaults of the optimisation settings left unset (``None``): ``(fit_iterations, fit_scale)``.
#: CUDA (gsplat) fits at full size; on a CPU the pure-torch reference rasteriser costs ~0.3 s per
#: view step at 40x30 px with 20k Gaussians, so the CPU default is a few steps at a quarter of the
#: frame size: ``recast4d generate --video V --depth D`` on a 160x120, 9-frame clip then finishes in
#: about a minute on 2 cores (``bench/generate.py`` measures exactly these defaults).
DEVICE_FIT_DEFAULTS: dict[str, tuple[int, float]] = {"cuda": (50, 1.0), "cpu": (3, 0.25)}


@dataclass
class OutpaintSettings:
    """Rings and optimisation settings. ``fit_scale`` renders the optimisation views at that fraction
    of the frame size (1 = full size); ``fit_iterations`` are Adam steps after each view. ``None``
    means the device's default (:data:`DEVICE_FIT_DEFAULTS`, see :meth:`for_device`)."""

    rings: RingLoops = field(default_factory=lambda: [list(loop) for loop in DEFAULT_RINGS])
    strength: float = 0.7
    fit_iterations: int | None = None
    initial_iterations: int | None = None  # first-frame fit; default fit_iterations
    fit_scale: float | None = None
    views_per_step: int | None = 2
    warm_start: bool = True
    pivot_depth: float | None = None  # default: median depth of the first frame's centre
    seed: int = 0

    def for_device(self, device_type: str) -> OutpaintSettings:
        """A copy with every unset (``None``) optimisation setting replaced by ``device_type``'s default."""
        iterations, scale = DEVICE_FIT_DEFAULTS.get(device_type, DEVICE_FIT_DEFAULTS["cuda"])
        return replace(self, fit_iterations=iterations if self.fit_iterations is None else self.fit_iterations,
                       fit_scale=scale if self.fit_scale is None else self.fit_scale,
                       rings=[list(loop) for loop in self.rings])


@dataclass
class RingView:
    """One ring view after its step: the render before filling, the refined fill, hole figures."""

    loop: int
    elevation: float
    azimuth: float
    camera: Camera
    render: np.ndarray  # (H,W,3) uint8, frame 0 before filling, holes black
    holes: np.ndarray  # (H,W) bool, frame 0's unseen pixels
    filled: np.ndarray  # (H,W,3) uint8, refined first frame (supervises the Gaussians)
    pseudo_video: np.ndarray  # (F,H,W,3) uint8, refined pseudo-video
    new_points: int
    hole_ratio_before_loop: float = 0.0
    hole_ratio_after_loop: float = 0.0


@dataclass
class BackgroundScene:
    """The outpainted static background: points (world metres, colours in [0, 1]) and fitted Gaussians."""

    xyz: torch.Tensor
    rgb: torch.Tensor
    radius: torch.Tensor
    gaussians: GaussianSet
    views: list[RingView]
    pivot_depth: float
    fit_psnr: list[float] = field(default_factory=list)  # per supervising view after the last fit
    fit_steps: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per sub-step (render, fill, ...)

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])


def scaled_view(image: np.ndarray, camera: Camera, scale: float) -> FitView:
    """``image (H,W,3)`` uint8 and its camera resized by ``scale`` (pixel-centre-exact K scaling)."""
    import cv2

    rgb = image.astype(np.float32) / 255.0
    if scale == 1.0:
        return FitView(rgb, camera)
    width, height = max(8, round(camera.width * scale)), max(8, round(camera.height * scale))
    K = np.array(camera.K, dtype=np.float64)
    K[0] *= width / camera.width
    K[1] *= height / camera.height
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return FitView(small, Camera(K, camera.world_to_camera, width, height))


def hole_ratio(xyz: torch.Tensor, rgb: torch.Tensor, radius: torch.Tensor, camera: Camera) -> float:
    """Share of ``camera``'s pixels that no point covers (the point render's holes)."""
    K, w2c = stack_cameras([camera])
    index = torch.zeros(xyz.shape[0], dtype=torch.int64, device=xyz.device)
    render = splat_points(xyz, rgb, radius, index, K, w2c, camera.width, camera.height)
    return float((~render.mask).float().mean())


def default_pivot(depth0: torch.Tensor) -> float:
    """Median planar depth of the central half of the first frame (metres)."""
    h, w = depth0.shape
    centre = depth0[h // 4: h - h // 4, w // 4: w - w // 4]
    valid = centre[centre > 0]
    if valid.numel() == 0:
        valid = depth0[depth0 > 0]
    if valid.numel() == 0:
        raise ValidationError("the first frame has no valid depth: the background cannot be lifted")
    return float(valid.median())


def _render_video(frame_points: PointFrames, extra: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                  camera: Camera) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Frame t = background points of frame t + ``extra`` (static) points, all seen by ``camera``."""
    num_frames = frame_points.num_frames
    xyz, rgb, radius = extra
    n_extra = xyz.shape[0]
    frame_ids = torch.arange(num_frames, device=xyz.device).repeat_interleave(n_extra)
    all_xyz = torch.cat([frame_points.xyz, xyz.repeat(num_frames, 1)])
    all_rgb = torch.cat([frame_points.rgb, rgb.repeat(num_frames, 1)])
    all_radius = torch.cat([frame_points.radius, radius.repeat(num_frames)])
    index = torch.cat([frame_points.frame_index, frame_ids])
    order = torch.argsort(index, stable=True)
    K, w2c = stack_cameras([camera] * num_frames)
    render = splat_points(all_xyz[order], all_rgb[order], all_radius[order], index[order], K, w2c,
                          camera.width, camera.height)
    rgb_u8 = (render.rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    return rgb_u8, (~render.mask).cpu().numpy(), render.depth


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def progressive_outpaint(background: BackgroundVideo, cameras: list[Camera], engine: Any, prompt: str = "",
                         settings: OutpaintSettings | None = None, *, depth_engine: Any = None,
                         progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> BackgroundScene:
    """Run the loop of the module docstring; ``cameras`` are the reference video's (frame 0 = reference)."""
    device = background.depth.device
    settings = (settings or OutpaintSettings()).for_device(device.type)
    timings: dict[str, float] = {}
    K, w2c = stack_cameras(cameras)
    with _timed(timings, "lift"):
        frame_points = lift_frames(background.frames, background.depth, K, w2c, device=device)
    first = frame_points.frame(0)
    if first.num_points == 0:
        raise ValidationError("the background's first frame has no usable depth: nothing to lift")
    reference = cameras[0]
    pivot = settings.pivot_depth or default_pivot(background.depth[0])
    xyz, rgb, radius = first.xyz, first.rgb, first.radius
    generated = (xyz[:0], rgb[:0], radius[:0])
    config = FitConfig(iterations=settings.fit_iterations, views_per_step=settings.views_per_step,
                       seed=settings.seed)
    views = [scaled_view(background.frames[0], reference, settings.fit_scale)]
    initial = settings.fit_iterations if settings.initial_iterations is None else settings.initial_iterations
    with _timed(timings, "optimise"):
        fit = fit_frame(gaussians_from_points(xyz, rgb, radius, device=device), views, config, iterations=initial,
                        cancel=cancel)
    gaussians, steps = fit.gaussians, initial
    total_views = sum(len(loop) for loop in settings.rings)
    done: list[RingView] = []
    num_rings = len(settings.rings)
    for loop_index, loop in enumerate(settings.rings):
        loop_cameras = [orbit_camera(reference, pivot, e, a) for e, a in loop]
        with _timed(timings, "hole_measure"):
            before = [hole_ratio(xyz, rgb, radius, cam) for cam in loop_cameras]
        loop_views: list[RingView] = []
        for view_index, ((elevation, azimuth), camera) in enumerate(zip(loop, loop_cameras, strict=True)):
            check_cancel(cancel)
            label = (f"ring {loop_index + 1}/{num_rings}, view {view_index + 1}/{len(loop)} "
                     f"({elevation:+g}, {azimuth:+g})")
            with _timed(timings, "render"):
                render, holes, render_depth = _render_video(frame_points, generated, camera)
            if progress is not None:
                progress(len(done), total_views, f"{label}: {holes[0].mean():.1%} to fill")
            with _timed(timings, "inpaint_first_frame"):
                first_fill = engine.fill(render[:1], holes[:1], prompt, cancel=cancel)[0]
            with _timed(timings, "refine"):
                pseudo = np.where(holes[..., None], first_fill[None], render)
                refined = refine_video(engine, pseudo, holes, prompt, strength=settings.strength, cancel=cancel)
                refined[0] = np.where(holes[0, ..., None], refined[0], render[0])
            with _timed(timings, "align_and_lift"):
                new = _lift_fill(refined[0], holes[0], render_depth[0], camera, depth_engine, cancel)
            if new.num_points:
                xyz, rgb, radius = (torch.cat([xyz, new.xyz]), torch.cat([rgb, new.rgb]),
                                    torch.cat([radius, new.radius]))
                generated = (torch.cat([generated[0], new.xyz]), torch.cat([generated[1], new.rgb]),
                             torch.cat([generated[2], new.radius]))
            views.append(scaled_view(refined[0], camera, settings.fit_scale))
            with _timed(timings, "optimise"):
                if not settings.warm_start:
                    start = gaussians_from_points(xyz, rgb, radius, device=device)
                elif new.num_points:
                    start = GaussianSet.concatenate([gaussians, gaussians_from_points(new.xyz, new.rgb, new.radius,
                                                                                      device=device)])
                else:
                    start = gaussians
                if settings.fit_iterations > 0:
                    fit = fit_frame(start, views, config, cancel=cancel)
                    start = fit.gaussians
                gaussians, steps = start, steps + settings.fit_iterations
            view = RingView(loop_index, elevation, azimuth, camera, render[0], holes[0], refined[0], refined,
                            new.num_points)
            loop_views.append(view)
            done.append(view)
            if progress is not None:
                progress(len(done), total_views, f"{label}: filled, {new.num_points} new points")
        with _timed(timings, "hole_measure"):
            for view, ratio in zip(loop_views, before, strict=True):
                view.hole_ratio_before_loop = ratio
                view.hole_ratio_after_loop = hole_ratio(xyz, rgb, radius, view.camera)
        if progress is not None:
            progress(len(done), total_views, f"ring {loop_index + 1}/{num_rings} done: {xyz.shape[0]} background points")
    if settings.fit_iterations == 0 and done:  # no fits ran per view: evaluate the final set once
        with _timed(timings, "optimise"):
            fit = fit_frame(gaussians, views, config, iterations=0, cancel=cancel)
    return BackgroundScene(xyz, rgb, radius, gaussians, done, pivot, fit.psnr_per_view, steps,
                           {k: round(v, 4) for k, v in timings.items()})


def _lift_fill(filled: np.ndarray, holes: np.ndarray, render_depth: torch.Tensor, camera: Camera,
               depth_engine: Any, cancel: CancelFn | None) -> PointFrames:
    """Points of the filled pixels, with depth aligned to the rendered depth of the seen pixels."""
    holes_t = torch.from_numpy(holes).to(render_depth.device)[None]
    if depth_engine is None:
        depth = fill_depth_holes(render_depth[None], holes_t)
    else:
        estimate = depth_engine.predict(filled[None], reference=render_depth[None].cpu().numpy(),
                                        reference_mask=~holes[None], cancel=cancel)
        depth = torch.where(holes_t, torch.as_tensor(estimate, dtype=torch.float32, device=render_depth.device),
                            render_depth[None])
    K, w2c = stack_cameras([camera])
    # no flying-pixel filter: the fill meets the seen surface at a depth step by construction, and every
    # filled pixel must become a point or the hole stays open
    return lift_frames(filled[None], depth, K, w2c, keep_mask=holes_t, edge_threshold=None,
                       device=render_depth.device)
