"""Depth engines: ``given`` (client-supplied depth sequences) and ``depth-anything`` (Depth Anything V2).

Interface: ``predict(frames, *, reference=None, reference_mask=None, progress=None, cancel=None)``
takes (F, H, W, 3) uint8 RGB frames and returns (F, H, W) float32 z-depth (distance along the
camera's +z axis, OpenCV convention) in scene units; NaN = unknown.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # must be set before cv2 is imported

from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from backend.engines.depth_align import (  # noqa: E402
    MIN_INVERSE_DEPTH,
    align_depth,
    consistent_depth_from_disparity,
    smooth_affine_alignment,
)
from backend.engines.registry import DEPTH_ANYTHING_LARGE, DEPTH_ANYTHING_SMALL, require_weights  # noqa: E402
from backend.progress import CancelFn, ProgressFn, check_cancel  # noqa: E402
from protocol.errors import ValidationError  # noqa: E402

DEPTH_FILE_SUFFIXES = (".exr", ".png", ".npy")
#: a frame needs this many pixels with a known reference depth for its own scale/shift fit
MIN_REFERENCE_PIXELS = 16


def read_depth_image(path: Path, *, png_scale: float = 0.001) -> np.ndarray:
    """One depth image as (H, W) float32 scene units.

    ``.exr``: first channel (float, e.g. Blender's Z pass); ``.png``: 16-bit values times ``png_scale``
    (default 0.001: millimetres -> metres), 0 = unknown; ``.npy``: a 2-D float array.
    Zero, negative and non-finite values become NaN.
    """
    suffix = path.suffix.lower()
    if suffix == ".npy":
        depth = np.load(path)
    else:
        import cv2

        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
        if image is None:
            raise ValidationError(f"could not read depth image {path} (is it an EXR/PNG16 file?)")
        if image.ndim == 3:
            image = image[..., 0]  # EXR depth: all channels equal or Z in the first (BGR order = R last)
        if suffix == ".png":
            if image.dtype != np.uint16:
                raise ValidationError(f"PNG depth {path} must be 16-bit, got {image.dtype}")
            depth = image.astype(np.float32) * float(png_scale)
        else:
            depth = image.astype(np.float32)
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValidationError(f"depth image {path} must be 2-D, got shape {depth.shape}")
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)


def load_depth_sequence(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | np.ndarray, *,
                        png_scale: float = 0.001) -> np.ndarray:
    """Load a depth sequence as (F, H, W) float32: an array, a .npy/.npz file, a folder, or a list of files.

    A folder is read in sorted file-name order, taking every .exr/.png/.npy file in it.
    """
    if isinstance(source, np.ndarray):
        depth = source.astype(np.float32)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in DEPTH_FILE_SUFFIXES)
            if not files:
                raise ValidationError(f"no depth images (.exr/.png/.npy) in {path}")
            depth = np.stack([read_depth_image(p, png_scale=png_scale) for p in files])
        elif path.suffix.lower() == ".npz":
            with np.load(path) as archive:
                depth = archive["depth"] if "depth" in archive else archive[archive.files[0]]
        elif path.suffix.lower() == ".npy":
            depth = np.load(path)
        elif path.exists():
            depth = read_depth_image(path, png_scale=png_scale)[None]
        else:
            raise ValidationError(f"depth source {path} does not exist")
    else:
        paths = [Path(p).expanduser() for p in source]
        if not paths:
            raise ValidationError("empty list of depth images")
        depth = np.stack([read_depth_image(p, png_scale=png_scale) for p in paths])
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 2:
        depth = depth[None]
    if depth.ndim != 3:
        raise ValidationError(f"depth sequence must be (F, H, W), got {depth.shape}")
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)


class GivenDepth:
    """Depth supplied by the client (a Blender render pass, a sensor, another tool)."""

    name = "given"

    def __init__(self, models_dir: Path | None = None, *, source: Any = None, png_scale: float = 0.001) -> None:
        self.png_scale = float(png_scale)
        self.depth = None if source is None else load_depth_sequence(source, png_scale=self.png_scale)

    def predict(self, frames: np.ndarray, *, source: Any = None, reference: np.ndarray | None = None,
                reference_mask: np.ndarray | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> np.ndarray:
        """The supplied depth for ``frames`` (F, H, W, 3); checks that frame count and size match."""
        check_cancel(cancel)
        depth = self.depth if source is None else load_depth_sequence(source, png_scale=self.png_scale)
        if depth is None:
            raise ValidationError("the 'given' depth engine needs a depth source (array, file or folder)")
        frames = np.asarray(frames)
        if depth.shape != frames.shape[:3]:
            raise ValidationError(f"given depth has shape {depth.shape} but the frames are {frames.shape[:3]}")
        if progress is not None:
            progress(1, 1, "depth loaded")
        return depth


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class DepthAnythingEngine:
    """Depth Anything V2 (transformers ``AutoModelForDepthEstimation``) from a local folder.

    The network predicts relative inverse depth per frame. Without a reference, the sequence is
    put on one consistent scale (:func:`consistent_depth_from_disparity`, ``median_depth`` scene
    units for frame 0); with a ``reference`` depth and ``reference_mask`` (e.g. rendered depth where
    pixels are seen), each frame is aligned to it in inverse-depth space (:func:`align_depth`).
    Input frames are resized (aspect kept) so the short side is ``input_size`` rounded to the
    model's patch multiple, and ImageNet-normalised as in the reference implementation.
    """

    name = "depth-anything"
    relative = True  # affine-invariant: scale and disparity shift come from the cameras (source_depth stage)

    def __init__(self, folder: str | os.PathLike[str], *, device: str | None = None, input_size: int = 518,
                 batch_size: int = 8, median_depth: float = 1.0, smooth_sigma: float = 1.0) -> None:
        import torch
        from transformers import AutoModelForDepthEstimation

        self.folder = Path(folder)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.model = AutoModelForDepthEstimation.from_pretrained(
            self.folder, local_files_only=True, torch_dtype=dtype
        ).to(self.device).eval()
        self.dtype = dtype
        self.patch = int(getattr(self.model.config, "patch_size", 14))
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        self.median_depth = float(median_depth)
        self.smooth_sigma = float(smooth_sigma)

    @classmethod
    def from_models_dir(cls, models_dir: Path, **options: Any) -> DepthAnythingEngine:
        return cls(require_weights(DEPTH_ANYTHING_SMALL, models_dir), **options)

    @classmethod
    def from_models_dir_large(cls, models_dir: Path, **options: Any) -> DepthAnythingEngine:
        return cls(require_weights(DEPTH_ANYTHING_LARGE, models_dir), **options)

    def _network_size(self, height: int, width: int) -> tuple[int, int]:
        scale = self.input_size / min(height, width)
        round_to = self.patch
        return (max(round_to, int(round(height * scale / round_to)) * round_to),
                max(round_to, int(round(width * scale / round_to)) * round_to))

    def predict_disparity(self, frames: np.ndarray, *, progress: ProgressFn | None = None,
                          cancel: CancelFn | None = None) -> np.ndarray:
        """Raw relative inverse depth (F, H, W) float32 at the frames' resolution."""
        import cv2
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValidationError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        num_frames, height, width = frames.shape[:3]
        net_h, net_w = self._network_size(height, width)
        out = np.empty((num_frames, height, width), dtype=np.float32)
        for start in range(0, num_frames, self.batch_size):
            check_cancel(cancel)
            batch = frames[start:start + self.batch_size]
            resized = np.stack([cv2.resize(f, (net_w, net_h), interpolation=cv2.INTER_CUBIC) for f in batch])
            normalised = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
            pixels = torch.from_numpy(normalised).permute(0, 3, 1, 2).to(self.device, self.dtype)
            with torch.inference_mode():
                predicted = self.model(pixel_values=pixels).predicted_depth
            predicted = torch.nn.functional.interpolate(predicted[:, None].float(), size=(height, width),
                                                        mode="bilinear", align_corners=False)[:, 0]
            out[start:start + len(batch)] = predicted.cpu().numpy()
            if progress is not None:
                progress(min(start + self.batch_size, num_frames), num_frames, "depth estimation")
        return out

    def predict(self, frames: np.ndarray, *, reference: np.ndarray | None = None,
                reference_mask: np.ndarray | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> np.ndarray:
        """z-depth (F, H, W) float32: consistent-scale, or aligned to ``reference`` where ``reference_mask``.

        With a reference, each frame's (scale, shift) is fitted in inverse-depth space on its masked
        pixels (a frame with fewer than ``MIN_REFERENCE_PIXELS`` known ones takes the nearest frame's
        fit); the fits are smoothed over ``smooth_sigma`` frames (:func:`smooth_affine_alignment`).
        """
        disparity = self.predict_disparity(frames, progress=progress, cancel=cancel)
        if reference is None:
            return consistent_depth_from_disparity(disparity, median_depth=self.first_frame_median_depth(disparity),
                                                   smooth_sigma=self.smooth_sigma)
        return align_sequence_to_reference(disparity, reference, reference_mask, self.smooth_sigma, cancel)

    def first_frame_median_depth(self, disparity: np.ndarray) -> float:
        """Median depth frame 0 gets without a reference: ``median_depth`` (relative output has no scale)."""
        return self.median_depth


def align_sequence_to_reference(disparity: np.ndarray, reference: np.ndarray, reference_mask: np.ndarray | None,
                                smooth_sigma: float, cancel: CancelFn | None = None) -> np.ndarray:
    """z-depth (F, H, W) float32 of inverse-depth predictions ``disparity`` aligned to ``reference``.

    Each frame's (scale, shift) is fitted in inverse-depth space on the pixels of ``reference_mask``
    (default all) with a known reference depth; a frame with fewer than ``MIN_REFERENCE_PIXELS``
    takes the nearest frame's fit; the fits are smoothed over ``smooth_sigma`` frames.
    """
    reference = np.asarray(reference, dtype=np.float32)
    if reference.shape != disparity.shape:
        raise ValidationError(f"reference depth {reference.shape} must match the frames {disparity.shape}")
    mask = np.ones(reference.shape, bool) if reference_mask is None else np.asarray(reference_mask, bool)
    if mask.shape != reference.shape:
        raise ValidationError(f"reference mask {mask.shape} must match the reference depth {reference.shape}")
    num_frames = disparity.shape[0]
    scales, shifts = np.empty(num_frames), np.empty(num_frames)
    known = mask & np.isfinite(reference) & (reference > 0)
    fitted = known.reshape(num_frames, -1).sum(axis=1) >= MIN_REFERENCE_PIXELS
    if not fitted.any():
        raise ValidationError(f"cannot align estimated depth: no frame has {MIN_REFERENCE_PIXELS} pixels with a "
                              "known reference depth (the render along this path saw almost nothing)")
    for index in np.flatnonzero(fitted):
        check_cancel(cancel)
        _, scales[index], shifts[index] = align_depth(disparity[index], reference[index], mask[index],
                                                      space="inverse")
    # frames whose render saw (almost) nothing take the fit of the nearest frame that has one
    with_fit = np.flatnonzero(fitted)
    nearest = with_fit[np.abs(np.arange(num_frames)[:, None] - with_fit[None, :]).argmin(axis=1)]
    inverse = smooth_affine_alignment(disparity, scales[nearest], shifts[nearest], smooth_sigma)
    return (1.0 / np.maximum(inverse, MIN_INVERSE_DEPTH)).astype(np.float32)
