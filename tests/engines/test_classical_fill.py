"""The classical fill: accuracy in synthetic holes, flicker, seen pixels kept, typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engines.classical import ClassicalFill, inpaint_frame_telea, nearest_seen_indices
from backend.engines.inpaint_types import FirstFrameEdit
from backend.engines.registry import get_inpaint_engine
from protocol.errors import Cancelled, ValidationError

HEIGHT, WIDTH, FRAMES = 48, 64, 12


def smooth_background() -> np.ndarray:
    """A smooth RGB test pattern (H, W, 3) float in [0, 255]."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    return np.stack([128 + 60 * np.sin(cols / 9.0), 128 + 60 * np.cos(rows / 7.0),
                     128 + 40 * np.sin((cols + rows) / 11.0)], axis=-1)


def test_nearest_seen_indices() -> None:
    holes = np.array([[[True]], [[False]], [[True]], [[True]], [[False]]])
    previous, following = nearest_seen_indices(holes)
    assert previous[:, 0, 0].tolist() == [-1, 1, 1, 1, 4]
    assert following[:, 0, 0].tolist() == [1, 1, 4, 4, 4]


def test_moving_hole_is_recovered_by_propagation() -> None:
    background = smooth_background()
    frames = np.repeat(np.rint(background)[None], FRAMES, 0).astype(np.uint8)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    holes = np.zeros((FRAMES, HEIGHT, WIDTH), bool)
    for index in range(FRAMES):
        holes[index] = (rows - 24) ** 2 + (cols - (10 + 4 * index)) ** 2 < 64
    damaged = frames.copy()
    damaged[holes] = 0
    out = ClassicalFill().fill(damaged, holes, "")
    # Static scene + moving hole: every hole pixel was seen in some other frame -> exact.
    assert np.array_equal(out, frames)


def test_static_hole_error_below_bound_and_seen_pixels_kept() -> None:
    background = smooth_background()
    rng = np.random.default_rng(0)
    frames = np.clip(background[None] + rng.normal(0, 2, (FRAMES, HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    holes = np.zeros((FRAMES, HEIGHT, WIDTH), bool)
    holes[:, 18:30, 26:38] = True  # never seen: Telea
    damaged = frames.copy()
    damaged[holes] = 255
    out = ClassicalFill().fill(damaged, holes, "")
    error = np.abs(out.astype(np.float64) - background[None])[holes].mean()
    assert error < 12.0  # stated bound: mean abs error < 12 levels in a 12x12 hole on a smooth pattern
    assert np.array_equal(out[~holes], frames[~holes])


def test_temporal_smoothing_flickers_less_than_per_frame_inpainting() -> None:
    background = smooth_background()
    rng = np.random.default_rng(1)
    frames = np.clip(background[None] + rng.normal(0, 8, (FRAMES, HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    holes = np.zeros((FRAMES, HEIGHT, WIDTH), bool)
    holes[:, 16:32, 24:40] = True
    ours = ClassicalFill(smooth_sigma=2.0).fill(frames, holes, "").astype(np.float64)
    per_frame = np.stack([inpaint_frame_telea(f, h, 5.0) for f, h in zip(frames, holes)]).astype(np.float64)

    def flicker(video: np.ndarray) -> float:
        return float(np.abs(np.diff(video, axis=0))[holes[1:]].mean())

    assert flicker(ours) < 0.6 * flicker(per_frame)


def test_first_frame_edit_propagates_to_static_region() -> None:
    frames = np.repeat(np.rint(smooth_background())[None], 4, 0).astype(np.uint8)
    edited = frames[0].copy()
    edited[10:20, 10:20] = (255, 0, 0)
    region = np.zeros((4, HEIGHT, WIDTH), bool)
    region[:, 10:20, 10:20] = True
    out = ClassicalFill().fill(frames, np.zeros((4, HEIGHT, WIDTH), bool), "",
                               edit=FirstFrameEdit(edited, region))
    assert np.array_equal(out[:, 10:20, 10:20], np.broadcast_to(edited[10:20, 10:20], (4, 10, 10, 3)))


def test_progress_cancel_and_bad_input() -> None:
    engine = get_inpaint_engine("classical")
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    holes = np.zeros((3, 8, 8), bool)
    calls: list[tuple[int, int]] = []
    engine.fill(frames, holes, "", progress=lambda s, t, m: calls.append((s, t)))
    assert calls[-1] == (3, 3)
    with pytest.raises(Cancelled):
        engine.fill(frames, holes, "", cancel=lambda: True)
    with pytest.raises(ValidationError, match="holes must be"):
        engine.fill(frames, holes[:2], "")
    with pytest.raises(ValidationError, match="uint8"):
        engine.fill(frames.astype(np.float32), holes, "")
