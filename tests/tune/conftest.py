"""Tiny offline models and a tiny synthetic source video for the tuning tests.

The tiny Wan VACE recipe is the shared one in ``tests/tiny_models.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_models import build_tiny_depth_model, build_tiny_vace_pipeline

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tune_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding a tiny random ``Wan2.1-VACE-1.3B-diffusers`` and ``Depth-Anything-V2-Small-hf``."""
    import torch

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("tune_models")
    build_tiny_vace_pipeline().save_pretrained(root / "Wan2.1-VACE-1.3B-diffusers")
    build_tiny_depth_model().save_pretrained(root / "Depth-Anything-V2-Small-hf")
    return root


@pytest.fixture(scope="session")
def tiny_source():
    """5 frames of the sliding-square scene at 32x32 with exact depth and a static camera."""
    from backend.pipelines.reshoot.synthetic import sliding_square_scene
    from backend.tune.source import prepare_source

    scene = sliding_square_scene(num_frames=5, width=48, height=32)
    return prepare_source(scene.frames, scene.depth, [scene.camera] * 5, 32, 32)
