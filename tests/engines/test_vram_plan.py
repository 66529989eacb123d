"""Placement from free VRAM (injected figures): what fits where, and what the engine reports."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from backend.engines.vram import (
    GIB,
    WAN_VACE_1_3B_CONFIG,
    WAN_VACE_14B_CONFIG,
    ClipShape,
    MemoryModel,
    WanTransformerSize,
    plan_placement,
)
from backend.engines.wan_runtime import plan_for

TINY_CONFIG = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
                   out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, vace_layers=[0, 2],
                   vace_in_channels=96)


@pytest.mark.parametrize(("config", "want"), [(TINY_CONFIG, 59_408), (WAN_VACE_1_3B_CONFIG, 2_153_972_032),
                                              (WAN_VACE_14B_CONFIG, 17_337_592_896)])
def test_parameter_count_matches_the_model_built_from_the_config(config: dict, want: int) -> None:
    # ``want`` = sum(p.numel()) of WanVACETransformer3DModel(**config) on the meta device (diffusers 0.42)
    assert WanTransformerSize.from_config(config).parameters() == want


def test_tiny_count_matches_a_real_model() -> None:
    from diffusers import WanVACETransformer3DModel

    model = WanVACETransformer3DModel(**TINY_CONFIG)
    assert WanTransformerSize.from_config(model.config).parameters() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("config", "free_gib", "want"), [
    (WAN_VACE_1_3B_CONFIG, 79.0, "none"), (WAN_VACE_1_3B_CONFIG, 23.5, "none"),
    (WAN_VACE_1_3B_CONFIG, 11.0, "model"), (WAN_VACE_1_3B_CONFIG, 8.0, "group"),
    (WAN_VACE_1_3B_CONFIG, 6.5, "sequential"), (WAN_VACE_14B_CONFIG, 79.0, "none"),
    (WAN_VACE_14B_CONFIG, 47.0, "group"), (WAN_VACE_14B_CONFIG, 23.5, "group"),
])
def test_the_fastest_placement_that_fits_is_chosen(config: dict, free_gib: float, want: str) -> None:
    memory = MemoryModel(WanTransformerSize.from_config(config), ClipShape(81, 512, 512, 2))
    plan = plan_placement(memory, int(free_gib * GIB))
    assert plan.placement == want, plan.reason
    order = ["none", "model", "group", "sequential"]
    for faster in order[:order.index(want)]:  # every faster placement really does not fit
        assert 1.1 * plan.peak_gib[faster] + 1.0 > free_gib


def test_text_encoder_encodes_on_cpu_when_it_does_not_fit_beside_the_transformer() -> None:
    memory = MemoryModel(WanTransformerSize.from_config(WAN_VACE_1_3B_CONFIG))
    roomy = plan_placement(memory, 40 * GIB)
    tight = plan_placement(memory, 12 * GIB)
    assert roomy.placement == tight.placement == "none"
    assert roomy.text_encoder_on_gpu and not tight.text_encoder_on_gpu
    assert "CPU" in tight.reason


def test_nothing_fits_falls_back_to_sequential_and_says_so() -> None:
    plan = plan_placement(MemoryModel(WanTransformerSize.from_config(WAN_VACE_14B_CONFIG)), 2 * GIB)
    assert plan.placement == "sequential" and "out-of-memory" in plan.reason


def test_engine_plan_uses_free_vram_capped_by_the_budget() -> None:
    import torch

    pipe = SimpleNamespace(transformer=SimpleNamespace(config=WAN_VACE_1_3B_CONFIG))
    options = SimpleNamespace(max_pixels=512 * 512, window_frames=81, guidance_scale=6.5, batch_cfg=True,
                              vae_tiling=True, vram_budget_gb=None, offload="auto")
    cuda = torch.device("cuda")
    assert plan_for(pipe, options, cuda, torch.bfloat16, 79 * GIB).placement == "none"
    options.vram_budget_gb = 8.0  # e.g. Blender's Cycles renders on the same card
    capped = plan_for(pipe, options, cuda, torch.bfloat16, 79 * GIB)
    assert capped.placement == "group" and capped.free_gib == 8.0
    options.offload = "model"
    assert plan_for(pipe, options, cuda, torch.bfloat16, 79 * GIB).placement == "model"
    assert plan_for(pipe, options, torch.device("cpu"), torch.float32, None).placement == "cpu"
    options.guidance_scale, options.offload = 1.0, "auto"  # no CFG: batch 1, smaller activations
    no_cfg = plan_for(pipe, options, cuda, torch.bfloat16, 79 * GIB)
    assert no_cfg.peak_gib["none"] < capped.peak_gib["none"]


def test_placement_table_in_docs_matches_the_planner() -> None:
    from backend.engines.vram import placement_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "gpu.md").read_text()
    assert placement_table() in doc, "regenerate the table with: python -m backend.engines.vram"


def test_doctor_rows_say_what_fits_with_injected_free_memory(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    from backend import doctor
    from backend.engines import vram

    rows = {r.name: r for r in vram.fit_reports(int(23.5 * GIB), 24 * GIB)}
    assert rows["vram"].detail == "23.5 GiB free of 24.0 GiB"
    assert rows["vram wan-vace"].ok and rows["vram wan-vace"].detail.startswith("512x512x81: none:")
    assert "group" in rows["vram wan-vace-14b"].detail.split(";")[0]
    assert not vram.fit_reports(None)[0].ok  # no CUDA: says so, with the docs hint
    monkeypatch.setattr(vram, "free_vram_bytes", lambda device=None: (int(79 * GIB), 80 * GIB))
    checks = {c.name: c for c in doctor.check_vram(None)}
    assert checks["vram wan-vace-14b"].detail.startswith("512x512x81: none:")
    # a models folder whose transformer config is bigger than published is planned from its own config
    folder = tmp_path / "Wan2.1-VACE-1.3B-diffusers" / "transformer"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(__import__("json").dumps(dict(WAN_VACE_14B_CONFIG, patch_size=[1, 2, 2])))
    from_folder = {r.name: r for r in vram.fit_reports(int(23.5 * GIB), models_dir=tmp_path)}
    assert "group" in from_folder["vram wan-vace"].detail and str(folder) in from_folder["vram wan-vace"].detail


def test_doctor_finds_the_fast_preset_lora(tmp_path: Path) -> None:
    from backend.doctor import check_fast_preset
    from backend.engines.fast_preset import FAST

    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / f"{FAST.lora_id_14b}.safetensors").write_bytes(b"")
    rows = {r.name: r for r in check_fast_preset(str(tmp_path))}
    assert rows["fast preset wan-vace-14b"].ok and not rows["fast preset wan-vace"].ok
    assert "lightx2v" not in rows["fast preset wan-vace"].hint and FAST.lora_id_1_3b in rows["fast preset wan-vace"].hint


def test_weights_already_on_the_card_count_as_free_for_the_plan() -> None:
    import torch

    from backend.engines.wan_runtime import resident_bytes

    on_cpu = SimpleNamespace(transformer=torch.nn.Linear(4, 4), vae=torch.nn.Linear(2, 2))
    assert resident_bytes(on_cpu) == 0  # only CUDA-resident parameters count
    fake = SimpleNamespace(parameters=lambda: [SimpleNamespace(device=torch.device("cuda"), numel=lambda: 10,
                                                               element_size=lambda: 2)])
    assert resident_bytes(SimpleNamespace(transformer=fake, vae=None)) == 20
