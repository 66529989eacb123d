"""Ring cameras, depth-aware composition (Eq. 8-10) and the foreground/background split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.engines import get_inpaint_engine
from backend.generate import (
    background_video,
    clean_mask,
    contact_band,
    fit_depth_placement,
    lift_foreground,
    orbit_camera,
    parse_rings,
    place_foreground,
    robust_motion_split,
    validate_masks,
)
from backend.generate.rings import DEFAULT_RINGS
from backend.pipelines.reshoot.synthetic import sliding_square_scene
from protocol.camera import Camera, project_points, stack_cameras
from protocol.errors import ValidationError


def test_orbit_keeps_the_pivot_centred_and_moves_the_camera_as_named() -> None:
    cam = Camera.from_fov(60.0, 64, 48)
    pivot = np.array([[0.0, 0.0, 3.0]])
    right = orbit_camera(cam, 3.0, 0.0, 30.0)
    up = orbit_camera(cam, 3.0, 15.0, 0.0)
    for moved in (right, up):
        uv, z = project_points(moved, pivot)
        np.testing.assert_allclose(uv[0], [cam.cx, cam.cy], atol=1e-9)
        assert z[0] == pytest.approx(3.0)
        assert np.linalg.norm(moved.center - pivot[0]) == pytest.approx(3.0)
    assert right.center[0] == pytest.approx(3.0 * np.sin(np.radians(30.0)))  # +azimuth = to the right (x)
    assert up.center[1] == pytest.approx(-3.0 * np.sin(np.radians(15.0)))  # +elevation = up (-y in OpenCV)


def test_rings_default_and_validation() -> None:
    assert parse_rings(None) == DEFAULT_RINGS
    assert parse_rings([[[0, 10]], [[5, -5], [1, 2]]]) == [[(0.0, 10.0)], [(5.0, -5.0), (1.0, 2.0)]]
    for bad in ([], [[]], [[[0]]], [[["a", 1]]], [[[0, 120]]], "x"):
        with pytest.raises(ValidationError):
            parse_rings(bad)


def _slanted_scene(num_frames: int = 3, width: int = 48, height: int = 32):
    """A background plane slanting away to the right (3 m .. 5 m) and a 2 m square moving across it."""
    cam = Camera.from_fov(60.0, width, height)
    x = np.arange(width) + 0.5
    background = np.broadcast_to(3.0 + 2.0 * x / width, (num_frames, height, width)).astype(np.float32)
    fg = np.zeros((num_frames, height, width), bool)
    for t in range(num_frames):
        fg[t, 10:20, 8 + 8 * t: 18 + 8 * t] = True
    depth = np.where(fg, 2.0, background).astype(np.float32)
    frames = np.full((num_frames, height, width, 3), 90, np.uint8)
    frames[fg] = (200, 40, 30)
    return cam, torch.from_numpy(depth), torch.from_numpy(background.copy()), fg, frames


def test_composition_places_a_known_foreground_at_the_formula_depth() -> None:
    """Reference depth off by scale 0.5 and shift 0.3: Eq. 8-9 recover them, Eq. 10 keeps pixels."""
    cam, true_depth, background, fg, frames = _slanted_scene()
    cams = [cam] * 3
    reference = 0.5 * true_depth + 0.3  # what a monocular network might say
    placement = fit_depth_placement(reference, background, fg)
    np.testing.assert_allclose(placement.scale, 2.0, rtol=1e-4)
    np.testing.assert_allclose(placement.shift, -0.6, atol=1e-4)
    assert (placement.band_pixels > 0).all()
    lifted = lift_foreground(frames, reference, fg, cams)
    placed = place_foreground(lifted, cams, placement)
    z_ref = 0.5 * 2.0 + 0.3
    z_expected = 2.0 * z_ref - 0.6  # s * z_ref + delta: the true 2 m of the square
    np.testing.assert_allclose(placed.xyz[:, 2].numpy(), z_expected, atol=1e-4)
    for t in range(3):  # screen-space trajectory: every point stays on its pixel
        uv_before, _ = project_points(cams[t], lifted.frame(t).xyz.double().numpy())
        uv_after, _ = project_points(cams[t], placed.frame(t).xyz.double().numpy())
        np.testing.assert_allclose(uv_after, uv_before, atol=1e-3)
    np.testing.assert_allclose(placed.radius.numpy(), lifted.radius.numpy() * (z_expected / z_ref), rtol=1e-4)


def test_composition_on_a_flat_band_is_a_pure_scale() -> None:
    """A fronto-parallel wall cannot separate scale from shift: Eq. 8 falls back to the depth ratio."""
    scene = sliding_square_scene(num_frames=2, width=48, height=32)
    reference = torch.from_numpy(scene.depth) * 0.25
    placement = fit_depth_placement(reference, torch.from_numpy(scene.depth), scene.foreground)
    np.testing.assert_allclose(placement.scale, 4.0, rtol=1e-5)
    np.testing.assert_allclose(placement.shift, 0.0)


def test_composition_without_band_uses_the_other_frames() -> None:
    fg = np.zeros((2, 16, 16), bool)
    fg[0, 4:8, 4:8] = True
    fg[1] = True  # no background next to the object in frame 1
    ref = np.full((2, 16, 16), 1.0)
    bg = np.full((2, 16, 16), 3.0)
    placement = fit_depth_placement(ref, bg, fg)
    assert placement.band_pixels[1] == 0
    assert placement.scale[1] == pytest.approx(placement.scale[0])
    assert contact_band(fg[0], 1).sum() == 6 * 6 - 4 * 4


def test_motion_split_finds_the_moving_square_and_the_background_removes_it() -> None:
    scene = sliding_square_scene(num_frames=6, width=48, height=32)
    cams = [scene.camera] * 6
    K, w2c = stack_cameras(cams)
    depth = torch.from_numpy(scene.depth)
    masks = robust_motion_split(depth, K, w2c).masks
    recall = (masks & scene.foreground).sum() / scene.foreground.sum()
    assert recall > 0.95
    near_object = clean_mask(scene.foreground, open_px=0, dilate_px=3)
    assert not (masks & ~near_object).any()  # beyond the object only its dilated rim
    background = background_video(get_inpaint_engine("classical"), scene.frames, depth, masks)
    assert background.depth[torch.from_numpy(masks)].min() == pytest.approx(4.0)  # the wall behind
    np.testing.assert_array_equal(background.frames[~masks], scene.frames[~masks])
    assert not np.array_equal(background.frames[masks], scene.frames[masks])
    assert robust_motion_split(depth[:1], K[:1], w2c[:1]).masks.sum() == 0


def test_user_masks_are_validated() -> None:
    assert validate_masks(np.ones((4, 5)), (3, 4, 5)).shape == (3, 4, 5)
    with pytest.raises(ValidationError, match="one per frame"):
        validate_masks(np.ones((2, 4, 5)), (3, 4, 5))


def test_band_fit_survives_noisy_reference_depth_and_beats_the_range_formula() -> None:
    """3 % per-pixel noise on the reference depth of a flat wall: the band fit keeps the object at 2 m
    (it used to regress onto noise and flatten the object onto the wall); Eq. 8-9 from ranges is the option."""
    from backend.generate import lift_foreground
    from backend.generate.foreground import compose_foreground

    cam, depth, background, fg, frames = _slanted_scene(num_frames=3, width=48, height=32)
    flat = torch.full_like(background, 4.0)
    truth = torch.where(torch.from_numpy(fg), torch.tensor(2.0), flat)
    noisy = truth * (1.0 + 0.03 * torch.from_numpy(np.random.default_rng(0).standard_normal(truth.shape)).float())
    lifted = lift_foreground(frames, noisy, fg, [cam] * 3)
    errors = {}
    for method in ("band", "ranges"):
        placed, _ = compose_foreground(lifted, noisy, flat, fg, [cam] * 3, method=method)
        errors[method] = float(np.median(np.abs(placed.xyz[:, 2].numpy() - 2.0)))
    assert errors["band"] < 0.1 < errors["ranges"], errors
    with pytest.raises(ValidationError, match="compose.method"):
        compose_foreground(lifted, noisy, flat, fg, [cam] * 3, method="median")


def test_range_placement_is_eq_8_9_and_eq_10_keeps_the_trajectory() -> None:
    from backend.generate.compose import fit_range_placement, scaled_trajectory, screen_scale

    _, depth, background, fg, _ = _slanted_scene()
    placement = fit_range_placement(0.5 * depth + 1.0, background, fg)  # ranges halve, minima shift
    np.testing.assert_allclose(placement.scale, 2.0, rtol=1e-4)
    np.testing.assert_allclose(placement.scale * (0.5 * 2.0 + 1.0) + placement.shift, 2.0, atol=1e-4)  # 2 m back
    tau = np.array([[0.0, 0.0], [4.0, 1.0], [10.0, 3.0]])
    np.testing.assert_allclose(scaled_trajectory(tau, 1.0), tau)
    np.testing.assert_allclose(scaled_trajectory(tau, 0.5), [[0, 0], [2, 0.5], [5, 1.5]])
    assert screen_scale(fg[0], fg[0]) == 1.0
