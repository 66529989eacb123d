"""The animated background: a wheel turning on the wall is reproduced frame by frame, and written per frame."""

from __future__ import annotations

import numpy as np
import pytest

from backend.gaussians import rasterize
from backend.pipelines.generate import GenerateRequest, run_generate
from backend.pipelines.generate.synthetic import turning_wheel_scene

FRAMES = 5


def _psnr(render: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    return float(10.0 * np.log10(1.0 / max(float(((render - target) ** 2)[mask].mean()), 1e-10)))


@pytest.fixture(scope="module")
def wheel_run(tmp_path_factory):
    scene = turning_wheel_scene(num_frames=FRAMES, width=64, height=48, wheel_radius=0.9, turn_deg=20.0)
    out = tmp_path_factory.mktemp("animate_out")
    request = GenerateRequest.from_params(
        {"fps": 8.0, "cameras": [scene.camera.to_dict()], "outputs": ["usd", "ply"],
         "outpaint": {"rings": [[[0, 25]]], "fit_iterations": 0}, "gaussians": {"iterations": 0}},
        {"frames": scene.frames, "depth": scene.depth, "foreground": scene.foreground})
    return scene, out, run_generate(request, out)


def test_the_background_moves_where_the_reference_moves(wheel_run) -> None:
    """Goal: background render at t vs reference frame t on the moving region, >= static + 3 dB."""
    scene, out, result = wheel_run
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(out / "scene.usdc"))
    points = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/background")).GetPointsAttr()
    assert points.GetTimeSamples() == [float(t + 1) for t in range(FRAMES)]
    from backend.export import read_gaussian_ply

    static, animated = [], []
    for t in range(FRAMES):
        frame_t = read_gaussian_ply(out / "ply" / f"background_{t:05d}.ply")
        target = scene.frames[t].astype(np.float32) / 255.0
        animated.append(_psnr(rasterize(frame_t, scene.camera).rgb.clamp(0, 1).numpy(), target, scene.wheel[t]))
        static.append(_psnr(rasterize(result.background.gaussians, scene.camera).rgb.clamp(0, 1).numpy(), target,
                            scene.wheel[t]))
    print(f"wheel PSNR animated {np.mean(animated):.2f} dB, static {np.mean(static):.2f} dB")
    assert np.mean(animated) >= np.mean(static) + 3.0, (animated, static)
    report = result.report["animation"]
    assert 0 < report["animated_gaussians"] < len(result.background.gaussians) // 2  # sparse: the wall stays


def test_a_disabled_animation_keeps_one_static_sample(tmp_path) -> None:
    scene = turning_wheel_scene(num_frames=3, width=24, height=16)
    request = GenerateRequest.from_params(
        {"cameras": [scene.camera.to_dict()], "outputs": ["usd"], "animation": {"enabled": False},
         "outpaint": {"rings": [[[0, 20]]], "fit_iterations": 0}, "gaussians": {"iterations": 0}},
        {"frames": scene.frames, "depth": scene.depth})
    result = run_generate(request, tmp_path)
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(tmp_path / "scene.usdc"))
    assert UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/background")).GetPointsAttr().GetTimeSamples() == [1.0]
    assert result.report["animation"]["animated_gaussians"] == 0
