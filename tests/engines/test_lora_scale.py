"""LoRA save/load round trip and the 0.7 weight semantics (adapter and fused modes, never 0.49)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backend.engines.registry import get_inpaint_engine

TINY = dict(num_inference_steps=1, window_frames=5, max_pixels=32 * 32, max_sequence_length=16)
LAYER = "blocks.0.attn1.to_q"


def saved_delta(lora_dir: Path) -> tuple[torch.Tensor, float]:
    """(B @ A, alpha / r) of LAYER as saved on disk."""
    state = load_file(lora_dir / "pytorch_lora_weights.safetensors")
    a = state[f"transformer.{LAYER}.lora_A.weight"]
    b = state[f"transformer.{LAYER}.lora_B.weight"]
    return b @ a, 8.0 / 4.0  # the fixture saved r=4, lora_alpha=8


def base_weight(models_dir: Path) -> torch.Tensor:
    from diffusers import WanVACETransformer3DModel

    transformer = WanVACETransformer3DModel.from_pretrained(models_dir / "Wan2.1-VACE-1.3B-diffusers",
                                                            subfolder="transformer", local_files_only=True)
    return transformer.get_submodule(LAYER).weight.detach().clone()


@pytest.mark.parametrize("mode", ["adapter", "fuse"])
def test_lora_weight_07_is_effective_scale(tiny_models_dir: Path, tiny_lora_dir: Path, mode: str) -> None:
    engine = get_inpaint_engine("wan-vace", tiny_models_dir, lora="test-lora", lora_weight=0.7, lora_mode=mode,
                                **TINY)
    delta, alpha_over_r = saved_delta(tiny_lora_dir)
    expected = base_weight(tiny_models_dir) + 0.7 * alpha_over_r * delta
    layer = engine.pipe.transformer.get_submodule(LAYER)
    x = torch.randn(3, expected.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = layer(x)
    bias = layer.base_layer.bias if hasattr(layer, "base_layer") else layer.bias
    want = x @ expected.T + bias
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    # The known pitfall, set_adapters(0.7) + fuse_lora(0.7), would give 0.49: make sure we are not there.
    wrong = x @ (base_weight(tiny_models_dir) + 0.49 * alpha_over_r * delta).T + bias
    assert not torch.allclose(got, wrong, atol=1e-3)
    if mode == "fuse":
        assert not hasattr(layer, "base_layer")  # fused and unloaded: a plain Linear again
        assert torch.allclose(layer.weight, expected, atol=1e-5)


def test_lora_round_trip_by_path(tiny_models_dir: Path, tiny_lora_dir: Path) -> None:
    engine = get_inpaint_engine("wan-vace", tiny_models_dir, lora=str(tiny_lora_dir / "pytorch_lora_weights.safetensors"),
                                **TINY)
    state = load_file(tiny_lora_dir / "pytorch_lora_weights.safetensors")
    layer = engine.pipe.transformer.get_submodule(LAYER)
    loaded_a = next(iter(layer.lora_A.values())).weight
    assert torch.equal(loaded_a, state[f"transformer.{LAYER}.lora_A.weight"])
    assert len(state) == 3 * 2 * 4 * 2  # 3 main blocks x (attn1, attn2) x (q, k, v, out) x (A, B)
    assert not any("vace_blocks" in key for key in state)  # the regex target leaves VACE blocks alone
