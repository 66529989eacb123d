"""Reshoot pipeline benchmark: wall time per stage, and where the time goes.

Default: 81 frames at 512x512 of the synthetic sliding-square scene (exact depth), one orbit
trajectory, classical fill engine, on CPU (CUDA when available). The baseline, run in the same
process, is the geometric floor of the job: lifting and rendering the same frames along the same
path with nothing else (no static accumulation, fill, fill depth, fusion, Gaussians or files).
``ratio`` = full pipeline seconds / floor seconds: how many times the floor the whole job costs.

Gaussian fitting on CPU (the pipeline's default: a few steps per frame with the sparse-pair
rasteriser, see ``bench/gaussians.py``) still takes several seconds per frame at 512x512, so
``--gaussian-iterations`` defaults to 0 on CPU here (Gaussians are initialised from the fused
points and exported, not fitted; the figure stays comparable with earlier runs) and to the
pipeline default (100) on CUDA (gsplat).

    .venv/bin/python bench/reshoot.py [--frames 81] [--size 512] [--gaussian-iterations N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from backend.geometry import lift_frames, render_points
from backend.pipelines.reshoot import ReshootRequest, run_reshoot
from backend.pipelines.reshoot.pipeline import default_pivot_depth
from backend.pipelines.reshoot.synthetic import sliding_square_scene
from protocol.camera import stack_cameras
from protocol.paths import build_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--gaussian-iterations", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    iterations = args.gaussian_iterations  # None: the pipeline default on CUDA, 0 on CPU
    if iterations is None and device == "cpu":
        iterations = 0

    scene = sliding_square_scene(args.frames, args.size, args.size)
    preset = "orbit:left:20"
    params = {"fps": 24, "cameras": [scene.camera.to_dict()], "trajectories": [{"name": "orbit", "preset": preset}],
              "gaussians": {"iterations": iterations}, "outputs": ["usd", "ply", "video", "masks", "cameras"]}
    request = ReshootRequest.from_params(params, {"frames": scene.frames, "depth": scene.depth})

    # Baseline: the geometric floor (lift + render along the same path).
    start = time.perf_counter()
    K, w2c = stack_cameras(request.cameras)
    depth = torch.from_numpy(scene.depth).to(device)
    path = build_path(preset, request.cameras, default_pivot_depth(depth[0]))
    points = lift_frames(scene.frames, depth, K, w2c, device=device)
    K_t, w2c_t = stack_cameras(path.cameras)
    render_points(points, K_t, w2c_t, args.size, args.size)
    if device == "cuda":
        torch.cuda.synchronize()
    floor = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_reshoot(request, out, device=device)
        total = time.perf_counter() - start
    stages = result.report["stages"]
    width = max(len(s["stage"]) for s in stages)
    print(f"reshoot: {args.frames} frames at {args.size}x{args.size}, classical fill, {device}, "
          f"Gaussian iterations {result.report['gaussians']['iterations']}")
    for s in sorted(stages, key=lambda s: -s["seconds"]):
        print(f"  {s['stage']:<{width}}  {s['seconds']:8.2f} s  {100 * s['share']:5.1f} %")
    print(f"  total {total:.2f} s ({args.frames / total:.2f} frames/s); floor (lift + render) {floor:.2f} s")
    slowest = max(stages, key=lambda s: s["seconds"])
    print(json.dumps({
        "bench": "reshoot", "unit": "s", "value": round(total, 3), "baseline": round(floor, 3),
        "ratio": round(total / floor, 2), "device": device, "goal": "report the slowest stage",
        "frames": args.frames, "size": args.size, "frames_per_s": round(args.frames / total, 3),
        "slowest_stage": slowest["stage"], "slowest_share": slowest["share"],
        "stages": {s["stage"]: s["seconds"] for s in stages},
        "hole_ratio_render": result.report["trajectories"][0]["hole_ratio_render"],
        "hole_ratio_after_accumulation": result.report["trajectories"][0]["hole_ratio_after_accumulation"],
    }))


if __name__ == "__main__":
    main()
