"""LoRA training on the Wan VACE transformer: flow-matching loss, AdamW, checkpoints with exact resume.

Flow matching (rectified flow, as Wan is trained and sampled): for clean latents ``x0`` and noise
``n``, ``x_sigma = (1 - sigma) x0 + sigma n`` and the model predicts the velocity ``n - x0`` at
timestep ``1000 sigma``. ``sigma`` is drawn logit-normally (``sigmoid(N(logit_mean, logit_std))``)
and then shifted exactly like the inference scheduler's ``flow_shift`` ``s``:
``sigma' = s sigma / (1 + (s - 1) sigma)``, so training sees the noise levels sampling visits.

Spatio-temporal consistency term (rounds >= 2, weight ``consistency_weight``): the predicted clean
latents ``x0_hat = x_sigma - sigma * v_hat`` must change across neighbouring latent frames, rows and
columns as the ground truth does: mean squared difference of the finite differences of
``x0_hat - x0`` along time, height and width. It penalises flicker and seams in generated regions
that the per-pixel loss alone weighs little.

Every random number a step uses (sample choice, sigma, noise) comes from one CPU
``torch.Generator`` whose state is checkpointed with the LoRA weights, the AdamW state and the
step, so a resumed run repeats the uninterrupted run's losses exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protocol.errors import ValidationError

from .config import TuneConfig
from .model import CachedSample, add_lora, load_lora_state_dict, lora_state_dict

CHECKPOINT_PREFIX = "step_"


@dataclass
class TrainBatch:
    """One step's inputs: clean latents, control, the drawn noise and sigma (all on the CPU)."""

    sample_index: int
    latents: torch.Tensor  # (1, z, F_lat, h, w)
    control: torch.Tensor  # (1, 2z + 64, F_lat, h, w)
    noise: torch.Tensor  # like latents
    sigma: float  # in (0, 1), already shifted


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """The flow-matching time shift used by the Wan schedulers: ``s t / (1 + (s - 1) t)``."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def consistency_loss(x0_hat: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the finite differences of ``x0_hat - x0`` along F, H and W (B, C, F, H, W)."""
    error = x0_hat - x0
    terms = [error.diff(dim=dim).pow(2).mean() for dim in (2, 3, 4) if error.shape[dim] > 1]
    return torch.stack(terms).sum() if terms else error.new_zeros(())


class LoraTrainer:
    """Trains a LoRA on ``transformer`` (see the module docstring); one video clip per step."""

    def __init__(self, transformer: Any, config: TuneConfig, prompt_embeds: torch.Tensor, *,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.transformer = transformer
        self.config = config
        self.device = device
        self.dtype = dtype
        self.parameters = add_lora(transformer, config)
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.learning_rate, betas=tuple(config.adam_betas),
                                           weight_decay=config.weight_decay)
        self.generator = torch.Generator(device="cpu").manual_seed(int(config.seed))
        self.prompt_embeds = prompt_embeds.to(device=device, dtype=dtype)
        self.vace_scale = torch.ones(len(transformer.config.vace_layers), device=device, dtype=dtype)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.pool: list[CachedSample] = []
        self.consistency_weight = 0.0
        self.round_index = 0
        transformer.train()

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters)

    def set_pool(self, samples: list[CachedSample], *, round_index: int, consistency_weight: float) -> None:
        """The samples steps draw from from now on, and the round they belong to."""
        if not samples:
            raise ValidationError("no training samples to train on")
        self.pool = list(samples)
        self.round_index = int(round_index)
        self.consistency_weight = float(consistency_weight)

    # ---- one step ------------------------------------------------------------------------------

    def draw_batch(self) -> TrainBatch:
        """Pick a sample, a shifted logit-normal sigma and noise from the trainer's generator."""
        from diffusers.training_utils import compute_density_for_timestep_sampling

        if not self.pool:
            raise ValidationError("set_pool() before training")
        index = int(torch.randint(len(self.pool), (), generator=self.generator))
        sample = self.pool[index]
        u = compute_density_for_timestep_sampling("logit_normal", 1, logit_mean=self.config.logit_mean,
                                                  logit_std=self.config.logit_std, generator=self.generator)
        sigma = float(shift_sigma(u, self.config.flow_shift)[0])
        noise = torch.randn(tuple(sample.latents.shape), generator=self.generator)
        return TrainBatch(index, sample.latents, sample.control, noise, sigma)

    def losses(self, batch: TrainBatch, consistency_weight: float | None = None) -> dict[str, torch.Tensor]:
        """``{"loss", "flow_matching", "consistency"}`` for ``batch`` (graph kept for backward)."""
        weight = self.consistency_weight if consistency_weight is None else consistency_weight
        x0 = batch.latents.to(self.device, torch.float32)
        noise = batch.noise.to(self.device, torch.float32)
        sigma = torch.tensor(batch.sigma, device=self.device, dtype=torch.float32)
        noisy = (1.0 - sigma) * x0 + sigma * noise
        timestep = (sigma * 1000.0).reshape(1)
        prediction = self.transformer(
            hidden_states=noisy.to(self.dtype), timestep=timestep, encoder_hidden_states=self.prompt_embeds,
            control_hidden_states=batch.control.to(self.device, self.dtype),
            control_hidden_states_scale=self.vace_scale, return_dict=False)[0].float()
        flow = torch.nn.functional.mse_loss(prediction, noise - x0)
        consistency = (consistency_loss(noisy - sigma * prediction, x0) if weight > 0
                       else flow.new_zeros(()))
        return {"loss": flow + weight * consistency, "flow_matching": flow, "consistency": consistency}

    def train_step(self, batch: TrainBatch | None = None) -> dict[str, float]:
        """One optimiser step on ``batch`` (drawn when None); returns and records the losses."""
        batch = self.draw_batch() if batch is None else batch
        self.optimizer.zero_grad(set_to_none=True)
        parts = self.losses(batch)
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise ValidationError(f"training diverged at step {self.step + 1} (loss {float(loss)}); "
                                  "lower the learning rate")
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.config.max_grad_norm)
        self.optimizer.step()
        self.step += 1
        record = {"step": self.step, "round": self.round_index + 1, "loss": float(loss.detach()),
                  "flow_matching": float(parts["flow_matching"].detach()),
                  "consistency": float(parts["consistency"].detach()), "sigma": round(batch.sigma, 6),
                  "grad_norm": float(grad_norm), "sample": batch.sample_index}
        self.history.append(record)
        return record

    # ---- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state = {"step": self.step, "round_index": self.round_index, "lora": lora_state_dict(self.transformer),
                 "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                 "torch_rng": torch.get_rng_state(), "history": list(self.history),
                 "config": self.config.to_dict()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint made by :meth:`state_dict` (same config and base model)."""
        if int(state["config"]["rank"]) != self.config.rank:
            raise ValidationError(f"checkpoint has LoRA rank {state['config']['rank']}, this run {self.config.rank}")
        load_lora_state_dict(self.transformer, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = int(state["step"])
        self.round_index = int(state["round_index"])
        self.history = list(state["history"])

    def save_checkpoint(self, folder: Path) -> Path:
        """Write ``folder/step_XXXXXX.pt`` atomically and keep the newest ``keep_checkpoints``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{CHECKPOINT_PREFIX}{self.step:06d}.pt"
        partial = path.with_suffix(".partial")
        torch.save(self.state_dict(), partial)
        os.replace(partial, path)
        for old in list_checkpoints(folder)[: -self.config.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    def load_checkpoint(self, path: Path) -> None:
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{CHECKPOINT_PREFIX}*.pt") if p.stem[len(CHECKPOINT_PREFIX):].isdigit())


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None
