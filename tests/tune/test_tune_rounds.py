"""Self-iterative rounds on the tiny model: round 2 learns from round 1's generations; the LoRA works
in the wan-vace engine by id; the job folder keeps each round's data, loss curve and previews."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.tune.config import TuneConfig
from backend.tune.data import cycle_back_pair
from backend.tune.model import CachedSample, encode_pair, load_base_pipeline, register_lora
from backend.tune.rounds import _load_generation, default_engine_factory, run_tuning

CPU = torch.device("cpu")
VACE = "Wan2.1-VACE-1.3B-diffusers"


@pytest.fixture(scope="module")
def tuned(tune_models_dir: Path, tiny_source, tmp_path_factory):
    """Two rounds (20 then 40 degrees), point-cloud masks only, with a spy on the generation engine."""
    config = TuneConfig(rank=4, learning_rate=2e-2, width=32, height=32, num_frames=5, steps=6,
                        angles=[20.0, 40.0], samples_per_round=2, generations_per_round=1, cycle_fraction=0.5,
                        generation_steps=2, checkpoint_every=2, mask_probabilities=(1.0, 0.0, 0.0),
                        prompt="a street")
    folder = tune_models_dir / VACE
    pipe = load_base_pipeline(folder, CPU, torch.float32)
    built: list[tuple[Path, int]] = []
    fills: list[np.ndarray] = []

    def spy_factory(lora_dir: Path, round_index: int):
        cache = torch.load(out / "cache" / "prompt_embeds.pt", weights_only=True)
        embeddings = (cache["positive"], cache["negative"])
        engine = default_engine_factory(pipe, folder, config, config.prompt, embeddings, CPU,
                                        torch.float32, 5)(lora_dir, round_index)
        real_fill = engine.fill

        def fill(*args, **kwargs):
            out = real_fill(*args, **kwargs)
            fills.append(out)
            return out

        engine.fill = fill
        built.append((lora_dir, round_index))
        return engine

    out = tmp_path_factory.mktemp("tune_run")
    result = run_tuning(tiny_source, config, folder, out, pipe=pipe, engine_factory=spy_factory)
    return result, config, built, fills


def test_round_two_data_is_built_from_round_one_generations(tuned, tune_models_dir, tiny_source):
    result, config, built, fills = tuned
    out = result.out_dir
    assert [b[1] for b in built] == [0, 1]
    assert built[0][0] == out / "round_01" / "lora"  # round 1's LoRA made round 2's inputs
    generation = out / "round_02" / "generations" / "gen_00.npz"
    start, path, video, depth = _load_generation(generation)
    assert np.array_equal(video, fills[0])  # saved exactly what the engine generated
    assert 20.0 <= path.angle <= 40.0

    index = json.loads((out / "round_02" / "data" / "index.json").read_text())
    cycle = [s for s in index["samples"] if s["pair"] == "cycle_back"]
    assert len(cycle) == 1 and cycle[0]["path"] == path.spec and cycle[0]["clip_start"] == start
    assert index["samples"][1]["pair"] == "double_reprojection"

    # Rebuild the cycle-back pair from the generation: the cached sample is exactly its encoding.
    pipe = load_base_pipeline(tune_models_dir / VACE, CPU, torch.float32)
    pair = cycle_back_pair(tiny_source.clip(start, 5), path, video, depth, torch.Generator().manual_seed(0),
                           config.mask_probabilities, CPU, {})
    assert pair.hole.any() and not pair.hole.all()
    expected = encode_pair(pipe, pair, CPU)
    cached = CachedSample.load(out / "round_02" / "data" / cycle[0]["file"])
    assert torch.allclose(cached.control, expected.control, atol=2e-3, rtol=2e-3)
    assert torch.allclose(cached.latents, expected.latents, atol=2e-3, rtol=2e-3)


def test_job_folder_keeps_rounds_losses_previews_and_checkpoints(tuned):
    result, config, _, _ = tuned
    out = result.out_dir
    assert len(result.history) == config.steps
    assert [h["round"] for h in result.history] == [1, 1, 1, 2, 2, 2]
    assert result.history[3]["consistency"] > 0 and result.history[0]["consistency"] == 0
    for r in (1, 2):
        folder = out / f"round_{r:02d}"
        curve = json.loads((folder / "loss.json").read_text())
        assert len(curve["loss"]) == 3 and all(np.isfinite(curve["loss"]))
        assert (folder / "data_preview.png").stat().st_size > 0
        assert (folder / "preview_00.mp4").stat().st_size > 0
        assert (folder / "lora" / "pytorch_lora_weights.safetensors").is_file()
    report = json.loads((out / "report.json").read_text())
    assert [r["steps"] for r in report["rounds"]] == [3, 3]
    assert (out / "checkpoints" / "step_000006.pt").is_file()


def test_saved_lora_loads_into_the_engine_by_id_and_changes_its_output(tuned, tune_models_dir, tiny_source):
    from safetensors import safe_open

    from backend.engines import get_inpaint_engine

    result, config, _, _ = tuned
    weights = result.lora_dir / "pytorch_lora_weights.safetensors"
    with safe_open(str(weights), "pt") as handle:
        keys = list(handle.keys())
        metadata = json.loads(handle.metadata()["lora_adapter_metadata"])
    assert keys and all(k.startswith("transformer.blocks.") for k in keys)
    assert metadata["transformer.r"] == config.rank and metadata["transformer.lora_alpha"] == config.rank
    registered = register_lora(result.lora_dir, "tiny-tuned", tune_models_dir)
    assert registered == tune_models_dir / "loras" / "tiny-tuned"

    holes = np.zeros((5, 32, 32), bool)
    holes[:, 8:24, 8:24] = True
    options = dict(num_inference_steps=2, window_frames=5, overlap_frames=0, max_pixels=32 * 32, device="cpu")
    plain = get_inpaint_engine("wan-vace", tune_models_dir, **options)
    tuned_engine = get_inpaint_engine("wan-vace", tune_models_dir, lora="tiny-tuned", **options)
    a = plain.fill(tiny_source.frames, holes, "a street")
    b = tuned_engine.fill(tiny_source.frames, holes, "a street")
    assert np.array_equal(a[~holes], b[~holes])  # known pixels come back untouched either way
    assert np.abs(a.astype(int) - b.astype(int))[holes].max() > 0


def test_cancelled_run_resumes_with_the_same_losses(tune_models_dir, tiny_source, tmp_path):
    from protocol.errors import Cancelled

    config = TuneConfig(rank=4, learning_rate=2e-2, width=32, height=32, num_frames=5, steps=4, angles=[20.0],
                        samples_per_round=2, generation_steps=1, checkpoint_every=2)
    folder = tune_models_dir / VACE
    straight = run_tuning(tiny_source, config, folder, tmp_path / "straight")

    seen: list[str] = []

    def progress(stage: str, step: int, total: int, message: str) -> None:
        seen.append(message)

    with pytest.raises(Cancelled):
        run_tuning(tiny_source, config, folder, tmp_path / "cut", progress=progress,
                   cancel=lambda: any("step 3/" in m for m in seen))
    assert not (tmp_path / "cut" / "lora").exists()
    resumed = run_tuning(tiny_source, config, folder, tmp_path / "cut")
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert [h["sample"] for h in resumed.history] == [h["sample"] for h in straight.history]
