"""The ``generate`` request (text/image -> 4D scene, CoCo4D): typed, validated before any heavy work.

Wire/job-file form (``params`` is msgpack/JSON, ``inputs`` are arrays)::

    params = {
      "prompt": "a red fox trotting through a snowy forest",
      "video_engine": "wan-t2v" | "wan-i2v",         # default: wan-i2v with an image, else wan-t2v
      "num_frames": 81, "width": 832, "height": 480, "fps": 16.0,   # the generated reference video
      "video": {...},                                  # video engine options (num_inference_steps, seed, ...)
      "cameras": [{"K", "world_to_camera", "width", "height"}],   # reference camera(s); default fov_deg
      "fov_deg": 60.0, "depth_kind": "z" | "ray",
      "engine": {...reshoot EngineOptions: inpaint, depth, steps, guidance, seed, models_dir, options},
      "outpaint": {"rings": [[[0, 30], [0, -30], [15, 0], [-15, 0]], [[15, 30], ...]], "strength": 0.7,
                   "fit_iterations": null, "fit_scale": null, "views_per_step": 2, "pivot_depth": null},
                                   # fit_iterations / fit_scale: null = the device's default (CUDA 50 steps
                                   # at full size, CPU 3 steps at 1/4 size: OutpaintSettings.for_device);
                                   # fit_scale is the size of every Gaussian optimisation view (background
                                   # and foreground) as a fraction of the frame size
      "split": {"tolerance": null, "noise_sigmas": 4.0, "min_tolerance": 0.02, "window": 8},
                                   # automatic (motion) split: tolerance null = adapts to the depth's own
                                   # noise (noise_sigmas x the robust noise of each frame pair), or a fixed
                                   # relative see-through margin (backend.generate.motion_split)
      "animation": {"enabled": true, "iterations": null, "tv_weight": 0.1, ...},
                                   # the moving background (backend.generate.animate): iterations null =
                                   # the device's default (CUDA 300, CPU 6)
      "compose": {"method": "band" | "ranges"},  # foreground depth placement (backend.generate.compose):
                                   # per-frame fit on the contact band (default) or the paper's Eq. 8-9
      "volume": {"enabled": true, "azimuths": [180, 90, -90], "strength": 0.7},
                                   # the object's unseen sides from orbit views (backend.generate.volume)
      "gaussians": {"enabled": true, "iterations": null},  # foreground steps per frame (null: CUDA 100, CPU 0)
      "outputs": ["usd", "ply", "video", "png", "masks"],
    }
    inputs = {"image": uint8 (H,W,3), "frames": uint8 (F,H,W,3) (a video the user already has),
              "depth": float (F,H,W) metres, "foreground": bool/uint8 (F,H,W) (user masks)}

With ``frames`` no video is generated (prompt optional); otherwise a prompt is required. Depth for a
generated video comes from a depth engine (``engine.depth``, default ``depth-anything``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from backend.generate.animate import AnimationSettings
from backend.generate.foreground import COMPOSE_METHODS
from backend.generate.motion_split import SplitSettings
from backend.generate.outpaint import OutpaintSettings
from backend.generate.rings import parse_rings
from backend.generate.video_engines import video_size
from backend.generate.volume import VolumeSettings
from protocol.camera import Camera
from protocol.errors import ValidationError

from ..fields import (
    any_positive_finite,
    bounded_float,
    check_engine_options,
    optional_map,
    options_from,
    positive_float,
    source_cameras,
    string_set,
    video_frames,
)
from ..reshoot.request import MAX_PROMPT_BYTES, EngineOptions, GaussianOptions, engine_options

GENERATE_OUTPUTS = frozenset({"usd", "ply", "video", "png", "masks"})
VIDEO_ENGINES = ("wan-t2v", "wan-i2v")
MAX_GENERATED_FRAMES = 161
MAX_GENERATED_PIXELS = 1280 * 720


@dataclass
class GenerateRequest:
    prompt: str
    fps: float
    cameras: list[Camera] | None  # reference cameras, one per frame (None: resolved once the size is known)
    frames: np.ndarray | None = None
    image: np.ndarray | None = None
    depth: np.ndarray | None = None
    depth_kind: str = "z"
    foreground: np.ndarray | None = None
    video_engine: str = "wan-t2v"
    video_options: dict = field(default_factory=dict)
    num_frames: int = 81
    width: int = 832
    height: int = 480
    fov_deg: float = 60.0
    engine: EngineOptions = field(default_factory=EngineOptions)
    outpaint: OutpaintSettings = field(default_factory=OutpaintSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    animation: AnimationSettings = field(default_factory=AnimationSettings)
    compose_method: str = "band"
    volume: VolumeSettings = field(default_factory=VolumeSettings)
    gaussians: GaussianOptions = field(default_factory=GaussianOptions)
    outputs: frozenset[str] = GENERATE_OUTPUTS
    warnings: list[str] = field(default_factory=list)

    @property
    def generates_video(self) -> bool:
        return self.frames is None

    @classmethod
    def from_params(cls, params: dict[str, Any], inputs: dict[str, np.ndarray]) -> GenerateRequest:
        """Validate a wire/job-file request; raises :class:`ValidationError` naming the bad field."""
        if not isinstance(params, dict):
            raise ValidationError("params must be a map")
        prompt = params.get("prompt", "") or ""
        if not isinstance(prompt, str) or len(prompt.encode()) > MAX_PROMPT_BYTES:
            raise ValidationError(f"prompt must be text of at most {MAX_PROMPT_BYTES} bytes")
        warnings: list[str] = []
        frames = None if inputs.get("frames") is None else video_frames(inputs.get("frames"))
        image = inputs.get("image")
        if image is not None:
            image = video_frames(np.asarray(image)[None], name="image")[0]
        if not isinstance(params.get("engine", {}) or {}, dict):
            raise ValidationError("engine must be a map of options")
        engine_raw = dict(params.get("engine", {}) or {})
        if "depth" not in engine_raw:
            engine_raw["depth"] = "given" if inputs.get("depth") is not None else "depth-anything"
        engine = engine_options(engine_raw)
        fps = positive_float(params.get("fps", 16.0), "fps")
        fov = positive_float(params.get("fov_deg", 60.0), "fov_deg")
        depth_kind = params.get("depth_kind", "z")
        if depth_kind not in ("z", "ray"):
            raise ValidationError(f"depth_kind must be 'z' or 'ray', got {depth_kind!r}")
        outpaint = _outpaint_settings(params.get("outpaint", {}), engine.seed)
        gaussians = options_from(GaussianOptions, params.get("gaussians", {}), "gaussians")
        split = options_from(SplitSettings, params.get("split", {}) or {}, "split").validate()
        animation = options_from(AnimationSettings, params.get("animation", {}) or {}, "animation").validate()
        volume = options_from(VolumeSettings, params.get("volume", {}) or {}, "volume").validate()
        compose = params.get("compose", {}) or {}
        if not isinstance(compose, dict) or set(compose) - {"method"}:
            raise ValidationError("compose must be a map with one option, method ('band' or 'ranges')")
        compose_method = compose.get("method", "band")
        if compose_method not in COMPOSE_METHODS:
            raise ValidationError(f"compose.method must be one of {', '.join(COMPOSE_METHODS)}, got {compose_method!r}")
        outputs = string_set(params.get("outputs", sorted(GENERATE_OUTPUTS)), GENERATE_OUTPUTS, "outputs")
        video_options = params.get("video", {}) or {}
        if not isinstance(video_options, dict):
            raise ValidationError("video must be a map of video engine options")
        common = dict(prompt=prompt, fps=fps, fov_deg=fov, depth_kind=depth_kind, engine=engine, outpaint=outpaint,
                      split=split, animation=animation, compose_method=compose_method, volume=volume,
                      gaussians=gaussians, outputs=outputs, warnings=warnings, video_options=video_options)
        if frames is not None:
            n, h, w = frames.shape[:3]
            if image is not None:
                warnings.append("both a video and an image were sent: the video is used, the image ignored")
            depth = optional_map(inputs.get("depth"), "depth", (n, h, w), float)
            if depth is None and engine.depth == "given":
                raise ValidationError("no depth was sent with the video and the depth engine is 'given': send depth "
                                      "maps or choose engine.depth = 'depth-anything'")
            if depth is not None and not any_positive_finite(depth):
                raise ValidationError("depth has no positive finite value: nothing can be lifted")
            foreground = optional_map(inputs.get("foreground"), "foreground", (n, h, w), bool)
            cameras = source_cameras({**params, "fov_deg": fov}, n, w, h, warnings)
            return cls(frames=frames, cameras=cameras, depth=depth, foreground=foreground, image=None,
                       num_frames=n, width=w, height=h, **common)
        if not prompt.strip():
            raise ValidationError("say what to generate: send a prompt (and optionally an image), or a video as frames")
        if inputs.get("depth") is not None or inputs.get("foreground") is not None:
            raise ValidationError("depth and foreground masks can only be sent together with the video (frames) "
                                  "they belong to")
        if engine.depth == "given":
            raise ValidationError("a generated video has no given depth: choose engine.depth = 'depth-anything'")
        name = params.get("video_engine") or ("wan-i2v" if image is not None else "wan-t2v")
        if name not in VIDEO_ENGINES:
            raise ValidationError(f"unknown video_engine {name!r}; choose from {', '.join(VIDEO_ENGINES)}")
        check_engine_options("video", name, video_options, "video")
        if name == "wan-i2v" and image is None:
            raise ValidationError("the wan-i2v engine needs an image (inputs.image, (H, W, 3) uint8)")
        if name == "wan-t2v" and image is not None:
            raise ValidationError("an image was sent but video_engine is wan-t2v; use wan-i2v for image + prompt")
        num_frames, height, width = video_size(_int(params, "num_frames", 81), _int(params, "height", 480),
                                               _int(params, "width", 832))
        if num_frames > MAX_GENERATED_FRAMES or height * width > MAX_GENERATED_PIXELS:
            raise ValidationError(f"at most {MAX_GENERATED_FRAMES} frames of {MAX_GENERATED_PIXELS} pixels can be "
                                  f"generated, asked for {num_frames} of {width}x{height}")
        cameras = None
        if params.get("cameras") is not None:
            cameras = source_cameras(params, num_frames, width, height, warnings)
        return cls(frames=None, cameras=cameras, image=image, video_engine=name, num_frames=num_frames,
                   width=width, height=height, **common)


def _int(params: dict, key: str, default: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValidationError(f"{key} must be an integer, got {value!r}")
    return int(value)


def _outpaint_settings(raw: Any, seed: int) -> OutpaintSettings:
    if not isinstance(raw, dict):
        raise ValidationError("outpaint must be a map of options")
    known = {f.name for f in fields(OutpaintSettings)} - {"warm_start", "seed"}
    unknown = set(raw) - known
    if unknown:
        raise ValidationError(f"unknown outpaint options {sorted(unknown)}; known: {sorted(known)}")
    settings = OutpaintSettings(rings=parse_rings(raw.get("rings")), seed=seed)
    if "strength" in raw:
        settings.strength = bounded_float(raw["strength"], "outpaint.strength", 0.0, 1.0)
    for key in ("fit_iterations", "initial_iterations", "views_per_step"):
        if raw.get(key) is not None:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key != "views_per_step" else 1):
                raise ValidationError(f"outpaint.{key} must be a non-negative integer, got {value!r}")
            setattr(settings, key, value)
    if "fit_scale" in raw:
        settings.fit_scale = bounded_float(raw["fit_scale"], "outpaint.fit_scale", 0.05, 1.0)
    if raw.get("pivot_depth") is not None:
        settings.pivot_depth = positive_float(raw["pivot_depth"], "outpaint.pivot_depth")
    return settings
