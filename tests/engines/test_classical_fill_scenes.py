"""The classical fill beats a flat mean-colour fill on the hole pixels of real Blender scenes (needs bpy).

``bench/fill.py`` renders the demo set (moving cube, bouncing ball, rising box, pillar, brick wall,
checker ground) with Cycles from its source camera with exact depth, lifts it, renders it along three
camera moves with static accumulation (the reshoot pipeline's render stage), and renders the true
views of the same target cameras. Both fills are scored on the hole pixels against the true views.
The scenes are small (96 x 54, 9 frames) and rendered once per session.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.blender

FILL_BENCH = Path(__file__).resolve().parents[2] / "bench" / "fill.py"


@pytest.fixture(scope="session")
def fill_bench():
    """``bench/fill.py`` as a module (it puts ``bench/`` on the path for ``demo_scene``/``demo_metrics``)."""
    pytest.importorskip("bpy")
    spec = importlib.util.spec_from_file_location("recast4d_bench_fill", FILL_BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fill_scenes(fill_bench) -> list:
    return fill_bench.render_fill_scenes(width=96, height=54, frames=9, samples=4)


def test_scenes_have_holes_to_fill(fill_scenes: list) -> None:
    assert len(fill_scenes) == 3
    for scene in fill_scenes:
        assert scene.render.shape == scene.truth.shape == (9, 54, 96, 3)
        assert 0.002 < scene.holes.mean() < 0.5, f"{scene.name}: {scene.holes.mean():.1%} holes"
        seen = ~scene.holes
        # the render agrees with the true view where it saw the scene (the harness is aligned)
        error = np.abs(scene.render.astype(np.float64) - scene.truth)[seen].mean()
        assert error < 20.0, f"{scene.name}: seen pixels differ from the true view by {error:.1f} levels"


def test_classical_beats_flat_fill_on_every_scene(fill_bench, fill_scenes: list) -> None:
    result = fill_bench.compare_fills(fill_scenes)
    for row in result["scenes"]:
        print(row)
        assert row["classical"]["psnr"] > row["flat"]["psnr"], row
        assert row["classical"]["ssim"] > row["flat"]["ssim"], row
