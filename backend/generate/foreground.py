"""The animated foreground: per-frame points of the masked object, placed by depth, fitted as Gaussians.

Frame ``t``'s foreground pixels (mask True) are lifted with the reference depth from the reference
camera of frame ``t`` (OpenCV, metres), placed into the background's coordinates by
:mod:`.compose` (moves along camera rays, so the screen-space trajectory of the reference video is
kept exactly), and fitted frame by frame with a warm start from the previous frame
(:func:`backend.gaussians.fit_sequence`). The supervising view of frame ``t`` is the reference frame
weighted by its mask: only the object's pixels count, so the background colour does not leak in.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from backend.gaussians import FitConfig, SequenceFrame, fit_sequence, gaussians_from_points
from backend.gaussians.sequence import FittedFrame
from backend.geometry import PointFrames, lift_frames, splat_points
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.camera import Camera, stack_cameras
from protocol.errors import ValidationError

from .compose import DepthPlacement, fit_depth_placement, fit_range_placement, place_foreground
from .outpaint import scaled_view


def lift_foreground(frames: np.ndarray, depth: torch.Tensor, foreground: np.ndarray,
                    cameras: list[Camera]) -> PointFrames:
    """Points of the foreground pixels of every frame (``depth (F,H,W)`` planar z, metres)."""
    K, w2c = stack_cameras(cameras)
    keep = torch.from_numpy(np.ascontiguousarray(foreground, dtype=bool)).to(depth.device)
    return lift_frames(frames, depth, K, w2c, keep_mask=keep, device=depth.device)


def background_depth_in_reference(xyz: torch.Tensor, rgb: torch.Tensor, radius: torch.Tensor,
                                  cameras: list[Camera]) -> torch.Tensor:
    """``(F,H,W)`` planar depth of the static background points seen by each reference camera (0 = none)."""
    num = len(cameras)
    K, w2c = stack_cameras(cameras)
    n = xyz.shape[0]
    index = torch.arange(num, device=xyz.device).repeat_interleave(n)
    render = splat_points(xyz.repeat(num, 1), rgb.repeat(num, 1), radius.repeat(num), index, K, w2c,
                          cameras[0].width, cameras[0].height)
    return render.depth


COMPOSE_METHODS = ("band", "ranges")


def compose_foreground(points: PointFrames, reference_depth: torch.Tensor, background_depth: torch.Tensor,
                       foreground: np.ndarray, cameras: list[Camera], *, band_px: int = 4,
                       method: str = "band") -> tuple[PointFrames, DepthPlacement]:
    """Place the lifted foreground (:mod:`.compose`): ``method = "band"`` (per-frame fit on the contact
    band, default) or ``"ranges"`` (the paper's Eq. 8-9 from the first frame's depth ranges)."""
    if method == "band":
        placement = fit_depth_placement(reference_depth, background_depth, foreground, band_px=band_px)
    elif method == "ranges":
        placement = fit_range_placement(reference_depth, background_depth, foreground)
    else:
        raise ValidationError(f"compose.method must be one of {', '.join(COMPOSE_METHODS)}, got {method!r}")
    return place_foreground(points, cameras, placement), placement


def fit_foreground(points: PointFrames, frames: np.ndarray, foreground: np.ndarray, cameras: list[Camera], *,
                   iterations: int, seed: int = 0, fit_scale: float = 1.0, device: torch.device | str = "cpu",
                   progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> Iterator[FittedFrame]:
    """Fitted Gaussians per frame (warm start); ``iterations = 0`` yields the initial Gaussians unfitted.

    Frames without any foreground point yield an empty Gaussian set. ``fit_scale`` renders the
    supervising views at that fraction of the frame size (pixel-centre-exact intrinsics scaling).
    """
    if iterations <= 0:
        for index in range(points.num_frames):
            check_cancel(cancel)
            part = points.frame(index)
            yield FittedFrame(index, gaussians_from_points(part.xyz, part.rgb, part.radius, device=device))
        return
    inputs = []
    for index in range(points.num_frames):
        part = points.frame(index)
        view = scaled_view(frames[index], cameras[index], fit_scale)
        view.weight = _scaled_weight(foreground[index], view.camera)
        inputs.append(SequenceFrame(part.xyz, part.rgb, part.radius, views=[view]))
    if any(frame.points.shape[0] == 0 for frame in inputs):
        yield from _fit_with_gaps(inputs, iterations, seed, device, progress, cancel)
        return
    yield from fit_sequence(inputs, FitConfig(iterations=iterations, seed=seed), device=device, progress=progress,
                            cancel=cancel)


def _scaled_weight(mask: np.ndarray, camera: Camera) -> np.ndarray:
    """The foreground mask as a per-pixel loss weight at the (possibly reduced) view size."""
    import cv2

    weight = mask.astype(np.float32)
    if weight.shape != (camera.height, camera.width):
        weight = cv2.resize(weight, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
    return weight


def _fit_with_gaps(inputs: list[SequenceFrame], iterations: int, seed: int, device: torch.device | str,
                   progress: ProgressFn | None, cancel: CancelFn | None) -> Iterator[FittedFrame]:
    """Frames with no foreground break the warm-start chain: fit each run of non-empty frames on its own."""
    from backend.gaussians import GaussianSet

    run: list[tuple[int, SequenceFrame]] = []

    def flush() -> Iterator[FittedFrame]:
        if not run:
            return
        for fitted in fit_sequence([f for _, f in run], FitConfig(iterations=iterations, seed=seed), device=device,
                                   progress=progress, cancel=cancel):
            fitted.index = run[fitted.index][0]
            yield fitted
        run.clear()

    for index, frame in enumerate(inputs):
        if frame.points.shape[0] == 0:
            yield from flush()
            yield FittedFrame(index, GaussianSet.empty(device=device))
        else:
            run.append((index, frame))
    yield from flush()
