"""Reshoot review fixes: packing context across time maps, lazy fit views, frames without depth."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from backend.pipelines.reshoot.pipeline import TrajectoryResult, _packing_context
from protocol.camera import Camera, stack_cameras

W = H = 16


def _earlier_trajectory(num_frames: int, repaired_frame: int) -> TrajectoryResult:
    """A finished path of fixed cameras at the origin; only ``repaired_frame`` had a hole (a 4x4 patch)."""
    camera = Camera.from_fov(60.0, W, H)
    holes = np.zeros((num_frames, H, W), bool)
    holes[repaired_frame, 6:10, 6:10] = True
    filled = np.stack([np.full((H, W, 3), 10 * f, np.uint8) for f in range(num_frames)])
    return TrajectoryResult(
        name="a", cameras=[camera] * num_frames, source_frames=list(range(num_frames)), render=filled,
        filled=filled, holes=holes, depth=torch.full((num_frames, H, W), 2.0),
        hole_ratio_render=float(holes.mean()), hole_ratio=float(holes.mean()),
    )


def test_context_pairs_frames_by_the_source_frame_they_show() -> None:
    request = SimpleNamespace(engine=SimpleNamespace(temporal_packing=True, packing_top_k=4))
    a = _earlier_trajectory(4, repaired_frame=3)
    # b is a shorter, retimed path: its two cameras show source frames 2 and 3
    K_b, w2c_b = stack_cameras([Camera.from_fov(60.0, W, H)] * 2)
    holes_b = np.ones((2, H, W), bool)
    context = _packing_context(request, [a], np.array([2, 3]), holes_b, K_b, w2c_b, W, H)
    assert context is not None, "a's repaired frame 3 is seen by b's frame showing source frame 3"
    assert np.array_equal(context.frames, a.filled[3:4])
    assert np.array_equal(context.repaired, a.holes[3:4])
    # a path that never reaches frame 3 is scored against its nearest moment, and b sees it there too
    context_far = _packing_context(request, [a], np.array([0, 1]), holes_b, K_b, w2c_b, W, H)
    assert context_far is not None and np.array_equal(context_far.frames, a.filled[3:4])
    # nothing to fill in b: no context
    assert _packing_context(request, [a], np.array([2, 3]), ~holes_b, K_b, w2c_b, W, H) is None


def test_fit_views_are_built_frame_by_frame(tmp_path, monkeypatch) -> None:
    """The Gaussian fit builds a frame's views (float32 copies of whole frames) when it reaches that
    frame, not all frames' views before the first one is fitted."""
    import backend.pipelines.reshoot.pipeline as pipeline
    from backend.pipelines.reshoot import ReshootRequest, run_reshoot
    from backend.pipelines.reshoot.synthetic import sliding_square_scene

    built: list[int] = []
    real_views = pipeline._views
    monkeypatch.setattr(pipeline, "_views", lambda request, done, index: built.append(index)
                        or real_views(request, done, index))
    scene = sliding_square_scene(num_frames=3, width=24, height=16)
    request = ReshootRequest.from_params(
        {"fps": 8, "cameras": [scene.camera.to_dict()], "gaussians": {"iterations": 1}, "outputs": ["usd"],
         "trajectories": [{"name": "orbit", "preset": "orbit:left:10"}]},
        {"frames": scene.frames, "depth": scene.depth})
    built_when_reported = []
    run_reshoot(request, tmp_path, device="cpu", on_frame=lambda i, xyz, rgb: built_when_reported.append(list(built)))
    assert built_when_reported == [[0], [0, 1], [0, 1, 2]]


def test_a_source_frame_without_depth_does_not_stop_the_gaussians(tmp_path) -> None:
    from backend.pipelines.reshoot import ReshootRequest, run_reshoot
    from backend.pipelines.reshoot.synthetic import sliding_square_scene

    scene = sliding_square_scene(num_frames=3, width=24, height=16)
    depth = scene.depth.copy()
    depth[1] = np.nan  # e.g. a missing frame in an EXR sequence
    request = ReshootRequest.from_params(
        {"fps": 8, "cameras": [scene.camera.to_dict()], "gaussians": {"iterations": 1}, "outputs": ["usd", "ply"],
         "engine": {"static_accumulation": False},
         "trajectories": [{"name": "orbit", "preset": "orbit:left:10"}]},
        {"frames": scene.frames, "depth": depth})
    result = run_reshoot(request, tmp_path, device="cpu")
    counts = [g["gaussians"] for g in result.report["gaussians"]["frames"]]
    assert counts[0] > 0 and counts[2] > 0
    assert sorted(p.name for p in (tmp_path / "ply").iterdir()) == [f"gaussians_{i:05d}.ply" for i in range(3)]


def test_bullet_time_pivot_comes_from_the_frozen_frame() -> None:
    """Bullet time orbits the camera of the frozen frame, so its default pivot is that frame's depth."""
    from backend.pipelines.reshoot import ReshootRequest
    from backend.pipelines.reshoot.pipeline import default_pivot_depth, resolve_trajectories
    from backend.pipelines.reshoot.synthetic import sliding_square_scene

    scene = sliding_square_scene(num_frames=3, width=24, height=16)
    depth = scene.depth.copy()
    depth[2] *= 3.0  # the scene is three times farther away by frame 2
    request = ReshootRequest.from_params(
        {"fps": 8, "cameras": [scene.camera.to_dict()],
         "trajectories": [{"name": "bullet", "preset": "bullet:2:orbit:right:10"},
                          {"name": "orbit", "preset": "orbit:right:10"}]},
        {"frames": scene.frames, "depth": depth})
    depth_z = torch.from_numpy(depth)
    bullet, orbit = resolve_trajectories(request, depth_z)
    assert bullet.pivot_depth == default_pivot_depth(depth_z[2])
    assert orbit.pivot_depth == default_pivot_depth(depth_z[0])


def test_disabled_gaussians_are_not_built(tmp_path, monkeypatch) -> None:
    import backend.pipelines.reshoot.pipeline as pipeline
    from backend.pipelines.reshoot import ReshootRequest, run_reshoot
    from backend.pipelines.reshoot.synthetic import sliding_square_scene

    def refuse(*args, **kwargs):
        raise AssertionError("Gaussians built although disabled")

    monkeypatch.setattr(pipeline, "initial_gaussians", refuse)
    scene = sliding_square_scene(num_frames=3, width=24, height=16)
    request = ReshootRequest.from_params(
        {"fps": 8, "cameras": [scene.camera.to_dict()], "gaussians": {"enabled": False}, "outputs": ["usd", "ply"],
         "trajectories": [{"name": "orbit", "preset": "orbit:left:10"}]},
        {"frames": scene.frames, "depth": scene.depth})
    reported = []
    result = run_reshoot(request, tmp_path, device="cpu", on_frame=lambda i, xyz, rgb: reported.append(i))
    assert reported == [0, 1, 2]
    assert [f["gaussians"] for f in result.report["gaussians"]["frames"]] == [0, 0, 0]
    assert (tmp_path / "scene.usdc").exists() and not (tmp_path / "ply").exists()
