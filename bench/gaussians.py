"""Benchmark: CPU Gaussian fitting speed and quality, and USD export throughput.

Headline (``value``/``baseline``/``ratio``): **CPU fit frames per second** at 512x512 with the
default Gaussian count (``GaussianOptions.max_points``, 200k) and the default CPU steps
(``CPU_FIT_ITERATIONS``) and the colour solve, supervised by every view of the frame (the room
scene's source view and a 15-degree orbit whose unseen pixels are lifted, as the reshoot pipeline
does), with the fast sparse-pair rasteriser (``value``) against the same fit with the dense tile reference rasteriser
that fitted before (``baseline``; it is timed over ``--reference-steps`` steps and its frame time
is extrapolated to the same step count; the colour solve and the final evaluation, once per frame,
are timed as they are on both sides). ``ratio`` = value / baseline.

Extra figures (same run):
- ``held_out_psnr`` / ``held_out_ssim``: the room scene at 160x120, scored from three cameras never
  fitted on the pixels the lifted points cover, rendered by the backend's rasteriser with
  Blender's dilation: ``spheres`` (the old isotropic initialisation, today's unfitted CPU result),
  ``discs`` (surface-aligned initialisation, unfitted), ``fitted_default_no_solve`` (discs + the
  default CPU steps, no colour solve), ``fitted_default`` (the same + the colour solve: the CPU
  default) and ``fitted_30`` (30 steps + the colour solve).
- ``demo_fit``: the reshoot job at ``make demo``'s size (192x108, 25 frames, one orbit) on the
  sliding-square scene: seconds of its Gaussian stage with the CPU default versus 0 steps.
- ``fit_its_per_s_cuda``: gsplat iterations/s at 512x512 and 200k Gaussians (CUDA + gsplat only).
- USD: per frame, ``--usd-points`` Gaussians appended and saved with :class:`UsdSceneWriter`
  against a plain ``file.write`` of the same bytes (``usd_mb_per_s`` / ``raw_mb_per_s``).

The last printed line is one JSON object.

    .venv/bin/python bench/gaussians.py [--size 512] [--skip-demo] [--threads 1]
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

from backend.export import UsdSceneWriter  # noqa: E402
from backend.gaussians import (  # noqa: E402
    FitConfig,
    FitView,
    GaussianSet,
    fit_frame,
    gaussians_from_points,
    gaussians_from_surface,
    rasterize,
)
from backend.gaussians.losses import ssim_map  # noqa: E402
from backend.gaussians.rasterize import gsplat_status  # noqa: E402
from backend.gaussians.rasterize_torch import CYCLES_IMAGE  # noqa: E402
from backend.pipelines.reshoot import ReshootRequest, run_reshoot  # noqa: E402
from backend.pipelines.reshoot.request import CPU_FIT_ITERATIONS, GaussianOptions  # noqa: E402
from backend.pipelines.reshoot.synthetic import RoomFitCase, room_fit_case, sliding_square_scene  # noqa: E402


def _discs(case: RoomFitCase, max_points: int, device: str) -> GaussianSet:
    p = case.points
    keep = torch.randperm(p.num_points, generator=torch.Generator().manual_seed(0))[:max_points]
    return gaussians_from_surface(p.xyz[keep], p.rgb[keep], p.tangent_u[keep], p.tangent_v[keep], device=device)


def _fit_seconds(init: GaussianSet, views: list[FitView], steps: int, backend: str) -> tuple[float, float]:
    """``(seconds per step, seconds after the last step)`` of one ``fit_frame``: the tail is the
    colour solve and the final per-view evaluation, done once per frame whatever the step count."""
    stamps: list[float] = []  # one per step, then one when the colours are solved
    start = time.perf_counter()
    fit_frame(init, views, FitConfig(iterations=steps, backend=backend, prune_interval=0),
              progress=lambda *_: stamps.append(time.perf_counter()))
    end = time.perf_counter()
    return (stamps[steps - 1] - start) / steps, end - stamps[steps - 1]


def bench_cpu_fit(size: int, max_points: int, steps: int, reference_steps: int) -> dict:
    case = room_fit_case(size, size)
    init = _discs(case, max_points, "cpu")
    views = [FitView(image, cam) for image, cam in case.views]
    fast_step, fast_eval = _fit_seconds(init, views, steps, "fast")
    ref_step, ref_eval = _fit_seconds(init, views, reference_steps, "torch")
    fast_frame = steps * fast_step + fast_eval
    ref_frame = steps * ref_step + ref_eval  # extrapolated from reference_steps
    return {"fast_frames_per_s": 1.0 / fast_frame, "reference_frames_per_s": 1.0 / ref_frame,
            "fast_seconds_per_step": fast_step, "reference_seconds_per_step": ref_step,
            "gaussians": len(init), "views": len(views), "steps": steps, "reference_steps_timed": reference_steps}


def _held_out_scores(g: GaussianSet, case: RoomFitCase) -> tuple[float, float]:
    psnrs, ssims = [], []
    for cam, truth, seen in zip(case.held_out, case.truths, case.seen):
        out = rasterize(g, cam, **CYCLES_IMAGE.kwargs()).rgb.detach().clamp(0, 1)
        target, mask = torch.from_numpy(truth), torch.from_numpy(seen)
        psnrs.append(-10.0 * np.log10(float(((out - target) ** 2).mean(-1)[mask].mean())))
        ssims.append(float(ssim_map(out, target)[mask].mean()))
    return float(np.mean(psnrs)), float(np.mean(ssims))


def bench_held_out_quality() -> dict:
    case = room_fit_case(160, 120)
    p = case.points
    views = [FitView(image, cam) for image, cam in case.views]
    discs = gaussians_from_surface(p.xyz, p.rgb, p.tangent_u, p.tangent_v)
    sets = {
        "spheres": gaussians_from_points(p.xyz, p.rgb, p.radius),
        "discs": discs,
        "fitted_default_no_solve": fit_frame(discs, views, FitConfig(iterations=CPU_FIT_ITERATIONS,
                                                                     color_solve_iterations=0)).gaussians,
        "fitted_default": fit_frame(discs, views, FitConfig(iterations=CPU_FIT_ITERATIONS)).gaussians,
        "fitted_30": fit_frame(discs, views, FitConfig(iterations=30)).gaussians,
    }
    scores = {name: _held_out_scores(g, case) for name, g in sets.items()}
    return {"psnr": {k: round(v[0], 2) for k, v in scores.items()},
            "ssim": {k: round(v[1], 3) for k, v in scores.items()}}


def bench_demo_fit(frames: int = 25, width: int = 192, height: int = 108) -> dict:
    scene = sliding_square_scene(frames, width, height)
    seconds = {}
    for label, options in (("default", {}), ("unfitted", {"iterations": 0})):
        request = ReshootRequest.from_params(
            {"fps": 24, "cameras": [scene.camera.to_dict()], "gaussians": options, "outputs": ["usd", "ply"],
             "trajectories": [{"name": "orbit", "preset": "orbit:left:20"}]},
            {"frames": scene.frames, "depth": scene.depth})
        with tempfile.TemporaryDirectory(prefix="recast4d_bench_") as out:
            report = run_reshoot(request, out, device="cpu").report
        seconds[label] = next(s["seconds"] for s in report["stages"] if s["stage"] == "gaussians")
        seconds[f"{label}_job"] = report["wall_seconds"]
    return {"size": f"{width}x{height}", "frames": frames, "cpu_fit_iterations": CPU_FIT_ITERATIONS,
            "gaussian_stage_s": round(seconds["default"], 1), "gaussian_stage_unfitted_s": round(seconds["unfitted"], 1),
            "job_s": round(seconds["default_job"], 1), "job_unfitted_s": round(seconds["unfitted_job"], 1)}


def bench_cuda_fit(n: int, size: int, iterations: int) -> float:
    case = room_fit_case(size, size)
    init = _discs(case, n, "cuda")
    views = [FitView(image, cam) for image, cam in case.views]
    fit_frame(init, views, FitConfig(iterations=2, prune_interval=0))  # warm-up (allocations, gsplat JIT)
    torch.cuda.synchronize()
    start = time.perf_counter()
    fit_frame(init, views, FitConfig(iterations=iterations, prune_interval=0))
    torch.cuda.synchronize()
    return iterations / (time.perf_counter() - start)


def bench_usd(n_points: int, frames: int, folder: Path) -> dict:
    rng = np.random.default_rng(1)
    # distinct arrays in every frame, so the crate writer cannot deduplicate anything
    sets = []
    for _ in range(frames):
        g = gaussians_from_points(rng.normal(size=(n_points, 3)), rng.uniform(0, 1, (n_points, 3)),
                                  rng.uniform(0.001, 0.01, n_points))
        g.log_scales += torch.from_numpy(rng.normal(0, 0.1, (n_points, 3))).float()
        g.logit_opacities += torch.from_numpy(rng.normal(0, 0.1, n_points)).float()
        g.quats = torch.from_numpy(rng.normal(size=(n_points, 4))).float()
        sets.append(g)
    writer = UsdSceneWriter(folder / "bench.usdc", fps=24.0, start_frame=1)
    start = time.perf_counter()
    for i in range(frames):
        writer.add_gaussian_frame(i, sets[i])
    writer.close()
    usd_s = (time.perf_counter() - start) / frames
    file_bytes = (folder / "bench.usdc").stat().st_size
    per_frame = file_bytes // frames

    # baseline: the same number of bytes per frame, plain file.write + flush, same directory
    blobs = [np.random.default_rng(i).bytes(per_frame) for i in range(frames)]
    start = time.perf_counter()
    with open(folder / "raw.bin", "wb") as f:
        for i in range(frames):
            f.write(blobs[i])
            f.flush()
    raw_s = (time.perf_counter() - start) / frames
    return {"usd_ms_per_frame": 1e3 * usd_s, "raw_ms_per_frame": 1e3 * raw_s,
            "usd_mb_per_s": per_frame / usd_s / 1e6, "raw_mb_per_s": per_frame / raw_s / 1e6,
            "usd_file_mb": file_bytes / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="CPU fit image size (square)")
    parser.add_argument("--gaussians", type=int, default=GaussianOptions().max_points)
    parser.add_argument("--steps", type=int, default=CPU_FIT_ITERATIONS)
    parser.add_argument("--reference-steps", type=int, default=1)
    parser.add_argument("--skip-demo", action="store_true", help="skip the demo-sized reshoot fit (about a minute)")
    parser.add_argument("--cuda-iterations", type=int, default=100)
    parser.add_argument("--usd-points", type=int, default=200_000)
    parser.add_argument("--usd-frames", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, choices=(1, 2),
                        help="torch CPU threads (1 by default: on a shared 2-core machine two contending "
                             "threads were many times slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    fit = bench_cpu_fit(args.size, args.gaussians, args.steps, args.reference_steps)
    print(f"CPU fit {args.size}x{args.size}, {fit['gaussians']} Gaussians, {fit['views']} views, {args.steps} steps: "
          f"{fit['fast_frames_per_s']:.4f} frames/s ({fit['fast_seconds_per_step']:.2f} s/step) vs reference "
          f"{fit['reference_frames_per_s']:.4f} frames/s ({fit['reference_seconds_per_step']:.2f} s/step)")
    quality = bench_held_out_quality()
    print(f"held-out room 160x120, PSNR dB on seen pixels: {quality['psnr']}; SSIM {quality['ssim']}")
    demo = None if args.skip_demo else bench_demo_fit()
    if demo is not None:
        print(f"demo-sized fit ({demo['size']}, {demo['frames']} frames): Gaussian stage {demo['gaussian_stage_s']} s "
              f"with {CPU_FIT_ITERATIONS} steps vs {demo['gaussian_stage_unfitted_s']} s unfitted; "
              f"job {demo['job_s']} s vs {demo['job_unfitted_s']} s")
    cuda_its = None
    usable, cuda_note = gsplat_status()
    if usable:
        try:
            cuda_its = bench_cuda_fit(args.gaussians, args.size, args.cuda_iterations)
            cuda_note = f"gsplat, {args.size}x{args.size}, {args.gaussians} Gaussians, 2 views"
            print(f"gsplat fit: {cuda_its:.1f} it/s ({cuda_note})")
        except Exception as exc:  # report why (e.g. gsplat JIT build failed) instead of dying
            cuda_note = f"gsplat failed: {type(exc).__name__}: {exc}"
            print(cuda_note)
    with tempfile.TemporaryDirectory(prefix="recast4d_bench_") as tmp:
        usd = bench_usd(args.usd_points, args.usd_frames, Path(tmp))
    print(f"USD: {usd['usd_ms_per_frame']:.1f} ms/frame ({usd['usd_mb_per_s']:.0f} MB/s) vs raw "
          f"{usd['raw_ms_per_frame']:.1f} ms/frame ({usd['raw_mb_per_s']:.0f} MB/s)")
    result = {
        "bench": "gaussians",
        "unit": "frames/s",
        "value": round(fit["fast_frames_per_s"], 5),
        "baseline": round(fit["reference_frames_per_s"], 5),
        "ratio": round(fit["fast_frames_per_s"] / fit["reference_frames_per_s"], 2),
        "device": "cpu",
        "goal": "CPU fit frames/s at 512x512 with the default Gaussian count, and its ratio to the reference rasteriser",
        "cpu_fit": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in fit.items()},
        "cpu_fit_size": f"{args.size}x{args.size}",
        "cpu_threads": args.threads,
        "held_out_psnr": quality["psnr"],
        "held_out_ssim": quality["ssim"],
        "demo_fit": demo,
        "fit_its_per_s_cuda": None if cuda_its is None else round(cuda_its, 1),
        "cuda_note": cuda_note,
        "usd_mb_per_s": round(usd["usd_mb_per_s"], 1),
        "raw_mb_per_s": round(usd["raw_mb_per_s"], 1),
        "usd_ratio": round(usd["usd_mb_per_s"] / usd["raw_mb_per_s"], 3),
        "usd_ms_per_frame": round(usd["usd_ms_per_frame"], 2),
        "usd_points_per_frame": args.usd_points,
        "usd_file_mb": round(usd["usd_file_mb"], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
