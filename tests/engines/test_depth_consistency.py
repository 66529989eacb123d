"""Video depth that holds together: the global disparity shift recovered from camera motion (goal: <= 1 %
alignment error on a synthetic clip with a 20 % shift), flat scenes (MAD 0), and the depth stage's
guards (static camera, guessed cameras)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.engines.depth_align import consistent_depth_from_disparity
from backend.engines.depth_motion import align_to_camera_motion
from backend.pipelines.reshoot.synthetic import (
    floor_wall_sphere_depth,
    moving_camera_cameras,
    scale_invariant_error,
)
from backend.pipelines.reshoot.synthetic import shifted_disparity as scene_shifted_disparity
from protocol.camera import Camera, stack_cameras

SCALES = np.array([1.0, 1.2, 0.9, 1.1, 1.3, 0.8, 1.0, 1.05, 0.95])  # the network's per-frame scale drift


def shifted_disparity(depth: np.ndarray) -> np.ndarray:
    """The network's view of ``depth``: a 20 % global disparity shift and the per-frame scale drift."""
    return scene_shifted_disparity(depth, SCALES[: len(depth)], 0.2)


def test_global_disparity_shift_is_recovered_from_camera_motion() -> None:
    cams = moving_camera_cameras()
    truth = floor_wall_sphere_depth(cams)
    relative = consistent_depth_from_disparity(shifted_disparity(truth), median_depth=1.0, smooth_sigma=1.0)
    before = scale_invariant_error(relative, truth)
    K, w2c = stack_cameras(cams)
    aligned, info = align_to_camera_motion(relative, K, w2c)
    after = scale_invariant_error(aligned, truth)
    assert before > 0.04  # the shift bends the geometry; per-frame scale fits cannot see it
    assert info["accepted"] and after <= 0.01, (before, after, info)
    assert 0.12 < info["shift"] < 0.22  # 0.2 of the true median inverse depth = 1/6 of the shifted one
    # the cameras are metric, so the scale comes back too (the relative depth had median 1)
    assert float(np.median(np.abs(aligned - truth) / truth)) < 0.02


def test_a_static_camera_cannot_measure_the_shift_and_says_so() -> None:
    cams = [moving_camera_cameras()[0]] * 4
    truth = floor_wall_sphere_depth(cams)
    relative = consistent_depth_from_disparity(shifted_disparity(truth), median_depth=1.0)
    K, w2c = stack_cameras(cams)
    out, info = align_to_camera_motion(relative, K, w2c)
    assert not info["accepted"] and "does not move" in info["reason"]
    np.testing.assert_array_equal(out, relative)


@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_flat_scenes_keep_one_scale(sigma: float) -> None:
    """A wall filling most of the view makes the MAD 0: the fits and the smoothing must still hold."""
    frames, height, width = 6, 24, 32
    depth = np.full((frames, height, width), 4.0)
    for i in range(frames):
        depth[i, 4:14, 2 + 3 * i: 12 + 3 * i] = 2.0  # a box sliding over the wall
    disparity = (1.0 / depth) / SCALES[:frames, None, None]
    out = consistent_depth_from_disparity(disparity, median_depth=4.0, smooth_sigma=sigma)
    np.testing.assert_allclose(out / depth, 1.0, rtol=1e-6)
    flat = np.full((frames, height, width), 1.0 / 3.0) / SCALES[:frames, None, None]  # one depth everywhere
    out = consistent_depth_from_disparity(flat, median_depth=3.0, smooth_sigma=sigma)
    np.testing.assert_allclose(out, 3.0, rtol=1e-6)


def test_depth_stage_aligns_estimated_depth_to_given_cameras(tiny_models_dir: Path, monkeypatch) -> None:
    """The reshoot/tune depth stage with the real Depth Anything engine class (network output replaced
    by the shifted disparity): given moving cameras put the estimate into metres, shift removed."""
    from backend.engines.depth import DepthAnythingEngine
    from backend.pipelines.source_depth import estimate_source_depth

    cams = moving_camera_cameras()
    truth = floor_wall_sphere_depth(cams)
    disparity = shifted_disparity(truth)
    monkeypatch.setattr(DepthAnythingEngine, "predict_disparity", lambda self, frames, **kw: disparity)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, truth.shape + (3,), dtype=np.uint8)
    result = estimate_source_depth(frames, cams, "depth-anything", models_dir=str(tiny_models_dir))
    assert result.motion_alignment["accepted"] and not result.notes
    assert scale_invariant_error(result.depth, truth) <= 0.01
    guessed = estimate_source_depth(frames, [Camera.from_fov(60.0, 64, 48)] * len(cams), "depth-anything",
                                    models_dir=str(tiny_models_dir), cameras_guessed=True)
    assert guessed.motion_alignment is None and "relative" in guessed.notes[0]


def test_black_frames_are_refused_before_the_job_runs() -> None:
    from backend.pipelines.reshoot.request import ReshootRequest
    from protocol.errors import ValidationError

    frames = np.random.default_rng(1).integers(0, 256, (4, 16, 24, 3), dtype=np.uint8)
    frames[2] = 0
    params = {"engine": {"depth": "depth-anything"}, "trajectories": [{"name": "a", "preset": "orbit:left:10"}]}
    with pytest.raises(ValidationError, match=r"frames: 1 of 4 frames are blank.*frame\(s\) 2"):
        ReshootRequest.from_params(params, {"frames": frames})
    depth = np.full((4, 16, 24), 2.0, np.float32)  # with depth maps the black frame is just dark content
    assert ReshootRequest.from_params({**params, "engine": {}}, {"frames": frames, "depth": depth}).num_frames == 4


def test_reshoot_with_estimated_depth_and_moving_given_cameras(tiny_models_dir: Path, tmp_path: Path) -> None:
    """The whole job with the real tiny Depth Anything network (random weights: whatever it predicts,
    the camera-motion fit must either be accepted or say why not, and the job must finish)."""
    from backend.pipelines.reshoot.pipeline import run_reshoot
    from backend.pipelines.reshoot.request import ReshootRequest

    cams = moving_camera_cameras(5, 32, 24)
    frames = np.random.default_rng(2).integers(0, 256, (5, 24, 32, 3), dtype=np.uint8)
    params = {"cameras": [c.to_dict() for c in cams], "outputs": ["video"], "gaussians": {"enabled": False},
              "engine": {"depth": "depth-anything", "models_dir": str(tiny_models_dir)},
              "trajectories": [{"name": "orbit", "preset": "orbit:left:10"}]}
    result = run_reshoot(ReshootRequest.from_params(params, {"frames": frames}), tmp_path, device="cpu")
    assert result.points.num_points > 0 and result.report["stages"][0]["stage"] == "depth"
    assert not any("relative" in w for w in result.report["warnings"])  # the cameras move: no static-camera note
