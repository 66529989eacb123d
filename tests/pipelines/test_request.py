"""The reshoot request is validated before any heavy work, with messages that name the field."""

from __future__ import annotations

import numpy as np
import pytest

from backend.pipelines.reshoot.request import CPU_FIT_ITERATIONS, CUDA_FIT_ITERATIONS, ReshootRequest
from protocol.camera import Camera
from protocol.errors import CameraError, ValidationError

F, H, W = 3, 12, 16


def _cam(tx: float = 0.0) -> dict:
    w2c = np.eye(4)
    w2c[0, 3] = tx
    return Camera.from_fov(60, W, H, w2c).to_dict()


def _params(**over) -> dict:
    params = {"fps": 12, "cameras": [_cam()], "trajectories": [{"name": "right", "cameras": [_cam(0.1)] * F}]}
    params.update(over)
    return params


def _inputs(**over) -> dict:
    inputs = {"frames": np.zeros((F, H, W, 3), np.uint8), "depth": np.full((F, H, W), 2.0, np.float32)}
    inputs.update(over)
    return inputs


def test_valid_request_broadcasts_a_static_camera_and_fills_defaults():
    req = ReshootRequest.from_params(_params(), _inputs())
    assert len(req.cameras) == F and req.num_frames == F and req.size == (W, H)
    assert req.engine.inpaint == "classical" and req.engine.lora_weight == 0.7
    assert req.trajectories[0].source_frame(2) == 2
    # fitted by default on every device (issue 13): a few steps on a CPU, 100 with gsplat
    assert req.gaussians.resolved_iterations("cpu") == CPU_FIT_ITERATIONS > 0
    assert req.gaussians.resolved_iterations("cuda") == CUDA_FIT_ITERATIONS == 100
    assert req.warnings == []


def test_missing_intrinsics_fall_back_to_a_fov_guess_with_a_warning():
    params = _params()
    del params["cameras"]
    req = ReshootRequest.from_params(params, _inputs())
    assert req.cameras[0].fx == pytest.approx(W / 2 / np.tan(np.radians(30)))
    assert "field of view" in req.warnings[0]


def test_preset_trajectories_and_time_maps_are_kept():
    params = _params(trajectories=[
        {"name": "orbit", "preset": "orbit:left:30"},
        {"name": "bullet", "cameras": [_cam(0.1)] * 5, "time_map": [1, 1, 1, 1, 1]},
    ])
    req = ReshootRequest.from_params(params, _inputs())
    assert req.trajectories[0].preset == "orbit:left:30" and req.trajectories[0].cameras == []
    assert req.trajectories[1].source_frame(4) == 1


@pytest.mark.parametrize(
    "params, inputs, error, message",
    [
        (_params(), _inputs(frames=np.zeros((0, H, W, 3), np.uint8)), ValidationError, "empty"),
        (_params(), _inputs(frames=None), ValidationError, "missing"),
        (_params(), _inputs(frames=np.zeros((F, H, W), np.uint8)), ValidationError, "shape"),
        (_params(), _inputs(frames=np.zeros((F, H, W, 3), np.float32)), ValidationError, "uint8"),
        (_params(cameras=[_cam()] * 2), _inputs(), ValidationError, "2 source cameras for 3 frames"),
        (_params(trajectories=[{"cameras": [_cam()] * 2}]), _inputs(), ValidationError, "2 cameras for 3 frames"),
        (_params(trajectories=[]), _inputs(), ValidationError, "non-empty"),
        (_params(fps=float("nan")), _inputs(), ValidationError, "fps"),
        (_params(), _inputs(depth=np.zeros((F, H, W + 1), np.float32)), ValidationError, "depth must have shape"),
        (_params(), _inputs(depth=np.full((F, H, W), np.nan, np.float32)), ValidationError, "no positive"),
        (_params(), _inputs(depth=None), ValidationError, "depth-anything"),
        (_params(engine={"stepz": 3}), _inputs(), ValidationError, "unknown engine options"),
        (_params(engine={"steps": "many"}), _inputs(), ValidationError, "engine.steps"),
        (_params(outputs=["usd", "gif"]), _inputs(), ValidationError, "unknown outputs"),
        (_params(gaussians={"iterations": -1}), _inputs(), ValidationError, "whole number"),
        (_params(start_frame=1.5), _inputs(), ValidationError, "start_frame"),
        (_params(prompt="x" * 5000), _inputs(), ValidationError, "prompt"),
        (_params(trajectories=[{"name": "a/b", "cameras": [_cam()] * F}]), _inputs(), ValidationError, "name"),
        (_params(trajectories=[{"cameras": [_cam()] * 2, "time_map": [0, 9]}]), _inputs(), ValidationError, "outside"),
    ],
)
def test_bad_requests_are_rejected_with_clear_messages(params, inputs, error, message):
    with pytest.raises(error, match=message):
        ReshootRequest.from_params(params, inputs)


def test_nan_camera_is_a_camera_error_naming_its_index():
    bad = _cam()
    bad["K"][0][0] = float("nan")
    with pytest.raises(CameraError, match=r"cameras\[1\].*NaN"):
        ReshootRequest.from_params(_params(cameras=[_cam(), bad, _cam()]), _inputs())
    with pytest.raises(CameraError, match="focal"):
        bad["K"][0][0] = -5.0
        ReshootRequest.from_params(_params(trajectories=[{"cameras": [bad] * F}]), _inputs())
