"""Frame-size layout (multiple of 16) and frame windows (4k + 1) for the VACE engine."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engines.depth_align import smooth_parameters
from backend.engines.inpaint_types import composite_fill, feather_weights
from backend.engines.vace_geometry import ModelFrameLayout, model_frame_count, pad_window, plan_windows
from protocol.errors import ValidationError


def test_model_frame_count() -> None:
    assert [model_frame_count(n) for n in (1, 2, 5, 6, 9, 81, 82)] == [1, 5, 5, 9, 9, 81, 85]


@pytest.mark.parametrize(("num_frames", "window", "overlap"), [(5, 9, 4), (9, 9, 4), (13, 9, 4), (100, 81, 8),
                                                                (250, 81, 16), (30, 5, 1)])
def test_windows_cover_with_overlap(num_frames: int, window: int, overlap: int) -> None:
    windows = plan_windows(num_frames, window, overlap)
    covered = np.zeros(num_frames, bool)
    for start, end in windows:
        assert end - start == min(window, num_frames)
        covered[start:end] = True
    assert covered.all() and windows[0][0] == 0 and windows[-1][1] == num_frames
    for (_, end), (start, _) in zip(windows, windows[1:]):
        assert end - start >= overlap


def test_window_validation_and_padding() -> None:
    with pytest.raises(ValidationError, match="4k"):
        plan_windows(20, 8, 2)
    frames = np.arange(6 * 2 * 2 * 3, dtype=np.uint8).reshape(6, 2, 2, 3)
    holes = np.zeros((6, 2, 2), bool)
    holes[-1] = True
    padded, padded_holes = pad_window(frames, holes)
    assert padded.shape[0] == 9 and np.array_equal(padded[8], frames[5]) and padded_holes[8].all()


@pytest.mark.parametrize(("height", "width"), [(24, 40), (480, 832), (1080, 1920), (17, 300)])
def test_layout_is_multiple_of_16_and_round_trips(height: int, width: int) -> None:
    layout = ModelFrameLayout.plan(height, width, max_pixels=64 * 64)
    assert layout.model_height % 16 == 0 and layout.model_width % 16 == 0
    assert layout.model_height * layout.model_width <= 2 * 64 * 64 + 16 * (layout.model_height + layout.model_width)
    frames = np.full((2, height, width, 3), 77, np.uint8)
    model = layout.frames_to_model(frames)
    assert model.shape == (2, layout.model_height, layout.model_width, 3)
    assert layout.frames_from_model(model).shape == frames.shape
    holes = np.zeros((2, height, width), bool)
    holes[:, height // 2, width // 2] = True
    assert layout.holes_to_model(holes).any(axis=(1, 2)).all()  # a one-pixel hole survives shrinking


def test_feathered_composite_keeps_far_pixels() -> None:
    frames = np.zeros((1, 20, 20, 3), np.uint8)
    generated = np.full((1, 20, 20, 3), 200, np.uint8)
    holes = np.zeros((1, 20, 20), bool)
    holes[0, 8:12, 8:12] = True
    out = composite_fill(frames, generated, holes, feather_px=3.0)
    assert (out[holes] == 200).all()
    far = feather_weights(holes, 3.0) == 0
    assert (out[far] == 0).all()
    assert 0 < out[0, 8, 6, 0] < 200  # blended band just outside the hole


def test_smooth_parameters_keeps_constants() -> None:
    assert np.allclose(smooth_parameters(np.full(3, 2.5), 2.0), 2.5)
    assert smooth_parameters(np.array([0.0, 10.0, 0.0]), 1.0)[1] < 10.0
