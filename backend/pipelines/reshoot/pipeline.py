"""The reshoot pipeline (EasyCreator inference): video + cameras + target paths -> 4D scene.

Read top to bottom; each ``with clock.stage(...)`` is one stage with progress, a cancel check and a
timing in ``report.json``:

1. ``depth``: the given depth (converted to planar z) or an estimate from a depth engine.
2. ``lift``: per-frame point clouds; which points are static (foreground mask or reprojection
   consistency), for static accumulation.
3. per trajectory, in order: ``render`` (z-buffered splats, holes filled from static points of
   other frames first) -> ``fill`` (inpainting engine, with the trajectories done before packed as
   temporal context) -> ``fill_depth`` (depth of the generated pixels, aligned to the render) ->
   lift the generated pixels into the frame they show.
4. ``fuse``: per source frame, the source points plus every trajectory's generated points.
5. ``gaussians``: fit one Gaussian set per frame on the source view and the generated views, with a
   warm start from the previous frame; written to USD/PLY as each frame finishes.

Cameras are OpenCV (``protocol.camera``); depth is planar z in metres inside the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from backend.engines import InpaintContext, get_depth_engine, get_inpaint_engine
from backend.export import UsdSceneWriter
from backend.export.stream import export_gaussian_frames
from backend.gaussians import (
    FitConfig,
    FitView,
    GaussianSet,
    SequenceFrame,
    fit_sequence,
    initial_gaussians,
)
from backend.gaussians.sequence import FittedFrame
from backend.geometry import (
    AccumulationResult,
    PointFrames,
    accumulate_static,
    concatenate_frames,
    fill_depth_holes,
    lift_frames,
    render_points,
    select_context_frames,
    static_point_mask,
    trajectory_overlap,
)
from backend.progress import CancelFn, check_cancel
from protocol.camera import Camera, stack_cameras
from protocol.color import srgb_to_linear
from protocol.errors import ValidationError
from protocol.paths import build_path
from protocol.paths.spec import parse_path_spec

from ..source_depth import estimate_source_depth, planar_given_depth
from ..stages import StageClock, StageProgressFn
from .edit import lift_edit, target_edit
from .outputs import versions, write_report, write_trajectory_outputs
from .request import ReshootRequest, Trajectory

#: Called with (frame index, xyz (N,3) float32, rgb (N,3) uint8) as fused frames are ready.
FrameCallback = Callable[[int, np.ndarray, np.ndarray], None]

STATIC_WINDOW = 8  # frames either side used for static accumulation and the consistency test
MAX_VIEWS_PER_TRAJECTORY = 4  # generated views supervising one frame's Gaussians (bullet time repeats)


@dataclass
class TrajectoryResult:
    """One finished trajectory: frames before/after filling, the generated pixels, hole figures."""

    name: str
    cameras: list[Camera]
    source_frames: list[int]
    render: np.ndarray  # (T,H,W,3) uint8, holes black
    filled: np.ndarray  # (T,H,W,3) uint8, the finished shot
    holes: np.ndarray  # (T,H,W) bool, pixels the engine generated
    depth: torch.Tensor  # (T,H,W) planar depth of the finished shot, metres
    hole_ratio_render: float  # share of pixels unseen by the plain render
    hole_ratio: float  # share left after static accumulation (what the engine filled)
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class ReshootResult:
    out_dir: Path
    trajectories: list[TrajectoryResult]
    points: PointFrames  # fused points per source frame
    report: dict


def run_reshoot(
    request: ReshootRequest,
    out_dir: str | Path,
    *,
    progress: StageProgressFn | None = None,
    cancel: CancelFn | None = None,
    on_frame: FrameCallback | None = None,
    device: str | torch.device | None = None,
) -> ReshootResult:
    """Run the whole job; every output lands in ``out_dir`` (see :mod:`.outputs`)."""
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    clock = StageClock(progress, cancel)
    width, height = request.size

    with clock.stage("depth") as stage_progress:
        depth_z = source_depth(request, dev, stage_progress, cancel)
    K_src, w2c_src = stack_cameras(request.cameras)  # after the depth stage: it may estimate intrinsics
    trajectories = resolve_trajectories(request, depth_z)

    with clock.stage("lift") as stage_progress:
        points = lift_frames(request.frames, depth_z, K_src, w2c_src, device=dev)
        if points.num_points == 0:
            raise ValidationError("no pixel has usable depth: check the depth maps and their units")
        static = _static_points(request, points, depth_z, K_src, w2c_src)
        stage_progress(1, 1, f"{points.num_points} points, {int(static.sum())} static")

    engine = get_inpaint_engine(request.engine.inpaint, request.engine.models_dir, **request.engine.inpaint_options())
    fill_depth_engine = (None if request.engine.depth == "given"
                         else get_depth_engine(request.engine.depth, request.engine.models_dir))
    lifted_edit = None
    if request.edit_frame is not None and request.edit_masks is not None:
        with clock.stage("edit") as stage_progress:
            lifted_edit = lift_edit(request.frames, depth_z, K_src, w2c_src, request.edit_frame, request.edit_masks,
                                    depth_engine=fill_depth_engine, engine_name=request.engine.depth)
            stage_progress(1, 1, f"{lifted_edit.changed_pixels} edited pixels, depth {lifted_edit.depth_method}")

    done: list[TrajectoryResult] = []
    generated: list[PointFrames] = []  # lifted from filled pixels, per source frame
    borrowed: list[PointFrames] = []  # static points of other frames that filled holes, per source frame
    for traj in trajectories:
        tm = traj.time_map if traj.time_map is not None else np.arange(len(traj.cameras))
        K_t, w2c_t = stack_cameras(traj.cameras)
        with clock.stage("render") as stage_progress:
            if request.engine.static_accumulation:
                # the window runs over *source* frames around tm[t] (bullet time: around the frozen frame)
                acc = accumulate_static(points, static, K_t, w2c_t, width, height, window=STATIC_WINDOW,
                                        time_map=tm)
                render, base_mask = acc.render, acc.base.mask
                # Static points of other frames now seen in this view belong to the frames it shows too.
                borrowed.append(accumulated_points(points, acc, tm))
            else:
                render = render_points(_points_for_time_map(points, tm), K_t, w2c_t, width, height)
                base_mask = render.mask
            render_rgb = _to_uint8(render.rgb)
            holes = (~render.mask).cpu().numpy()
            stage_progress(1, 1, f"{traj.name}: {holes.mean():.1%} of pixels to fill")

        with clock.stage("fill") as stage_progress:
            context = _packing_context(request, done, tm, holes, K_t, w2c_t, width, height)
            # the edit as this trajectory's cameras see it (frame 0 and the edit region per target view)
            edit = None if lifted_edit is None else target_edit(lifted_edit, K_t, w2c_t, tm, render_rgb, holes)
            # engines that fill from the background side get the render's planar depth (metres)
            depth_option = {"depth": render.depth.cpu().numpy()} if getattr(engine, "uses_render_depth", False) else {}
            filled = engine.fill(render_rgb, holes, request.prompt, context=context, edit=edit,
                                 progress=stage_progress, cancel=cancel, **depth_option)

        with clock.stage("fill_depth") as stage_progress:
            holes_t = torch.from_numpy(holes).to(dev)
            if fill_depth_engine is None:
                depth_filled = fill_depth_holes(render.depth, holes_t)
            else:
                estimate = fill_depth_engine.predict(filled, reference=render.depth.cpu().numpy(),
                                                     reference_mask=~holes, cancel=cancel)
                depth_filled = torch.where(holes_t, torch.from_numpy(estimate).to(dev), render.depth)
            new_points = lift_frames(filled, depth_filled, K_t, w2c_t, keep_mask=holes_t, device=dev)
            new_points.frame_index = torch.as_tensor(tm, device=dev)[new_points.frame_index]
            generated.append(new_points)
            stage_progress(1, 1, f"{traj.name}: {new_points.num_points} generated points")

        result = TrajectoryResult(
            name=traj.name, cameras=traj.cameras, source_frames=[int(s) for s in tm], render=render_rgb,
            filled=filled, holes=holes, depth=depth_filled, hole_ratio_render=float((~base_mask).float().mean()),
            hole_ratio=float(holes.mean()),
        )
        with clock.stage("write_videos"):
            result.files = write_trajectory_outputs(out_dir, traj.name, render_rgb, filled, holes, traj.cameras,
                                                    result.source_frames, request.fps, request.outputs)
        done.append(result)

    with clock.stage("fuse") as stage_progress:
        fused = merge_by_frame([points, *borrowed, *generated], request.num_frames, request.gaussians.max_points,
                               seed=request.engine.seed)
        stage_progress(1, 1, f"{fused.num_points} points in {fused.num_frames} frames")

    gaussian_stats: list[dict] = []
    usd = UsdSceneWriter(out_dir / "scene.usdc", fps=request.fps, start_frame=request.start_frame) if "usd" in request.outputs else None
    try:
        with clock.stage("gaussians") as stage_progress:
            for frame in _gaussian_frames(request, fused, done, dev, stage_progress, cancel, usd, out_dir):
                xyz, rgb, radius = _frame_arrays(fused, frame.index)
                if usd is not None:
                    usd.add_point_cloud_frame(frame.index, xyz, srgb_to_linear(rgb.astype(np.float32) / 255.0),
                                              widths=2.0 * radius)
                gaussian_stats.append({"frame": frame.index, "gaussians": len(frame.gaussians),
                                       "dropped_invalid": frame.dropped_invalid,
                                       "psnr_per_view": [round(v, 2) for v in frame.psnr_per_view]})
                if on_frame is not None:
                    on_frame(frame.index, xyz, rgb)
    finally:
        if usd is not None:
            usd.close()

    report = {
        "job": "reshoot",
        "frames": request.num_frames, "start_frame": request.start_frame, "width": width, "height": height,
        "fps": request.fps,
        "device": str(dev),
        "engine": {"inpaint": request.engine.inpaint, "depth": request.engine.depth,
                   "steps": request.engine.steps, "guidance": request.engine.guidance, "seed": request.engine.seed,
                   "lora": request.engine.lora, "lora_weight": request.engine.lora_weight,
                   "temporal_packing": request.engine.temporal_packing,
                   "static_accumulation": request.engine.static_accumulation, "fast": request.engine.fast,
                   # what the engine chose on this machine (preset, schedule, placement, attention kernel)
                   "runtime": engine.runtime_report() if hasattr(engine, "runtime_report") else {}},
        "gaussians": {"enabled": request.gaussians.enabled,
                      "iterations": request.gaussians.resolved_iterations(dev.type),
                      "frames": gaussian_stats},
        "trajectories": [{"name": t.name, "frames": len(t.cameras),
                          "hole_ratio_render": round(t.hole_ratio_render, 5),
                          "hole_ratio_after_accumulation": round(t.hole_ratio, 5), "files": t.files}
                         for t in done],
        "points": {"source": points.num_points, "accumulated": sum(b.num_points for b in borrowed),
                   "generated": sum(g.num_points for g in generated),
                   "fused": fused.num_points},
        "stages": clock.summary(),
        "wall_seconds": round(time.time() - started, 3),
        "edit": None if lifted_edit is None else {"changed_pixels": lifted_edit.changed_pixels,
                                                  "depth": lifted_edit.depth_method},
        "warnings": request.warnings,
        "versions": versions(),
    }
    write_report(out_dir, report)
    return ReshootResult(out_dir, done, fused, report)


def source_depth(request: ReshootRequest, device: torch.device, progress, cancel: CancelFn | None) -> torch.Tensor:
    """Planar z-depth ``(F,H,W)`` float32 metres of the source frames (0 = unknown), given or estimated
    (:mod:`backend.pipelines.source_depth`); an engine's intrinsics estimate replaces guessed cameras."""
    if request.depth is not None:
        depth = planar_given_depth(request.depth, request.depth_kind, request.cameras)
    else:
        estimate = estimate_source_depth(request.frames, request.cameras, request.engine.depth,
                                         models_dir=request.engine.models_dir,
                                         cameras_guessed=request.cameras_guessed, progress=progress, cancel=cancel)
        if estimate.intrinsics_estimated:
            request.cameras = estimate.cameras
            request.warnings[:] = [w for w in request.warnings if not w.startswith("no source camera given")]
        request.warnings.extend(estimate.notes)
        depth = estimate.depth
    return torch.as_tensor(depth, dtype=torch.float32, device=device)


def resolve_trajectories(request: ReshootRequest, depth_z: torch.Tensor) -> list[Trajectory]:
    """Turn preset trajectories into per-frame cameras; the pivot defaults to the median centre depth."""
    out = []
    for traj in request.trajectories:
        if traj.preset is None:
            out.append(traj)
            continue
        # the pivot sits in front of the camera the path starts from: frame 0, or the frozen frame
        # for bullet time (the content *and* the source camera freeze there)
        anchor = int(parse_path_spec(traj.preset).freeze_frame or 0)
        anchor = anchor if anchor < depth_z.shape[0] else 0  # out of range: build_path says so clearly
        pivot = traj.pivot_depth or default_pivot_depth(depth_z[anchor])
        path = build_path(traj.preset, request.cameras, pivot)
        out.append(Trajectory(traj.name, cameras=path.cameras, time_map=np.asarray(path.source_frames),
                              preset=traj.preset, pivot_depth=pivot))
    return out


def default_pivot_depth(depth_z: torch.Tensor) -> float:
    """Median planar depth of the central half of the frame (metres): what a preset orbits around."""
    h, w = depth_z.shape
    centre = depth_z[h // 4: h - h // 4, w // 4: w - w // 4]
    valid = centre[centre > 0]
    if valid.numel() == 0:
        valid = depth_z[depth_z > 0]
    if valid.numel() == 0:
        raise ValidationError("the first frame has no valid depth to place the camera-path pivot")
    return float(valid.median())


def accumulated_points(points: PointFrames, acc: AccumulationResult, time_map: np.ndarray) -> PointFrames:
    """The static points that filled holes of view ``t`` (``acc.filled``), re-homed to source frame
    ``time_map[t]`` so the 4D result shows what the view showed. Each (frame, point) pair once."""
    view, ys, xs = torch.nonzero(acc.filled, as_tuple=True)
    rows = acc.render.point_index[view, ys, xs]
    frame = torch.as_tensor(np.asarray(time_map), device=rows.device)[view]
    pairs = torch.unique(frame * points.num_points + rows)
    frame, rows = pairs // points.num_points, pairs % points.num_points
    counts = torch.bincount(frame, minlength=points.num_frames).cpu()
    offsets = torch.zeros(points.num_frames + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    tangent_u, tangent_v = ((None, None) if points.tangent_u is None
                            else (points.tangent_u[rows], points.tangent_v[rows]))
    return PointFrames(xyz=points.xyz[rows], rgb=points.rgb[rows], radius=points.radius[rows], frame_index=frame,
                       pixel_index=points.pixel_index[rows], offsets=offsets, source_height=points.source_height,
                       source_width=points.source_width, tangent_u=tangent_u, tangent_v=tangent_v)


def merge_by_frame(parts: list[PointFrames], num_frames: int, max_points: int, *, seed: int = 0) -> PointFrames:
    """Concatenate point sets whose ``frame_index`` is in source-frame space into one set ordered by
    frame; frames with more than ``max_points`` are subsampled uniformly at random (seeded). Pixel
    tangents are kept when every part has them (the Gaussians start as surface-aligned discs)."""
    xyz = torch.cat([p.xyz for p in parts])
    frame_index = torch.cat([p.frame_index for p in parts])
    frames_cpu = frame_index.cpu()
    n = frames_cpu.numel()
    # One sort for every frame at once: grouped by frame, random order inside a frame; the first
    # max_points of each group survive; survivors go back to frame order, original order inside.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    shuffled = torch.argsort(frames_cpu.double() + torch.rand(n, generator=generator, dtype=torch.float64))
    per_frame = torch.bincount(frames_cpu, minlength=num_frames)
    rank = torch.arange(n) - (torch.cumsum(per_frame, 0) - per_frame)[frames_cpu[shuffled]]
    kept = shuffled[rank < max_points]
    rows = kept[torch.argsort(frames_cpu[kept] * max(n, 1) + kept)].to(frame_index.device)
    counts = torch.bincount(frame_index[rows], minlength=num_frames).cpu()
    offsets = torch.zeros(num_frames + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    with_tangents = all(p.tangent_u is not None for p in parts)
    return PointFrames(
        xyz=xyz[rows], rgb=torch.cat([p.rgb for p in parts])[rows], radius=torch.cat([p.radius for p in parts])[rows],
        frame_index=frame_index[rows], pixel_index=torch.cat([p.pixel_index for p in parts])[rows],
        offsets=offsets, source_height=parts[0].source_height, source_width=parts[0].source_width,
        tangent_u=torch.cat([p.tangent_u for p in parts])[rows] if with_tangents else None,
        tangent_v=torch.cat([p.tangent_v for p in parts])[rows] if with_tangents else None,
    )




def _static_points(request: ReshootRequest, points: PointFrames, depth_z: torch.Tensor, K: np.ndarray,
                   w2c: np.ndarray) -> torch.Tensor:
    if not request.engine.static_accumulation:
        return torch.zeros(points.num_points, dtype=torch.bool, device=points.device)
    if request.foreground is not None:
        return static_point_mask(points, foreground_mask=torch.from_numpy(request.foreground).to(points.device))
    return static_point_mask(points, depth=depth_z, K=K, world_to_camera=w2c, window=STATIC_WINDOW)


def _points_for_time_map(points: PointFrames, tm: np.ndarray) -> PointFrames:
    """Points with output frame ``t`` holding source frame ``tm[t]``."""
    if len(tm) == points.num_frames and np.array_equal(tm, np.arange(points.num_frames)):
        return points
    return concatenate_frames([points.frame(int(s)) for s in tm])


def _packing_context(request: ReshootRequest, done: list[TrajectoryResult], source_frames_b: np.ndarray,
                     holes_b: np.ndarray, K_b: np.ndarray, w2c_b: np.ndarray, width: int,
                     height: int) -> InpaintContext | None:
    """Temporal packing: the top-K frames of earlier trajectories whose repaired area this one sees.

    Frame ``f`` of an earlier trajectory a is scored against the frame of b that shows the same
    source frame (the nearest one when b never shows it), so paths of different lengths or time
    maps (bullet time, retimed shots) are compared at the same moment and every frame of a counts.
    """
    if not request.engine.temporal_packing or not done or not holes_b.any():
        return None
    frames, repaired, ids = [], [], []
    source_b = np.asarray(source_frames_b)
    for a_index, a in enumerate(done):
        if not a.holes.any():
            continue
        K_a, w2c_a = stack_cameras(a.cameras)
        partner = np.abs(np.asarray(a.source_frames)[:, None] - source_b[None, :]).argmin(axis=1)
        overlap = trajectory_overlap(a.depth, torch.from_numpy(a.holes).to(a.depth.device), K_a, w2c_a,
                                     K_b[partner], w2c_b[partner], width, height)
        for f in select_context_frames(overlap, request.engine.packing_top_k).tolist():
            frames.append(a.filled[f])
            repaired.append(a.holes[f])
            ids.append(a_index * 100_000 + f)
    if not frames:
        return None
    return InpaintContext(np.stack(frames), np.stack(repaired), np.asarray(ids))


def _to_uint8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def _frame_arrays(points: PointFrames, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    part = points.frame(index)
    return (part.xyz.cpu().numpy().astype(np.float32), _to_uint8(part.rgb), part.radius.cpu().numpy())


def _gaussian_frames(request: ReshootRequest, fused: PointFrames, done: list[TrajectoryResult],
                     device: torch.device, progress, cancel: CancelFn | None, usd: UsdSceneWriter | None,
                     out_dir: Path):
    """Fitted (or, with 0 iterations, initialised) Gaussians per frame, exported as they finish; with
    Gaussians disabled, empty frames (nothing built or exported: the caller still writes point clouds)."""
    if not request.gaussians.enabled:
        for index in range(fused.num_frames):
            check_cancel(cancel)
            yield FittedFrame(index=index, gaussians=GaussianSet.empty(device=device))
        return
    ply_dir = out_dir / "ply" if "ply" in request.outputs else None
    iterations = request.gaussians.resolved_iterations(device.type)
    if iterations <= 0:
        frames = (_initial_frame(fused, i, device, cancel) for i in range(fused.num_frames))
    else:
        frames = fit_sequence(_FitInputs(request, fused, done), FitConfig(iterations=iterations, seed=request.engine.seed),
                              device=device, progress=progress, cancel=cancel)
    yield from export_gaussian_frames(frames, usd_writer=usd, ply_dir=ply_dir)


class _FitInputs(Sequence[SequenceFrame]):
    """Frame ``i``'s fitting input, built only when the fit reaches frame ``i``: its views are float32
    copies of whole frames (81 frames x 3 views at 512x512 would hold 0.75 GB if built up front)."""

    def __init__(self, request: ReshootRequest, fused: PointFrames, done: list[TrajectoryResult]) -> None:
        self.request, self.fused, self.done = request, fused, done

    def __len__(self) -> int:
        return self.fused.num_frames

    def __getitem__(self, index: int) -> SequenceFrame:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        xyz, rgb, radius, tangent_u, tangent_v = _frame_tensors(self.fused, index)
        return SequenceFrame(xyz, rgb, radius, views=_views(self.request, self.done, index),
                             tangent_u=tangent_u, tangent_v=tangent_v)


def _frame_tensors(points: PointFrames, index: int) -> tuple[torch.Tensor, ...]:
    """Frame ``index``'s xyz, rgb, radius, tangent_u, tangent_v (the tangents may be None)."""
    part = points.frame(index)
    return part.xyz, part.rgb, part.radius, part.tangent_u, part.tangent_v


def _initial_frame(points: PointFrames, index: int, device: torch.device, cancel: CancelFn | None) -> FittedFrame:
    check_cancel(cancel)
    return FittedFrame(index=index, gaussians=initial_gaussians(*_frame_tensors(points, index), device=device))


def _views(request: ReshootRequest, done: list[TrajectoryResult], index: int) -> list[FitView]:
    """The source frame plus, per trajectory, up to a few generated frames that show source frame ``index``."""
    views = [FitView(request.frames[index].astype(np.float32) / 255.0, request.cameras[index])]
    for traj in done:
        shows = [t for t, s in enumerate(traj.source_frames) if s == index]
        if len(shows) > MAX_VIEWS_PER_TRAJECTORY:
            shows = [shows[i] for i in np.linspace(0, len(shows) - 1, MAX_VIEWS_PER_TRAJECTORY).round().astype(int)]
        views += [FitView(traj.filled[t].astype(np.float32) / 255.0, traj.cameras[t]) for t in shows]
    return views
