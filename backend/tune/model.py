"""The model side of tuning: base pipeline, latent/prompt caches, LoRA set-up, save and registration.

Latents are the Wan VAE's normalised latents ``(z - latents_mean) / latents_std`` of shape
``(1, 16, F_lat, H/8, W/8)`` with ``F_lat = (F - 1) / 4 + 1`` (the VAE's ``mode``, so caching is
deterministic); control latents are VACE's ``[inactive, reactive, 8x8-folded hole mask]``
(``1, 96, F_lat, H/8, W/8``, hole = 1), built exactly as the inference engine builds them
(:func:`backend.engines.vace_sampler.encode_control`), so what the LoRA learns matches what it sees.

The LoRA is saved in diffusers format (``pytorch_lora_weights.safetensors`` with
``lora_adapter_metadata`` holding rank/alpha/targets) via ``WanVACEPipeline.save_lora_weights`` and
registered by copying it to ``<models>/loras/<id>/``, where ``resolve_lora`` finds it by id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.engines.lora import LORA_WEIGHTS_FILE
from backend.engines.registry import LORAS_SUBDIR, resolve_models_dir
from backend.engines.vace_sampler import encode_control
from backend.engines.wan_vace import DEFAULT_NEGATIVE_PROMPT
from protocol.errors import ValidationError

from .config import TuneConfig
from .data import TrainingPair

LORA_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_SEQUENCE_LENGTH = 512


def training_device_and_dtype(config: TuneConfig) -> tuple[torch.device, torch.dtype]:
    """``cuda`` with bf16 base weights when available, else the CPU in fp32 (or what the config says)."""
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, config.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    return device, dtype


def load_base_pipeline(folder: str | os.PathLike[str], device: torch.device, dtype: torch.dtype) -> Any:
    """``WanVACEPipeline`` from a local diffusers folder: transformer in ``dtype``, VAE fp32, on ``device``
    (the text encoder stays on the CPU until prompts are encoded)."""
    from diffusers import AutoencoderKLWan, WanVACEPipeline

    vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", dtype=torch.float32, local_files_only=True)
    pipe = WanVACEPipeline.from_pretrained(folder, vae=vae, dtype=dtype, local_files_only=True)
    pipe.transformer.to(device)
    pipe.vae.to(device)
    return pipe


@torch.no_grad()
def encode_prompts(pipe: Any, prompt: str, device: torch.device,
                   negative_prompt: str = DEFAULT_NEGATIVE_PROMPT) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prompt_embeds, negative_embeds)`` ``(1, L, text_dim)`` on the CPU; releases the text encoder."""
    if pipe.text_encoder is None:
        raise ValidationError("the base pipeline has no text encoder to encode the prompt with")
    text_encoder = pipe.text_encoder.to(device).eval()
    positive, negative = pipe.encode_prompt(prompt=prompt, negative_prompt=negative_prompt,
                                            do_classifier_free_guidance=True,
                                            max_sequence_length=MAX_SEQUENCE_LENGTH, device=device)
    pipe.text_encoder = None
    del text_encoder
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return positive.float().cpu(), negative.float().cpu()


@dataclass
class CachedSample:
    """A training sample as the trainer uses it: clean latents, VACE control latents, metadata."""

    latents: torch.Tensor  # (1, z, F_lat, h, w) float32, normalised
    control: torch.Tensor  # (1, 2z + 64, F_lat, h, w) float32
    meta: dict[str, Any]

    def save(self, path: Path) -> None:
        """fp16 latents and video control channels, the folded mask as bool (exact)."""
        z = self.latents.shape[1]
        torch.save({"latents": self.latents.half(), "control_video": self.control[:, : 2 * z].half(),
                    "control_mask": self.control[:, 2 * z:] > 0.5, "meta": self.meta}, path)

    @classmethod
    def load(cls, path: Path) -> CachedSample:
        data = torch.load(path, map_location="cpu", weights_only=True)
        control = torch.cat([data["control_video"].float(), data["control_mask"].float()], dim=1)
        return cls(data["latents"].float(), control, data["meta"])


@torch.no_grad()
def encode_video_latents(pipe: Any, frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(F,H,W,3)`` uint8 -> normalised latents ``(1, z, F_lat, H/8, W/8)`` float32 (VAE mode)."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).to(device=device, dtype=torch.float32)
    video = (video / 127.5 - 1.0).permute(3, 0, 1, 2).unsqueeze(0).to(pipe.vae.dtype)
    latents = pipe.vae.encode(video).latent_dist.mode().float()
    z = pipe.vae.config.z_dim
    mean = torch.tensor(pipe.vae.config.latents_mean, device=device).view(1, z, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std, device=device).view(1, z, 1, 1, 1)
    return ((latents - mean) / std).cpu()


def encode_pair(pipe: Any, pair: TrainingPair, device: torch.device,
                clean_latents: torch.Tensor | None = None) -> CachedSample:
    """VAE-encode a pixel pair once: ground-truth latents (or ``clean_latents`` when this clip's are
    already known) and the VACE control of the degraded input."""
    latents = encode_video_latents(pipe, pair.clean, device) if clean_latents is None else clean_latents
    control = encode_control(pipe, pair.degraded, pair.hole, device).float().cpu()
    return CachedSample(latents, control, dict(pair.meta))


# ---- LoRA ------------------------------------------------------------------------------------------


def add_lora(transformer: Any, config: TuneConfig, *, checkpointing: bool | None = None) -> list[torch.nn.Parameter]:
    """Freeze ``transformer``, add a peft LoRA (rank, alpha, targets from ``config``; A initialised from
    ``config.seed``, B zero), make the LoRA parameters fp32 and trainable, enable gradient checkpointing;
    returns the trainable parameters."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    lora_config = LoraConfig(r=config.rank, lora_alpha=config.lora_alpha, init_lora_weights=True,
                             target_modules=config.target_modules)
    try:
        with torch.random.fork_rng(devices=[]):  # LoRA A init from the run's seed, not the global RNG
            torch.manual_seed(int(config.seed))
            transformer.add_adapter(lora_config)
    except ValueError as exc:
        raise ValidationError(f"LoRA target_modules {config.target_modules!r} match nothing in the "
                              f"transformer: {exc}") from exc
    parameters = [p for name, p in transformer.named_parameters() if "lora_" in name]
    for parameter in parameters:
        parameter.data = parameter.data.float()
        parameter.requires_grad_(True)
    if config.gradient_checkpointing if checkpointing is None else checkpointing:
        transformer.enable_gradient_checkpointing()
    return parameters


def lora_state_dict(transformer: Any) -> dict[str, torch.Tensor]:
    """The adapter's weights, peft names (``blocks.0.attn1.to_q.lora_A.weight``), on the CPU."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(transformer).items()}


def load_lora_state_dict(transformer: Any, state: dict[str, torch.Tensor]) -> None:
    """Put saved adapter weights back (exact resume)."""
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(transformer, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValidationError(f"checkpoint LoRA does not fit this model (unexpected keys {unexpected[:3]} ...)")


def save_lora(transformer: Any, out_dir: Path, *, extra_metadata: dict[str, Any] | None = None) -> Path:
    """Write the adapter in diffusers LoRA format to ``out_dir`` (safetensors + adapter metadata);
    ``extra_metadata`` goes to ``lora_info.json`` beside it. Returns the folder."""
    from diffusers import WanVACEPipeline

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    WanVACEPipeline.save_lora_weights(
        out_dir, transformer_lora_layers=lora_state_dict(transformer),
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict(), safe_serialization=True)
    if extra_metadata is not None:
        (out_dir / "lora_info.json").write_text(json.dumps(extra_metadata, indent=1, default=str))
    return out_dir


def register_lora(lora_dir: Path, lora_id: str, models_dir: str | os.PathLike[str] | None = None,
                  *, overwrite: bool = True) -> Path:
    """Copy a saved LoRA folder to ``<models>/loras/<lora_id>/`` so reshoot jobs can use it by id."""
    if not LORA_ID_PATTERN.match(lora_id):
        raise ValidationError(f"LoRA id {lora_id!r} must be 1-100 letters, digits, '.', '-' or '_' "
                              "(starting with a letter or digit)")
    target = resolve_models_dir(models_dir) / LORAS_SUBDIR / lora_id
    if target.exists():
        if not overwrite:
            raise ValidationError(f"a LoRA with id {lora_id!r} already exists at {target}")
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{lora_id}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(lora_dir, staging)
    if not (staging / LORA_WEIGHTS_FILE).is_file():
        shutil.rmtree(staging)
        raise ValidationError(f"{lora_dir} holds no {LORA_WEIGHTS_FILE}")
    staging.rename(target)
    return target
