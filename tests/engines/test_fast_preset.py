"""The wan-vace ``fast`` preset: step-distillation LoRA stacked with the tuned LoRA, distilled schedule, no CFG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from backend.engines.fast_preset import FAST, distilled_sigmas
from backend.engines.registry import get_inpaint_engine
from protocol.errors import MissingWeightsError, ValidationError

TINY = dict(window_frames=5, overlap_frames=0, max_pixels=32 * 32, max_sequence_length=16)
LAYER = "blocks.1.attn1.to_q"


@pytest.fixture(scope="module")
def distill_lora_dir(tiny_models_dir: Path) -> Path:
    """A second random LoRA (rank 2, alpha 2, attention + FFN) saved under the fast preset's default id."""
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = WanVACETransformer3DModel.from_pretrained(tiny_models_dir / "Wan2.1-VACE-1.3B-diffusers",
                                                            subfolder="transformer", local_files_only=True)
    transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=True,
                                       target_modules=r"blocks.*(to_q|to_k|to_v|to_out.0|ffn.net.0.proj)"))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    out = tiny_models_dir / "loras" / FAST.lora_id_1_3b
    WanVACEPipeline.save_lora_weights(
        out, transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict())
    return out


def delta(lora_dir: Path, alpha_over_r: float) -> torch.Tensor:
    state = load_file(lora_dir / "pytorch_lora_weights.safetensors")
    return alpha_over_r * state[f"transformer.{LAYER}.lora_B.weight"] @ state[f"transformer.{LAYER}.lora_A.weight"]


@pytest.mark.parametrize("mode", ["adapter", "fuse"])
def test_both_adapters_are_active_with_their_own_weights(tiny_models_dir: Path, tiny_lora_dir: Path,
                                                          distill_lora_dir: Path, mode: str) -> None:
    from diffusers import WanVACETransformer3DModel

    engine = get_inpaint_engine("wan-vace", tiny_models_dir, lora="test-lora", lora_weight=0.7, preset="fast",
                                lora_mode=mode, **TINY)
    base = WanVACETransformer3DModel.from_pretrained(tiny_models_dir / "Wan2.1-VACE-1.3B-diffusers",
                                                     subfolder="transformer", local_files_only=True)
    base_layer = base.get_submodule(LAYER)
    tuned, distill = delta(tiny_lora_dir, 8.0 / 4.0), delta(distill_lora_dir, 2.0 / 2.0)
    x = torch.randn(5, base_layer.weight.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = engine.pipe.transformer.get_submodule(LAYER)(x)
        want = x @ (base_layer.weight + 0.7 * tuned + 1.0 * distill).T + base_layer.bias
        only_tuned = x @ (base_layer.weight + 0.7 * tuned).T + base_layer.bias
        only_distill = x @ (base_layer.weight + 1.0 * distill).T + base_layer.bias
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert not torch.allclose(got, only_tuned, atol=1e-3) and not torch.allclose(got, only_distill, atol=1e-3)
    adapters = {layer["adapter"]: layer["weight"] for layer in engine.runtime_report()["loras"]}
    assert adapters == {"recast4d": 0.7, "step-distill": FAST.lora_weight}


def test_fast_preset_samples_the_distilled_schedule_without_cfg(tiny_models_dir: Path,
                                                                distill_lora_dir: Path) -> None:
    engine = get_inpaint_engine("wan-vace", tiny_models_dir, preset="fast", **TINY)
    assert engine.options.num_inference_steps == FAST.default_steps == 4
    assert engine.options.guidance_scale == 1.0 and engine.options.scheduler == "distilled"
    calls: list[tuple[int, float]] = []

    def record(module, args, kwargs):  # noqa: ANN001 - torch hook signature
        calls.append((kwargs["hidden_states"].shape[0], float(kwargs["timestep"][0])))

    handle = engine.pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    frames = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    holes = np.zeros((5, 32, 32), bool)
    holes[:, 8:20, 8:20] = True
    try:
        engine.fill(frames, holes, "a street")
    finally:
        handle.remove()
    assert [batch for batch, _ in calls] == [1, 1, 1, 1]  # guidance 1: one pass per step, no uncond batch
    want = [1000.0 * s for s in distilled_sigmas(4)]  # lightx2v's [1000, 750, 500, 250] shifted by 5
    assert [t for _, t in calls] == pytest.approx(want, abs=1e-2)
    assert want == pytest.approx([1000.0, 937.5, 833.333, 625.0], abs=1e-2)
    report = engine.runtime_report()
    assert report["preset"] == "fast" and report["steps"] == 4 and report["placement"]["placement"] == "cpu"


def test_fast_preset_step_count_and_missing_lora(tiny_models_dir: Path, distill_lora_dir: Path,
                                                 tmp_path: Path) -> None:
    engine = get_inpaint_engine("wan-vace", tiny_models_dir, preset="fast", num_inference_steps=8, **TINY)
    assert engine.options.sampling_sigmas() == pytest.approx([1 - i / 8 for i in range(8)])
    with pytest.raises(ValidationError, match="1 to 8"):
        get_inpaint_engine("wan-vace", tiny_models_dir, preset="fast", num_inference_steps=30, **TINY)
    with pytest.raises(MissingWeightsError, match="step-distillation LoRA.*distill_lora"):
        get_inpaint_engine("wan-vace", tiny_models_dir, preset="fast", distill_lora="no-such-lora", **TINY)


def test_request_and_cli_carry_the_fast_preset_to_the_engine() -> None:
    import argparse

    from backend.pipelines.reshoot.cli import _apply_overrides, add_command
    from backend.pipelines.reshoot.request import EngineOptions

    fast = EngineOptions(inpaint="wan-vace", fast=True, lora="shot-lora")
    options = fast.inpaint_options()
    assert options["preset"] == "fast" and options["lora"] == "shot-lora"
    assert "num_inference_steps" not in options and "guidance_scale" not in options  # the preset's 4 and 1
    assert EngineOptions(inpaint="wan-vace", fast=True, steps=6).inpaint_options()["num_inference_steps"] == 6
    assert "preset" not in EngineOptions(inpaint="wan-vace").inpaint_options()

    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers())
    params: dict = {}
    _apply_overrides(params, parser.parse_args(["run", "--engine", "wan-vace", "--fast", "--steps", "8"]))
    assert params["engine"] == {"inpaint": "wan-vace", "steps": 8, "fast": True}


def test_fast_with_the_classical_engine_is_a_warning_not_a_silent_no_op() -> None:
    from backend.pipelines.reshoot.request import ReshootRequest
    from backend.pipelines.reshoot.synthetic import sliding_square_scene

    scene = sliding_square_scene(num_frames=2, width=16, height=16)
    params = {"cameras": [scene.camera.to_dict()], "trajectories": [{"name": "o", "preset": "orbit:left:5"}],
              "engine": {"inpaint": "classical", "fast": True}}
    request = ReshootRequest.from_params(params, {"frames": scene.frames, "depth": scene.depth})
    assert any("engine.fast has no effect" in w for w in request.warnings)
    with pytest.raises(ValidationError, match="engine.fast must be bool"):
        ReshootRequest.from_params(dict(params, engine={"fast": "yes"}), {"frames": scene.frames,
                                                                           "depth": scene.depth})


def test_reshoot_job_report_says_what_the_engine_chose(tiny_models_dir: Path, tiny_lora_dir: Path,
                                                       distill_lora_dir: Path, tmp_path: Path) -> None:
    import json

    from backend.pipelines.reshoot import ReshootRequest, run_reshoot
    from backend.pipelines.reshoot.synthetic import sliding_square_scene

    scene = sliding_square_scene(num_frames=5, width=32, height=24)
    params = {"fps": 8, "cameras": [scene.camera.to_dict()], "prompt": "a red cube",
              "trajectories": [{"name": "orbit", "preset": "orbit:left:12"}],
              "engine": {"inpaint": "wan-vace", "models_dir": str(tiny_models_dir), "fast": True,
                         "lora": "test-lora", "options": dict(TINY, vae_tiling=False)},
              "gaussians": {"enabled": False}, "outputs": ["video"]}
    run_reshoot(ReshootRequest.from_params(params, {"frames": scene.frames, "depth": scene.depth}), tmp_path)
    runtime = json.loads((tmp_path / "report.json").read_text())["engine"]["runtime"]
    assert runtime["preset"] == "fast" and runtime["steps"] == 4 and runtime["guidance"] == 1.0
    assert [layer["adapter"] for layer in runtime["loras"]] == ["recast4d", "step-distill"]
    assert runtime["placement"]["placement"] == "cpu" and runtime["attention_backend"] == "native"
