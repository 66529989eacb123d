"""The ``generate`` job kind: the CoCo4D pipeline run by the server's worker, results streamed as produced.

Streams (as ``reshoot``, see ``docs/protocol.md``):
- ``points``: one chunk per frame, ``xyz`` (N,3) float32 metres + ``rgb`` (N,3) uint8 of the composed
  scene (background + that frame's foreground), meta ``{"frame": i}``;
- ``file.<name>``: ``scene.usdc``, ``report.json`` and ``reference.mp4`` (the reference video) in
  8 MiB chunks, meta ``{"filename", "output_dir"}``.
"""

from __future__ import annotations

import numpy as np

from backend.jobs import JobContext

from ..reshoot.job import stream_file
from .pipeline import run_generate
from .request import GenerateRequest


def validate_generate(params: dict, inputs: dict[str, np.ndarray]) -> None:
    """Cheap checks before the job is queued (raises ValidationError / CameraError)."""
    GenerateRequest.from_params(params, inputs)


def run_generate_job(ctx: JobContext) -> None:
    request = GenerateRequest.from_params(ctx.params, ctx.inputs)
    for warning in request.warnings:
        ctx.log(f"warning: {warning}")
    ctx.declare_stream("points", {"frames": request.num_frames})

    def on_frame(index: int, xyz: np.ndarray, rgb: np.ndarray) -> None:
        ctx.emit("points", {"xyz": xyz, "rgb": rgb}, {"frame": index})

    result = run_generate(request, ctx.output_dir, progress=ctx.progress, cancel=ctx.cancel, on_frame=on_frame)
    files = {"report.json": result.out_dir / "report.json"}
    for name in ("scene.usdc", "reference.mp4"):
        if (result.out_dir / name).exists():
            files[name] = result.out_dir / name
    for name, path in files.items():
        stream_file(ctx, name, path)
