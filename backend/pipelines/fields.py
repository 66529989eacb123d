"""Validation of request fields shared by the job kinds (``reshoot``, ``generate``, ``tune``).

``validate_name`` (re-exported from :mod:`backend.jobs.specs`) is the one ASCII pattern for names
that become file names (trajectories, streams, inputs).

Each helper returns the value in its typed form or raises :class:`ValidationError` (or
:class:`CameraError`) with a message that names the field, before any heavy work starts.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import fields
from typing import Any

import numpy as np

from backend.jobs.specs import validate_name as validate_name  # re-exported: one pattern for names
from protocol.camera import Camera
from protocol.errors import CameraError, ValidationError


def video_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """``(F, H, W, 3)`` uint8 RGB frames, at least 8x8 and one frame."""
    if frames is None:
        raise ValidationError(f"{name} are missing: send the source video as (F, H, W, 3) uint8")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValidationError(f"{name} must have shape (F, H, W, 3), got {frames.shape}")
    if frames.shape[0] == 0:
        raise ValidationError(f"{name}: the video is empty (0 frames)")
    if min(frames.shape[1:3]) < 8:
        raise ValidationError(f"{name}: {frames.shape[2]}x{frames.shape[1]} is too small (8 pixels minimum)")
    if frames.dtype != np.uint8:
        raise ValidationError(f"{name} must be uint8 RGB, got {frames.dtype}")
    return frames

def positive_float(value: Any, name: str) -> float:
    """A finite number > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name} must be a number, got {value!r}") from exc
    if not np.isfinite(value) or value <= 0:
        raise ValidationError(f"{name} must be positive and finite, got {value}")
    return value

def camera_list(raw: Any, what: str) -> list[Camera]:
    """Cameras from their plain-data form (``Camera.to_dict``); errors name the index."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValidationError(f"{what} must be a non-empty list of cameras")
    cameras = []
    for i, item in enumerate(raw):
        try:
            cameras.append(item if isinstance(item, Camera) else Camera.from_dict(item))
        except CameraError as exc:
            raise CameraError(f"{what}[{i}]: {exc}") from exc
    return cameras

def source_cameras(params: dict, n: int, w: int, h: int, warnings: list[str]) -> list[Camera]:
    """One source camera per frame from ``params["cameras"]`` (one = static), or a field-of-view guess
    (``fov_deg``, default 60) with a warning appended to ``warnings``."""
    raw = params.get("cameras")
    if raw is None:
        fov = positive_float(params.get("fov_deg", 60.0), "fov_deg")
        warnings.append(f"no source camera given: assuming a static camera with a {fov:g} degree horizontal field of view")
        return [Camera.from_fov(fov, w, h)] * n
    cameras = camera_list(raw, "cameras")
    if len(cameras) == 1:
        cameras = cameras * n
    if len(cameras) != n:
        raise ValidationError(f"got {len(cameras)} source cameras for {n} frames: send one per frame, or one for a static camera")
    for i, cam in enumerate(cameras):
        if (cam.width, cam.height) != (w, h):
            raise ValidationError(f"cameras[{i}] is {cam.width}x{cam.height} but the frames are {w}x{h}")
    return cameras

def optional_map(value: Any, name: str, shape: tuple[int, int, int], kind: type) -> np.ndarray | None:
    """An optional per-frame map of ``shape``: ``kind=bool`` gives a mask, ``float`` float32 metres."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValidationError(f"{name} must have shape {shape} (one map per frame), got {arr.shape}")
    if kind is bool:
        return as_dtype(arr, bool)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValidationError(f"{name} must be floating point metres, got {arr.dtype}")
    return as_dtype(arr, np.float32)


def as_dtype(arr: np.ndarray, dtype: Any) -> np.ndarray:
    """``arr`` as ``dtype`` (no copy when it already is); a submit-time stand-in stays a zero-memory
    broadcast instead of being expanded to its full declared size."""
    if is_stand_in(arr):
        return np.broadcast_to(arr.reshape(-1)[:1].astype(dtype).reshape(()), arr.shape)
    return arr.astype(dtype, copy=False)

def options_from(cls: type, raw: Any, name: str):
    """An options dataclass ``cls`` from a map; unknown keys and wrongly typed values are refused."""
    if not isinstance(raw, dict):
        raise ValidationError(f"{name} must be a map of options")
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ValidationError(f"unknown {name} options {sorted(unknown)}; known: {sorted(known)}")
    defaults = cls()
    values = {}
    for key, value in raw.items():
        default = getattr(defaults, key)
        wrong_bool = isinstance(value, bool) and default is not None and not isinstance(default, bool)
        if default is not None and value is not None and (wrong_bool or not isinstance(value, type(default))):
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            else:
                raise ValidationError(f"{name}.{key} must be {type(default).__name__}, got {str(value)[:60]!r}")
        values[key] = value
    return cls(**values)


# --------------------------------------------------------------------------- server-side policy
#: Request fields that would let a client choose paths on the server. The server alone decides
#: where weights, LoRAs, caches and jobs live (``recast4d serve --models``, ``$RECAST4D_MODELS``).
CLIENT_PATH_FIELDS: tuple[tuple[str, ...], ...] = (
    ("models_dir",),
    ("engine", "models_dir"),
    ("engine", "options", "embeddings_cache_dir"),
    ("engine", "options", "models_dir"),
    ("video", "models_dir"),
    ("video", "embeddings_cache_dir"),
)
#: LoRA ids (``engine.lora``): a name in ``<models>/loras/``, never a path.
LORA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", re.ASCII)


def refuse_client_paths(params: Any) -> None:
    """Raise ``invalid_input`` naming the field when a request carries a server path or a LoRA path.

    Used by the server at submit (requests from clients); the local CLI runs pass their own paths.
    """
    if not isinstance(params, dict):
        return
    for path in CLIENT_PATH_FIELDS:
        node: Any = params
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(path[-1]) is not None:
            raise ValidationError(
                f"{'.'.join(path)}: requests cannot choose folders on the server; the server's own settings "
                "(recast4d serve --models, $RECAST4D_MODELS) decide where weights and caches live")
    for where in (("engine", "lora"), ("engine", "options", "lora"), ("lora",)):
        node = params
        for key in where:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and (not isinstance(node, str) or not LORA_ID.fullmatch(node)):
            raise ValidationError(
                f"{'.'.join(where)} {str(node)[:80]!r} must be a LoRA id (1-100 letters, digits, '.', '-', '_'; "
                "the name of a folder in <models>/loras on the server), not a path")


def stand_in_inputs(specs: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """Zero-memory arrays of the declared dtypes and shapes (every element 1), so a job kind's
    ``validate(params, inputs)`` can check params against input shapes at submit, before any upload.

    Content checks see a broadcast array (all strides 0); :func:`any_positive_finite` and
    :func:`optional_map` handle those without expanding them.
    """
    return {name: np.broadcast_to(np.ones((), dtype=np.dtype(dtype)), tuple(shape))
            for name, (dtype, shape) in specs.items()}


def is_stand_in(arr: np.ndarray) -> bool:
    """True for a submit-time stand-in (:func:`stand_in_inputs`): a broadcast array with no content yet."""
    return arr.size > 0 and all(stride == 0 for stride in arr.strides)


def any_positive_finite(depth: np.ndarray, block_bytes: int = 16 << 20) -> bool:
    """True if some value is finite and > 0; scans in blocks (memory bounded), stand-ins in O(1)."""
    depth = np.asarray(depth)
    if depth.size == 0:
        return False
    if is_stand_in(depth):
        value = float(depth.flat[0])
        return bool(np.isfinite(value) and value > 0)
    flat = depth.reshape(-1)
    step = max(1, block_bytes // max(1, depth.dtype.itemsize))
    for start in range(0, flat.size, step):
        block = flat[start:start + step]
        if np.any(np.isfinite(block) & (block > 0)):
            return True
    return False


def check_engine_options(kind: str, name: str, options: dict, field: str) -> None:
    """Check an engine's constructor options (names and types) at submit; the error names ``field``.

    The options' schema is the engine's options dataclass where it has one (``OPTION_TYPES``),
    else the keyword parameters (with defaults) of its factory.
    """
    from backend.engines.registry import get_engine_spec

    try:
        spec = get_engine_spec(kind, name)
    except ValidationError as exc:
        raise ValidationError(f"{field}: {exc}") from None
    if not isinstance(options, dict):
        raise ValidationError(f"{field} must be a map of options")
    if not options:
        return
    option_type = OPTION_TYPES.get(name)
    if option_type is not None:
        module, _, attr = option_type.partition(":")
        options_from(getattr(importlib.import_module(module), attr), options, field)
        return
    factory = spec.load_factory()
    params = inspect.signature(factory).parameters.values()
    known = {p.name: p.default for p in params
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("self", "models_dir")
             and p.default is not p.empty}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValidationError(f"unknown {field} {unknown} for the {name} {kind} engine; known: {sorted(known)}")
    hints = _parameter_types(factory)
    for key, value in options.items():
        if value is None:
            continue
        default = known[key]
        allowed = hints.get(key) or (() if default is None else (type(default),))
        if not allowed:
            continue
        ok = any(_value_fits(value, kind) for kind in allowed)
        if not ok:
            names = " or ".join(kind.__name__ for kind in allowed)
            raise ValidationError(f"{field}.{key} must be {names}, got {str(value)[:40]!r}")


def _parameter_types(factory: Any) -> dict[str, tuple[type, ...]]:
    """The plain types each keyword of ``factory`` (a function or class) is annotated with (``None``
    dropped from unions); parameters without a usable annotation are left out."""
    import types
    import typing

    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):
        return {}
    out: dict[str, tuple[type, ...]] = {}
    for name, hint in hints.items():
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
            else (hint,)
        plain = tuple(a for a in args if isinstance(a, type) and a is not type(None) and a is not typing.Any)
        if plain and len(plain) == len([a for a in args if a is not type(None)]):
            out[name] = plain
    return out


def _value_fits(value: Any, kind: type) -> bool:
    """``value`` is a ``kind``; bool is not a number here, an int is a float."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


#: Engines whose options are a dataclass ("module:Class"); others are checked by their signature.
OPTION_TYPES: dict[str, str] = {
    "wan-vace": "backend.engines.wan_vace:WanVaceOptions",
    "wan-vace-14b": "backend.engines.wan_vace:WanVaceOptions",
    "wan-t2v": "backend.generate.video_engines:VideoEngineOptions",
    "wan-i2v": "backend.generate.video_engines:VideoEngineOptions",
}


def string_set(value: Any, allowed: frozenset[str], field: str) -> frozenset[str]:
    """A list of strings, each one of ``allowed`` (e.g. ``outputs``); the error names ``field``."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{field} must be a list of names from {sorted(allowed)}, got {str(value)[:80]!r}")
    unknown = set(value) - allowed
    if unknown:
        raise ValidationError(f"unknown {field} {sorted(unknown)}; choose from {sorted(allowed)}")
    return frozenset(value)


def bounded_float(value: Any, field: str, low: float, high: float) -> float:
    """A finite number in ``[low, high]`` (bool refused); the error names ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
        raise ValidationError(f"{field} must be a number in [{low:g}, {high:g}], got {str(value)[:40]!r}")
    return float(value)
