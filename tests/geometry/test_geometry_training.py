"""Double reprojection, composite training masks and top-K context frames on analytic scenes."""

from __future__ import annotations

import pytest
import torch

from backend.geometry import (
    TrajectoryOverlap,
    double_reprojection,
    lift_frames,
    random_editing_masks,
    sample_training_mask,
    select_context_frames,
    trajectory_overlap,
)
from protocol.errors import ValidationError

H, W, FOCAL = 16, 32, 100.0
K = torch.tensor([[FOCAL, 0.0, W / 2], [0.0, FOCAL, H / 2], [0.0, 0.0, 1.0]])


def camera_at(x: float) -> torch.Tensor:
    pose = torch.eye(4)
    pose[0, 3] = -x
    return pose


def step_scene(frames: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    rgb = torch.rand(frames, H, W, 3, generator=torch.Generator().manual_seed(3))
    depth = torch.full((frames, H, W), 4.0)
    depth[:, :, : W // 2] = 2.0
    return rgb, depth


def test_double_reprojection_with_the_source_path_is_lossless_on_lifted_pixels() -> None:
    rgb, depth = step_scene(2)
    result = double_reprojection(rgb, depth, K, torch.eye(4), K, torch.eye(4))
    lifted = torch.zeros(2, H, W, dtype=torch.bool)
    points = lift_frames(rgb, depth, K, torch.eye(4))
    lifted.view(2, -1)[points.frame_index, points.pixel_index] = True
    assert torch.equal(result.mask, lifted)
    assert torch.equal(result.degraded[result.mask], rgb[result.mask])


def test_double_reprojection_over_a_step_loses_exactly_the_hidden_band() -> None:
    rgb, depth = step_scene()
    result = double_reprojection(rgb, depth, K, torch.eye(4), K, camera_at(0.08))
    # along T: near half -> columns 0..11, far half (minus rim 16) -> 15..29. Back along T^-1 the
    # near half returns to 4..15 and the far half to 17..31; columns 0..3 left the target view and
    # column 16 was the dropped far rim.
    hole_columns = torch.nonzero(~result.mask[0].all(dim=0)).squeeze(1).tolist()
    assert hole_columns == [0, 1, 2, 3, 16]
    assert torch.equal(result.mask[0], result.mask[0].all(dim=0).expand(H, W))
    assert torch.equal(result.degraded[result.mask], rgb[result.mask]), "V'' is aligned with V"
    assert bool((result.degraded[~result.mask] == 0).all())
    assert not bool(result.target.mask[0, :, 12:15].any()), "the target render has the disocclusion"


def test_double_reprojection_mask_is_a_subset_of_the_source_validity() -> None:
    rgb, depth = step_scene(3)
    depth[1, 2:5, 3:9] = 0.0
    targets = torch.stack([camera_at(0.04 * i) for i in range(3)])  # whole-pixel disparities
    result = double_reprojection(rgb, depth, K, torch.eye(4), K, targets)
    assert not bool((result.mask & (depth <= 0)).any())
    assert torch.equal(result.degraded[result.mask], rgb[result.mask])
    assert result.mask.shape == (3, H, W) and result.degraded.shape == (3, H, W, 3)


def test_editing_masks_start_empty_and_are_reproducible() -> None:
    first = random_editing_masks(9, 24, 40, torch.Generator().manual_seed(7))
    again = random_editing_masks(9, 24, 40, torch.Generator().manual_seed(7))
    other = random_editing_masks(9, 24, 40, torch.Generator().manual_seed(8))
    assert first.shape == (9, 24, 40) and first.dtype == torch.bool
    assert not bool(first[0].any()), "frame 0 is the first-frame guidance"
    assert bool(first[1:].flatten(1).any(dim=1).any()), "later frames carry regions"
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_regions_move_over_time() -> None:
    masks = random_editing_masks(12, 32, 32, torch.Generator().manual_seed(1), max_speed=0.05)
    assert not all(torch.equal(masks[1], masks[i]) for i in range(2, 12))


def test_composite_masks_cover_every_kind_and_union_contains_both() -> None:
    visibility = torch.ones(5, 16, 24, dtype=torch.bool)
    visibility[:, :, :6] = False
    kinds = {}
    for seed in range(40):
        sample = sample_training_mask(visibility, torch.Generator().manual_seed(seed))
        kinds.setdefault(sample.kind, sample)
        assert torch.equal(sample.visibility, ~sample.hole)
    assert set(kinds) == {"point_cloud", "editing", "union"}
    assert torch.equal(kinds["point_cloud"].hole, ~visibility)
    assert not bool(kinds["editing"].hole[0].any())
    assert bool((kinds["union"].hole >= ~visibility).all())
    seeded = [sample_training_mask(visibility, torch.Generator().manual_seed(11)) for _ in range(2)]
    assert seeded[0].kind == seeded[1].kind and torch.equal(seeded[0].hole, seeded[1].hole)
    only_edit = sample_training_mask(visibility, torch.Generator().manual_seed(0), probabilities=(0, 1, 0))
    assert only_edit.kind == "editing"
    with pytest.raises(ValidationError):
        sample_training_mask(visibility.float(), torch.Generator())
    with pytest.raises(ValidationError):
        sample_training_mask(visibility, torch.Generator(), probabilities=(0, 0, 0))


def test_top_k_picks_the_frames_whose_repair_b_sees_most() -> None:
    frames = 6
    depth = torch.full((frames, H, W), 3.0)
    repaired = torch.zeros(frames, H, W, dtype=torch.bool)
    left = [0, 3, 5, 1, 5, 2]  # repaired columns at the left edge of a's frames (b sees them)
    right = [0, 0, 0, 8, 0, 8]  # ... and at the right edge (outside b's view)
    for i in range(frames):
        repaired[i, :, : left[i]] = True
        repaired[i, :, W - right[i]:] = True
    # b sits 0.24 m to the left: at 3 m that is 8 px, so a's columns 0..23 stay in b's view
    cams_b = camera_at(-0.24).expand(frames, 4, 4)
    overlap = trajectory_overlap(depth, repaired, K, torch.eye(4), K, cams_b, W, H)
    assert overlap.repaired_pixels.tolist() == [H * (a + b) for a, b in zip(left, right)]
    assert overlap.visible_in_b.tolist() == [H * a for a in left]
    assert select_context_frames(overlap, 2).tolist() == [2, 4], "not 3 and 5, the largest repairs"
    assert select_context_frames(overlap, 3).tolist() == [1, 2, 4]
    assert select_context_frames(overlap, 10).tolist() == [1, 2, 3, 4, 5], "unseen frames are skipped"
    assert overlap.visible_fraction[3].item() == pytest.approx(1 / 9)


def test_repaired_content_hidden_behind_nearer_geometry_does_not_count() -> None:
    depth = torch.full((2, H, W), 4.0)
    repaired = torch.zeros(2, H, W, dtype=torch.bool)
    repaired[:, :, 20:24] = True
    depth[1, :, 14:20] = 2.0  # frame 1: a near pillar left of the repaired strip
    # from 0.2 m to the left, the pillar (moving 10 px right) slides over the strip (moving 5 px)
    overlap = trajectory_overlap(depth, repaired, K, torch.eye(4), K, camera_at(-0.2), W, H)
    assert overlap.visible_in_b.tolist() == [H * 4, 0]
    assert select_context_frames(overlap, 1).tolist() == [0]


def test_select_context_frames_breaks_ties_by_time_and_validates() -> None:
    scores = torch.tensor([5, 9, 9, 1, 9])
    assert select_context_frames(scores, 2).tolist() == [1, 2]
    assert select_context_frames(TrajectoryOverlap(scores, scores), 0).tolist() == []
    with pytest.raises(ValidationError):
        select_context_frames(torch.zeros(2, 2), 1)


def test_reproject_video_in_chunks_matches_one_render_and_reports_progress() -> None:
    from backend.geometry import render_points, reproject_video
    from protocol.errors import Cancelled

    rgb, depth = step_scene(5)
    targets = torch.stack([camera_at(0.04 * i) for i in range(5)])
    calls = []
    chunked = reproject_video(rgb, depth, K, torch.eye(4), K, targets, W, H, chunk_frames=2,
                              progress=lambda step, total, message: calls.append((step, total)))
    whole = render_points(lift_frames(rgb, depth, K, torch.eye(4)), K, targets, W, H)
    assert torch.equal(chunked.mask, whole.mask) and torch.equal(chunked.rgb, whole.rgb)
    assert calls == [(2, 5), (4, 5), (5, 5)]
    seen = chunked.mask
    source = chunked.point_index[seen]
    assert torch.equal(rgb.reshape(-1, 3)[source], chunked.rgb[seen]), "point_index names the source pixel"
    with pytest.raises(Cancelled):
        reproject_video(rgb, depth, K, torch.eye(4), K, targets, W, H, cancel=lambda: True)
