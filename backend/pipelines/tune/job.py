"""The ``tune`` job kind: per-video LoRA tuning run by the server's worker.

Streams: ``file.pytorch_lora_weights.safetensors`` (the LoRA, diffusers format) and
``file.report.json`` (rounds, losses, the registered id), as ``file.<name>`` chunks like ``reshoot``.
The job's output folder keeps every round's data, loss curve and previews, and checkpoints: a job
run again after a server restart resumes from its newest checkpoint.
"""

from __future__ import annotations

import numpy as np

from backend.jobs import JobContext
from backend.pipelines.reshoot.job import stream_file

from .pipeline import run_tune
from .request import TuneRequest


def validate_tune(params: dict, inputs: dict[str, np.ndarray]) -> None:
    """Cheap checks before the job is queued (raises ValidationError / CameraError)."""
    TuneRequest.from_params(params, inputs)


def _default_lora_id(job_id: str) -> str:
    clean = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in job_id).strip("-.")
    return f"tune-{clean}"[:100]


def run_tune_job(ctx: JobContext) -> None:
    request = TuneRequest.from_params(ctx.params, ctx.inputs)
    if request.lora_id is None:
        request.lora_id = _default_lora_id(ctx.job_id)
    logged = list(request.warnings)
    for warning in logged:
        ctx.log(f"warning: {warning}")
    result = run_tune(request, ctx.output_dir, progress=ctx.progress, cancel=ctx.cancel)
    for note in request.warnings:  # what the depth stage found (estimated intrinsics, relative scale)
        if note not in logged:
            ctx.log(f"warning: {note}")
    ctx.log(f"LoRA registered as {request.lora_id!r} at {result.registered}")
    stream_file(ctx, "pytorch_lora_weights.safetensors", result.lora_dir / "pytorch_lora_weights.safetensors")
    stream_file(ctx, "report.json", result.out_dir / "report.json")
