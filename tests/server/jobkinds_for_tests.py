"""Job kinds used by the server tests: deterministic per-frame point clouds.

Imported in-process by the tests and by ``recast4d serve --job-kinds jobkinds_for_tests`` in
subprocess tests (with this folder on PYTHONPATH). ``test.points`` params:
``frames`` (int), ``points`` (int per frame), ``seed`` (int), ``delay_s`` (sleep per frame,
checking cancel every 10 ms), ``busy_s`` (pure-Python busy loop per frame, holds the GIL),
``camera`` (optional camera dict, validated before the job runs), ``progress_calls`` (that many
progress reports 0.5 ms apart before the frames).
"""

from __future__ import annotations

import time

import numpy as np

from backend.jobs import JobContext, register_job_kind
from protocol.camera import Camera
from protocol.errors import ValidationError

KIND = "test.points"


def frame_arrays(seed: int, frame: int, points: int) -> dict[str, np.ndarray]:
    """The arrays of one frame: ``xyz`` float32 (N, 3) metres and ``rgb`` uint8 (N, 3)."""
    rng = np.random.default_rng([seed, frame])
    return {
        "xyz": rng.standard_normal((points, 3)).astype(np.float32),
        "rgb": rng.integers(0, 256, (points, 3), dtype=np.uint8),
    }


def validate_points(params: dict, inputs: dict[str, np.ndarray]) -> None:
    frames = params.get("frames", 3)
    if type(frames) is not int or not 0 <= frames <= 10_000:
        raise ValidationError(f"frames must be an int in 0..10000, got {frames!r}")
    if "camera" in params:
        Camera.from_dict(params["camera"])  # raises CameraError for NaN, fx <= 0, ...
    if "offsets" in inputs and inputs["offsets"].shape[1:] != (3,):
        raise ValidationError("offsets must have shape (N, 3)")


def run_points(ctx: JobContext) -> None:
    with open(ctx.job_dir / "runs.txt", "a") as fh:  # lets tests count how often a job ran
        fh.write("run\n")
    frames = int(ctx.params.get("frames", 3))
    points = int(ctx.params.get("points", 1024))
    seed = int(ctx.params.get("seed", 0))
    delay = float(ctx.params.get("delay_s", 0.0))
    busy = float(ctx.params.get("busy_s", 0.0))
    offset = ctx.inputs["offsets"].sum(axis=0).astype(np.float32) if "offsets" in ctx.inputs else 0.0
    for call in range(int(ctx.params.get("progress_calls", 0))):  # chatty stage, no results
        ctx.progress("chatter", call, int(ctx.params["progress_calls"]))
        time.sleep(0.0005)
    ctx.declare_stream("points", {"frames": frames, "chunks": frames})
    for frame in range(frames):
        ctx.check_cancel()
        ctx.progress("points", frame, frames, f"frame {frame}")
        end = time.monotonic() + delay
        while time.monotonic() < end:
            ctx.check_cancel()
            time.sleep(0.01)
        end = time.monotonic() + busy
        while time.monotonic() < end:
            sum(range(1000))  # hold the GIL like heavy Python work would
        arrays = frame_arrays(seed, frame, points)
        arrays["xyz"] = arrays["xyz"] + offset
        ctx.emit("points", arrays, {"frame": frame})


register_job_kind(KIND, run_points, validate_points, description="deterministic test point clouds")
