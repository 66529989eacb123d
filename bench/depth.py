"""Benchmark: video depth alignment error on a synthetic clip with a 20 % disparity shift (percent).

The clip (``backend.pipelines.reshoot.synthetic``): a floor, a back wall and a sphere, exact depth by
ray casting, seen by a camera sliding 1.2 m sideways and 0.4 m forward. A relative depth network is
simulated exactly: inverse depth plus a global shift of 20 % of frame 0's median inverse depth,
divided by a per-frame scale drifting between 0.8 and 1.3.

- baseline (same process): what the depth stage did before, the frame-to-frame scale/shift fit
  ``consistent_depth_from_disparity`` alone, which cannot see frame 0's shift;
- value: that followed by :func:`backend.engines.depth_motion.align_to_camera_motion` with the
  known cameras (the depth stage's path for a relative engine and given, moving cameras).

Error = mean |z_est * s - z| / z with the best single scale ``s`` (the geometric distortion; a
relative estimate has no scale of its own). Extra keys: the metric error without any rescaling
(the camera motion also recovers the scale), the recovered shift, the run time, other shifts and
the 20 % case with 1 % and 3 % per-pixel multiplicative noise on the disparity.

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.engines.depth_align import consistent_depth_from_disparity  # noqa: E402
from backend.engines.depth_motion import align_to_camera_motion  # noqa: E402
from backend.pipelines.reshoot.synthetic import (  # noqa: E402
    floor_wall_sphere_depth,
    moving_camera_cameras,
    scale_invariant_error,
    shifted_disparity,
)
from protocol.camera import stack_cameras  # noqa: E402


def run_case(frames: int, width: int, height: int, shift: float, noise: float = 0.0, seed: int = 0) -> dict:
    cams = moving_camera_cameras(frames, width, height)
    truth = floor_wall_sphere_depth(cams)
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.8, 1.3, frames)
    scales[0] = 1.0
    disparity = shifted_disparity(truth, scales, shift)
    disparity = disparity * (1.0 + noise * rng.standard_normal(disparity.shape)).astype(np.float32)
    relative = consistent_depth_from_disparity(disparity, median_depth=1.0, smooth_sigma=1.0)
    K, w2c = stack_cameras(cams)
    start = time.perf_counter()
    aligned, info = align_to_camera_motion(relative, K, w2c)
    seconds = time.perf_counter() - start
    return {"baseline": 100 * scale_invariant_error(relative, truth), "value": 100 * scale_invariant_error(aligned, truth),
            "metric": 100 * float(np.mean(np.abs(aligned - truth) / truth)), "accepted": info["accepted"],
            "shift_recovered": info["shift"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=96)
    args = parser.parse_args()
    goal = run_case(args.frames, args.width, args.height, 0.2)
    print(f"20 % shift: error {goal['baseline']:.2f} % -> {goal['value']:.2f} % "
          f"(metric {goal['metric']:.2f} %, {goal['seconds']:.1f} s)")
    others = {}
    for name, shift, noise in (("shift_-0.1", -0.1, 0.0), ("shift_+0.1", 0.1, 0.0), ("shift_+0.4", 0.4, 0.0),
                               ("shift_+0.2_noise_1pct", 0.2, 0.01), ("shift_+0.2_noise_3pct", 0.2, 0.03)):
        case = run_case(args.frames, args.width, args.height, shift, noise)
        others[name] = {k: round(v, 3) if isinstance(v, float) else v for k, v in case.items()}
        print(f"{name}: error {case['baseline']:.2f} % -> {case['value']:.2f} %")
    result = {"bench": "depth_alignment", "unit": "% error", "value": round(goal["value"], 3),
              "baseline": round(goal["baseline"], 3), "ratio": round(goal["value"] / goal["baseline"], 3),
              "device": "cpu", "goal": "<= 1 % (value)", "frames": args.frames,
              "size": f"{args.width}x{args.height}", "metric_error": round(goal["metric"], 3),
              "shift_recovered": round(goal["shift_recovered"], 4), "accepted": goal["accepted"],
              "seconds": round(goal["seconds"], 2), "other_shifts": others}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
