"""The generate pipeline (CoCo4D): prompt / image / video -> composed 4D scene of Gaussians.

Read top to bottom; each ``with clock.stage(...)`` is one stage with progress, a cancel check and a
timing in ``report.json``:

1. ``reference``: the reference video (Wan2.1 T2V / I2V from local weights) or the user's video;
2. ``depth``: the given depth (planar z) or a depth engine's consistent-scale estimate;
3. ``split``: foreground masks (the user's, or automatic from motion), written as PNGs;
4. ``background``: the reference video with the foreground removed (inpainting engine);
5. ``outpaint``: first frame lifted to Gaussians, then progressive outpainting over the camera rings;
6. ``animate``: the background's deformation over time, supervised by every frame of the background
   video and of every ring view's refined pseudo-video (:mod:`backend.generate.animate`), written as
   USD time samples of ``/Recast4D/background`` and one PLY per frame;
7. ``compose`` and ``volume``: the foreground lifted per frame and placed by depth shift and scale (Eq. 8-10);
   the unseen sides of the object from orbit views (:mod:`backend.generate.volume`), shared across time;
8. ``foreground``: animated foreground Gaussians fitted frame by frame with a warm start, exported
   as each frame finishes (USD ``/Recast4D/foreground`` + PLY), with a point-cloud preview per frame
   (background + foreground) streamed through ``on_frame``.

Cameras are OpenCV (``protocol.camera``); depth is planar z in metres inside the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.engines import get_depth_engine, get_inpaint_engine, get_video_engine
from backend.engines.registry import get_segment_engine
from backend.export import UsdSceneWriter, write_gaussian_ply
from backend.export.stream import gaussian_ply_path
from backend.generate import (
    AnimatedBackground,
    BackgroundScene,
    animate_background,
    background_depth_in_reference,
    background_video,
    compose_foreground,
    fit_foreground,
    lift_foreground,
    progressive_outpaint,
    robust_motion_split,
    supervising_videos,
)
from backend.generate.compose import screen_scale
from backend.generate.volume import build_volume
from backend.geometry import depth_to_planar, splat_points
from backend.media import write_mp4, write_png_sequence
from protocol.camera import Camera, stack_cameras
from protocol.errors import ValidationError

from ..reshoot.outputs import versions, write_report
from ..stages import StageClock, StageProgressFn
from .request import GenerateRequest

#: Called with (frame index, xyz (N,3) float32, rgb (N,3) uint8) as composed frames are ready.
FrameCallback = Callable[[int, np.ndarray, np.ndarray], None]


@dataclass
class GenerateEngines:
    """Engines to use instead of loading them from the models folder (tests, benchmarks, a warm server)."""

    video: Any = None
    inpaint: Any = None
    depth: Any = None
    segment: Any = None


@dataclass
class GenerateResult:
    out_dir: Path
    frames: np.ndarray  # (F,H,W,3) uint8 reference video
    foreground: np.ndarray  # (F,H,W) bool masks used
    background: BackgroundScene
    foreground_counts: list[int]  # Gaussians per foreground frame
    report: dict


def run_generate(
    request: GenerateRequest,
    out_dir: str | Path,
    *,
    progress: StageProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    on_frame: FrameCallback | None = None,
    device: str | torch.device | None = None,
    engines: GenerateEngines | None = None,
) -> GenerateResult:
    """Run the whole job; every output lands in ``out_dir`` (see the module docstring)."""
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    engines = engines or GenerateEngines()
    clock = StageClock(progress, cancel)
    models = request.engine.models_dir
    outpaint = request.outpaint.for_device(dev.type)  # unset fit settings -> this device's defaults
    fg_iterations = request.gaussians.resolved_iterations(dev.type) if request.gaussians.enabled else 0
    files: dict[str, str] = {}

    with clock.stage("reference") as stage_progress:
        if request.frames is not None:
            frames = request.frames
        else:
            video_engine = engines.video or get_video_engine(request.video_engine, models, **request.video_options)
            frames = video_engine.generate(request.prompt, num_frames=request.num_frames, height=request.height,
                                           width=request.width, image=request.image, progress=stage_progress,
                                           cancel=cancel)
        if "video" in request.outputs:
            write_mp4(out_dir / "reference.mp4", frames, request.fps)
            files["reference"] = "reference.mp4"
    num_frames, height, width = frames.shape[:3]
    cameras = request.cameras or [Camera.from_fov(request.fov_deg, width, height)] * num_frames
    K, w2c = stack_cameras(cameras)

    depth_engine = engines.depth
    if depth_engine is None and request.engine.depth != "given":
        depth_engine = get_depth_engine(request.engine.depth, models)
    with clock.stage("depth") as stage_progress:
        depth = _reference_depth(request, frames, K, depth_engine, dev, stage_progress, cancel)

    with clock.stage("split") as stage_progress:
        foreground, split_kind, split_figures = _split(request, frames, depth, K, w2c, engines.segment, models,
                                                       stage_progress, cancel)
        if "masks" in request.outputs:
            write_png_sequence(out_dir / "foreground_masks", np.repeat(foreground[..., None] * np.uint8(255), 3, -1),
                               prefix="mask_")
            files["foreground_masks"] = "foreground_masks"
        stage_progress(1, 1, f"{split_kind} split: {foreground.mean():.1%} of pixels are foreground")
        if not foreground.any():
            request.warnings.append("no foreground found (nothing moves and no masks were given): the scene is "
                                    "the outpainted background only")

    engine = engines.inpaint or get_inpaint_engine(request.engine.inpaint, models, **request.engine.inpaint_options())
    with clock.stage("background") as stage_progress:
        background = background_video(engine, frames, depth, foreground, request.prompt,
                                      depth_engine=_aligning(depth_engine), progress=stage_progress, cancel=cancel)

    with clock.stage("outpaint") as stage_progress:
        scene = progressive_outpaint(background, cameras, engine, request.prompt, outpaint,
                                     depth_engine=_aligning(depth_engine), progress=stage_progress, cancel=cancel)
        files.update(_write_ring_views(out_dir, scene, request))

    with clock.stage("animate") as stage_progress:
        animation = request.animation.for_device(dev.type)
        animated: AnimatedBackground | None = None
        if animation.enabled and num_frames > 1:
            videos = supervising_videos(background.frames, background.depth, cameras, scene)
            animated = animate_background(scene, videos, animation, fit_scale=outpaint.fit_scale,
                                          reference_depth=background.depth, progress=stage_progress, cancel=cancel)
            stage_progress(1, 1, f"{animated.animated.numel()} of {len(scene.gaussians)} background Gaussians move")
        moving_background = animated is not None and animated.animated.numel() > 0

    with clock.stage("compose") as stage_progress:
        lifted = lift_foreground(frames, depth, foreground, cameras)
        bg_depth = background_depth_in_reference(scene.xyz, scene.rgb, scene.radius, cameras)
        placed, placement = compose_foreground(lifted, depth, bg_depth, foreground, cameras,
                                               method=request.compose_method)
        epsilon = _screen_scales(placed, foreground, cameras)

    with clock.stage("volume") as stage_progress:
        volume = None
        if request.volume.enabled and placed.num_points:
            volume = build_volume(placed, cameras, engine, request.prompt, request.volume, progress=stage_progress,
                                  cancel=cancel)
            placed = volume.with_volume(placed)
        stage_progress(1, 1, f"{placed.num_points} foreground points placed")

    usd = UsdSceneWriter(out_dir / "scene.usdc", fps=request.fps) if "usd" in request.outputs else None
    ply_dir = out_dir / "ply" if "ply" in request.outputs else None
    counts: list[int] = []
    try:
        with clock.stage("foreground") as stage_progress:
            if usd is not None and request.gaussians.enabled and not moving_background:
                usd.add_gaussian_frame(0, scene.gaussians, name="background")  # static: one sample holds
            if ply_dir is not None and request.gaussians.enabled:
                ply_dir.mkdir(parents=True, exist_ok=True)
                write_gaussian_ply(ply_dir / "background.ply", scene.gaussians)  # the static scene (frame 0)
            fitted = fit_foreground(placed, frames, foreground, cameras, iterations=fg_iterations,
                                    seed=request.engine.seed, fit_scale=outpaint.fit_scale, device=dev,
                                    progress=stage_progress, cancel=cancel)
            enabled = request.gaussians.enabled
            for frame in fitted:
                counts.append(len(frame.gaussians))
                if enabled and moving_background:
                    background_t = animated.frame(frame.index)
                    if usd is not None:
                        usd.add_gaussian_frame(frame.index, background_t, name="background")
                    if ply_dir is not None:
                        write_gaussian_ply(gaussian_ply_path(ply_dir, frame.index, "background"), background_t)
                if enabled and usd is not None:
                    usd.add_gaussian_frame(frame.index, frame.gaussians, name="foreground")
                if enabled and ply_dir is not None and len(frame.gaussians):  # PLY has no empty form
                    write_gaussian_ply(gaussian_ply_path(ply_dir, frame.index, "foreground"), frame.gaussians)
                xyz, rgb = _preview_frame(scene, placed, frame.index)
                if usd is not None:
                    usd.add_point_cloud_frame(frame.index, xyz, rgb.astype(np.float32) / 255.0,
                                              widths=_preview_widths(scene, placed, frame.index))
                if on_frame is not None:
                    on_frame(frame.index, xyz, rgb)
    finally:
        if usd is not None:
            usd.close()
    if usd is not None:
        files["usd"] = "scene.usdc"

    report = {
        "job": "generate",
        "source": "video" if request.frames is not None else request.video_engine,
        "prompt": request.prompt,
        "frames": int(num_frames), "width": int(width), "height": int(height), "fps": request.fps,
        "device": str(dev),
        "engine": {"inpaint": request.engine.inpaint, "depth": request.engine.depth, "seed": request.engine.seed},
        "split": {"kind": split_kind, "foreground_ratio": round(float(foreground.mean()), 5), **split_figures},
        "outpaint": {
            "rings": [[list(v) for v in loop] for loop in request.outpaint.rings],
            "strength": outpaint.strength, "fit_iterations": outpaint.fit_iterations,
            "fit_scale": outpaint.fit_scale, "pivot_depth": round(scene.pivot_depth, 5),
            "background_points": scene.num_points, "background_gaussians": len(scene.gaussians),
            "fit_psnr_per_view": [round(v, 2) for v in scene.fit_psnr], "seconds": scene.timings,
            "views": [{"loop": v.loop, "elevation": v.elevation, "azimuth": v.azimuth, "new_points": v.new_points,
                       "hole_ratio_before_loop": round(v.hole_ratio_before_loop, 5),
                       "hole_ratio_after_loop": round(v.hole_ratio_after_loop, 5)} for v in scene.views],
        },
        "animation": {"enabled": animation.enabled, "iterations": animation.iterations,
                      "tv_weight": animation.tv_weight,
                      "animated_gaussians": 0 if animated is None else int(animated.animated.numel()),
                      "final_loss": round(animated.losses[-1], 5) if animated is not None and animated.losses
                      else None},
        "compose": {"method": request.compose_method, "screen_scale": [round(e, 4) for e in epsilon],
                    "scale": [round(float(s), 5) for s in placement.scale],
                    "shift": [round(float(s), 5) for s in placement.shift],
                    "band_pixels": [int(c) for c in placement.band_pixels]},
        "volume": {"enabled": request.volume.enabled, "added_points": 0 if volume is None else volume.num_points,
                   "canonical_frame": None if volume is None else volume.canonical_frame,
                   "views": [] if volume is None else [{"azimuth": v.azimuth, "unseen_ratio": round(v.hole_ratio, 4),
                                                        "new_points": v.new_points} for v in volume.views]},
        "foreground": {"iterations": fg_iterations, "gaussians_per_frame": counts},
        "files": files,
        "stages": clock.summary(),
        "wall_seconds": round(time.time() - started, 3),
        "warnings": request.warnings,
        "versions": versions(),
    }
    write_report(out_dir, report)
    return GenerateResult(out_dir, frames, foreground, scene, counts, report)


def _reference_depth(request: GenerateRequest, frames: np.ndarray, K: np.ndarray, depth_engine: Any,
                     device: torch.device, progress: Any, cancel: Any) -> torch.Tensor:
    """Planar z ``(F,H,W)`` float32 metres (0 = unknown) of the reference video."""
    if request.depth is not None:
        depth = torch.as_tensor(np.ascontiguousarray(request.depth), dtype=torch.float32, device=device)
        depth = depth_to_planar(depth, torch.as_tensor(K, dtype=torch.float32, device=device), request.depth_kind)
    else:
        estimate = depth_engine.predict(frames, progress=progress, cancel=cancel)
        depth = torch.as_tensor(np.asarray(estimate), dtype=torch.float32, device=device)
    return torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))


def _split(request: GenerateRequest, frames: np.ndarray, depth: torch.Tensor, K: np.ndarray, w2c: np.ndarray,
           segment_engine: Any, models: Any, progress: Any, cancel: Any) -> tuple[np.ndarray, str, dict[str, Any]]:
    """Foreground masks ``(F,H,W)`` bool, the split's kind (mask / motion / sam2) and its figures for the report."""
    settings = request.split
    figures: dict[str, Any] = {}
    cue = request.foreground
    if cue is None and settings.box is None:
        motion = robust_motion_split(depth, K, w2c, settings)
        cue = motion.masks
        figures = {"depth_noise": round(motion.depth_noise, 5),
                   "tolerance": round(float(np.median(motion.pair_tolerance)), 5) if motion.pair_tolerance else None}
    if settings.engine != "sam2":
        return cue, "mask" if request.foreground is not None else "motion", figures
    num_frames = frames.shape[0]
    if settings.box is None and not cue.any():
        return cue, "motion", figures  # nothing moves: there is no object to prompt SAM2 with
    if settings.prompt_frame is not None and settings.prompt_frame >= num_frames:
        raise ValidationError(f"split.prompt_frame must be < {num_frames} (the video's frame count), "
                              f"got {settings.prompt_frame}")
    prompt_frame = settings.prompt_frame
    if prompt_frame is None:
        prompt_frame = 0 if settings.box is not None else int(np.argmax(cue.reshape(num_frames, -1).sum(1)))
    engine = segment_engine or get_segment_engine("sam2", models)
    prompt = {"box": tuple(settings.box)} if settings.box is not None else {"mask": cue[prompt_frame]}
    masks = engine.segment(frames, prompt_frame=prompt_frame, progress=progress, cancel=cancel, **prompt)
    figures.update({"prompt_frame": prompt_frame, "prompt": "box" if settings.box is not None else
                    ("mask" if request.foreground is not None else "motion")})
    return masks, "sam2", figures


def _screen_scales(placed: Any, foreground: np.ndarray, cameras: list[Camera]) -> list[float]:
    """Eq. 10's epsilon per frame: bounding-box width of the placed foreground's render over the mask's."""
    if placed.num_points == 0:
        return [1.0] * len(cameras)
    K, w2c = stack_cameras(cameras)
    render = splat_points(placed.xyz, placed.rgb, placed.radius, placed.frame_index, K, w2c, cameras[0].width,
                          cameras[0].height)
    masks = render.mask.cpu().numpy()
    return [screen_scale(masks[t], foreground[t]) if foreground[t].any() else 1.0 for t in range(len(cameras))]


def _aligning(depth_engine: Any) -> Any:
    """Depth engines that can align to a reference (the given-depth engine cannot estimate new pixels)."""
    return None if depth_engine is None or getattr(depth_engine, "name", "") == "given" else depth_engine




def _write_ring_views(out_dir: Path, scene: BackgroundScene, request: GenerateRequest) -> dict[str, str]:
    written: dict[str, str] = {}
    if "png" not in request.outputs and "video" not in request.outputs:
        return written
    folder = out_dir / "outpaint"
    folder.mkdir(parents=True, exist_ok=True)
    for i, view in enumerate(scene.views):
        stem = f"view_{i:02d}_e{view.elevation:+.0f}_a{view.azimuth:+.0f}"
        if "png" in request.outputs:
            write_png_sequence(folder / stem, np.stack([view.render, view.filled]), prefix="frame_")
        if "video" in request.outputs:
            write_mp4(folder / f"{stem}.mp4", view.pseudo_video, request.fps)
    written["outpaint"] = "outpaint"
    return written


def _preview_frame(scene: BackgroundScene, placed: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    part = placed.frame(index)
    xyz = torch.cat([scene.xyz, part.xyz]).cpu().numpy().astype(np.float32)
    rgb = (torch.cat([scene.rgb, part.rgb]).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    return xyz, rgb


def _preview_widths(scene: BackgroundScene, placed: Any, index: int) -> np.ndarray:
    return (2.0 * torch.cat([scene.radius, placed.frame(index).radius])).cpu().numpy()


__all__ = ["FrameCallback", "GenerateEngines", "GenerateResult", "run_generate"]
