"""The reshoot pipeline end to end with the wan-vace engine: a tiny random VACE model saved as the
published folder and loaded through the same local-folder code users run (issue 6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend.pipelines.reshoot import ReshootRequest, run_reshoot
from backend.pipelines.reshoot.synthetic import sliding_square_scene


@pytest.fixture(scope="module")
def vace_models_dir(tmp_path_factory) -> Path:
    from tiny_models import build_tiny_vace_pipeline

    root = tmp_path_factory.mktemp("models")
    build_tiny_vace_pipeline().save_pretrained(root / "Wan2.1-VACE-1.3B-diffusers")
    return root


def test_reshoot_with_the_tiny_wan_vace_engine(vace_models_dir, tmp_path):
    scene = sliding_square_scene(num_frames=5, width=40, height=24)
    params = {
        "fps": 8, "cameras": [scene.camera.to_dict()], "prompt": "a red cube in front of a wall",
        "trajectories": [{"name": "orbit", "preset": "orbit:left:12"}, {"name": "dolly", "preset": "dolly:in:0.3"}],
        "engine": {"inpaint": "wan-vace", "models_dir": str(vace_models_dir), "steps": 2, "guidance": 2.0,
                   "options": {"max_pixels": 32 * 32, "window_frames": 5, "overlap_frames": 1,
                               "vae_tiling": False}},
        "gaussians": {"enabled": False}, "outputs": ["usd", "video", "masks"],
    }
    request = ReshootRequest.from_params(params, {"frames": scene.frames, "depth": scene.depth})
    fill_steps: list[tuple[int, int]] = []

    def progress(stage: str, step: int, total: int, message: str) -> None:
        if stage == "fill" and message.startswith("wan-vace"):
            fill_steps.append((step, total))

    result = run_reshoot(request, tmp_path, progress=progress)

    orbit, dolly = result.trajectories
    assert orbit.filled.shape == (5, 24, 40, 3) and orbit.hole_ratio > 0
    for traj in (orbit, dolly):  # seen pixels away from the holes come back exactly; holes are generated
        far_from_holes = ~_dilate(traj.holes, 6)
        np.testing.assert_array_equal(traj.filled[far_from_holes], traj.render[far_from_holes])
    assert np.abs(orbit.filled[orbit.holes].astype(int) - orbit.render[orbit.holes]).mean() > 0
    assert fill_steps and fill_steps[-1][1] >= 2  # denoising steps reported per trajectory
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["engine"]["inpaint"] == "wan-vace" and report["points"]["generated"] > 0
    assert (tmp_path / "scene.usdc").exists() and (tmp_path / "dolly" / "video.mp4").exists()


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in mask])
