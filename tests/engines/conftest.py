"""Tiny random models for the engine tests (recipes in ``tests/tiny_models.py``), built once per session.

``tiny_models_dir`` holds ``Wan2.1-VACE-1.3B-diffusers`` (tiny VACE transformer, tiny Wan VAE, tiny
UMT5 encoder, word-level tokenizer, UniPC scheduler config) and ``Depth-Anything-V2-Small-hf``
(tiny DINOv2 + DPT head), laid out as the published folders, so engines load them through the
same local-folder code users run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_models import build_tiny_depth_model, build_tiny_vace_pipeline

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with tiny random Wan VACE and Depth Anything weights in the published layouts."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_vace_pipeline().save_pretrained(root / "Wan2.1-VACE-1.3B-diffusers")
    build_tiny_depth_model().save_pretrained(root / "Depth-Anything-V2-Small-hf")
    return root


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_models_dir: Path) -> Path:
    """A random rank-4 LoRA on the tiny transformer's main-block attention, saved in diffusers format."""
    import torch
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = WanVACETransformer3DModel.from_pretrained(tiny_models_dir / "Wan2.1-VACE-1.3B-diffusers",
                                                            subfolder="transformer", local_files_only=True)
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=True,
                                       target_modules=r"blocks.*(to_q|to_k|to_v|to_out.0)"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    out = tiny_models_dir / "loras" / "test-lora"
    WanVACEPipeline.save_lora_weights(
        out, transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict())
    return out
