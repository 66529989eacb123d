"""The ``tune`` request: typed, validated before any heavy work.

Wire/job-file form (``params`` is msgpack/JSON, ``inputs`` are arrays)::

    params = {
      "fps": 16.0,
      "cameras": [{"K": 3x3, "world_to_camera": 4x4, "width": W, "height": H}, ...],  # 1 (static) or F
      "fov_deg": 60.0,              # used only when "cameras" is absent (a guess, with a warning)
      "depth_kind": "z" | "ray",    # what the supplied depth measures
      "depth_engine": "given",      # without depth: e.g. "depth-anything" (as reshoot's engine.depth)
      "lora_id": "my-shot",         # register the result as <models>/loras/<lora_id> (reshoot: engine.lora)
      "models_dir": None,           # default $RECAST4D_MODELS
      "prompt": "",                 # also accepted inside "tune"
      "resume": true,               # continue from the newest checkpoint in the output folder
      "tune": {...TuneConfig...},   # rank, steps, angles, width, height, num_frames, ...
    }
    inputs = {"frames": uint8 (F,H,W,3), "depth": float (F,H,W) metres (optional with a depth_engine)}

Cameras are OpenCV (``protocol.camera``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.engines.registry import get_engine_spec
from backend.tune.config import TuneConfig
from backend.tune.model import LORA_ID_PATTERN
from protocol.camera import Camera
from protocol.errors import ValidationError

from ..fields import any_positive_finite, as_dtype, source_cameras
from ..source_depth import check_depth_estimable

MAX_PROMPT_BYTES = 4096


@dataclass
class TuneRequest:
    frames: np.ndarray  # (F,H,W,3) uint8
    depth: np.ndarray | None  # (F,H,W) float32 metres, of kind depth_kind; None: estimated by depth_engine
    cameras: list[Camera]
    config: TuneConfig
    depth_kind: str = "z"
    fps: float = 16.0
    lora_id: str | None = None
    models_dir: str | None = None
    resume: bool = True
    warnings: list[str] = field(default_factory=list)
    depth_engine: str = "given"
    cameras_guessed: bool = False  # no "cameras" sent: a field-of-view guess (a depth engine may estimate K)

    @classmethod
    def from_params(cls, params: dict[str, Any], inputs: dict[str, np.ndarray]) -> TuneRequest:
        """Validate a wire/job-file request; raises ValidationError / CameraError naming the bad field."""
        if not isinstance(params, dict):
            raise ValidationError("params must be a map")
        known = {"fps", "cameras", "fov_deg", "depth_kind", "depth_engine", "lora_id", "models_dir", "prompt",
                 "resume", "tune"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValidationError(f"unknown tune params {unknown}; known: {sorted(known)}")
        frames = inputs.get("frames")
        if frames is None:
            raise ValidationError("frames are missing: send the source video as (F, H, W, 3) uint8")
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
            raise ValidationError(f"frames must be non-empty (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        n, h, w = frames.shape[:3]
        depth_engine = params.get("depth_engine", "given")
        if not isinstance(depth_engine, str):
            raise ValidationError(f"depth_engine must be a depth engine name, got {depth_engine!r}")
        get_engine_spec("depth", depth_engine)  # unknown names are refused here, listing the known ones
        depth = inputs.get("depth")
        if depth is None:
            if depth_engine == "given":
                raise ValidationError("depth is missing: send depth maps (F, H, W) in metres for every frame, or set "
                                      "depth_engine = 'depth-anything' to estimate them from the video")
            check_depth_estimable(frames)
        else:
            depth = np.asarray(depth)
            if depth.shape != (n, h, w) or not np.issubdtype(depth.dtype, np.floating):
                raise ValidationError(f"depth must be float (F, H, W) = {(n, h, w)}, got {depth.shape} {depth.dtype}")
            if not any_positive_finite(depth):
                raise ValidationError("depth has no positive finite value: nothing can be lifted")
            depth = as_dtype(depth, np.float32)
        depth_kind = params.get("depth_kind", "z")
        if depth_kind not in ("z", "ray"):
            raise ValidationError(f"depth_kind must be 'z' or 'ray', got {depth_kind!r}")
        warnings: list[str] = []
        cameras = source_cameras(params, n, w, h, warnings)
        if not isinstance(params.get("tune") or {}, dict):
            raise ValidationError("tune must be a map of tuning options")
        raw_config = dict(params.get("tune") or {})
        prompt = params.get("prompt", raw_config.get("prompt", "")) or ""
        if not isinstance(prompt, str) or len(prompt.encode()) > MAX_PROMPT_BYTES:
            raise ValidationError(f"prompt must be text of at most {MAX_PROMPT_BYTES} bytes")
        raw_config["prompt"] = prompt
        config = TuneConfig.from_dict(raw_config)
        if n < 5:
            raise ValidationError(f"tuning needs a video of at least 5 frames, got {n}")
        lora_id = params.get("lora_id")
        if lora_id is not None and (not isinstance(lora_id, str) or not LORA_ID_PATTERN.fullmatch(lora_id)):
            raise ValidationError(f"lora_id {lora_id!r} must be 1-100 letters, digits, '.', '-' or '_'")
        fps = params.get("fps", 16.0)
        if not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0:
            raise ValidationError(f"fps must be a positive number, got {fps!r}")
        models_dir = params.get("models_dir")
        return cls(frames=frames, depth=depth, cameras=cameras, config=config,
                   depth_kind=depth_kind, fps=float(fps), lora_id=lora_id,
                   models_dir=None if models_dir is None else str(models_dir),
                   resume=bool(params.get("resume", True)), warnings=warnings, depth_engine=depth_engine,
                   cameras_guessed=params.get("cameras") is None)

