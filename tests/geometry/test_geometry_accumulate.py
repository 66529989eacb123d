"""Static accumulation: holes of frame t filled from static points of other frames.

Scene: a textured wall at 4 m, a 8x12 px box at 2 m sliding 4 px per frame in front of it, a fixed
source camera, and a target camera 0.16 m to the right (parallax 8 px on the box, 4 px on the wall).
"""

from __future__ import annotations

import pytest
import torch

from backend.geometry import accumulate_static, lift_frames, static_point_mask
from protocol.errors import ValidationError

F, H, W, FOCAL = 7, 24, 48, 100.0
K = torch.tensor([[FOCAL, 0.0, W / 2], [0.0, FOCAL, H / 2], [0.0, 0.0, 1.0]])
TARGET = torch.eye(4)
TARGET[0, 3] = -0.16  # camera centre at x = +0.16 m


def moving_box_scene(pan: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """frames (F,H,W,3), depth (F,H,W), foreground mask (F,H,W), wall texture (H,W+pan*F,3).

    With ``pan`` > 0 the source camera moves right ``pan`` wall pixels (0.04 m) per frame.
    """
    wall = torch.rand(H, W + pan * F, 3, generator=torch.Generator().manual_seed(5)) * 0.5
    frames = torch.stack([wall[:, pan * t: pan * t + W] for t in range(F)])
    depth = torch.full((F, H, W), 4.0)
    foreground = torch.zeros(F, H, W, dtype=torch.bool)
    for t in range(F):
        left = 10 + 4 * t
        foreground[t, 6:18, left:left + 8] = True
    frames[foreground] = torch.tensor([1.0, 0.2, 0.1])
    depth[foreground] = 2.0
    return frames, depth, foreground, wall


def test_static_accumulation_fills_disocclusions_with_the_true_wall() -> None:
    frames, depth, foreground, wall = moving_box_scene()
    points = lift_frames(frames, depth, K, torch.eye(4))
    static = static_point_mask(points, foreground_mask=foreground)
    result = accumulate_static(points, static, K, TARGET, W, H, window=None)

    holes_before = int((~result.base.mask).sum())
    holes_after = int((~result.render.mask).sum())
    # what is left: the 4 wall columns that no source frame ever saw (they left the view)
    assert holes_after == F * H * 4
    assert bool((~result.render.mask[:, :, W - 4:]).all())
    shrink = 1.0 - holes_after / holes_before
    print(f"static accumulation: hole pixels {holes_before} -> {holes_after} ({shrink:.1%} fewer)")
    assert shrink >= 0.45
    disocclusion_before = int((~result.base.mask[:, :, : W - 4]).sum())
    assert disocclusion_before > 0 and int((~result.render.mask[:, :, : W - 4]).sum()) == 0

    # filled pixels show the wall exactly where a fixed wall would be (4 px parallax)
    expected_wall = wall[:, 4:].expand(F, H, W - 4, 3)
    filled = result.filled[:, :, : W - 4]
    assert bool(filled.any())
    assert torch.equal(result.render.rgb[:, :, : W - 4][filled], expected_wall[filled])
    # pixels frame t saw itself are untouched, and the box never leaks into other frames
    assert torch.equal(result.render.rgb[result.base.mask], result.base.rgb[result.base.mask])
    box_colour = torch.tensor([1.0, 0.2, 0.1])
    assert not bool((result.render.rgb[result.filled] == box_colour).all(dim=-1).any())
    # point_index points back at rows of the input points
    rows = result.render.point_index[result.filled]
    assert bool((points.frame_index[rows] >= 0).all()) and bool(static[rows].all())


def test_reprojection_consistency_finds_the_moving_box_without_a_mask() -> None:
    frames, depth, foreground, _ = moving_box_scene()
    points = lift_frames(frames, depth, K, torch.eye(4))
    from_mask = static_point_mask(points, foreground_mask=foreground)
    from_depth = static_point_mask(points, depth=depth, K=K, world_to_camera=torch.eye(4))
    assert torch.equal(from_depth, from_mask)
    result = accumulate_static(points, from_depth, K, TARGET, W, H, window=3)
    assert int((~result.render.mask).sum()) == F * H * 4


def test_without_static_points_nothing_changes() -> None:
    frames, depth, foreground, _ = moving_box_scene()
    points = lift_frames(frames, depth, K, torch.eye(4))
    none_static = torch.zeros(points.num_points, dtype=torch.bool)
    result = accumulate_static(points, none_static, K, TARGET, W, H)
    assert torch.equal(result.render.mask, result.base.mask)
    assert result.hole_fraction_after == pytest.approx(result.hole_fraction_before)


def test_a_panning_source_camera_also_fills_the_border() -> None:
    frames, depth, foreground, wall = moving_box_scene(pan=1)
    source = torch.eye(4).repeat(F, 1, 1)
    source[:, 0, 3] = -0.04 * torch.arange(F)  # 1 px of wall parallax per frame
    target = source.clone()
    target[:, 0, 3] -= 0.16
    points = lift_frames(frames, depth, K, source)
    static = static_point_mask(points, depth=depth, K=K, world_to_camera=source)
    assert torch.equal(static, static_point_mask(points, foreground_mask=foreground))
    result = accumulate_static(points, static, K, target, W, H, window=None)
    holes_before, holes_after = int((~result.base.mask).sum()), int((~result.render.mask).sum())
    shrink = 1.0 - holes_after / holes_before
    print(f"static accumulation, panning camera: hole pixels {holes_before} -> {holes_after} ({shrink:.1%} fewer)")
    assert shrink >= 0.75
    for t in range(F):  # filled pixels are the wall where it really is
        wall_in_view = wall[:, pan_start(t): pan_start(t) + W - 4]
        filled = result.filled[t, :, : W - 4]
        assert torch.equal(result.render.rgb[t, :, : W - 4][filled], wall_in_view[filled])


def pan_start(t: int) -> int:
    """First wall column the target camera of frame t sees (4 px wall parallax + 1 px per frame)."""
    return 4 + t


def test_time_map_takes_the_window_around_the_frame_each_camera_shows() -> None:
    """Bullet time: every target camera shows source frame 3, so its holes are filled from the static
    points of the *source* frames around 3, exactly as frame 3's own render would be."""
    frames, depth, foreground, _ = moving_box_scene()
    points = lift_frames(frames, depth, K, torch.eye(4))
    static = static_point_mask(points, foreground_mask=foreground)
    per_frame = accumulate_static(points, static, K, TARGET, W, H, window=None)
    frozen = accumulate_static(points, static, K, TARGET, W, H, window=None, time_map=[3] * 4)
    assert frozen.render.rgb.shape == (4, H, W, 3)
    assert int(frozen.filled.sum()) > 0
    for t in range(4):
        assert torch.equal(frozen.base.mask[t], per_frame.base.mask[3])
        assert torch.equal(frozen.render.mask[t], per_frame.render.mask[3])
        assert torch.equal(frozen.render.rgb[t], per_frame.render.rgb[3])
    rows = frozen.render.point_index[frozen.render.mask]  # rows of the input points
    assert torch.equal(points.rgb[rows], frozen.render.rgb[frozen.render.mask])
    seen_by_frame_3 = frozen.base.point_index[frozen.base.mask]
    assert bool((points.frame_index[seen_by_frame_3] == 3).all())
    with pytest.raises(ValidationError):
        accumulate_static(points, static, K, TARGET, W, H, time_map=[0, F])


def test_culling_far_from_holes_keeps_the_result_exact() -> None:
    """Only static points that can reach a hole are splatted; the result equals splatting them all."""
    from backend.geometry import splat_points

    frames, depth, foreground, _ = moving_box_scene(pan=1)
    source = torch.eye(4).repeat(F, 1, 1)
    source[:, 0, 3] = -0.04 * torch.arange(F)
    target = source.clone()
    target[:, 0, 3] -= 0.16
    points = lift_frames(frames, depth, K, source)
    static = static_point_mask(points, foreground_mask=foreground)
    result = accumulate_static(points, static, K, target, W, H, window=2)
    rows, views = [], []
    for t in range(F):
        for s in range(max(0, t - 2), min(F, t + 3)):
            if s != t:
                frame_rows = torch.nonzero(static & (points.frame_index == s)).squeeze(1)
                rows.append(frame_rows)
                views.append(torch.full_like(frame_rows, t))
    rows, views = torch.cat(rows), torch.cat(views)
    everything = splat_points(points.xyz[rows], points.rgb[rows], points.radius[rows], views, K, target, W, H,
                              tangents=(points.tangent_u[rows], points.tangent_v[rows]))
    filled = ~result.base.mask & everything.mask
    assert torch.equal(result.filled, filled)
    assert torch.equal(result.render.rgb[filled], everything.rgb[filled])
    assert torch.equal(result.render.point_index[filled], rows[everything.point_index[filled]])


def test_consistency_check_in_small_batches_gives_the_same_mask(monkeypatch) -> None:
    import backend.geometry.accumulate as accumulate

    frames, depth, foreground, _ = moving_box_scene()
    points = lift_frames(frames, depth, K, torch.eye(4))
    whole = static_point_mask(points, depth=depth, K=K, world_to_camera=torch.eye(4))
    monkeypatch.setattr(accumulate, "_PROJECTIONS_PER_BATCH", 1)  # one other frame per batch
    assert torch.equal(static_point_mask(points, depth=depth, K=K, world_to_camera=torch.eye(4)), whole)
    assert torch.equal(whole, static_point_mask(points, foreground_mask=foreground))
