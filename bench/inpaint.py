"""Wan2.1 VACE-1.3B inpainting speed: diffusers defaults vs the wan-vace engine's tuned settings.

Full-size VACE-1.3B transformer configuration and Wan2.1 VAE with random weights (speed does not
depend on weight values), bf16 transformer, 512x512x81 frames, 30 steps, guidance 6.5, random
prompt embeddings (1, 512, 4096) standing in for cached UMT5-XXL output.

- baseline: ``WanVACEPipeline.__call__`` as documented (UniPC, VAE fp32 without tiling, native SDPA,
  cond and uncond as two forwards);
- tuned: ``WanVaceEngine.fill`` (DPM-solver, VAE fp32 with tiling, cond+uncond batched, the fastest
  attention backend that runs here, regional torch.compile).

Prints seconds per step, seconds per clip and peak VRAM for both; the last line is one JSON
object. Needs CUDA; on CPU prints a JSON line with "skipped": true.
Usage: python bench/inpaint.py [--frames 81] [--size 512] [--steps 30] [--no-compile]
       python bench/inpaint.py --smoke   (tiny random model on the CPU: checks the script, times nothing real)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL = "<= 30 s/clip and <= 20 GB peak VRAM on an H100"

VACE_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                 out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", eps=1e-6, vace_layers=list(range(0, 30, 2)), vace_in_channels=96)


TINY_VACE = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                 text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96)
TINY_VAE = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])


def build_pipeline(torch, device, tiny: bool = False):
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanVACEPipeline,
        WanVACETransformer3DModel,
    )

    torch.manual_seed(0)
    with torch.device(device):
        transformer = WanVACETransformer3DModel(**(TINY_VACE if tiny else VACE_1_3B))
        transformer = transformer.to(torch.float32 if tiny else torch.bfloat16)
        vae = AutoencoderKLWan(**(TINY_VAE if tiny else {})).to(torch.float32)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanVACEPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=scheduler, transformer=transformer)


def make_clip(np, frames: int, size: int):
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:size, 0:size]
    base = np.stack([128 + 100 * np.sin(cols / 23.0), 128 + 100 * np.cos(rows / 17.0),
                     128 + 60 * np.sin((rows + cols) / 31.0)], -1)
    video = np.clip(base[None] + rng.normal(0, 4, (frames, size, size, 3)), 0, 255).astype(np.uint8)
    holes = np.zeros((frames, size, size), bool)
    for index in range(frames):
        left = int(size * 0.15 + index * size * 0.004)
        holes[index, size // 4: size // 4 + size // 3, left: left + size // 3] = True
    return video, holes


def synchronize(torch) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(torch, fn):
    """(seconds, seconds per solver step, peak GPU memory in GiB or 0.0 on the CPU) of ``fn(step_times)``."""
    cuda = torch.cuda.is_available()
    synchronize(torch)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step_times: list[float] = []
    start = time.perf_counter()
    fn(step_times)
    synchronize(torch)
    total = time.perf_counter() - start
    per_step = (step_times[-1] - step_times[0]) / max(1, len(step_times) - 1) if len(step_times) > 1 else total
    return total, per_step, (torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=6.5)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU, to check the script")
    args = parser.parse_args(argv)

    import torch

    if args.smoke:
        torch.set_num_threads(2)
        args.frames, args.size, args.steps, args.no_compile = 9, 32, 2, True
    elif not torch.cuda.is_available():
        print(json.dumps({"bench": "inpaint", "unit": "s/clip", "skipped": True,
                          "reason": "needs a CUDA GPU (full-size Wan2.1 VACE-1.3B)", "goal": GOAL}))
        return
    import numpy as np
    from PIL import Image

    from backend.engines.wan_vace import WanVaceEngine

    device = torch.device("cpu" if args.smoke else "cuda")
    video, holes = make_clip(np, args.frames, args.size)
    text_dim, text_len = (32, 16) if args.smoke else (4096, 512)
    embed_dtype = torch.float32 if args.smoke else torch.bfloat16
    prompt_embeds = torch.randn(1, text_len, text_dim, dtype=embed_dtype) * 0.1
    negative_embeds = torch.randn(1, text_len, text_dim, dtype=embed_dtype) * 0.1
    results: dict[str, float | str | bool] = {}

    pipe = build_pipeline(torch, device, tiny=args.smoke)
    if not args.skip_baseline:
        pil_video = [Image.fromarray(f) for f in np.where(holes[..., None], 128, video).astype(np.uint8)]
        pil_mask = [Image.fromarray(h.astype(np.uint8) * 255) for h in holes]

        def baseline(step_times: list[float], steps: int = args.steps) -> None:
            def on_step(pipeline, index, t, kwargs):
                synchronize(torch)
                step_times.append(time.perf_counter())
                return kwargs

            pipe(video=pil_video, mask=pil_mask, prompt_embeds=prompt_embeds.to(device),
                 negative_prompt_embeds=negative_embeds.to(device), height=args.size, width=args.size,
                 num_frames=args.frames, num_inference_steps=steps, guidance_scale=args.guidance,
                 output_type="np", callback_on_step_end=on_step)

        baseline([], 2)  # warm-up
        total, per_step, peak = timed(torch, baseline)
        results.update(baseline_s_per_clip=total, baseline_s_per_step=per_step, baseline_peak_vram_gb=peak)
        print(f"diffusers defaults: {total:.1f} s/clip, {per_step:.3f} s/step, peak {peak:.1f} GB", flush=True)
        if not args.smoke:
            torch.cuda.empty_cache()

    backend = "native"
    for candidate in () if args.smoke else ("_flash_3", "flash", "_native_cudnn"):
        try:
            pipe.transformer.set_attention_backend(candidate)
            q = torch.randn(1, 64, 2, 128, device=device, dtype=torch.bfloat16)
            from diffusers.models.attention_dispatch import dispatch_attention_fn

            dispatch_attention_fn(q, q, q, backend=candidate)
            backend = candidate
            break
        except Exception as error:  # noqa: BLE001 - probing which kernels exist on this machine
            print(f"attention backend {candidate} unavailable: {type(error).__name__}: {str(error)[:120]}")
    pipe.transformer.reset_attention_backend()
    engine = WanVaceEngine.from_pipeline(
        pipe, num_inference_steps=args.steps, guidance_scale=args.guidance, window_frames=args.frames,
        max_pixels=args.size * args.size, attention_backend=None if backend == "native" else backend,
        compile=not args.no_compile, batch_cfg=True, vae_tiling=True, device=device.type,
        dtype="float32" if args.smoke else "bfloat16")
    engine.set_prompt_embeddings("bench", prompt_embeds, negative_embeds)

    def tuned(step_times: list[float], steps: int = args.steps) -> None:
        engine.options.num_inference_steps = steps

        def progress(step: int, total: int, message: str) -> None:
            synchronize(torch)
            step_times.append(time.perf_counter())

        engine.fill(video, holes, "bench", progress=progress)

    warm_start = time.perf_counter()
    tuned([], 2)  # warm-up (and torch.compile)
    warmup = time.perf_counter() - warm_start
    total, per_step, peak = timed(torch, tuned)
    results.update(s_per_clip=total, s_per_step=per_step, peak_vram_gb=peak, warmup_s=warmup,
                   attention_backend=backend, compiled=not args.no_compile)
    print(f"tuned: {total:.1f} s/clip, {per_step:.3f} s/step, peak {peak:.1f} GB (warm-up {warmup:.0f} s)",
          flush=True)

    def significant(value: float) -> float:
        return float(f"{value:.4g}")

    baseline_value = results.get("baseline_s_per_clip")
    summary = {
        "bench": "inpaint", "unit": "s/clip", "value": significant(total),
        "baseline": None if baseline_value is None else significant(float(baseline_value)),
        "ratio": None if baseline_value is None else significant(float(baseline_value) / total),
        "device": "cpu (smoke: tiny model)" if args.smoke else torch.cuda.get_device_name(0), "goal": GOAL,
        "clip": f"{args.size}x{args.size}x{args.frames}, {args.steps} steps, guidance {args.guidance}",
        **{k: (significant(v) if isinstance(v, float) else v) for k, v in results.items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
