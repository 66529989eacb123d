"""The demo's image figures (numpy only, fast): masked PSNR/SSIM, the quality table, the picture."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "demo_metrics.py"
_spec = importlib.util.spec_from_file_location("recast4d_demo_metrics", _PATH)
demo_metrics = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = demo_metrics
_spec.loader.exec_module(demo_metrics)


def _image(seed: int = 0, shape=(2, 24, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_psnr_matches_the_mean_squared_error_of_the_masked_pixels_only():
    reference = np.full((2, 8, 8, 3), 100, np.uint8)
    image = reference.copy()
    image[:, :4] += 10  # error 10 on the top half, 0 below
    top = np.zeros((2, 8, 8), bool)
    top[:, :4] = True
    assert demo_metrics.masked_psnr(image, reference, top) == pytest.approx(10 * math.log10(255**2 / 100))
    assert demo_metrics.masked_psnr(image, reference, ~top) == float("inf")
    assert demo_metrics.masked_psnr(image, reference) == pytest.approx(10 * math.log10(255**2 / 50))
    assert demo_metrics.masked_psnr(image, reference, np.zeros((2, 8, 8), bool)) is None


def test_ssim_is_one_for_equal_images_and_falls_with_noise():
    reference = _image()
    assert demo_metrics.masked_ssim(reference, reference) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    slightly = np.clip(reference + rng.normal(0, 5, reference.shape), 0, 255).astype(np.uint8)
    badly = np.clip(reference + rng.normal(0, 40, reference.shape), 0, 255).astype(np.uint8)
    assert 1.0 > demo_metrics.masked_ssim(slightly, reference) > demo_metrics.masked_ssim(badly, reference)


def test_quality_splits_seen_and_filled_pixels():
    reference = _image(2)
    image = reference.copy()
    seen = np.ones(reference.shape[:3], bool)
    seen[:, :, :8] = False
    image[~seen] = 255 - image[~seen]  # only the filled pixels are wrong
    scores = demo_metrics.quality(image, reference, seen)
    assert scores["psnr_seen"] == float("inf") and scores["psnr_filled"] < 10
    assert scores["filled_fraction"] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        demo_metrics.masked_psnr(image[:1], reference)


def test_side_by_side_enlarges_and_joins_the_panels():
    panels = [("a", _image(3, (10, 12, 3))), ("b", _image(4, (10, 12, 3)))]
    picture = demo_metrics.side_by_side(panels, scale=3, gap=4)
    assert picture.shape == (30, 2 * 36 + 4, 3) and picture.dtype == np.uint8
    assert (picture[:, 36:40] == 255).all()


def test_over_black_composites_straight_alpha_in_linear_light():
    rgba = np.zeros((1, 1, 4, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[0, 0, :, 3] = (255, 0, 128, 255)
    rgba[0, 0, 3, :3] = (200, 30, 90)
    out = demo_metrics.over_black(rgba)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 4, 3)
    assert out[0, 0, 0].tolist() == [255, 255, 255]  # opaque: unchanged
    assert out[0, 0, 1].tolist() == [0, 0, 0]  # empty: the black background
    # white at half coverage is half the light: sRGB 188, not the 128 of multiplying sRGB values
    assert out[0, 0, 2].tolist() == [188, 188, 188]
    assert out[0, 0, 3].tolist() == [200, 30, 90]  # the encode/decode round trip keeps opaque colours
