"""Engines behind small interfaces: inpainting (``classical``, ``wan-vace``) and depth (``given``, ``depth-anything``).

Use the registry: :func:`get_inpaint_engine`, :func:`get_depth_engine`, :func:`engine_status`
(what ``recast4d doctor`` prints). Importing this package does not import torch.
"""

from backend.engines.inpaint_types import FirstFrameEdit, InpaintContext, InpaintEngine
from backend.engines.registry import (
    EngineStatus,
    engine_status,
    get_depth_engine,
    get_inpaint_engine,
    get_video_engine,
    list_engines,
    resolve_lora,
    resolve_models_dir,
)

__all__ = [
    "EngineStatus",
    "FirstFrameEdit",
    "InpaintContext",
    "InpaintEngine",
    "engine_status",
    "get_depth_engine",
    "get_inpaint_engine",
    "get_video_engine",
    "list_engines",
    "resolve_lora",
    "resolve_models_dir",
]
