"""The source-depth stage the ``reshoot`` and ``tune`` jobs share: given depth or a depth engine's estimate.

Depth out is planar z ``(F, H, W)`` float32 in scene units (metres when the cameras are metric),
0 = unknown. Cameras are OpenCV (``protocol.camera``).

- Given depth (a Blender Z pass, a sensor) is converted from ``depth_kind`` to planar z.
- Otherwise the depth engine named in the request estimates it (``engine.depth`` for reshoot,
  ``depth_engine`` for tune; the CLIs and the add-on choose ``depth-anything`` when no depth is
  sent). Then:
  * a *relative* engine's sequence (one consistent scale, unknown global disparity shift) is put
    into the cameras' scale and its global shift recovered from the camera motion
    (:func:`backend.engines.depth_motion.align_to_camera_motion`) when the source cameras were
    given and move; a static or guessed camera leaves the engine's own scale (with a note);
  * a *metric* engine that also estimates the focal length (Depth Pro) replaces the intrinsics of
    guessed cameras (no ``cameras`` in the request): the field-of-view guess stays the last resort,
    with its warning.
- Frames a depth network cannot read (blank: one flat colour, e.g. black) are refused before the
  job is queued (:func:`check_depth_estimable`), and so is an estimate with no usable value in a frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.pipelines.fields import is_stand_in
from backend.progress import CancelFn, ProgressFn
from protocol.camera import Camera, stack_cameras
from protocol.errors import ValidationError

#: a frame whose every channel spans at most this many levels is blank (no depth cue at all)
BLANK_FRAME_LEVELS = 2


@dataclass
class SourceDepth:
    """Planar z ``depth (F,H,W)`` float32 (0 = unknown), the source ``cameras`` (intrinsics possibly
    estimated), and ``notes``: sentences for the job's warnings / report."""

    depth: np.ndarray
    cameras: list[Camera]
    notes: list[str] = field(default_factory=list)
    intrinsics_estimated: bool = False
    motion_alignment: dict | None = None


def blank_frames(frames: np.ndarray) -> list[int]:
    """Indices of frames that are one flat colour (every channel within ``BLANK_FRAME_LEVELS`` levels)."""
    frames = np.asarray(frames)
    flat = frames.reshape(frames.shape[0], -1, frames.shape[-1])
    spread = flat.max(axis=1).astype(np.int32) - flat.min(axis=1).astype(np.int32)
    return [int(i) for i in np.flatnonzero((spread <= BLANK_FRAME_LEVELS).all(axis=1))]


def _frame_list(indices: list[int]) -> str:
    return ", ".join(str(i) for i in indices[:10]) + (" ..." if len(indices) > 10 else "")


def check_depth_estimable(frames: np.ndarray, name: str = "frames") -> None:
    """ValidationError naming the frames a depth engine cannot estimate depth for (blank frames).

    A submit-time stand-in of the declared frames (``fields.stand_in_inputs``: no content yet) passes;
    the real frames are checked when the job starts."""
    if is_stand_in(frames):
        return
    blank = blank_frames(frames)
    if blank:
        raise ValidationError(
            f"{name}: {len(blank)} of {len(frames)} frames are blank (one flat colour, e.g. black): frame(s) "
            f"{_frame_list(blank)} give no usable depth estimate; cut them from the clip or send depth maps")


def planar_given_depth(depth: np.ndarray, depth_kind: str, cameras: list[Camera]) -> np.ndarray:
    """Given ``depth (F,H,W)`` of ``depth_kind`` (``"z"`` or ``"ray"``) as planar z, 0 where unknown."""
    import torch

    from backend.geometry import depth_to_planar

    K, _ = stack_cameras(cameras)
    tensor = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
    planar = depth_to_planar(tensor, torch.as_tensor(K, dtype=torch.float32), depth_kind).numpy()
    return np.where(np.isfinite(planar) & (planar > 0), planar, 0.0).astype(np.float32)


def estimate_source_depth(frames: np.ndarray, cameras: list[Camera], engine_name: str, *,
                          models_dir: str | None = None, cameras_guessed: bool = False,
                          engine_options: dict[str, Any] | None = None, progress: ProgressFn | None = None,
                          cancel: CancelFn | None = None) -> SourceDepth:
    """Estimate planar z-depth of ``frames (F,H,W,3)`` uint8 with depth engine ``engine_name`` (module doc)."""
    from backend.engines import get_depth_engine
    from backend.engines.depth_motion import align_to_camera_motion, camera_baseline

    check_depth_estimable(frames)
    engine = get_depth_engine(engine_name, models_dir, **(engine_options or {}))
    notes: list[str] = []
    focal_px = None
    if hasattr(engine, "predict_metric"):
        known_focal = None if cameras_guessed else float(np.median([c.fx for c in cameras]))
        estimate = engine.predict_metric(frames, focal_px=known_focal, progress=progress, cancel=cancel)
        depth, focal_px = estimate.depth, estimate.focal_px
    else:
        depth = engine.predict(frames, progress=progress, cancel=cancel)
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    empty = [int(i) for i in np.flatnonzero(~(depth > 0).reshape(len(depth), -1).any(axis=1))]
    if empty:
        raise ValidationError(f"frames: depth engine {engine_name!r} found no usable depth in frame(s) "
                              f"{_frame_list(empty)}; send depth maps for this clip")
    result = SourceDepth(depth, list(cameras), notes)
    if focal_px is not None and cameras_guessed:
        result.cameras = [_with_focal(cam, float(np.median(focal_px))) for cam in cameras]
        result.intrinsics_estimated = True
        fov = float(np.degrees(2.0 * np.arctan(0.5 * cameras[0].width / np.median(focal_px))))
        notes.append(f"intrinsics estimated by depth engine {engine_name!r}: focal {np.median(focal_px):.1f} px "
                     f"({fov:.1f} degree horizontal field of view) instead of the field-of-view guess")
    if getattr(engine, "relative", False):
        K, w2c = stack_cameras(result.cameras)
        if cameras_guessed or camera_baseline(w2c) <= 0:
            notes.append(f"depth from {engine_name!r} is relative (a consistent scale, not metres): the source "
                         "camera does not move, so its scale and disparity shift cannot be measured")
        else:
            aligned, info = align_to_camera_motion(depth, K, w2c, cancel=cancel)
            result.motion_alignment = info
            if info["accepted"]:
                result.depth = aligned
            else:
                notes.append(f"depth from {engine_name!r}: the camera motion did not pin down its scale and "
                             f"disparity shift ({info['reason']}); kept the engine's own scale")
    return result


def _with_focal(cam: Camera, focal_px: float) -> Camera:
    """``cam`` with square-pixel focal length ``focal_px`` (pixels), principal point kept."""
    K = np.array(cam.K, dtype=np.float64)
    K[0, 0] = K[1, 1] = focal_px
    return Camera(K, cam.world_to_camera, cam.width, cam.height)
