"""The ``reshoot`` job kind: the pipeline run by the server's worker, results streamed as produced.

Streams (see ``docs/protocol.md``):
- ``points``: one chunk per fused frame, ``xyz`` (N,3) float32 metres + ``rgb`` (N,3) uint8,
  meta ``{"frame": i}`` (the add-on shows it as a growing preview);
- ``file.<name>``: the result files, cut into chunks of 8 MiB ``data`` (uint8), meta
  ``{"filename": name, "output_dir": <job output folder>}``; a client on the same machine may use the
  folder directly instead of the bytes. Files: ``scene.usdc``, ``report.json``, ``<trajectory>.mp4``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.jobs import JobContext

from .pipeline import run_reshoot
from .request import ReshootRequest

FILE_CHUNK_BYTES = 8 << 20


def validate_reshoot(params: dict, inputs: dict[str, np.ndarray]) -> None:
    """Cheap checks before the job is queued (raises ValidationError / CameraError)."""
    ReshootRequest.from_params(params, inputs)


def run_reshoot_job(ctx: JobContext) -> None:
    request = ReshootRequest.from_params(ctx.params, ctx.inputs)
    for warning in request.warnings:
        ctx.log(f"warning: {warning}")
    ctx.declare_stream("points", {"frames": request.num_frames})

    def on_frame(index: int, xyz: np.ndarray, rgb: np.ndarray) -> None:
        ctx.emit("points", {"xyz": xyz, "rgb": rgb}, {"frame": index})

    result = run_reshoot(request, ctx.output_dir, progress=ctx.progress, cancel=ctx.cancel, on_frame=on_frame)
    files = {"report.json": result.out_dir / "report.json"}
    if (result.out_dir / "scene.usdc").exists():
        files["scene.usdc"] = result.out_dir / "scene.usdc"
    for traj in result.trajectories:
        if "video" in traj.files:
            files[f"{traj.name}.mp4"] = result.out_dir / traj.files["video"]
    for name, path in files.items():
        stream_file(ctx, name, path)


def stream_file(ctx: JobContext, name: str, path: Path) -> None:
    """Emit a file as ``file.<name>`` chunks (an empty file still gets one empty chunk)."""
    stream = f"file.{name}"
    size = path.stat().st_size
    ctx.declare_stream(stream, {"filename": name, "bytes": size, "output_dir": str(ctx.output_dir)})
    with open(path, "rb") as handle:
        while True:
            data = handle.read(FILE_CHUNK_BYTES)
            ctx.emit(stream, {"data": np.frombuffer(data, dtype=np.uint8)}, {"filename": name})
            if len(data) < FILE_CHUNK_BYTES:
                break
