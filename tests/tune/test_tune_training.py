"""LoRA training on the tiny VACE model: the loss falls on a fixed batch, and resume is exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend.tune.config import TuneConfig
from backend.tune.data import double_reprojection_pair, sample_target_path
from backend.tune.model import encode_pair, encode_prompts, load_base_pipeline
from backend.tune.trainer import LoraTrainer, latest_checkpoint, shift_sigma

CPU = torch.device("cpu")


def _config(**overrides) -> TuneConfig:
    base = dict(rank=4, learning_rate=5e-3, width=32, height=32, num_frames=5, steps=8, angles=[20.0],
                checkpoint_every=2, consistency_weight=0.1)
    base.update(overrides)
    return TuneConfig(**base)


@pytest.fixture(scope="module")
def cached_samples(tune_models_dir: Path, tiny_source):
    pipe = load_base_pipeline(tune_models_dir / "Wan2.1-VACE-1.3B-diffusers", CPU, torch.float32)
    embeds = encode_prompts(pipe, "a street", CPU)
    generator = torch.Generator().manual_seed(3)
    samples = []
    for _ in range(2):
        path = sample_target_path(tiny_source, (10.0, 30.0), ["left", "right"], generator)
        pair = double_reprojection_pair(tiny_source, path, generator, (0.4, 0.3, 0.3), CPU, {"test": True})
        samples.append(encode_pair(pipe, pair, CPU))
    return embeds, samples


def _trainer(models_dir: Path, config: TuneConfig, embeds, samples) -> LoraTrainer:
    pipe = load_base_pipeline(models_dir / "Wan2.1-VACE-1.3B-diffusers", CPU, torch.float32)
    trainer = LoraTrainer(pipe.transformer, config, embeds[0], device=CPU, dtype=torch.float32)
    trainer.set_pool(samples, round_index=1, consistency_weight=config.consistency_weight)
    return trainer


def test_loss_falls_when_overfitting_a_fixed_batch(tune_models_dir, cached_samples):
    embeds, samples = cached_samples
    trainer = _trainer(tune_models_dir, _config(gradient_checkpointing=False, learning_rate=2e-2), embeds, samples)
    batch = trainer.draw_batch()
    losses = [trainer.train_step(batch)["loss"] for _ in range(10)]
    assert losses[-1] < 0.85 * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 8, losses
    assert trainer.num_trainable > 0
    base = [p for n, p in trainer.transformer.named_parameters() if "lora_" not in n]
    assert all(not p.requires_grad for p in base)
    assert all(p.dtype == torch.float32 for p in trainer.parameters)


def test_resume_from_checkpoint_repeats_the_same_losses(tune_models_dir, cached_samples, tmp_path):
    embeds, samples = cached_samples
    config = _config()
    straight = _trainer(tune_models_dir, config, embeds, samples)
    assert straight.transformer.is_gradient_checkpointing
    expected = [straight.train_step()["loss"] for _ in range(4)]

    first = _trainer(tune_models_dir, config, embeds, samples)
    for _ in range(2):
        first.train_step()
        if first.step % config.checkpoint_every == 0:
            first.save_checkpoint(tmp_path)
    first.train_step()  # progress after the checkpoint is lost, as in a crash
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.name == "step_000002.pt"

    resumed = _trainer(tune_models_dir, config, embeds, samples)
    resumed.load_checkpoint(checkpoint)
    assert resumed.step == 2
    continued = [resumed.train_step()["loss"] for _ in range(2)]
    assert [h["loss"] for h in resumed.history] == expected
    assert continued == expected[2:]


def test_sigma_shift_matches_the_inference_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    plain = FlowMatchEulerDiscreteScheduler(shift=1.0).sigmas
    shifted = FlowMatchEulerDiscreteScheduler(shift=3.0).sigmas
    assert torch.allclose(shift_sigma(plain, 3.0), shifted, atol=1e-6)


def test_bad_options_are_typed_errors():
    from protocol.errors import ValidationError

    with pytest.raises(ValidationError, match="unknown tune options"):
        TuneConfig.from_dict({"rnak": 4})
    with pytest.raises(ValidationError, match="4k \\+ 1"):
        TuneConfig.from_dict({"num_frames": 80})
    with pytest.raises(ValidationError, match="angles must grow"):
        TuneConfig.from_dict({"angles": [45, 30]})
    steps = TuneConfig().round_steps()
    assert sum(steps) == 2000 and steps[0] >= 1000 and len(steps) == 4
