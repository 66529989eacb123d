"""Wan2.1 VACE-1.3B inpainting speed: diffusers defaults vs the wan-vace engine, and the few-step mode.

Full-size VACE-1.3B transformer configuration and Wan2.1 VAE with random weights (speed does not
depend on weight values), bf16 transformer, 512x512x81 frames, random prompt embeddings
(1, 512, 4096) standing in for cached UMT5-XXL output.

- baseline: ``WanVACEPipeline.__call__`` as documented (UniPC, 30 steps, guidance 6.5, VAE fp32
  without tiling, native SDPA, cond and uncond as two forwards);
- engine: ``WanVaceEngine.fill`` with its defaults (DPM-solver 30 steps, guidance 6.5, cond+uncond
  batched, VAE tiling, placement and attention backend chosen here: ``offload="auto"``,
  ``attention_backend="auto"``; ``--compile`` adds regional torch.compile);
- fast: ``WanVaceEngine.fill`` with ``preset="fast"``: a random rank-64 step-distillation LoRA
  (the lightx2v rank) fused into the transformer, 4 distilled Euler steps, guidance 1.

Prints seconds per clip, seconds per step and peak VRAM of each, and the memory planner's
estimate; the last line is one JSON object. Needs CUDA; on CPU prints a JSON line with
"skipped": true.
Usage: python bench/inpaint.py [--frames 81] [--size 512] [--steps 30] [--fast-steps 4] [--compile]
       python bench/inpaint.py --smoke   (tiny random model on the CPU: checks the script, times nothing real)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.engines.vram import WAN_VACE_1_3B_CONFIG  # noqa: E402

GOAL = "H200: <= 30 s/clip and <= 20 GB peak (30 steps + CFG); fast (4 steps) <= 6 s/clip"

TINY_VACE = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                 text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96)
TINY_VAE = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
LORA_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2")


def build_pipeline(torch, device, tiny: bool = False):
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanVACEPipeline,
        WanVACETransformer3DModel,
    )

    torch.manual_seed(0)
    with torch.device(device):
        transformer = WanVACETransformer3DModel(**(TINY_VACE if tiny else WAN_VACE_1_3B_CONFIG))
        transformer = transformer.to(torch.float32 if tiny else torch.bfloat16)
        vae = AutoencoderKLWan(**(TINY_VAE if tiny else {})).to(torch.float32)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanVACEPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=scheduler, transformer=transformer)


def write_random_lora(torch, transformer, rank: int, path: Path) -> Path:
    """A random LoRA (diffusers keys, no alpha: scale 1) on every main block's attention and FFN, as a file."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(3)
    state = {}
    for index, _ in enumerate(transformer.blocks):
        for target in LORA_TARGETS:
            layer = transformer.get_submodule(f"blocks.{index}.{target}")
            key = f"transformer.blocks.{index}.{target}"
            state[f"{key}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=generator) * 0.01
            state[f"{key}.lora_B.weight"] = torch.randn(layer.out_features, rank, generator=generator) * 0.01
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}, str(path))
    return path


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


def run_engine(torch, engine, video, holes, steps: int, label: str, results: dict, warm_up: bool = True) -> float:
    """Warm up (one step on the first 17 frames) unless told not to, then time one full fill under ``label``."""

    def fill(step_times: list[float], steps: int = steps, frames: int | None = None) -> None:
        engine.options.num_inference_steps = steps

        def progress(step: int, total: int, message: str) -> None:
            synchronize(torch)
            step_times.append(time.perf_counter())

        engine.fill(video[:frames], holes[:frames], "bench", progress=progress)

    warm_start = time.perf_counter()
    if warm_up:
        window = engine.options.window_frames
        engine.options.window_frames = min(17, window)
        fill([], 1, engine.options.window_frames)
        engine.options.window_frames = window
    warmup = time.perf_counter() - warm_start
    total, per_step, peak = timed(torch, fill)
    report = engine.runtime_report()
    placement = report["placement"]
    results.update({f"{label}_s_per_clip": total, f"{label}_s_per_step": per_step, f"{label}_peak_vram_gb": peak,
                    f"{label}_warmup_s": warmup, f"{label}_placement": placement["placement"],
                    f"{label}_estimated_peak_gb": placement["peak_gib"].get(placement["placement"]),
                    f"{label}_attention_backend": report["attention_backend"]})
    print(f"{label}: {total:.2f} s/clip, {per_step:.3f} s/step, peak {peak:.1f} GiB (warm-up {warmup:.0f} s, "
          f"placement {placement['placement']}, attention {report['attention_backend']})", flush=True)
    if report["attention_measurements"]:
        results["attention_measurements"] = report["attention_measurements"]
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=6.5)
    parser.add_argument("--fast-steps", type=int, default=4, help="steps of the few-step mode (0 skips it)")
    parser.add_argument("--attention-backend", default="auto", help="engine attention backend (default: measured)")
    parser.add_argument("--compile", action="store_true", help="regional torch.compile in the engine run")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU, to check the script")
    args = parser.parse_args(argv)

    import torch

    if args.smoke:
        torch.set_num_threads(2)
        args.frames, args.size, args.steps, args.compile = 9, 32, 2, False
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
    results: dict = {}

    pipe = build_pipeline(torch, device, tiny=args.smoke)
    if not args.skip_baseline:
        pil_video = [Image.fromarray(f) for f in np.where(holes[..., None], 128, video).astype(np.uint8)]
        pil_mask = [Image.fromarray(h.astype(np.uint8) * 255) for h in holes]

        def baseline(step_times: list[float], steps: int = args.steps, frames: int = args.frames) -> None:
            def on_step(pipeline, index, t, kwargs):
                synchronize(torch)
                step_times.append(time.perf_counter())
                return kwargs

            pipe(video=pil_video[:frames], mask=pil_mask[:frames], prompt_embeds=prompt_embeds.to(device),
                 negative_prompt_embeds=negative_embeds.to(device), height=args.size, width=args.size,
                 num_frames=frames, num_inference_steps=steps, guidance_scale=args.guidance,
                 output_type="np", callback_on_step_end=on_step)

        if not args.smoke:
            baseline([], 1, min(17, args.frames))  # warm-up: one step on a short clip
        total, per_step, peak = timed(torch, baseline)
        results.update(baseline_s_per_clip=total, baseline_s_per_step=per_step, baseline_peak_vram_gb=peak)
        print(f"diffusers defaults: {total:.1f} s/clip, {per_step:.3f} s/step, peak {peak:.1f} GiB", flush=True)
        if not args.smoke:
            torch.cuda.empty_cache()

    common = dict(window_frames=args.frames, max_pixels=args.size * args.size, device=device.type,
                  dtype="float32" if args.smoke else "bfloat16", attention_backend=args.attention_backend)
    engine = WanVaceEngine.from_pipeline(pipe, num_inference_steps=args.steps, guidance_scale=args.guidance,
                                         compile=args.compile, **common)
    engine.set_prompt_embeddings("bench", prompt_embeds, negative_embeds)
    total = run_engine(torch, engine, video, holes, args.steps, "engine", results, warm_up=not args.smoke)
    results["compiled"] = args.compile

    if args.fast_steps:
        del engine
        if not args.smoke:
            torch.cuda.empty_cache()
        with tempfile.TemporaryDirectory(prefix="recast4d_bench_lora_") as folder:
            lora = write_random_lora(torch, pipe.transformer, 4 if args.smoke else 64,
                                     Path(folder) / "step-distill.safetensors")
            fast = WanVaceEngine.from_pipeline(pipe, preset="fast", distill_lora=str(lora), lora_mode="fuse",
                                               num_inference_steps=args.fast_steps, **common)
        fast.set_prompt_embeddings("bench", prompt_embeds, negative_embeds)
        run_engine(torch, fast, video, holes, args.fast_steps, "fast", results, warm_up=not args.smoke)

    def significant(value: float) -> float:
        return float(f"{value:.4g}")

    baseline_value = results.get("baseline_s_per_clip")
    summary = {
        "bench": "inpaint", "unit": "s/clip", "value": significant(total),
        "baseline": None if baseline_value is None else significant(float(baseline_value)),
        "ratio": None if baseline_value is None else significant(float(baseline_value) / total),
        "device": "cpu (smoke: tiny model)" if args.smoke else torch.cuda.get_device_name(0), "goal": GOAL,
        "clip": f"{args.size}x{args.size}x{args.frames}, {args.steps} steps, guidance {args.guidance}",
        "fast_clip": f"{args.fast_steps} distilled steps, guidance 1, rank-{4 if args.smoke else 64} LoRA fused" if args.fast_steps else None,
        **{k: (significant(v) if isinstance(v, float) else v) for k, v in results.items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
