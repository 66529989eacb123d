"""Benchmark: Gaussian fitting speed and USD export throughput.

Figures (all measured in this run):
- ``fit_its_per_s_cpu``: fitting iterations/s of the pure-torch reference on CPU (64x64, 2k Gaussians,
  one view per step, ``--threads`` torch threads).
- ``fit_its_per_s_cuda``: fitting iterations/s with gsplat at 512x512 and 200k Gaussians (only with
  CUDA + gsplat; ``null`` otherwise, with the reason in ``cuda_note``).
- USD: per frame, the Gaussian sequence (points, widths, displayColor, opacity, scale, orient and the
  splat particle field) for ``--usd-points`` Gaussians is appended and saved with
  :class:`UsdSceneWriter` (``save_every=1``); the baseline writes the same number of bytes per frame
  (the USD file's size / frames) with plain ``file.write`` to the same directory. ``value`` = USD
  MB/s of file written, ``baseline`` = raw MB/s, ``ratio`` = value / baseline.

The last printed line is one JSON object.
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
from backend.gaussians import FitConfig, FitView, fit_frame, gaussians_from_points, rasterize  # noqa: E402
from backend.gaussians.rasterize import gsplat_status  # noqa: E402
from protocol.camera import Camera  # noqa: E402


def _scene(n: int, size: int, device: str) -> tuple:
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(2.5, 4.0, n)], 1)
    colors = rng.uniform(0, 1, (n, 3))
    camera = Camera.from_fov(50.0, size, size)
    footprint = 3.0 / camera.fx * max(1.0, (size * size / n) ** 0.5)  # roughly covers the image
    truth = gaussians_from_points(pts, colors, np.full(n, footprint), opacity=0.9, device=device)
    target = rasterize(truth, camera).rgb.detach()
    init = gaussians_from_points(pts, np.full((n, 3), 0.5), np.full(n, footprint * 0.8), opacity=0.5,
                                 device=device)
    return init, [FitView(target, camera)]


def bench_fit(n: int, size: int, iterations: int, device: str) -> float:
    init, views = _scene(n, size, device)
    config = FitConfig(iterations=2, prune_interval=0)
    fit_frame(init, views, config)  # warm-up (allocations, gsplat JIT)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fit_frame(init, views, FitConfig(iterations=iterations, prune_interval=0))
    if device == "cuda":
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
    # attribute bytes handed to USD per frame: Points (pos 12, width 4, colour 12, opacity 4, scale 12,
    # orient 16) + splat field (pos 12, orient 16, scale 12, opacity 4, SH DC 12); the crate
    # writer shares identical arrays between the two prims, so the file grows by less
    payload = (12 + 4 + 12 + 4 + 12 + 16 + 12 + 16 + 12 + 4 + 12) * n_points

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
            "usd_file_mb": file_bytes / 1e6, "usd_payload_mb_per_frame": payload / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-gaussians", type=int, default=2000)
    parser.add_argument("--cpu-size", type=int, default=64)
    parser.add_argument("--cpu-iterations", type=int, default=10)
    parser.add_argument("--cuda-gaussians", type=int, default=200_000)
    parser.add_argument("--cuda-size", type=int, default=512)
    parser.add_argument("--cuda-iterations", type=int, default=100)
    parser.add_argument("--usd-points", type=int, default=200_000)
    parser.add_argument("--usd-frames", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, choices=(1, 2),
                        help="torch CPU threads (1 by default: on a shared 2-core machine two contending "
                             "threads were many times slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cpu_its = bench_fit(args.cpu_gaussians, args.cpu_size, args.cpu_iterations, "cpu")
    print(f"CPU reference fit: {cpu_its:.2f} it/s at {args.cpu_size}x{args.cpu_size}, "
          f"{args.cpu_gaussians} Gaussians")
    cuda_its = None
    usable, cuda_note = gsplat_status()
    if usable:
        try:
            cuda_its = bench_fit(args.cuda_gaussians, args.cuda_size, args.cuda_iterations, "cuda")
            cuda_note = f"gsplat, {args.cuda_size}x{args.cuda_size}, {args.cuda_gaussians} Gaussians"
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
        "unit": "MB/s",
        "value": round(usd["usd_mb_per_s"], 1),
        "baseline": round(usd["raw_mb_per_s"], 1),
        "ratio": round(usd["usd_mb_per_s"] / usd["raw_mb_per_s"], 3),
        "device": "cuda" if cuda_its is not None else "cpu",
        "goal": "USD >= 0.25x raw write speed",
        "usd_ms_per_frame": round(usd["usd_ms_per_frame"], 2),
        "usd_points_per_frame": args.usd_points,
        "usd_file_mb": round(usd["usd_file_mb"], 1),
        "usd_payload_mb_per_frame": round(usd["usd_payload_mb_per_frame"], 1),
        "fit_its_per_s_cpu": round(cpu_its, 2),
        "cpu_fit_size": f"{args.cpu_size}x{args.cpu_size}, {args.cpu_gaussians} Gaussians",
        "cpu_threads": args.threads,
        "fit_its_per_s_cuda": None if cuda_its is None else round(cuda_its, 1),
        "cuda_note": cuda_note,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
