"""Training data for the inpainting LoRA: supervised pairs from the user's own video.

A *pair* is a degraded input video aligned with a clip of the source video (the ground truth) plus
a hole mask (True = the model generates the pixel):

- **double reprojection** (round 1 and later): render the source clip along a sampled target path,
  lift that render with its own depth and render it back into the source cameras (V'', M'');
- **cycle-back** (rounds >= 2): a video *generated* along a larger-angle path with the current LoRA
  is lifted with its depth (rendered depth, holes filled from the farther side) and rendered back
  into the source cameras; its holes and artefacts are what the next round learns to repair.

Per sample a composite mask is drawn (``backend.geometry.masks``): the point-cloud holes, an
editing mask (moving regions, first frame empty) or their union; editing-only samples condition on
the clean source outside the regions. Target paths are ``protocol.paths`` orbit presets around the
median depth of the clip's first frame, turning by an angle drawn uniformly from the round's range.
Every random choice comes from one seeded ``torch.Generator`` per round, so data is reproducible.
Frames are ``(F,H,W,3)`` uint8, masks ``(F,H,W)`` bool, cameras OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from backend.geometry import double_reprojection, lift_frames, render_points, sample_training_mask
from protocol.camera import Camera, stack_cameras
from protocol.errors import ValidationError
from protocol.paths import build_path

from .source import TuneSource


@dataclass
class TargetPath:
    """A sampled target trajectory: the preset text, its angle (degrees) and per-frame cameras."""

    spec: str
    angle: float
    cameras: list[Camera]
    pivot_depth: float


@dataclass
class TrainingPair:
    """One supervised sample in pixels: ``clean`` ground truth, ``degraded`` input, ``hole`` mask."""

    clean: np.ndarray  # (F,H,W,3) uint8, the source clip
    degraded: np.ndarray  # (F,H,W,3) uint8, what the model sees outside the holes
    hole: np.ndarray  # (F,H,W) bool, True = generate
    meta: dict[str, Any] = field(default_factory=dict)


def median_centre_depth(depth: np.ndarray) -> float:
    """Median planar depth (metres) of the central half of one ``(H,W)`` depth map: the orbit pivot."""
    h, w = depth.shape
    centre = depth[h // 4: h - h // 4, w // 4: w - w // 4]
    valid = centre[centre > 0]
    if valid.size == 0:
        valid = depth[depth > 0]
    if valid.size == 0:
        raise ValidationError("the clip's first frame has no valid depth to orbit around")
    return float(np.median(valid))


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def choice(generator: torch.Generator, options: list[Any] | tuple[Any, ...]) -> Any:
    return options[int(torch.randint(len(options), (), generator=generator))]


def sample_target_path(clip: TuneSource, angle_range: tuple[float, float], directions: list[str],
                       generator: torch.Generator) -> TargetPath:
    """An orbit preset around the clip's pivot turning by an angle in ``angle_range`` degrees.

    Direction from ``directions``; timing ``gradual`` (starts at the source pose) or ``direct``.
    """
    low, high = angle_range
    angle = round(uniform(generator, max(low, 1e-3), high), 3)
    direction = choice(generator, list(directions))
    timing = choice(generator, ("gradual", "direct"))
    spec = f"orbit:{direction}:{angle:g}" + (":direct" if timing == "direct" else "")
    pivot = median_centre_depth(clip.depth[0])
    cameras = build_path(spec, clip.cameras, pivot).cameras
    return TargetPath(spec, angle, cameras, pivot)


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """``(...,3)`` float in [0, 1] -> uint8."""
    return (rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def composite_pair(clean: np.ndarray, degraded: np.ndarray, visibility: torch.Tensor, generator: torch.Generator,
                   probabilities: tuple[float, float, float], meta: dict[str, Any]) -> TrainingPair:
    """Draw a composite mask for one sample; editing-only samples keep the clean video as input."""
    mask = sample_training_mask(visibility.cpu(), generator, probabilities=probabilities)
    hole = mask.hole.numpy()
    source = clean if mask.kind == "editing" else degraded
    meta = {**meta, "mask_kind": mask.kind, "hole_ratio": round(float(hole.mean()), 5)}
    return TrainingPair(clean, source, hole, meta)


def double_reprojection_pair(clip: TuneSource, path: TargetPath, generator: torch.Generator,
                             probabilities: tuple[float, float, float], device: torch.device,
                             meta: dict[str, Any]) -> TrainingPair:
    """Degrade ``clip`` through ``path`` and back (V'', M'') and draw a composite mask."""
    K_s, w2c_s = stack_cameras(clip.cameras)
    K_t, w2c_t = stack_cameras(path.cameras)
    result = double_reprojection(clip.frames, clip.depth, K_s, w2c_s, K_t, w2c_t, device=device)
    meta = {**meta, "pair": "double_reprojection", "path": path.spec, "angle": path.angle}
    return composite_pair(clip.frames, to_uint8(result.degraded), result.mask, generator, probabilities, meta)


@dataclass
class TargetRender:
    """The source clip rendered along a target path: ``rgb`` uint8, ``holes`` (True = unseen), ``depth``."""

    rgb: np.ndarray  # (F,H,W,3) uint8, holes black
    holes: np.ndarray  # (F,H,W) bool
    depth: torch.Tensor  # (F,H,W) planar z, metres, 0 in holes


def render_along(clip: TuneSource, path: TargetPath, device: torch.device) -> TargetRender:
    """Render the clip's points into the path's cameras (what the engine must fill)."""
    K_s, w2c_s = stack_cameras(clip.cameras)
    K_t, w2c_t = stack_cameras(path.cameras)
    width, height = clip.size
    points = lift_frames(clip.frames, clip.depth, K_s, w2c_s, device=device)
    render = render_points(points, K_t, w2c_t, width, height)
    return TargetRender(to_uint8(render.rgb), (~render.mask).cpu().numpy(), render.depth)


def cycle_back_pair(clip: TuneSource, path: TargetPath, generated: np.ndarray, generated_depth: torch.Tensor,
                    generator: torch.Generator, probabilities: tuple[float, float, float],
                    device: torch.device, meta: dict[str, Any]) -> TrainingPair:
    """Lift a generated video (at ``path``'s cameras, with planar ``generated_depth``) and render it back
    into the source cameras; the source clip is the ground truth."""
    K_s, w2c_s = stack_cameras(clip.cameras)
    K_t, w2c_t = stack_cameras(path.cameras)
    width, height = clip.size
    points = lift_frames(generated, generated_depth.to(device), K_t, w2c_t, device=device)
    back = render_points(points, K_s, w2c_s, width, height)
    meta = {**meta, "pair": "cycle_back", "path": path.spec, "angle": path.angle}
    return composite_pair(clip.frames, to_uint8(back.rgb), back.mask, generator, probabilities, meta)


def sample_clip(source: TuneSource, length: int, generator: torch.Generator) -> tuple[int, TuneSource]:
    """A random ``length``-frame clip of ``source`` and its start frame."""
    start = int(torch.randint(source.num_frames - length + 1, (), generator=generator))
    return start, source.clip(start, length)
