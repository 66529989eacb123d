"""Metric depth engines from local folders (tiny random models built from configs): Depth Pro estimates the
focal length, so a clip without a camera gets intrinsics; Depth Anything V2 Metric keeps metres; every
depth engine is listed by ``doctor``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tiny_models import TINY_DEPTH_PRO_FOV, build_tiny_depth_pro_model, build_tiny_metric_depth_model

from backend.engines.registry import get_depth_engine, list_engines
from protocol.camera import Camera
from protocol.errors import MissingWeightsError


@pytest.fixture(scope="module")
def metric_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("metric_models")
    build_tiny_depth_pro_model().save_pretrained(root / "DepthPro-hf")
    build_tiny_metric_depth_model(20).save_pretrained(root / "Depth-Anything-V2-Metric-Indoor-Small-hf")
    return root


def _frames(count: int = 3, height: int = 24, width: int = 40) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def test_depth_pro_gives_metric_depth_and_the_focal_length(metric_models_dir: Path) -> None:
    engine = get_depth_engine("depth-pro", metric_models_dir, device="cpu")
    frames = _frames()
    estimate = engine.predict_metric(frames)
    assert estimate.depth.shape == (3, 24, 40) and estimate.depth.dtype == np.float32
    assert (estimate.depth > 0).all() and np.isfinite(estimate.depth).all()
    expected_focal = 0.5 * 40 / math.tan(math.radians(TINY_DEPTH_PRO_FOV) / 2)
    np.testing.assert_allclose(estimate.focal_px, expected_focal, rtol=1e-4)
    # metric inverse depth = canonical * W / f: a known focal twice as long halves the inverse depth
    canonical, _ = engine.predict_canonical(frames)
    longer = engine.predict_metric(frames, focal_px=2 * expected_focal)
    np.testing.assert_allclose(np.median(longer.depth[0]), 2 * np.median(estimate.depth[0]), rtol=1e-3)
    np.testing.assert_allclose(np.median(estimate.depth[0]), np.median(expected_focal / (40 * canonical[0])),
                               rtol=2e-2)


def test_clip_without_a_camera_gets_estimated_intrinsics(metric_models_dir: Path) -> None:
    from backend.pipelines.reshoot.pipeline import source_depth
    from backend.pipelines.reshoot.request import ReshootRequest

    frames = _frames(4)
    params = {"engine": {"depth": "depth-pro", "models_dir": str(metric_models_dir)},
              "trajectories": [{"name": "a", "preset": "orbit:left:10"}]}
    request = ReshootRequest.from_params(params, {"frames": frames})
    assert request.cameras_guessed and any("field of view" in w for w in request.warnings)
    import torch

    depth = source_depth(request, torch.device("cpu"), None, None)
    assert depth.shape == (4, 24, 40) and bool((depth > 0).all())
    focal = 0.5 * 40 / math.tan(math.radians(TINY_DEPTH_PRO_FOV) / 2)
    assert all(cam.fx == pytest.approx(focal, rel=1e-4) and cam.fy == cam.fx for cam in request.cameras)
    assert not any(w.startswith("no source camera given") for w in request.warnings)  # the guess was replaced
    assert any("intrinsics estimated by depth engine 'depth-pro'" in w for w in request.warnings)
    # a given camera keeps its intrinsics: its focal sets the metric scale instead of the estimate
    given = Camera.from_fov(70.0, 40, 24)
    request = ReshootRequest.from_params({**params, "cameras": [given.to_dict()]}, {"frames": frames})
    source_depth(request, torch.device("cpu"), None, None)
    assert request.cameras[0].fx == pytest.approx(given.fx)


def test_depth_anything_metric_keeps_metres_and_the_fov_guess(metric_models_dir: Path) -> None:
    from backend.pipelines.source_depth import estimate_source_depth

    engine = get_depth_engine("depth-anything-metric-indoor", metric_models_dir, input_size=28, device="cpu")
    frames = _frames()
    raw = 1.0 / engine.predict_disparity(frames)
    assert (raw > 0).all() and (raw <= 20.0 + 1e-3).all()  # the network's own metres (0..max_depth)
    depth = engine.predict(frames)
    assert np.median(depth[0]) == pytest.approx(np.median(raw[0]), rel=1e-4)  # frame 0 keeps its metric scale
    cams = [Camera.from_fov(60.0, 40, 24)] * 3
    result = estimate_source_depth(frames, cams, "depth-anything-metric-indoor", models_dir=str(metric_models_dir),
                                   cameras_guessed=True, engine_options={"input_size": 28, "device": "cpu"})
    assert not result.intrinsics_estimated and result.cameras == cams  # no focal estimate: the guess stays


def test_every_depth_engine_is_in_doctor_and_missing_weights_say_where(tmp_path: Path) -> None:
    from backend.doctor import check_engines

    names = {spec.name for spec in list_engines("depth")}
    assert {"given", "depth-anything", "depth-anything-large", "depth-pro", "depth-anything-metric-indoor",
            "depth-anything-metric-outdoor"} <= names
    rows = {row.name: row for row in check_engines(str(tmp_path))}
    for name in names:
        assert f"engine depth:{name}" in rows
    assert not rows["engine depth:depth-pro"].ok and "DepthPro-hf" in rows["engine depth:depth-pro"].detail
    with pytest.raises(MissingWeightsError, match="apple/DepthPro-hf"):
        get_depth_engine("depth-pro", tmp_path)
