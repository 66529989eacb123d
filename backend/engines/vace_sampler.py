"""One VACE denoising run over a window of frames, with optional temporal packing of context frames.

This is the diffusers ``WanVACEPipeline.__call__`` loop written out so that context frames can be
packed and re-imposed at every step, progress/cancel are checked per step, and classifier-free
guidance can run cond and uncond as one batch.

Temporal packing follows the VACE reference-image convention: each context frame is VAE-encoded
on its own into one latent frame and **prepended** along the latent time axis, with control
latents ``[context latent, zeros]`` and an all-zero mask (= keep). After every solver step the
context slice is reset to ``(1 - sigma_next) * context + sigma_next * noise`` (clean at the last
step), so the context stays exactly what was given while the clip tokens attend to it; the
context slice is dropped before decoding. Noise for the clip is drawn before the context noise
from the same seeded CPU generator, so a packed and an unpacked run start from the same clip noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class SamplingSettings:
    """Solver settings for one run (steps, classifier-free guidance, VACE control strength, seed)."""

    num_inference_steps: int = 30
    guidance_scale: float = 6.5
    conditioning_scale: float = 1.0
    seed: int = 0
    batch_cfg: bool = True
    sigmas: list[float] | None = None  # explicit unshifted sigmas (distilled schedules); None: evenly spaced


@dataclass
class SampleResult:
    """Decoded frames plus the latents a caller (or a test) may want to inspect."""

    frames: np.ndarray  # (F, H, W, 3) uint8, model resolution
    clip_noise: torch.Tensor  # (1, C, F_lat, h, w) initial noise of the clip
    clip_control: torch.Tensor  # (1, C_vace, F_lat, h, w) control latents of the clip
    context_latents_in: torch.Tensor | None  # (1, C, K, h, w) clean encoded context
    context_latents_out: torch.Tensor | None  # (1, C, K, h, w) context slice after the last step


def _to_video_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (1, 3, F, H, W) float32 in [-1, 1]."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).to(device=device, dtype=torch.float32)
    return (video / 127.5 - 1.0).permute(3, 0, 1, 2).unsqueeze(0).contiguous()


def _latent_stats(vae: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    z_dim = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, device=device, dtype=torch.float32).view(1, z_dim, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std, device=device, dtype=torch.float32).view(1, z_dim, 1, 1, 1)
    return mean, inv_std


@torch.no_grad()
def encode_context_frames(pipe: Any, frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """(K, H, W, 3) uint8 -> normalised latents (1, z_dim, K, H/8, W/8), each frame encoded on its own."""
    video = _to_video_tensor(frames, device)  # (1, 3, K, H, W)
    singles = video[0].permute(1, 0, 2, 3).unsqueeze(2).to(pipe.vae.dtype)  # (K, 3, 1, H, W)
    latents = pipe.vae.encode(singles).latent_dist.mode()  # (K, z, 1, h, w)
    mean, inv_std = _latent_stats(pipe.vae, device)
    latents = (latents.float() - mean) * inv_std
    return latents.permute(2, 1, 0, 3, 4)  # (1, z, K, h, w)


@torch.no_grad()
def encode_control(pipe: Any, frames: np.ndarray, holes: np.ndarray, device: torch.device) -> torch.Tensor:
    """VACE control latents (1, 2*z_dim + 64, F_lat, h, w): [inactive, reactive, 8x8-folded mask].

    Hole pixels are set to grey before encoding, as the VACE docs do.
    """
    video = _to_video_tensor(frames, device)
    mask = torch.from_numpy(np.ascontiguousarray(holes)).to(device=device, dtype=torch.float32)
    mask = mask[None, None].expand(1, 3, *mask.shape).contiguous()  # (1, 3, F, H, W), 1 = generate
    video = video * (1.0 - mask)  # grey (0 in [-1, 1]) in the holes
    latents = pipe.prepare_video_latents(video, mask, [[]], None, device)
    folded_mask = pipe.prepare_masks(mask, [[]], None)
    return torch.cat([latents.float(), folded_mask.float()], dim=1)


@torch.no_grad()
def decode_latents(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    """Normalised latents (1, z, F_lat, h, w) -> (F, H, W, 3) uint8."""
    mean, inv_std = _latent_stats(pipe.vae, latents.device)
    latents = (latents.float() / inv_std + mean).to(pipe.vae.dtype)
    video = pipe.vae.decode(latents, return_dict=False)[0]  # (1, 3, F, H, W) in [-1, 1]
    video = ((video[0].float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return video.permute(1, 2, 3, 0).cpu().numpy()


def _predict(transformer: Any, latents: torch.Tensor, t: torch.Tensor, control: torch.Tensor,
             prompt_embeds: torch.Tensor, negative_embeds: torch.Tensor | None, settings: SamplingSettings,
             conditioning_scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    model_input = latents.to(dtype)
    if negative_embeds is None or settings.guidance_scale <= 1.0:
        return transformer(hidden_states=model_input, timestep=t.expand(1), encoder_hidden_states=prompt_embeds,
                           control_hidden_states=control, control_hidden_states_scale=conditioning_scale,
                           return_dict=False)[0].float()
    if settings.batch_cfg and prompt_embeds.shape == negative_embeds.shape:
        both = transformer(hidden_states=torch.cat([model_input, model_input]), timestep=t.expand(2),
                           encoder_hidden_states=torch.cat([prompt_embeds, negative_embeds]),
                           control_hidden_states=torch.cat([control, control]),
                           control_hidden_states_scale=conditioning_scale, return_dict=False)[0].float()
        cond, uncond = both[:1], both[1:]
    else:
        with transformer.cache_context("cond"):
            cond = transformer(hidden_states=model_input, timestep=t.expand(1), encoder_hidden_states=prompt_embeds,
                               control_hidden_states=control, control_hidden_states_scale=conditioning_scale,
                               return_dict=False)[0].float()
        with transformer.cache_context("uncond"):
            uncond = transformer(hidden_states=model_input, timestep=t.expand(1),
                                 encoder_hidden_states=negative_embeds, control_hidden_states=control,
                                 control_hidden_states_scale=conditioning_scale, return_dict=False)[0].float()
    return uncond + settings.guidance_scale * (cond - uncond)


@torch.no_grad()
def sample_vace_window(pipe: Any, frames: np.ndarray, holes: np.ndarray, prompt_embeds: torch.Tensor,
                       negative_embeds: torch.Tensor | None, settings: SamplingSettings, *,
                       device: torch.device, dtype: torch.dtype, context_frames: np.ndarray | None = None,
                       on_step: Callable[[int, int], None] | None = None) -> SampleResult:
    """Fill ``holes`` in one window of ``frames`` (F = 4k + 1, H and W multiples of 16) with VACE.

    ``context_frames`` (K, H, W, 3) uint8 are packed as temporal context (module docstring) and
    dropped from the output. ``on_step(step, total)`` is called after each solver step (raise
    from it to cancel). Returns the decoded window at model resolution and inspection latents.
    """
    transformer = pipe.transformer
    control = encode_control(pipe, frames, holes, device)
    _, _, latent_frames, latent_h, latent_w = control.shape
    channels = transformer.config.in_channels
    generator = torch.Generator(device="cpu").manual_seed(int(settings.seed))
    clip_noise = torch.randn((1, channels, latent_frames, latent_h, latent_w), generator=generator).to(device)

    context_latents = None
    num_context = 0
    if context_frames is not None and len(context_frames) > 0:
        context_latents = encode_context_frames(pipe, context_frames, device)
        num_context = context_latents.shape[2]
        context_noise = torch.randn(tuple(context_latents.shape), generator=generator).to(device)
        zeros = torch.zeros((1, control.shape[1] - channels, num_context, latent_h, latent_w), device=device)
        control = torch.cat([torch.cat([context_latents, zeros], dim=1), control], dim=2)
    clip_control = control[:, :, num_context:].clone()
    control = control.to(dtype)

    scheduler = pipe.scheduler
    if settings.sigmas is not None:
        scheduler.set_timesteps(sigmas=list(settings.sigmas), device=device)
    else:
        scheduler.set_timesteps(settings.num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    sigmas = scheduler.sigmas.to(device=device, dtype=torch.float32)

    def context_at(sigma: torch.Tensor) -> torch.Tensor:
        return (1.0 - sigma) * context_latents + sigma * context_noise

    latents = clip_noise.clone()
    if context_latents is not None:
        latents = torch.cat([context_at(sigmas[0]), latents], dim=2)

    vace_layers = len(transformer.config.vace_layers)
    conditioning_scale = torch.full((vace_layers,), float(settings.conditioning_scale), device=device, dtype=dtype)
    prompt_embeds = prompt_embeds.to(device=device, dtype=dtype)
    if negative_embeds is not None:
        negative_embeds = negative_embeds.to(device=device, dtype=dtype)

    total = len(timesteps)
    for index, t in enumerate(timesteps):
        noise_pred = _predict(transformer, latents, t, control, prompt_embeds, negative_embeds, settings,
                              conditioning_scale, dtype)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        if context_latents is not None:
            latents = latents.clone()
            latents[:, :, :num_context] = context_at(sigmas[index + 1])
        if on_step is not None:
            on_step(index + 1, total)

    context_out = latents[:, :, :num_context].clone() if context_latents is not None else None
    decoded = decode_latents(pipe, latents[:, :, num_context:])
    return SampleResult(decoded, clip_noise, clip_control, context_latents, context_out)
