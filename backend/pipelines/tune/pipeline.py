"""The ``tune`` pipeline: a request -> a per-video LoRA registered for ``reshoot`` (EasyCreator training).

1. depth to planar z (metres), source cropped/resized to the training resolution with exact intrinsics;
2. the self-iterative rounds of :func:`backend.tune.rounds.run_tuning` (data, training, generation);
3. the final LoRA (diffusers format) copied to ``<models>/loras/<lora_id>`` when an id is given,
   so a reshoot request can name it: ``engine.lora = lora_id``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.engines.registry import WAN_VACE_1_3B, require_weights, resolve_models_dir
from backend.geometry import depth_to_planar
from backend.pipelines.stages import StageProgressFn
from backend.progress import CancelFn
from backend.tune.model import register_lora
from backend.tune.rounds import TuneResult, run_tuning
from backend.tune.source import prepare_source
from protocol.camera import stack_cameras

from .request import TuneRequest


def planar_depth(request: TuneRequest) -> np.ndarray:
    """The request's depth as planar z ``(F,H,W)`` float32 metres (0 = unknown)."""
    depth = torch.from_numpy(np.ascontiguousarray(request.depth, dtype=np.float32))
    K, _ = stack_cameras(request.cameras)
    planar = depth_to_planar(depth, torch.as_tensor(K, dtype=torch.float32), request.depth_kind)
    planar = torch.where(torch.isfinite(planar) & (planar > 0), planar, torch.zeros_like(planar))
    return planar.numpy()


def run_tune(request: TuneRequest, out_dir: str | Path, *, progress: StageProgressFn | None = None,
             cancel: CancelFn | None = None, pipe: Any = None) -> TuneResult:
    """Run the whole tuning job into ``out_dir``; returns the result with the registered LoRA path."""
    models_dir = resolve_models_dir(request.models_dir)
    base_folder = require_weights(WAN_VACE_1_3B, models_dir)
    config = request.config
    source = prepare_source(request.frames, planar_depth(request), request.cameras, config.width, config.height)
    result = run_tuning(source, config, base_folder, out_dir, progress=progress, cancel=cancel,
                        resume=request.resume, pipe=pipe, fps=request.fps)
    if request.lora_id:
        result.registered = register_lora(result.lora_dir, request.lora_id, models_dir)
        result.report["lora_id"] = request.lora_id
        result.report["registered"] = str(result.registered)
        (Path(out_dir) / "report.json").write_text(json.dumps(result.report, indent=1, default=str))
    return result
