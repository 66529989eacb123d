"""Engine registry: where weights live, which engines exist, and which are usable.

Models folder resolution (first match wins):

1. an explicit ``models_dir`` argument (the CLI's ``--models DIR``);
2. the environment variable ``RECAST4D_MODELS``;
3. ``~/.cache/recast4d/models``.

Each weights folder sits directly inside the models folder under its published name, in its
published diffusers/transformers layout, e.g. ``<models>/Wan2.1-VACE-1.3B-diffusers/model_index.json``
or ``<models>/Depth-Anything-V2-Small-hf/config.json``. LoRA weights live in ``<models>/loras/``.

Engines are registered by kind (``"inpaint"`` or ``"depth"``) and name. Each one declares the
weights folders it needs; :func:`engine_status` reports, for ``recast4d doctor``, whether each
engine is usable here and why not. Engine modules are imported lazily so that listing engines
never imports torch or diffusers.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.errors import MissingWeightsError, ValidationError

MODELS_ENV = "RECAST4D_MODELS"
DEFAULT_MODELS_DIR = Path("~/.cache/recast4d/models")
LORAS_SUBDIR = "loras"

ENGINE_KINDS = ("inpaint", "depth", "video", "segment")  # video: reference videos for text/image -> 4D;
# segment: video object masks for the generate split


def resolve_models_dir(models_dir: str | os.PathLike[str] | None = None) -> Path:
    """The models folder: ``models_dir`` if given, else ``$RECAST4D_MODELS``, else ``~/.cache/recast4d/models``.

    The folder need not exist (``doctor`` reports what is missing in it).
    """
    if models_dir is not None and str(models_dir) != "":
        return Path(models_dir).expanduser()
    env = os.environ.get(MODELS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return DEFAULT_MODELS_DIR.expanduser()


@dataclass(frozen=True)
class WeightsFolder:
    """A weights folder an engine needs: its name under the models folder and a file proving it is complete."""

    name: str
    marker_file: str
    source: str

    def path(self, models_dir: Path) -> Path:
        return models_dir / self.name

    def problem(self, models_dir: Path) -> str | None:
        """None when the folder looks complete, else a sentence saying what is missing."""
        folder = self.path(models_dir)
        if not folder.is_dir():
            return f"weights folder '{self.name}' not found in {models_dir}"
        if not (folder / self.marker_file).is_file():
            return f"weights folder {folder} has no {self.marker_file} (incomplete download?)"
        return None

    def hint(self, models_dir: Path) -> str:
        return (
            f"download {self.source} into {self.path(models_dir)} "
            f"(e.g. `huggingface-cli download {self.source} --local-dir {self.path(models_dir)}`), "
            f"or point --models / ${MODELS_ENV} at the folder that holds '{self.name}'"
        )


@dataclass(frozen=True)
class EngineSpec:
    """A registered engine: kind, name, the weights and Python packages it needs, and how to build it."""

    name: str
    kind: str
    description: str
    factory: str  # "module:callable", called as factory(models_dir=Path, **options)
    weights: tuple[WeightsFolder, ...] = ()
    packages: tuple[str, ...] = ()
    needs_cuda: bool = False

    def load_factory(self) -> Callable[..., Any]:
        module_name, _, attr_path = self.factory.partition(":")
        target: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            target = getattr(target, attr)
        return target


@dataclass
class EngineStatus:
    """What ``recast4d doctor`` prints for one engine."""

    name: str
    kind: str
    usable: bool
    reason: str
    hint: str
    weights_dirs: list[str] = field(default_factory=list)


WAN_VACE_1_3B = WeightsFolder("Wan2.1-VACE-1.3B-diffusers", "model_index.json", "Wan-AI/Wan2.1-VACE-1.3B-diffusers")
WAN_VACE_14B = WeightsFolder("Wan2.1-VACE-14B-diffusers", "model_index.json", "Wan-AI/Wan2.1-VACE-14B-diffusers")
DEPTH_ANYTHING_SMALL = WeightsFolder(
    "Depth-Anything-V2-Small-hf", "config.json", "depth-anything/Depth-Anything-V2-Small-hf"
)
DEPTH_ANYTHING_LARGE = WeightsFolder(
    "Depth-Anything-V2-Large-hf", "config.json", "depth-anything/Depth-Anything-V2-Large-hf"
)
DEPTH_ANYTHING_METRIC_INDOOR = WeightsFolder(
    "Depth-Anything-V2-Metric-Indoor-Small-hf", "config.json", "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
)
DEPTH_ANYTHING_METRIC_OUTDOOR = WeightsFolder(
    "Depth-Anything-V2-Metric-Outdoor-Small-hf", "config.json",
    "depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf"
)
DEPTH_PRO = WeightsFolder("DepthPro-hf", "config.json", "apple/DepthPro-hf")

WAN_T2V_1_3B = WeightsFolder("Wan2.1-T2V-1.3B-Diffusers", "model_index.json", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
WAN_I2V_14B_480P = WeightsFolder("Wan2.1-I2V-14B-480P-Diffusers", "model_index.json",
                                 "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
SAM2_TINY = WeightsFolder("sam2.1-hiera-tiny", "config.json", "facebook/sam2.1-hiera-tiny")
_DIFFUSION_PACKAGES = ("torch", "diffusers", "transformers", "ftfy")

_REGISTRY: dict[tuple[str, str], EngineSpec] = {}


def register_engine(spec: EngineSpec) -> None:
    """Add an engine to the registry (re-registering a name replaces it)."""
    if spec.kind not in ENGINE_KINDS:
        raise ValueError(f"engine kind must be one of {ENGINE_KINDS}, got {spec.kind!r}")
    _REGISTRY[(spec.kind, spec.name)] = spec


for _spec in (
    EngineSpec(
        "classical", "inpaint", "static-pixel propagation + smooth depth-aware fill (CPU, no weights)",
        "backend.engines.classical:ClassicalFill", packages=("cv2",),
    ),
    EngineSpec(
        "wan-vace", "inpaint", "Wan2.1 VACE 1.3B video inpainting (diffusers WanVACEPipeline)",
        "backend.engines.wan_vace:WanVaceEngine.from_models_dir", weights=(WAN_VACE_1_3B,),
        packages=_DIFFUSION_PACKAGES,
    ),
    EngineSpec(
        "wan-vace-14b", "inpaint", "Wan2.1 VACE 14B video inpainting (diffusers WanVACEPipeline)",
        "backend.engines.wan_vace:WanVaceEngine.from_models_dir_14b", weights=(WAN_VACE_14B,),
        packages=_DIFFUSION_PACKAGES,
    ),
    EngineSpec(
        "given", "depth", "depth supplied by the client (EXR / PNG16 / NPY sequences or arrays)",
        "backend.engines.depth:GivenDepth", packages=("cv2",),
    ),
    EngineSpec(
        "depth-anything", "depth", "Depth Anything V2 Small (transformers), aligned to a consistent scale",
        "backend.engines.depth:DepthAnythingEngine.from_models_dir", weights=(DEPTH_ANYTHING_SMALL,),
        packages=("torch", "transformers"),
    ),
    EngineSpec(
        "depth-anything-large", "depth", "Depth Anything V2 Large (transformers; CC-BY-NC-4.0 weights)",
        "backend.engines.depth:DepthAnythingEngine.from_models_dir_large", weights=(DEPTH_ANYTHING_LARGE,),
        packages=("torch", "transformers"),
    ),
    EngineSpec(
        "depth-pro", "depth", "Depth Pro (transformers): metric depth and the focal length, for clips without a camera",
        "backend.engines.depth_metric:DepthProEngine.from_models_dir", weights=(DEPTH_PRO,),
        packages=("torch", "transformers"),
    ),
    EngineSpec(
        "depth-anything-metric-indoor", "depth", "Depth Anything V2 Metric Indoor Small (transformers), metres",
        "backend.engines.depth_metric:MetricDepthAnythingEngine.from_models_dir_indoor",
        weights=(DEPTH_ANYTHING_METRIC_INDOOR,), packages=("torch", "transformers"),
    ),
    EngineSpec(
        "depth-anything-metric-outdoor", "depth", "Depth Anything V2 Metric Outdoor Small (transformers), metres",
        "backend.engines.depth_metric:MetricDepthAnythingEngine.from_models_dir_outdoor",
        weights=(DEPTH_ANYTHING_METRIC_OUTDOOR,), packages=("torch", "transformers"),
    ),
    EngineSpec(
        "wan-t2v", "video", "Wan2.1 T2V 1.3B text-to-video (diffusers WanPipeline)",
        "backend.generate.video_engines:WanVideoEngine.from_models_dir_t2v", weights=(WAN_T2V_1_3B,),
        packages=_DIFFUSION_PACKAGES,
    ),
    EngineSpec(
        "wan-i2v", "video", "Wan2.1 I2V 14B 480P image-to-video (diffusers WanImageToVideoPipeline)",
        "backend.generate.video_engines:WanVideoEngine.from_models_dir_i2v", weights=(WAN_I2V_14B_480P,),
        packages=_DIFFUSION_PACKAGES,
    ),
    EngineSpec(
        "sam2", "segment", "SAM2.1 Hiera tiny video object tracking (transformers Sam2VideoModel)",
        "backend.generate.segment_engines:Sam2VideoEngine.from_models_dir", weights=(SAM2_TINY,),
        packages=("torch", "transformers", "cv2"),
    ),
):
    register_engine(_spec)


def list_engines(kind: str | None = None) -> list[EngineSpec]:
    """Registered engines, optionally of one kind, in registration order."""
    return [spec for (k, _), spec in _REGISTRY.items() if kind is None or k == kind]


def get_engine_spec(kind: str, name: str) -> EngineSpec:
    """The spec of engine ``name`` of ``kind``; ValidationError listing the known names otherwise."""
    spec = _REGISTRY.get((kind, name))
    if spec is None:
        known = ", ".join(s.name for s in list_engines(kind))
        raise ValidationError(f"unknown {kind} engine {name!r}; known {kind} engines: {known}")
    return spec


def _missing_packages(spec: EngineSpec) -> list[str]:
    return [p for p in spec.packages if importlib.util.find_spec(p) is None]


def _status(spec: EngineSpec, models_dir: Path) -> EngineStatus:
    weights_dirs = [str(w.path(models_dir)) for w in spec.weights]
    missing = _missing_packages(spec)
    if missing:
        return EngineStatus(
            spec.name, spec.kind, False, f"missing Python packages: {', '.join(missing)}",
            "pip install 'recast4d[backend]'", weights_dirs,
        )
    for weights in spec.weights:
        problem = weights.problem(models_dir)
        if problem is not None:
            return EngineStatus(spec.name, spec.kind, False, problem, weights.hint(models_dir), weights_dirs)
    reason = "ready" if not spec.weights else f"weights found in {models_dir}"
    hint = ""
    if spec.needs_cuda:
        import torch

        if not torch.cuda.is_available():
            return EngineStatus(spec.name, spec.kind, False, "needs a CUDA GPU", "run the backend on a GPU machine",
                                weights_dirs)
    elif spec.weights and importlib.util.find_spec("torch") is not None:
        import torch

        if not torch.cuda.is_available():
            hint = "no CUDA GPU: runs on CPU, very slowly"
    return EngineStatus(spec.name, spec.kind, True, reason, hint, weights_dirs)


def engine_status(models_dir: str | os.PathLike[str] | None = None) -> list[EngineStatus]:
    """Usability of every registered engine with the weights in the resolved models folder (for ``doctor``)."""
    folder = resolve_models_dir(models_dir)
    return [_status(spec, folder) for spec in list_engines()]


def require_weights(folder: WeightsFolder, models_dir: Path) -> Path:
    """The weights folder's path; MissingWeightsError naming the folder and where to put it otherwise."""
    problem = folder.problem(models_dir)
    if problem is not None:
        raise MissingWeightsError(f"{problem}. To fix: {folder.hint(models_dir)}.")
    return folder.path(models_dir)


def _get_engine(kind: str, name: str, models_dir: str | os.PathLike[str] | None, options: dict[str, Any]) -> Any:
    spec = get_engine_spec(kind, name)
    folder = resolve_models_dir(models_dir)
    for weights in spec.weights:
        require_weights(weights, folder)
    missing = _missing_packages(spec)
    if missing:
        raise MissingWeightsError(
            f"{kind} engine {name!r} needs the Python packages {', '.join(missing)}; "
            "install them with pip install 'recast4d[backend]'"
        )
    from backend.executors.engine_cache import EngineCache, active_engine_cache

    cache = active_engine_cache()  # on in cluster workers: the second job reuses the loaded engine
    if cache is None:
        return spec.load_factory()(models_dir=folder, **options)
    return cache.get_or_build(EngineCache.key(kind, name, str(folder), options),
                              lambda: spec.load_factory()(models_dir=folder, **options))


def get_inpaint_engine(name: str = "classical", models_dir: str | os.PathLike[str] | None = None,
                       **options: Any) -> Any:
    """Build inpainting engine ``name`` (options go to its constructor). Raises MissingWeightsError / ValidationError."""
    return _get_engine("inpaint", name, models_dir, options)


def get_depth_engine(name: str = "given", models_dir: str | os.PathLike[str] | None = None, **options: Any) -> Any:
    """Build depth engine ``name`` (options go to its constructor). Raises MissingWeightsError / ValidationError."""
    return _get_engine("depth", name, models_dir, options)


def get_video_engine(name: str = "wan-t2v", models_dir: str | os.PathLike[str] | None = None, **options: Any) -> Any:
    """Build reference-video engine ``name`` (``wan-t2v``, ``wan-i2v``). Raises MissingWeightsError / ValidationError."""
    return _get_engine("video", name, models_dir, options)


def get_segment_engine(name: str = "sam2", models_dir: str | os.PathLike[str] | None = None, **options: Any) -> Any:
    """Build video segmentation engine ``name`` (``sam2``). Raises MissingWeightsError / ValidationError."""
    return _get_engine("segment", name, models_dir, options)


def resolve_lora(lora: str | os.PathLike[str], models_dir: str | os.PathLike[str] | None = None) -> Path:
    """A LoRA given as a path (file or folder) or as an id resolved in ``<models>/loras/``.

    An id ``x`` matches ``<models>/loras/x`` (a folder holding ``pytorch_lora_weights.safetensors``)
    or ``<models>/loras/x.safetensors``.
    """
    path = Path(lora).expanduser()
    if path.exists():
        return path
    loras_dir = resolve_models_dir(models_dir) / LORAS_SUBDIR
    for candidate in (loras_dir / str(lora), loras_dir / f"{lora}.safetensors"):
        if candidate.exists():
            return candidate
    raise MissingWeightsError(
        f"LoRA {str(lora)!r} not found: it is neither an existing path nor an id in {loras_dir} "
        f"(put it at {loras_dir / str(lora)}/pytorch_lora_weights.safetensors or {loras_dir}/{lora}.safetensors)"
    )
