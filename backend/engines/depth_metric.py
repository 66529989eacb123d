"""Metric depth engines (transformers, local folders): Depth Pro (with focal length) and Depth Anything V2 Metric.

Both follow the depth interface of :mod:`backend.engines.depth` (``predict(frames, *, reference=None,
reference_mask=None, progress=None, cancel=None)`` -> (F, H, W) float32 planar z-depth in metres)
and add ``predict_metric(frames, *, focal_px=None, progress=None, cancel=None) -> MetricDepth``,
which the source-depth stage uses: metric depth plus, for Depth Pro, the focal length it estimated
per frame, so a clip filmed by an unknown camera gets intrinsics instead of a field-of-view guess.

- **Depth Pro** (``apple/DepthPro-hf``, ``DepthProForDepthEstimation``) predicts a *canonical*
  inverse depth and the horizontal field of view ``fov`` (degrees). As in Apple's reference code and
  transformers' post-processing, ``f_px = 0.5 W / tan(fov / 2)`` and metric inverse depth =
  ``canonical * W / f_px`` (W = frame width in pixels). A known focal length (given cameras)
  replaces the estimate; one focal (the median over the clip) is used for every frame, since a
  clip has one lens. Input: the frame resized to the model's square input
  (``patch_size / min(scaled_images_ratios)``, 1536 for the published weights), scaled to [0, 1]
  and normalised with mean = std = 0.5 (``preprocessor_config.json`` values when present).
- **Depth Anything V2 Metric** (``depth-anything/Depth-Anything-V2-Metric-{Indoor,Outdoor}-Small-hf``,
  ``depth_estimation_type = "metric"``) predicts metric depth directly (0..``max_depth`` m); it
  estimates no focal length, so guessed cameras keep the field-of-view guess and its warning.

Without a reference, per-frame predictions are put on one temporally consistent scale with
:func:`consistent_depth_from_disparity`, anchored at frame 0's metric median depth (so metric
scale is kept; metric predictions carry no disparity shift). With a reference the frames are
aligned to it like the relative engine (:func:`align_sequence_to_reference`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.engines.depth import (
    DepthAnythingEngine,
    align_sequence_to_reference,
)
from backend.engines.depth_align import MIN_INVERSE_DEPTH, consistent_depth_from_disparity
from backend.engines.registry import (
    DEPTH_ANYTHING_METRIC_INDOOR,
    DEPTH_ANYTHING_METRIC_OUTDOOR,
    DEPTH_PRO,
    require_weights,
)
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.errors import ValidationError


@dataclass
class MetricDepth:
    """Metric planar z-depth ``(F, H, W)`` float32 metres and the focal length (pixels, per frame) the
    engine estimated, or ``None`` when it estimates none."""

    depth: np.ndarray
    focal_px: np.ndarray | None = None


def _consistent_metric(inverse: np.ndarray, smooth_sigma: float) -> np.ndarray:
    """Metric inverse depth (F, H, W) -> temporally consistent metric z-depth anchored at frame 0's median."""
    first = inverse[0][np.isfinite(inverse[0]) & (inverse[0] > 0)]
    if first.size == 0:
        raise ValidationError("frames: the depth engine found no usable depth in frame 0; send depth maps")
    return consistent_depth_from_disparity(inverse, median_depth=float(np.median(1.0 / first)),
                                           smooth_sigma=smooth_sigma)


class MetricDepthAnythingEngine(DepthAnythingEngine):
    """Depth Anything V2 Metric (indoor or outdoor): metric depth, no focal length (module docstring)."""

    name = "depth-anything-metric"
    relative = False

    @classmethod
    def from_models_dir_indoor(cls, models_dir: Path, **options: Any) -> MetricDepthAnythingEngine:
        return cls(require_weights(DEPTH_ANYTHING_METRIC_INDOOR, models_dir), **options)

    @classmethod
    def from_models_dir_outdoor(cls, models_dir: Path, **options: Any) -> MetricDepthAnythingEngine:
        return cls(require_weights(DEPTH_ANYTHING_METRIC_OUTDOOR, models_dir), **options)

    def predict_disparity(self, frames: np.ndarray, *, progress: ProgressFn | None = None,
                          cancel: CancelFn | None = None) -> np.ndarray:
        """Metric inverse depth (F, H, W) float32 (1 / the network's metric depth)."""
        depth = super().predict_disparity(frames, progress=progress, cancel=cancel)
        return (1.0 / np.maximum(depth, MIN_INVERSE_DEPTH)).astype(np.float32)

    def first_frame_median_depth(self, disparity: np.ndarray) -> float:
        valid = disparity[0][np.isfinite(disparity[0]) & (disparity[0] > 0)]
        if valid.size == 0:
            raise ValidationError("frames: the depth engine found no usable depth in frame 0; send depth maps")
        return float(np.median(1.0 / valid))

    def predict_metric(self, frames: np.ndarray, *, focal_px: float | None = None,
                       progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> MetricDepth:
        """Metric depth of ``frames``; ``focal_px`` is not needed (the network predicts metres directly)."""
        return MetricDepth(self.predict(frames, progress=progress, cancel=cancel), None)


class DepthProEngine:
    """Depth Pro (transformers ``DepthProForDepthEstimation``) from a local folder (module docstring)."""

    name = "depth-pro"
    relative = False

    def __init__(self, folder: str | os.PathLike[str], *, device: str | None = None, batch_size: int = 1,
                 smooth_sigma: float = 1.0) -> None:
        import torch
        from transformers import AutoModelForDepthEstimation

        self.folder = Path(folder)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.model = AutoModelForDepthEstimation.from_pretrained(
            self.folder, local_files_only=True, torch_dtype=self.dtype).to(self.device).eval()
        config = self.model.config
        self.input_size = int(round(config.patch_size / min(config.scaled_images_ratios)))
        mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
        processor = self.folder / "preprocessor_config.json"
        if processor.is_file():
            values = json.loads(processor.read_text())
            mean, std = values.get("image_mean", mean), values.get("image_std", std)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.batch_size = int(batch_size)
        self.smooth_sigma = float(smooth_sigma)

    @classmethod
    def from_models_dir(cls, models_dir: Path, **options: Any) -> DepthProEngine:
        return cls(require_weights(DEPTH_PRO, models_dir), **options)

    def predict_canonical(self, frames: np.ndarray, *, progress: ProgressFn | None = None,
                          cancel: CancelFn | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(canonical inverse depth (F, H, W) float32 at the frames' size, fov degrees (F,) or None)``."""
        import cv2
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValidationError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        num_frames, height, width = frames.shape[:3]
        size = self.input_size
        canonical = np.empty((num_frames, height, width), np.float32)
        fovs = []
        for start in range(0, num_frames, self.batch_size):
            check_cancel(cancel)
            batch = frames[start:start + self.batch_size]
            resized = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in batch])
            normalised = (resized.astype(np.float32) / 255.0 - self.mean) / self.std
            pixels = torch.from_numpy(normalised).permute(0, 3, 1, 2).to(self.device, self.dtype)
            with torch.inference_mode():
                output = self.model(pixel_values=pixels)
            predicted = torch.nn.functional.interpolate(output.predicted_depth[:, None].float(), size=(height, width),
                                                        mode="bilinear", align_corners=False)[:, 0]
            canonical[start:start + len(batch)] = predicted.cpu().numpy()
            if output.field_of_view is not None:
                fovs.append(output.field_of_view.float().cpu().numpy().reshape(-1))
            if progress is not None:
                progress(min(start + self.batch_size, num_frames), num_frames, "depth estimation")
        return canonical, (np.concatenate(fovs) if fovs else None)

    def predict_metric(self, frames: np.ndarray, *, focal_px: float | None = None,
                       progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> MetricDepth:
        """Metric depth with the focal length: ``focal_px`` when known, else the model's estimate."""
        canonical, fov = self.predict_canonical(frames, progress=progress, cancel=cancel)
        width = canonical.shape[2]
        estimated = None
        if fov is not None:
            usable = np.isfinite(fov) & (fov > 1.0) & (fov < 179.0)
            if usable.any():
                estimated = 0.5 * width / np.tan(0.5 * np.radians(np.where(usable, fov, np.median(fov[usable]))))
        focal = focal_px if focal_px is not None else (None if estimated is None else float(np.median(estimated)))
        if focal is None:
            raise ValidationError("depth engine 'depth-pro' estimated no field of view (its weights have no FOV "
                                  "head): send the source cameras so their focal length gives the metric scale")
        inverse = np.maximum(canonical, 0.0) * (width / focal)
        depth = _consistent_metric(np.where(inverse > MIN_INVERSE_DEPTH, inverse, np.nan), self.smooth_sigma)
        return MetricDepth(np.nan_to_num(depth, nan=0.0).astype(np.float32), estimated)

    def predict(self, frames: np.ndarray, *, reference: np.ndarray | None = None,
                reference_mask: np.ndarray | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> np.ndarray:
        """z-depth (F, H, W) float32: metric (model focal), or aligned to ``reference`` where ``reference_mask``."""
        if reference is None:
            return self.predict_metric(frames, progress=progress, cancel=cancel).depth
        canonical, _ = self.predict_canonical(frames, progress=progress, cancel=cancel)
        return align_sequence_to_reference(canonical, reference, reference_mask, self.smooth_sigma, cancel)
