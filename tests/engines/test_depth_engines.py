"""Depth engines (given sequences, tiny Depth Anything) and robust depth alignment."""

from __future__ import annotations

import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engines.depth import GivenDepth, load_depth_sequence  # noqa: E402
from backend.engines.depth_align import align_depth, consistent_depth_from_disparity  # noqa: E402
from backend.engines.registry import get_depth_engine  # noqa: E402
from protocol.errors import ValidationError  # noqa: E402


def scene_depth(frames: int = 4, height: int = 24, width: int = 32) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    base = 2.0 + 3.0 * cols / width + 0.5 * np.sin(rows / 4.0)
    return np.stack([base + 0.05 * i for i in range(frames)]).astype(np.float32)


@pytest.mark.parametrize("space", ["inverse", "depth"])
def test_align_depth_recovers_scale_and_shift_with_outliers(space: str) -> None:
    depth = scene_depth(1)[0].astype(np.float64)
    truth = 1.0 / depth if space == "inverse" else depth
    scale, shift = 2.5, 0.3
    pred = (truth - shift) / scale  # so that scale * pred + shift == truth
    rng = np.random.default_rng(0)
    corrupted = pred.copy()
    outliers = rng.random(pred.shape) < 0.15
    corrupted[outliers] += rng.normal(0, 5 * pred.std(), outliers.sum())
    aligned, got_scale, got_shift = align_depth(corrupted, depth, space=space)
    assert got_scale == pytest.approx(scale, rel=1e-3)
    assert got_shift == pytest.approx(shift, abs=1e-3)
    assert np.allclose(aligned[~outliers], depth[~outliers], rtol=1e-3)


def test_align_depth_uses_only_masked_pixels_and_rejects_empty() -> None:
    depth = scene_depth(1)[0]
    pred = 1.0 / depth
    mask = np.zeros(depth.shape, bool)
    mask[:, :10] = True
    reference = np.where(mask, depth, 0.0)  # unknown elsewhere
    aligned, scale, shift = align_depth(pred, reference, mask)
    assert scale == pytest.approx(1.0, rel=1e-4) and shift == pytest.approx(0.0, abs=1e-5)
    assert np.allclose(aligned, depth, rtol=1e-3)
    with pytest.raises(ValidationError, match="at least 2"):
        align_depth(pred, reference, np.zeros(depth.shape, bool))


def test_consistent_depth_undoes_per_frame_affine_drift() -> None:
    depth = np.repeat(scene_depth(1), 6, axis=0)
    for index in range(6):  # a small moving object: outliers for the frame-to-frame fit
        depth[index, 5:9, 2 + 4 * index: 6 + 4 * index] = 1.0
    inverse = 1.0 / depth
    scales = np.array([1.0, 1.3, 0.7, 2.0, 1.1, 0.9])
    shifts = np.array([0.0, 0.05, -0.02, 0.1, 0.0, 0.03])
    disparity = (inverse - shifts[:, None, None]) / scales[:, None, None]
    for sigma in (0.0, 1.5):  # smoothing must not reintroduce the network's per-frame drift
        out = consistent_depth_from_disparity(disparity, median_depth=float(np.median(depth[0])),
                                              smooth_sigma=sigma)
        ratio = out / depth
        assert np.allclose(ratio, ratio.mean(), rtol=2e-2)  # one scale for all frames


def test_reference_alignment_with_drifting_network_output(tiny_models_dir: Path) -> None:
    engine = get_depth_engine("depth-anything", tiny_models_dir, input_size=28, device="cpu", smooth_sigma=1.5)
    depth = np.repeat(scene_depth(1), 5, axis=0)
    scales = np.array([1.0, 1.5, 0.6, 2.0, 0.9])
    disparity = (1.0 / depth) / scales[:, None, None]
    engine.predict_disparity = lambda frames, **kwargs: disparity.astype(np.float32)
    mask = np.zeros(depth.shape, bool)
    mask[:, :, :12] = True  # only part of each frame has a known (rendered) depth
    aligned = engine.predict(np.zeros(depth.shape + (3,), np.uint8), reference=np.where(mask, depth, 0),
                             reference_mask=mask)
    assert np.allclose(aligned, depth, rtol=1e-3)  # also where the reference is unknown


def test_reference_alignment_survives_frames_whose_render_saw_nothing(tiny_models_dir: Path) -> None:
    """A generated frame with no seen pixels (the path looked away) borrows its neighbour's fit
    instead of failing the job after the expensive fill; with no reference at all, a clear error."""
    engine = get_depth_engine("depth-anything", tiny_models_dir, input_size=28, device="cpu", smooth_sigma=1.0)
    depth = np.repeat(scene_depth(1), 4, axis=0)
    engine.predict_disparity = lambda frames, **kwargs: (1.0 / depth).astype(np.float32)
    mask = np.ones(depth.shape, bool)
    mask[2] = False
    aligned = engine.predict(np.zeros(depth.shape + (3,), np.uint8), reference=np.where(mask, depth, 0),
                             reference_mask=mask)
    assert np.allclose(aligned, depth, rtol=1e-3)
    with pytest.raises(ValidationError, match="no frame has"):
        engine.predict(np.zeros(depth.shape + (3,), np.uint8), reference=np.zeros(depth.shape),
                       reference_mask=np.zeros(depth.shape, bool))


def test_given_depth_from_npy_png16_and_exr(tmp_path: Path) -> None:
    depth = scene_depth(3)
    npy_dir, png_dir, exr_dir = tmp_path / "npy", tmp_path / "png", tmp_path / "exr"
    for folder in (npy_dir, png_dir, exr_dir):
        folder.mkdir()
    for index, frame in enumerate(depth):
        np.save(npy_dir / f"{index:04d}.npy", frame)
        cv2.imwrite(str(png_dir / f"{index:04d}.png"), np.rint(frame * 1000).astype(np.uint16))
        cv2.imwrite(str(exr_dir / f"{index:04d}.exr"), frame)
    assert np.array_equal(load_depth_sequence(npy_dir), depth)
    assert np.allclose(load_depth_sequence(png_dir), depth, atol=1e-3)
    assert np.allclose(load_depth_sequence(exr_dir), depth, atol=1e-3)
    frames = np.zeros(depth.shape + (3,), np.uint8)
    engine = get_depth_engine("given", source=npy_dir)
    assert isinstance(engine, GivenDepth)
    assert np.array_equal(engine.predict(frames), depth)
    with pytest.raises(ValidationError, match="shape"):
        engine.predict(frames[:2])


def test_depth_anything_tiny_model(tiny_models_dir: Path) -> None:
    engine = get_depth_engine("depth-anything", tiny_models_dir, input_size=28, device="cpu")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 24, 32, 3), dtype=np.uint8)
    depth = engine.predict(frames)
    assert depth.shape == (3, 24, 32) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth > 0).all()
    reference = scene_depth(3)
    mask = np.ones(reference.shape, bool)
    aligned = engine.predict(frames, reference=reference, reference_mask=mask)
    assert aligned.shape == reference.shape
    # Aligned to the reference: its median is close to the reference's median.
    assert abs(float(np.nanmedian(aligned)) - float(np.median(reference))) < 0.5 * float(np.median(reference))
