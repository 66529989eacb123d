"""Benchmark: where the time of a ``generate`` job goes (CoCo4D, default rings, classical engine).

1. The command a user types, with the CLI's own defaults and nothing else:
   ``recast4d generate --video V --depth D --out O`` on the synthetic sliding-square video with exact
   depth (``backend.pipelines.reshoot.synthetic``), ``--width`` x ``--height`` (default 160x120),
   ``--frames`` (default 9), automatic (motion) split, the default two camera rings (8 views), the
   ``classical`` fill engine, the device's default optimisation settings
   (``OutpaintSettings.for_device``). Figures: ``cli_defaults_total_s``, ``stages_s`` (wall seconds per
   pipeline stage) and ``outpaint_s`` (seconds per outpaint sub-step). Goal on a 2-core CPU: <= 180 s.
2. ``value``: mean PSNR (dB) of the background Gaussians over every supervising view (reference +
   8 ring views) after the progressive, warm-started loop; ``baseline``: the same rings and fills
   with the optimisation re-initialised from all points before each view's fit (same steps per
   view, no warm start). Meaningful because the warm start is what lets each view add a few hundred
   Gaussians to an already fitted set instead of refitting everything. ``ratio`` = value / baseline.
   This comparison runs at ``--opt-size`` (default 96 px on CPU) with full-size optimisation views.

On CUDA a reference video from a full-size random-weight Wan2.1 T2V 1.3B (512x512, 81 frames, 30
steps, CFG) is timed as well (``reference_video_s``). The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.engines import get_inpaint_engine  # noqa: E402
from backend.generate import OutpaintSettings, background_video, progressive_outpaint  # noqa: E402
from backend.pipelines.reshoot.synthetic import sliding_square_scene  # noqa: E402


def _outpaint_quality(size: int, frames: int, iterations: int, fit_scale: float, device: torch.device,
                      warm_start: bool) -> tuple[float, float, dict]:
    """Mean background PSNR (dB) over all views, seconds, sub-step timings of one outpaint run."""
    scene = sliding_square_scene(num_frames=frames, width=size, height=size, box_depth=2.5)
    engine = get_inpaint_engine("classical")
    depth = torch.from_numpy(scene.depth).to(device)
    background = background_video(engine, scene.frames, depth, scene.foreground)
    settings = OutpaintSettings(fit_iterations=iterations, fit_scale=fit_scale, views_per_step=2,
                                warm_start=warm_start)
    start = time.perf_counter()
    result = progressive_outpaint(background, [scene.camera] * frames, engine, settings=settings)
    return float(np.mean(result.fit_psnr)), time.perf_counter() - start, result.timings


def _cuda_reference_video(size: int, frames: int, steps: int) -> dict:
    """Seconds for one reference video from a full-size *random* Wan2.1 T2V 1.3B transformer + Wan VAE
    (bf16 transformer, fp32 VAE, CFG, UniPC flow), with random prompt embeddings standing in for
    UMT5-XXL (encoded once per job, not part of the per-video cost). CUDA only."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6).to("cuda", torch.bfloat16)
    vae = AutoencoderKLWan().to("cuda", torch.float32)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=scheduler, transformer=transformer)
    embeds = torch.randn(1, 512, 4096, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    start = time.perf_counter()
    pipe(prompt_embeds=embeds, negative_prompt_embeds=embeds.clone(), height=size, width=size, num_frames=frames,
         num_inference_steps=steps, guidance_scale=5.0, output_type="np")
    torch.cuda.synchronize()
    return {"reference_video_s": round(time.perf_counter() - start, 2), "reference_size": size,
            "reference_frames": frames, "reference_steps": steps}


def _cli_defaults_run(width: int, height: int, frames: int, device: str | None) -> tuple[dict, float]:
    """``recast4d generate --video V --depth D --out O`` with nothing else: the report and the wall seconds."""
    from backend.cli import main as cli_main
    from backend.media import write_png_sequence

    scene = sliding_square_scene(num_frames=frames, width=width, height=height, box_depth=2.5)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_png_sequence(root / "clip", scene.frames)
        np.save(root / "depth.npy", scene.depth)
        argv = ["generate", "--video", str(root / "clip"), "--depth", str(root / "depth.npy"), "--out",
                str(root / "out")] + (["--device", device] if device else [])
        start = time.perf_counter()
        if cli_main(argv) != 0:
            raise SystemExit("the CLI run failed")
        total = time.perf_counter() - start
        return json.loads((root / "out" / "report.json").read_text()), total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=160, help="frame width of the CLI-defaults run")
    parser.add_argument("--height", type=int, default=120, help="frame height of the CLI-defaults run")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--opt-size", type=int, default=None, help="frame size of the warm/cold comparison "
                        "(default 96 on CPU, 512 on CUDA)")
    parser.add_argument("--opt-iterations", type=int, default=3, help="steps per view in the comparison")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    opt_size = args.opt_size or (512 if cuda else 96)

    # 1. per-stage timings of the command a user types, with the CLI's own defaults
    report, total = _cli_defaults_run(args.width, args.height, args.frames, args.device)
    stages = {s["stage"]: s["seconds"] for s in report["stages"]}
    for stage, seconds in stages.items():
        print(f"{stage:>11}: {seconds:8.2f} s ({seconds / total:5.1%})")
    print("outpaint sub-steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in report["outpaint"]["seconds"].items()))

    # 2. warm-started progressive optimisation vs cold start before every view (same fills, same steps)
    warm_psnr, warm_s, warm_steps = _outpaint_quality(opt_size, args.frames, args.opt_iterations, 1.0, device, True)
    cold_psnr, cold_s, cold_steps = _outpaint_quality(opt_size, args.frames, args.opt_iterations, 1.0, device, False)
    print(f"{opt_size}x{opt_size}, {args.opt_iterations} steps per view: warm-started {warm_psnr:.2f} dB "
          f"({warm_steps['optimise']:.1f} s optimising), cold-started {cold_psnr:.2f} dB "
          f"({cold_steps['optimise']:.1f} s)")
    cuda_figures: dict = {"cuda_note": "no CUDA device: full-size random-weight figures not measured"}
    if cuda:
        try:
            cuda_figures = _cuda_reference_video(512, 81, 30)
        except Exception as error:  # report, do not hide: the CPU figures above still stand
            cuda_figures = {"cuda_note": f"full-size random T2V failed: {type(error).__name__}: {error}"}
    print(json.dumps({
        "bench": "generate", "unit": "dB", "value": round(warm_psnr, 3), "baseline": round(cold_psnr, 3),
        "ratio": round(warm_psnr / cold_psnr, 4) if cold_psnr else None, "device": device.type,
        "goal": ">= 1.0 (warm start at least as good as cold start for the same steps)",
        "width": args.width, "height": args.height, "frames": args.frames,
        "ring_views": len(report["outpaint"]["views"]), "fit_scale": report["outpaint"]["fit_scale"],
        "fit_iterations": report["outpaint"]["fit_iterations"], "fg_iterations": report["foreground"]["iterations"],
        "threads": args.threads, "cli_defaults_total_s": round(total, 2), "stages_s": stages,
        "outpaint_s": report["outpaint"]["seconds"], "background_gaussians": report["outpaint"]["background_gaussians"],
        "fit_psnr_per_view": report["outpaint"]["fit_psnr_per_view"],
        "hole_ratio_before_after": [[v["hole_ratio_before_loop"], v["hole_ratio_after_loop"]]
                                    for v in report["outpaint"]["views"]],
        "opt_size": opt_size, "opt_iterations": args.opt_iterations,
        "warm_optimise_s": warm_steps["optimise"], "cold_optimise_s": cold_steps["optimise"],
        "warm_outpaint_s": round(warm_s, 2), "cold_outpaint_s": round(cold_s, 2), **cuda_figures,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
