"""The ``reshoot`` request: typed, validated before any heavy work.

Wire/job-file form (``params`` is msgpack/JSON, ``inputs`` are arrays)::

    params = {
      "fps": 24.0,
      "start_frame": 1,                 # timeline frame of the first video frame (USD time code)
      "cameras": [{"K": 3x3, "world_to_camera": 4x4, "width": W, "height": H}, ...],  # 1 (static) or F
      "fov_deg": 60.0,                  # used only when "cameras" is absent (a guess, with a warning)
      "depth_kind": "z" | "ray",        # what the supplied depth measures (planar z or distance along the ray)
      "trajectories": [
          {"name": "orbit", "cameras": [...F cameras...], "time_map": [...F source frame indices...]},
          {"name": "dolly", "preset": "dolly:in:0.5", "pivot_depth": 3.0},   # pivot optional
      ],
      "prompt": "", "engine": {...EngineOptions...}, "gaussians": {...GaussianOptions...},
      "outputs": ["usd", "ply", "video", "png", "masks", "cameras"],
    }
    inputs = {"frames": uint8 (F,H,W,3), "depth": float (F,H,W), "foreground": bool/uint8 (F,H,W),
              "edit_frame": uint8 (H,W,3), "edit_masks": bool/uint8 (F,H,W)}

Every camera is in the OpenCV convention of ``protocol.camera``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.engines.fast_preset import FAST
from protocol.camera import Camera
from protocol.errors import ValidationError

from ..fields import (
    any_positive_finite,
    camera_list,
    check_engine_options,
    optional_map,
    options_from,
    positive_float,
    source_cameras,
    string_set,
    validate_name,
    video_frames,
)
from ..source_depth import check_depth_estimable

ALL_OUTPUTS = frozenset({"usd", "ply", "video", "png", "masks", "cameras"})
MAX_PROMPT_BYTES = 4096
MAX_TRAJECTORIES = 16


@dataclass
class EngineOptions:
    """Which engines fill and estimate depth, and how the generative engine runs."""

    inpaint: str = "classical"
    depth: str = "given"
    lora: str | None = None
    lora_weight: float = 0.7
    steps: int = 30
    guidance: float = 6.5
    seed: int = 0
    temporal_packing: bool = True
    packing_top_k: int = 4
    static_accumulation: bool = True
    models_dir: str | None = None
    fast: bool = False  # few-step preset: step-distillation LoRA, 4 steps (or ``steps`` if 1-8), guidance 1
    options: dict = field(default_factory=dict)  # engine-specific extras (e.g. wan-vace offload, window_frames)

    def inpaint_options(self) -> dict:
        """Constructor options for the inpainting engine: ``options`` plus, for wan-vace, the settings above.

        With ``fast`` the engine's fast preset sets the schedule and guidance 1; ``steps`` is passed
        on only when it is a distilled schedule length (1-8), so the default 30 means the preset's 4.
        """
        opts = dict(self.options)
        if self.inpaint.startswith("wan-vace") and self.fast:
            opts.setdefault("preset", "fast")
            if 1 <= self.steps <= FAST.max_steps:
                opts.setdefault("num_inference_steps", self.steps)
        elif self.inpaint.startswith("wan-vace"):
            opts.setdefault("num_inference_steps", self.steps)
            opts.setdefault("guidance_scale", self.guidance)
        if self.inpaint.startswith("wan-vace"):
            opts.setdefault("seed", self.seed)
            opts.setdefault("lora", self.lora)
            opts.setdefault("lora_weight", self.lora_weight)
            opts.setdefault("context_top_k", self.packing_top_k)
        return opts


#: default fitting steps for the first frame of a sequence (later frames: half, warm started). On a
#: CPU a few steps from the surface-aligned initialisation already give most of the gain: on the
#: room scene (160x120, two views, three held-out cameras, Blender's dilation) 24.0 dB for the old
#: isotropic start, 30.4 dB for unfitted surface discs, 32.5 / 33.0 / 33.7 / 34.5 dB after
#: 3 / 4 / 6 / 10 steps. Every fit ends with the closed-form colour solve
#: (``backend.gaussians.color_solve``), which does more for the colours than further steps: on
#: ``make demo`` (192x108, 25 frames) native Cycles 24.18 dB / SSIM 0.834 after 4 steps + solve,
#: 24.09 / 0.830 after 2 + solve (23.41 / 0.799 after 4 steps alone), so the CPU default is 2
#: (later frames 1; the demo's Gaussian stage 49-68 s on a 2-core CPU).
CUDA_FIT_ITERATIONS = 100
CPU_FIT_ITERATIONS = 2


@dataclass
class GaussianOptions:
    """Per-frame Gaussian fitting.

    ``iterations = 0`` exports the initial Gaussians without fitting (surface-aligned discs on the
    fused points); ``None`` (default) means :data:`CUDA_FIT_ITERATIONS` on CUDA (gsplat) and
    :data:`CPU_FIT_ITERATIONS` on a CPU (the sparse-pair rasteriser; later frames get half, warm
    started from the previous frame).
    """

    enabled: bool = True
    iterations: int | None = None
    max_points: int = 200_000

    def resolved_iterations(self, device_type: str) -> int:
        if self.iterations is not None:
            return self.iterations
        return CUDA_FIT_ITERATIONS if device_type == "cuda" else CPU_FIT_ITERATIONS


@dataclass
class Trajectory:
    """A target camera path: one camera per output frame, and the source frame each output frame shows.

    ``preset`` paths are resolved by the pipeline once depth is known (the pivot defaults to the
    median depth of the first frame's centre).
    """

    name: str
    cameras: list[Camera] = field(default_factory=list)
    time_map: np.ndarray | None = None
    preset: str | None = None
    pivot_depth: float | None = None

    def source_frame(self, i: int) -> int:
        return int(self.time_map[i]) if self.time_map is not None else i


@dataclass
class ReshootRequest:
    frames: np.ndarray
    fps: float
    cameras: list[Camera]
    trajectories: list[Trajectory]
    start_frame: int = 1
    depth: np.ndarray | None = None
    depth_kind: str = "z"
    foreground: np.ndarray | None = None
    edit_frame: np.ndarray | None = None
    edit_masks: np.ndarray | None = None
    prompt: str = ""
    engine: EngineOptions = field(default_factory=EngineOptions)
    gaussians: GaussianOptions = field(default_factory=GaussianOptions)
    outputs: frozenset[str] = ALL_OUTPUTS
    warnings: list[str] = field(default_factory=list)
    cameras_guessed: bool = False  # no "cameras" sent: a field-of-view guess (a depth engine may estimate K)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the source frames in pixels."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    @classmethod
    def from_params(cls, params: dict[str, Any], inputs: dict[str, np.ndarray]) -> ReshootRequest:
        """Validate a wire/job-file request; raises :class:`ValidationError` naming the bad field."""
        if not isinstance(params, dict):
            raise ValidationError("params must be a map")
        frames = video_frames(inputs.get("frames"))
        n, h, w = frames.shape[:3]
        warnings: list[str] = []
        fps = positive_float(params.get("fps", 24.0), "fps")
        start_frame = params.get("start_frame", 1)
        if isinstance(start_frame, bool) or not isinstance(start_frame, int) or abs(start_frame) > 1_000_000:
            raise ValidationError(f"start_frame must be a whole frame number, got {start_frame!r}")
        cameras = source_cameras(params, n, w, h, warnings)
        depth_kind = params.get("depth_kind", "z")
        if depth_kind not in ("z", "ray"):
            raise ValidationError(f"depth_kind must be 'z' or 'ray', got {depth_kind!r}")
        depth = optional_map(inputs.get("depth"), "depth", (n, h, w), float)
        if depth is not None and not any_positive_finite(depth):
            raise ValidationError("depth has no positive finite value: nothing can be lifted")
        foreground = optional_map(inputs.get("foreground"), "foreground", (n, h, w), bool)
        edit_masks = optional_map(inputs.get("edit_masks"), "edit_masks", (n, h, w), bool)
        edit_frame = inputs.get("edit_frame")
        if edit_frame is not None:
            edit_frame = video_frames(np.asarray(edit_frame)[None], name="edit_frame")[0]
            if edit_frame.shape != frames.shape[1:]:
                raise ValidationError(f"edit_frame must be {w}x{h} like the video, got {edit_frame.shape}")
        if (edit_frame is None) != (edit_masks is None):
            raise ValidationError("edit_frame and edit_masks go together: send the edited first frame and the "
                                  "per-frame masks of where the edit appears, or neither")
        prompt = params.get("prompt", "") or ""
        if not isinstance(prompt, str) or len(prompt.encode()) > MAX_PROMPT_BYTES:
            raise ValidationError(f"prompt must be text of at most {MAX_PROMPT_BYTES} bytes")
        engine = engine_options(params.get("engine", {}))
        if engine.fast and not engine.inpaint.startswith("wan-vace"):
            warnings.append(f"engine.fast has no effect with the {engine.inpaint!r} fill engine (it has no "
                            "diffusion steps to cut); choose engine.inpaint = 'wan-vace'")
        if depth is None and engine.depth == "given":
            raise ValidationError(
                "no depth was sent and the depth engine is 'given': send depth maps or choose "
                "engine.depth = 'depth-anything'"
            )
        if depth is None:
            check_depth_estimable(frames)
        outputs = string_set(params.get("outputs", sorted(ALL_OUTPUTS)), ALL_OUTPUTS, "outputs")
        trajectories = _trajectories(params.get("trajectories"), n)
        gaussians = options_from(GaussianOptions, params.get("gaussians", {}), "gaussians")
        if gaussians.iterations is not None and (type(gaussians.iterations) is not int or gaussians.iterations < 0):
            raise ValidationError(f"gaussians.iterations must be a whole number >= 0, got {gaussians.iterations!r}")
        if gaussians.max_points < 1:
            raise ValidationError(f"gaussians.max_points must be >= 1, got {gaussians.max_points}")
        return cls(
            frames=frames, fps=fps, start_frame=start_frame, cameras=cameras, trajectories=trajectories, depth=depth,
            depth_kind=depth_kind, foreground=foreground, edit_frame=edit_frame, edit_masks=edit_masks,
            prompt=prompt, engine=engine, gaussians=gaussians,
            outputs=frozenset(outputs), warnings=warnings, cameras_guessed=params.get("cameras") is None,
        )


def engine_options(raw: Any, field: str = "engine") -> EngineOptions:
    """``engine`` options, with the engine names, LoRA id and engine-specific ``options`` checked."""
    engine = options_from(EngineOptions, raw, field)
    if engine.lora is not None and (not isinstance(engine.lora, str) or not 0 < len(engine.lora) <= 1024):
        raise ValidationError(f"{field}.lora must be a LoRA id, got {str(engine.lora)[:80]!r}")
    for key in ("steps", "seed", "packing_top_k"):
        value = getattr(engine, key)
        if type(value) is not int or value < (1 if key == "steps" else 0):
            raise ValidationError(f"{field}.{key} must be a whole number >= {1 if key == 'steps' else 0}, got {value!r}")
    if not isinstance(engine.options, dict):
        raise ValidationError(f"{field}.options must be a map of engine options")
    check_engine_options("inpaint", engine.inpaint, engine.inpaint_options(), f"{field}.options")
    check_engine_options("depth", engine.depth, {}, f"{field}.depth")
    return engine


def _trajectories(raw: Any, n: int) -> list[Trajectory]:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValidationError("trajectories must be a non-empty list of target camera paths")
    if len(raw) > MAX_TRAJECTORIES:
        raise ValidationError(f"at most {MAX_TRAJECTORIES} trajectories per job, got {len(raw)}")
    out, names = [], set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ValidationError(f"trajectories[{i}] must be a map")
        name = validate_name(item.get("name") or f"path{i}", f"trajectories[{i}].name")
        if name in names:
            raise ValidationError(f"trajectories[{i}].name {name!r} is used twice: names must be unique")
        names.add(name)
        if "preset" in item:
            pivot = item.get("pivot_depth")
            if not isinstance(item["preset"], str) or not 0 < len(item["preset"]) <= 128:
                raise ValidationError(f"trajectories[{i}].preset must be a preset string like 'orbit:left:30'")
            out.append(Trajectory(name, preset=item["preset"],
                                  pivot_depth=None if pivot is None
                                  else positive_float(pivot, f"trajectories[{i}].pivot_depth")))
            continue
        cameras = camera_list(item.get("cameras"), f"trajectories[{i}].cameras")
        time_map = item.get("time_map")
        if time_map is not None:
            time_map = np.asarray(time_map) if isinstance(time_map, list | tuple | np.ndarray) else np.asarray(None)
            if time_map.shape != (len(cameras),) or not np.issubdtype(time_map.dtype, np.integer):
                raise ValidationError(f"trajectories[{i}].time_map must list one integer frame per camera")
            if time_map.min() < 0 or time_map.max() >= n:
                raise ValidationError(f"trajectories[{i}].time_map refers to frames outside 0..{n - 1}")
        elif len(cameras) != n:
            raise ValidationError(
                f"trajectories[{i}] has {len(cameras)} cameras for {n} frames; send one per frame or a time_map"
            )
        out.append(Trajectory(name, cameras=cameras, time_map=time_map))
    return out
