"""Lifting and footprint-aware z-buffer rendering on analytic scenes with exact expected images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.geometry import (
    PointFrames,
    depth_to_planar,
    flying_pixel_mask,
    lift_frames,
    pixel_ray_norms,
    planar_to_depth,
    render_points,
)
from protocol.camera import Camera
from protocol.errors import CameraError, ValidationError

H, W, FOCAL = 16, 32, 100.0


def intrinsics(focal: float = FOCAL, width: int = W, height: int = H) -> torch.Tensor:
    return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def translation(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> torch.Tensor:
    """world_to_camera of a camera whose centre sits at (x, y, z), axes aligned with the world."""
    pose = torch.eye(4)
    pose[:3, 3] = torch.tensor([-x, -y, -z])
    return pose


def step_depth(frames: int = 1, near: float = 2.0, far: float = 4.0) -> torch.Tensor:
    """Left half (columns < W/2) at ``near`` metres, right half at ``far``."""
    depth = torch.full((frames, H, W), far)
    depth[:, :, : W // 2] = near
    return depth


def random_frames(frames: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(frames, H, W, 3, generator=torch.Generator().manual_seed(seed))


def test_identity_camera_reproduces_valid_pixels_exactly() -> None:
    rgb = random_frames(2)
    depth = 2.0 + torch.rand(2, H, W, generator=torch.Generator().manual_seed(1)) * 0.02
    depth[0, 3, 5] = 0.0
    depth[0, 4, 6] = float("nan")
    depth[1, 7, 9] = float("inf")
    depth[1, 8, 10] = 50.0  # beyond max_depth
    K = intrinsics()
    points = lift_frames(rgb, depth, K, torch.eye(4), max_depth=10.0)
    valid = torch.isfinite(depth) & (depth > 0) & (depth <= 10.0)
    assert points.num_points == int(valid.sum())
    for tol in (0.0, 0.01):
        view = render_points(points, K, torch.eye(4), W, H, surface_tolerance=tol)
        assert torch.equal(view.mask, valid)
        assert torch.equal(view.rgb[valid], rgb[valid])
        assert torch.allclose(view.depth[valid], depth[valid], rtol=1e-6)
        assert bool((view.depth[~valid] == 0).all()) and bool((view.rgb[~valid] == 0).all())
        assert bool((view.point_index[~valid] == -1).all())


def test_lift_places_points_on_the_plane_with_pixel_footprints() -> None:
    pose = torch.tensor(Camera.from_fov(60.0, W, H).world_to_camera, dtype=torch.float32)
    angle = math.radians(20.0)
    pose[:3, :3] = torch.tensor([[math.cos(angle), 0, -math.sin(angle)], [0, 1, 0],
                                 [math.sin(angle), 0, math.cos(angle)]])
    pose[:3, 3] = torch.tensor([0.3, -0.2, 0.5])
    points = lift_frames(random_frames(), torch.full((1, H, W), 3.0), intrinsics(), pose)
    cam = points.xyz @ pose[:3, :3].T + pose[:3, 3]
    assert torch.allclose(cam[:, 2], torch.full_like(cam[:, 2], 3.0), atol=1e-5)
    ys, xs = points.pixel_index // W, points.pixel_index % W
    assert torch.allclose(cam[:, 0], (xs + 0.5 - W / 2) / FOCAL * 3.0, atol=1e-5)
    assert torch.allclose(cam[:, 1], (ys + 0.5 - H / 2) / FOCAL * 3.0, atol=1e-5)
    assert torch.allclose(points.radius, torch.full_like(points.radius, 0.5 * 3.0 / FOCAL))


def test_ray_depth_is_converted_to_planar() -> None:
    K = intrinsics().expand(1, 3, 3)
    z = torch.full((1, H, W), 2.5)
    ray = planar_to_depth(z, K, "ray")
    corner_norm = math.sqrt(((0.5 - W / 2) / FOCAL) ** 2 + ((0.5 - H / 2) / FOCAL) ** 2 + 1.0)
    assert ray[0, 0, 0].item() == pytest.approx(2.5 * corner_norm, rel=1e-6)
    assert torch.allclose(depth_to_planar(ray, K, "ray"), z)
    assert torch.all(pixel_ray_norms(K, H, W) >= 1.0)
    from_ray = lift_frames(random_frames(), ray, K, torch.eye(4), depth_kind="ray")
    from_z = lift_frames(random_frames(), z, K, torch.eye(4), depth_kind="z")
    assert torch.allclose(from_ray.xyz, from_z.xyz, atol=1e-5)
    with pytest.raises(ValidationError, match="depth_kind"):
        lift_frames(random_frames(), z, K, torch.eye(4), depth_kind="disparity")


def test_flying_pixels_at_a_depth_step_are_removed() -> None:
    depth = step_depth()
    depth[:, :, W // 2] = 3.0  # smeared boundary column, halfway between the surfaces
    valid = depth > 0
    flying = flying_pixel_mask(depth, valid, 0.05)
    expected = torch.zeros_like(flying)
    expected[:, :, W // 2: W // 2 + 2] = True  # the smeared column and the far rim behind it
    assert torch.equal(flying, expected)
    points = lift_frames(random_frames(), depth, intrinsics(), torch.eye(4))
    cam_z = points.xyz[:, 2]
    assert not bool(((cam_z > 2.5) & (cam_z < 3.5)).any()), "no point may float between the surfaces"
    columns = set((points.pixel_index % W).tolist())
    assert set(range(W // 2)) <= columns, "the near silhouette is kept"
    unfiltered = lift_frames(random_frames(), depth, intrinsics(), torch.eye(4), edge_threshold=None)
    assert unfiltered.num_points == H * W


def test_translated_camera_over_a_step_opens_an_exact_disocclusion_band() -> None:
    rgb = random_frames()
    points = lift_frames(rgb, step_depth(), intrinsics(), torch.eye(4))
    baseline = 0.08  # disparity f*b/z: 4 px on the near half (2 m), 2 px on the far half (4 m)
    view = render_points(points, intrinsics(), translation(x=baseline), W, H)
    seen_columns = view.mask[0].all(dim=0)
    assert torch.equal(view.mask[0], seen_columns.expand(H, W))
    holes = sorted(torch.nonzero(~seen_columns).squeeze(1).tolist())
    # near half shifts left 4 px (to 0..11); far half minus its dropped rim (17..31) lands on 15..29;
    # band 12..14 = 2 px parallax gap + 1 removed rim column; 30, 31 left the source view
    assert holes == [12, 13, 14, 30, 31]
    assert torch.equal(view.rgb[0, :, 0:12], rgb[0, :, 4:16])
    assert torch.equal(view.rgb[0, :, 15:30], rgb[0, :, 17:32])
    assert torch.allclose(view.depth[0, :, 0:12], torch.full((H, 12), 2.0))
    assert torch.allclose(view.depth[0, :, 15:30], torch.full((H, 15), 4.0))


@pytest.mark.parametrize("zoom", [1.5, 2.0, 3.0])
def test_zoom_in_on_a_slanted_surface_leaves_no_cracks(zoom: float) -> None:
    normal = torch.tensor([math.sin(0.6), 0.2, math.cos(0.6)])
    normal = normal / normal.norm()
    K = intrinsics()
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    rays = torch.stack([(xs - W / 2) / FOCAL, (ys - H / 2) / FOCAL, torch.ones_like(xs)], -1)
    depth = (2.0 / (rays @ normal))[None]
    points = lift_frames(random_frames(), depth, K, torch.eye(4))
    assert points.num_points == H * W, "a smooth slanted plane has no flying pixels"
    view = render_points(points, intrinsics(FOCAL * zoom), torch.eye(4), W, H)
    assert bool(view.mask.all()), f"{int((~view.mask).sum())} cracks after a {zoom}x zoom"
    no_footprint = render_points(points, intrinsics(FOCAL * zoom), torch.eye(4), W, H, max_splat_radius=0)
    assert int((~no_footprint.mask).sum()) > H * W // 4, "one-pixel splats would crack"


def test_dolly_in_twice_closer_has_no_cracks_and_keeps_disocclusions() -> None:
    plane = lift_frames(random_frames(), torch.full((1, H, W), 4.0), intrinsics(), torch.eye(4))
    dolly = render_points(plane, intrinsics(), translation(z=2.0), W, H)
    assert bool(dolly.mask.all())
    step = lift_frames(random_frames(), step_depth(near=3.0, far=6.0), intrinsics(), torch.eye(4))
    view = render_points(step, intrinsics(FOCAL * 2), translation(x=0.12), W, H)
    seen_columns = view.mask[0].all(dim=0)
    assert torch.equal(view.mask[0], seen_columns.expand(H, W)), "zoomed surfaces stay crack-free"
    holes = torch.nonzero(~seen_columns).squeeze(1).tolist()
    # 2x zoom: disparity 8 px (near, 3 m) vs 4 px (far, 6 m) + a 2 px wide removed rim -> 6 px band
    assert holes == list(range(W // 2 - 8, W // 2 - 2))


def test_points_behind_the_camera_and_outside_the_view_are_not_drawn() -> None:
    points = lift_frames(random_frames(), torch.full((1, H, W), 2.0), intrinsics(), torch.eye(4))
    behind = render_points(points, intrinsics(), translation(z=3.0), W, H)
    assert not bool(behind.mask.any())
    aside = render_points(points, intrinsics(), translation(x=50.0), W, H)
    assert not bool(aside.mask.any())


def test_nearer_surface_wins_the_z_buffer() -> None:
    rgb = torch.stack([torch.zeros(H, W, 3), torch.ones(H, W, 3)])
    depth = torch.stack([torch.full((H, W), 3.0), torch.full((H, W), 2.0)])
    both = lift_frames(rgb, depth, intrinsics(), torch.eye(4))
    merged = PointFrames(both.xyz, both.rgb, both.radius, torch.zeros_like(both.frame_index),
                         both.pixel_index, torch.tensor([0, both.num_points]), H, W)
    view = render_points(merged, intrinsics(), torch.eye(4), W, H)
    assert bool((view.rgb == 1.0).all()) and torch.allclose(view.depth, torch.full((1, H, W), 2.0))


def test_point_frames_slicing_and_selection() -> None:
    depth = torch.full((3, H, W), 2.0)
    depth[1, :, :4] = 0.0
    points = lift_frames(random_frames(3), depth, intrinsics(), torch.eye(4))
    assert points.counts().tolist() == [H * W, H * (W - 4), H * W]
    second = points.frame(1)
    assert second.num_frames == 1 and second.num_points == H * (W - 4)
    assert bool((second.frame_index == 0).all())
    assert torch.equal(second.xyz, points.xyz[H * W: H * W + H * (W - 4)])
    assert points.to("cpu").num_points == points.num_points
    kept = points.select(points.frame_index != 1)
    assert kept.counts().tolist() == [H * W, 0, H * W]
    with pytest.raises(IndexError):
        points.frame(3)


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(ValidationError, match="depth must have shape"):
        lift_frames(random_frames(), torch.ones(1, H + 1, W), intrinsics(), torch.eye(4))
    with pytest.raises(ValidationError, match="frames must have shape"):
        lift_frames(torch.zeros(H, W, 3), torch.ones(1, H, W), intrinsics(), torch.eye(4))
    bad_K = intrinsics()
    bad_K[0, 0] = -1.0
    with pytest.raises(CameraError, match="focal"):
        lift_frames(random_frames(), torch.ones(1, H, W), bad_K, torch.eye(4))
    with pytest.raises(CameraError, match="NaN"):
        lift_frames(random_frames(), torch.ones(1, H, W), intrinsics(), torch.full((4, 4), float("nan")))
    points = lift_frames(random_frames(), torch.ones(1, H, W), intrinsics(), torch.eye(4))
    with pytest.raises(CameraError, match="world_to_camera"):
        render_points(points, intrinsics(), torch.eye(4).expand(2, 4, 4), W, H)
    with pytest.raises(ValidationError):
        render_points(points, intrinsics(), torch.eye(4), 0, H)


def test_numpy_inputs_and_uint8_frames() -> None:
    rgb = (np.arange(H * W * 3).reshape(1, H, W, 3) % 256).astype(np.uint8)
    points = lift_frames(rgb, np.full((1, H, W), 2.0), intrinsics().numpy(), np.eye(4))
    view = render_points(points, intrinsics().numpy(), np.eye(4), W, H)
    assert torch.allclose(view.rgb[0] * 255.0, torch.from_numpy(rgb[0]).float(), atol=1e-3)


def test_rendering_no_points_gives_empty_views() -> None:
    points = lift_frames(random_frames(2), torch.zeros(2, H, W), intrinsics(), torch.eye(4))
    assert points.num_points == 0
    view = render_points(points, intrinsics(), torch.eye(4), W, H)
    assert view.rgb.shape == (2, H, W, 3) and not bool(view.mask.any())
    assert bool((view.point_index == -1).all())
