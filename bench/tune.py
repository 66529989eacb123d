"""Per-video LoRA tuning speed: one training step of the full-size Wan2.1 VACE-1.3B at 512x512x81.

Full-size VACE-1.3B transformer configuration with random weights (speed does not depend on weight
values), LoRA rank 128 on the main blocks' attention (the ``TuneConfig`` defaults), one 81-frame
512x512 clip per step (latents 16x21x64x64, VACE control 96x21x64x64, prompt embeddings 1x512x4096
standing in for cached UMT5-XXL output). Each step is ``LoraTrainer.train_step`` as ``recast4d tune``
runs it: logit-normal shifted sigma, forward, flow-matching loss, backward, grad clipping, AdamW.

- ours: bf16 base weights, fp32 LoRA parameters, gradient checkpointing (the defaults);
- baseline: the same step with fp32 base weights and no gradient checkpointing (when that does not
  fit in memory it is reported as out of memory and the baseline falls back to fp32 with
  checkpointing); also reported: bf16 without checkpointing.

Prints seconds per step and peak VRAM per variant; the last line is one JSON object with the
projected time of 2000 steps. Needs CUDA; on the CPU prints a JSON line with "skipped": true.
Usage: python bench/tune.py [--frames 81] [--size 512] [--steps 5] [--warmup 2] [--baseline-steps N]
       python bench/tune.py --smoke   (tiny random model on the CPU: checks the script, times nothing real)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.engines.vram import WAN_VACE_1_3B_CONFIG as VACE_1_3B  # noqa: E402

GOAL = "2000 steps <= 30 min on an H200 (<= 0.9 s/step)"
GOAL_SECONDS_PER_STEP = 0.9

TINY_VACE = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                 text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96)


def measure(torch, *, dtype, checkpointing: bool, frames: int, size: int, steps: int, warmup: int,
            tiny: bool, device) -> dict:
    """Seconds per step (mean of ``steps`` after ``warmup``) and peak memory of one training variant."""
    from diffusers import WanVACETransformer3DModel

    from backend.tune.config import TuneConfig
    from backend.tune.model import CachedSample
    from backend.tune.trainer import LoraTrainer

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    with torch.device(device):
        transformer = WanVACETransformer3DModel(**(TINY_VACE if tiny else VACE_1_3B)).to(dtype)
    keep_fp32 = tuple(getattr(transformer, "_keep_in_fp32_modules", None) or ())
    for name, parameter in transformer.named_parameters():  # as from_pretrained(torch_dtype=bf16) does
        if any(part in keep_fp32 for part in name.split(".")):
            parameter.data = parameter.data.float()
    config = TuneConfig(rank=4 if tiny else 128, gradient_checkpointing=checkpointing, width=size, height=size,
                        num_frames=frames)
    text_dim = transformer.config.text_dim
    latent_frames, latent_size = (frames - 1) // 4 + 1, size // 8
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn((1, 16, latent_frames, latent_size, latent_size), generator=generator)
    control = torch.randn((1, 96, latent_frames, latent_size, latent_size), generator=generator)
    prompt = torch.randn((1, 512, text_dim), generator=generator)
    trainer = LoraTrainer(transformer, config, prompt, device=device, dtype=dtype)
    trainer.set_pool([CachedSample(latents.to(device), control.to(device), {})], round_index=0,
                     consistency_weight=0.0)
    times = []
    try:
        for index in range(warmup + steps):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.train_step()
            if cuda:
                torch.cuda.synchronize()
            if index >= warmup:
                times.append(time.perf_counter() - start)
    except torch.cuda.OutOfMemoryError:
        del trainer, transformer
        torch.cuda.empty_cache()
        return {"oom": True}
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    result = {"s_per_step": sum(times) / len(times), "peak_gib": round(peak, 2),
              "lora_params_m": round(trainer.num_trainable / 1e6, 2), "oom": False}
    del trainer, transformer
    if cuda:
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--baseline-steps", type=int, default=None,
                        help="timed steps of the fp32 baseline variants (default: --steps; fp32 steps are slow)")
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU (checks the script only)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print(json.dumps({"bench": "tune", "unit": "s/step", "skipped": True,
                          "reason": "no CUDA GPU: the 512x512x81 VACE-1.3B training step needs one",
                          "device": "cpu", "goal": GOAL}))
        return
    if args.smoke:
        args.frames, args.size, args.steps, args.warmup = 5, 32, 1, 0
    device = torch.device("cuda" if cuda and not args.smoke else "cpu")
    common = dict(frames=args.frames, size=args.size, steps=args.steps, warmup=args.warmup, tiny=args.smoke,
                  device=device)
    ours_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ours = measure(torch, dtype=ours_dtype, checkpointing=True, **common)
    if args.baseline_steps is not None:
        common = dict(common, steps=max(1, args.baseline_steps), warmup=min(args.warmup, 1))
    print(f"ours (bf16 base, fp32 LoRA, checkpointing): {ours}", file=sys.stderr)
    baseline_label = "fp32 base, no checkpointing"
    baseline = measure(torch, dtype=torch.float32, checkpointing=False, **common)
    fp32_no_ckpt_oom = baseline["oom"]
    if fp32_no_ckpt_oom:
        baseline_label = "fp32 base, checkpointing (fp32 without checkpointing ran out of memory)"
        baseline = measure(torch, dtype=torch.float32, checkpointing=True, **common)
    print(f"baseline ({baseline_label}): {baseline}", file=sys.stderr)
    bf16_no_ckpt = {"oom": False, "s_per_step": None}
    if device.type == "cuda":
        bf16_no_ckpt = measure(torch, dtype=ours_dtype, checkpointing=False, **common)
        print(f"bf16 base, no checkpointing: {bf16_no_ckpt}", file=sys.stderr)

    value = ours.get("s_per_step")
    base_value = baseline.get("s_per_step")
    result = {
        "bench": "tune", "unit": "s/step", "value": round(value, 4) if value else None,
        "baseline": round(base_value, 4) if base_value else None,
        "ratio": round(base_value / value, 3) if value and base_value else None,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "goal": GOAL,
        "shape": f"{args.size}x{args.size}x{args.frames}", "rank": 4 if args.smoke else 128,
        "peak_vram_gib": ours.get("peak_gib"), "baseline_peak_vram_gib": baseline.get("peak_gib"),
        "baseline_setting": baseline_label, "fp32_no_checkpointing_oom": fp32_no_ckpt_oom,
        "bf16_no_checkpointing_s_per_step": ("oom" if bf16_no_ckpt["oom"] else
                                             bf16_no_ckpt["s_per_step"] and round(bf16_no_ckpt["s_per_step"], 4)),
        "bf16_no_checkpointing_peak_vram_gib": bf16_no_ckpt.get("peak_gib"),
        "lora_params_m": ours.get("lora_params_m"),
        "projected_2000_steps_min": round(2000 * value / 60.0, 1) if value else None,
        "meets_goal": bool(value and value <= GOAL_SECONDS_PER_STEP) if not args.smoke else None,
        "smoke": args.smoke,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
