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

    source: bpy.props.PointerProperty(  # type: ignore[valid-type]
        type=RECAST4D_PG_source, description="The shot to re-film and its camera")
    targets: bpy.props.CollectionProperty(  # type: ignore[valid-type]
        type=RECAST4D_PG_target, description="Cameras to re-film the shot along")
    active_target_index: bpy.props.IntProperty(  # type: ignore[valid-type]
        default=0, description="The selected row of the Targets list")
    generation: bpy.props.PointerProperty(  # type: ignore[valid-type]
        type=RECAST4D_PG_generation, description="Fill engine and sampler settings sent with each job")
    jobs: bpy.props.CollectionProperty(  # type: ignore[valid-type]
        type=RECAST4D_PG_job, description="Submitted jobs (saved with the .blend; kept out of undo)")
    active_job_index: bpy.props.IntProperty(  # type: ignore[valid-type]
        default=0, description="The selected row of the Jobs list")
    outputs: bpy.props.PointerProperty(  # type: ignore[valid-type]
        type=RECAST4D_PG_outputs, description="Which result files jobs produce")
    tune: bpy.props.PointerProperty(  # type: ignore[valid-type]
        type=RECAST4D_PG_tune, description="LoRA tuning options and the LoRAs tuned so far")
    text_to_4d: bpy.props.PointerProperty(  # type: ignore[valid-type]
        type=RECAST4D_PG_text_to_4d, description="Generate a 4D scene from a prompt, an image or the source")


def register() -> None:
    bpy.utils.register_class(RECAST4D_PG_scene)
    bpy.types.Scene.recast4d = bpy.props.PointerProperty(type=RECAST4D_PG_scene)


def unregister() -> None:
    del bpy.types.Scene.recast4d
    bpy.utils.unregister_class(RECAST4D_PG_scene)
