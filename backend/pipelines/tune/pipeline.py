"""The ``tune`` pipeline: a request -> a per-video LoRA registered for ``reshoot`` (EasyCreator training).

1. depth to planar z (metres), given or estimated by the request's ``depth_engine`` exactly as the
   reshoot's depth stage does; source cropped/resized to the training resolution with exact intrinsics;
2. the self-iterative rounds of :func:`backend.tune.rounds.run_tuning` (data, training, generation);
3. the final LoRA (diffusers format) copied to ``<models>/loras/<lora_id>`` when an id is given,
   so a reshoot request can name it: ``engine.lora = lora_id``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from backend.engines.registry import WAN_VACE_1_3B, require_weights, resolve_models_dir
from backend.pipelines.stages import StageProgressFn
from backend.progress import CancelFn
from backend.tune.model import register_lora
from backend.tune.rounds import TuneResult, run_tuning
from backend.tune.source import prepare_source

from ..source_depth import estimate_source_depth, planar_given_depth
from .request import TuneRequest


def tune_source_depth(request: TuneRequest, progress: StageProgressFn | None = None,
                      cancel: CancelFn | None = None) -> np.ndarray:
    """Planar z ``(F,H,W)`` float32 metres (0 = unknown): the request's depth, or the estimate of its
    ``depth_engine`` (the reshoot's depth stage, :mod:`backend.pipelines.source_depth`); an engine's
    intrinsics estimate replaces guessed cameras in ``request.cameras``."""
    if request.depth is not None:
        return planar_given_depth(request.depth, request.depth_kind, request.cameras)

    def depth_progress(step: int, total: int, message: str = "") -> None:
        if progress is not None:
            progress("depth", step, total, message)

    depth_progress(0, 1, "started")
    estimate = estimate_source_depth(request.frames, request.cameras, request.depth_engine,
                                     models_dir=request.models_dir, cameras_guessed=request.cameras_guessed,
                                     progress=depth_progress, cancel=cancel)
    if estimate.intrinsics_estimated:
        request.cameras = estimate.cameras
        request.warnings[:] = [w for w in request.warnings if not w.startswith("no source camera given")]
    request.warnings.extend(estimate.notes)
    depth_progress(1, 1, "done")
    return estimate.depth


def run_tune(request: TuneRequest, out_dir: str | Path, *, progress: StageProgressFn | None = None,
             cancel: CancelFn | None = None, pipe: Any = None) -> TuneResult:
    """Run the whole tuning job into ``out_dir``; returns the result with the registered LoRA path."""
    models_dir = resolve_models_dir(request.models_dir)
    base_folder = require_weights(WAN_VACE_1_3B, models_dir)
    config = request.config
    depth = tune_source_depth(request, progress, cancel)
    source = prepare_source(request.frames, depth, request.cameras, config.width, config.height)
    result = run_tuning(source, config, base_folder, out_dir, progress=progress, cancel=cancel,
                        resume=request.resume, pipe=pipe, fps=request.fps)
    if request.lora_id:
        result.registered = register_lora(result.lora_dir, request.lora_id, models_dir)
        result.report["lora_id"] = request.lora_id
        result.report["registered"] = str(result.registered)
        (Path(out_dir) / "report.json").write_text(json.dumps(result.report, indent=1, default=str))
    return result
