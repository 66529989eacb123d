"""The scene's ``recast4d`` property namespace, saved with the .blend (job list included)."""

from __future__ import annotations

import bpy

from .generation import RECAST4D_PG_generation
from .jobs import RECAST4D_PG_job
from .outputs import RECAST4D_PG_outputs
from .source import RECAST4D_PG_source
from .targets import RECAST4D_PG_target
from .text_to_4d import RECAST4D_PG_text_to_4d
from .tuning import RECAST4D_PG_tune


class RECAST4D_PG_scene(bpy.types.PropertyGroup):
    """Everything Recast 4D keeps per scene: ``Scene.recast4d``."""

    source: bpy.props.PointerProperty(type=RECAST4D_PG_source)  # type: ignore[valid-type]
    targets: bpy.props.CollectionProperty(type=RECAST4D_PG_target)  # type: ignore[valid-type]
    active_target_index: bpy.props.IntProperty(default=0)  # type: ignore[valid-type]
    generation: bpy.props.PointerProperty(type=RECAST4D_PG_generation)  # type: ignore[valid-type]
    jobs: bpy.props.CollectionProperty(type=RECAST4D_PG_job)  # type: ignore[valid-type]
    active_job_index: bpy.props.IntProperty(default=0)  # type: ignore[valid-type]
    outputs: bpy.props.PointerProperty(type=RECAST4D_PG_outputs)  # type: ignore[valid-type]
    tune: bpy.props.PointerProperty(type=RECAST4D_PG_tune)  # type: ignore[valid-type]
    text_to_4d: bpy.props.PointerProperty(type=RECAST4D_PG_text_to_4d)  # type: ignore[valid-type]


def register() -> None:
    bpy.utils.register_class(RECAST4D_PG_scene)
    bpy.types.Scene.recast4d = bpy.props.PointerProperty(type=RECAST4D_PG_scene)


def unregister() -> None:
    del bpy.types.Scene.recast4d
    bpy.utils.unregister_class(RECAST4D_PG_scene)
