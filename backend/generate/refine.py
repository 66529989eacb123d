"""Refine a pseudo-video at reduced strength (CoCo4D: the fill of the first frame pasted into every
frame, then re-denoised by the video inpainting model so it moves with the rest of the clip).

With the ``wan-vace`` engine this is SDEdit inside the holes: the pseudo-video is VAE-encoded, noised
to the flow-matching time ``sigma`` of step ``round(steps * (1 - strength))`` of the sampler's
schedule (``x = (1 - sigma) * x0 + sigma * noise``), and denoised over the remaining steps with VACE
control = the seen pixels (holes masked white = generate). ``strength = 1`` is a full fill,
``strength = 0`` returns the pseudo-video. Seen pixels come back exactly (feathered seam as the
engine's ``fill``). Any other engine (``classical``) has no generative prior to refine with: the
pasted propagation *is* its result, returned unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.engines.inpaint_types import composite_fill, validate_fill_inputs
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.errors import ValidationError


def refine_video(engine: Any, frames: np.ndarray, holes: np.ndarray, prompt: str = "", *, strength: float = 0.7,
                 progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> np.ndarray:
    """Refine ``frames (F,H,W,3)`` uint8 inside ``holes (F,H,W)`` bool at ``strength`` in [0, 1]."""
    if not 0.0 <= strength <= 1.0:
        raise ValidationError(f"refine strength must be in [0, 1], got {strength}")
    frames, holes = validate_fill_inputs(frames, holes)
    check_cancel(cancel)
    if not hasattr(engine, "pipe") or not hasattr(engine, "prompt_embeddings") or strength == 0.0 or not holes.any():
        return frames.copy()
    return _refine_vace(engine, frames, holes, prompt, strength, progress, cancel)


def _refine_vace(engine: Any, frames: np.ndarray, holes: np.ndarray, prompt: str, strength: float,
                 progress: ProgressFn | None, cancel: CancelFn | None) -> np.ndarray:
    from backend.engines.vace_geometry import ModelFrameLayout, pad_window, plan_windows

    opts = engine.options
    layout = ModelFrameLayout.plan(frames.shape[1], frames.shape[2], max_pixels=opts.max_pixels)
    model_frames = layout.frames_to_model(frames)
    model_holes = layout.holes_to_model(holes)
    windows = plan_windows(frames.shape[0], opts.window_frames, opts.overlap_frames)
    out = model_frames.copy()
    for index, (start, end) in enumerate(windows):
        check_cancel(cancel)
        window_frames, window_holes = pad_window(out[start:end], model_holes[start:end])

        def on_step(step: int, steps: int, index: int = index) -> None:
            check_cancel(cancel)
            if progress is not None:
                progress(index * steps + step, len(windows) * steps, f"refine window {index + 1}/{len(windows)}")

        refined = sdedit_vace_window(engine, window_frames, window_holes, prompt, strength, on_step)
        out[start:end] = np.where(model_holes[start:end, ..., None], refined[: end - start], out[start:end])
    return composite_fill(frames, layout.frames_from_model(out), holes, opts.feather_px)


def sdedit_vace_window(engine: Any, frames: np.ndarray, holes: np.ndarray, prompt: str, strength: float,
                       on_step: Any = None) -> np.ndarray:
    """One window (F = 4k + 1, H/W multiples of 16) denoised from ``strength`` of the schedule."""
    import torch

    from backend.engines.vace_sampler import (
        SamplingSettings,
        _latent_stats,
        _predict,
        _to_video_tensor,
        decode_latents,
        encode_control,
    )

    pipe, opts, device, dtype = engine.pipe, engine.options, engine.device, engine.dtype
    settings = SamplingSettings(opts.num_inference_steps, opts.guidance_scale, opts.conditioning_scale, opts.seed,
                                opts.batch_cfg)
    positive, negative = engine.prompt_embeddings(prompt)
    with torch.no_grad():
        control = encode_control(pipe, frames, holes, device).to(dtype)
        video = _to_video_tensor(frames, device).to(pipe.vae.dtype)
        mean, inv_std = _latent_stats(pipe.vae, device)
        clean = (pipe.vae.encode(video).latent_dist.mode().float() - mean) * inv_std
        scheduler = pipe.scheduler
        scheduler.set_timesteps(settings.num_inference_steps, device=device)
        start = min(int(round(settings.num_inference_steps * (1.0 - strength))), settings.num_inference_steps - 1)
        timesteps = scheduler.timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        sigma = scheduler.sigmas[start].to(device=device, dtype=torch.float32)
        generator = torch.Generator(device="cpu").manual_seed(int(settings.seed))
        noise = torch.randn(tuple(clean.shape), generator=generator).to(device)
        latents = (1.0 - sigma) * clean + sigma * noise
        scale = torch.full((len(pipe.transformer.config.vace_layers),), float(settings.conditioning_scale),
                           device=device, dtype=dtype)
        positive = positive.to(device=device, dtype=dtype)
        negative = None if negative is None else negative.to(device=device, dtype=dtype)
        for i, t in enumerate(timesteps):
            noise_pred = _predict(pipe.transformer, latents, t, control, positive, negative, settings, scale, dtype)
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            if on_step is not None:
                on_step(i + 1, len(timesteps))
        return decode_latents(pipe, latents)
