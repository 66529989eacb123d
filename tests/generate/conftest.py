"""Tiny random models for the generate tests (recipes in ``tests/tiny_models.py``), built offline once per
session and saved like the real folders (Wan2.1 T2V / I2V / VACE, Depth Anything V2, SAM2.1), so engines load them through the users' code path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_models import (
    build_tiny_depth_model,
    build_tiny_i2v,
    build_tiny_sam2_video,
    build_tiny_t2v,
    build_tiny_vace_pipeline,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def generate_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with tiny random T2V, I2V, VACE, Depth Anything and SAM2 weights in the published layouts."""
    root = tmp_path_factory.mktemp("generate_models")
    build_tiny_t2v().save_pretrained(root / "Wan2.1-T2V-1.3B-Diffusers")
    build_tiny_i2v().save_pretrained(root / "Wan2.1-I2V-14B-480P-Diffusers")
    build_tiny_vace_pipeline().save_pretrained(root / "Wan2.1-VACE-1.3B-diffusers")
    build_tiny_depth_model().save_pretrained(root / "Depth-Anything-V2-Small-hf")
    build_tiny_sam2_video().save_pretrained(root / "sam2.1-hiera-tiny")
    return root


@pytest.fixture(autouse=True)
def _two_threads():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)
