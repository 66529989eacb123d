"""The classical fill: accuracy in synthetic holes, no ghosts, depth-aware side, flicker, seen pixels kept, typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engines.classical import (
    ClassicalFill,
    nearest_seen_indices,
    smooth_fill_frame,
    stable_run_lengths,
)
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


def test_stable_run_lengths() -> None:
    values = [10, 10, 10, 90, 90]
    frames = np.array(values, np.uint8)[:, None, None, None].repeat(3, axis=3)
    holes = np.zeros((5, 1, 1), bool)
    run_back, run_forward = stable_run_lengths(frames, holes, 4.0)
    assert run_back[:, 0, 0].tolist() == [0, 1, 2, 0, 1]
    assert run_forward[:, 0, 0].tolist() == [2, 1, 0, 1, 0]


def test_passing_object_leaves_no_ghost() -> None:
    """A red square crosses a static background; a hole where it just was is filled with background."""
    background = np.rint(smooth_background()).astype(np.uint8)
    frames = np.repeat(background[None], FRAMES, 0)
    for index in range(FRAMES):
        x = 4 + 3 * index
        frames[index, 20:28, x:x + 8] = (255, 0, 0)
    holes = np.zeros((FRAMES, HEIGHT, WIDTH), bool)
    holes[6, 20:28, 4 + 3 * 5:4 + 3 * 5 + 3] = True  # the square's trailing edge of frame 5, now background
    damaged = frames.copy()
    damaged[holes] = 0
    out = ClassicalFill().fill(damaged, holes, "")
    error = np.abs(out.astype(np.float64) - background.astype(np.float64))[holes].max()
    assert error < 10.0, "the fill copied the passing square (a ghost) instead of background"


def test_depth_fills_disocclusion_from_the_far_side() -> None:
    """A hole between a near dark bar and a far bright wall is filled with the wall's colour."""
    frame = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    frame[:, :24] = 40  # near bar
    depth = np.full((HEIGHT, WIDTH), 10.0, np.float32)
    depth[:, :24] = 3.0
    missing = np.zeros((HEIGHT, WIDTH), bool)
    missing[:, 24:28] = True  # the gap a 4 px camera shift opens behind the bar's edge
    plain = smooth_fill_frame(frame, missing)[missing].mean()
    aware = smooth_fill_frame(frame, missing, np.where(missing, 0.0, depth))[missing].mean()
    assert aware > 190.0 > plain


def test_moving_hole_is_recovered_by_propagation() -> None:
    """Static scene + moving hole: every hole pixel whose background stayed put long enough is exact."""
    background = smooth_background()
    frames = np.repeat(np.rint(background)[None], FRAMES, 0).astype(np.uint8)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    holes = np.zeros((FRAMES, HEIGHT, WIDTH), bool)
    for index in range(FRAMES):
        holes[index] = (rows - 24) ** 2 + (cols - (10 + 4 * index)) ** 2 < 64
    damaged = frames.copy()
    damaged[holes] = 0
    out = ClassicalFill().fill(damaged, holes, "")
    exact = (out == frames).all(axis=-1)
    assert exact[holes].mean() > 0.9
    assert np.abs(out.astype(np.float64) - background[None])[holes].mean() < 3.0


def test_static_hole_error_below_bound_and_seen_pixels_kept() -> None:
    background = smooth_background()
    rng = np.random.default_rng(0)
    frames = np.clip(background[None] + rng.normal(0, 2, (FRAMES, HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    holes = np.zeros((FRAMES, HEIGHT, WIDTH), bool)
    holes[:, 18:30, 26:38] = True  # never seen: the smooth fill
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
    per_frame = ClassicalFill(smooth_sigma=0.0).fill(frames, holes, "").astype(np.float64)

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


def test_holes_that_cover_all_motion_fill_from_any_frame_that_saw_the_pixel():
    """A foreground mask over a static-camera video (``recast4d generate``): every seen pixel is a clean
    donor, so the wall behind a sliding square comes back exactly, even from a frame seen only once."""
    from backend.engines.classical import ClassicalFill

    rng = np.random.default_rng(3)
    wall = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    frames = np.repeat(wall[None], 4, axis=0)
    holes = np.zeros((4, 24, 32), bool)
    for f in range(4):  # a square sliding 6 px per frame: each wall pixel it hides is seen in other frames
        holes[f, 8:16, 4 + 6 * f:12 + 6 * f] = True
        frames[f][holes[f]] = 255
    engine = ClassicalFill()
    clean = engine.fill(frames, holes, holes_cover_motion=True)
    gated = engine.fill(frames, holes)
    assert np.array_equal(clean[holes], np.broadcast_to(wall, frames.shape)[holes])
    assert not np.array_equal(gated[holes], np.broadcast_to(wall, frames.shape)[holes])  # no stability evidence
