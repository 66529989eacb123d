"""Generation settings: hole-filling engine, prompt, first-frame edit, sampler, LoRA, packing."""

from __future__ import annotations

import bpy

from . import backend_info, error_ui
from .panel import SectionPanel, scene_settings

#: Fill engines the backend may offer; 'classical' needs no weights (OpenCV inpainting).
ENGINE_ITEMS = [
    ("classical", "Classical", "OpenCV inpainting + temporal propagation; no model weights needed"),
    ("wan-vace", "Wan2.1 VACE", "Video inpainting with Wan2.1 VACE (needs local weights on the backend)"),
]


class RECAST4D_PG_generation(bpy.types.PropertyGroup):
    """Per-scene generation settings sent with each job (see the backend's reshoot parameters)."""

    engine: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Engine", items=ENGINE_ITEMS, default="classical", description="What fills the holes the new views open")
    prompt: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Prompt", description="Text describing the scene, guides the diffusion fill (<= 4 KiB)", default=""
    )
    edited_first_frame: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Edit Frame", type=bpy.types.Image,
        description="Optional edited version of the first source frame (first-frame guidance)",
    )
    edit_mask: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Edit Mask", type=bpy.types.Image,
        description="White where the edited first frame differs from the source",
    )
    fast: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Fast", default=False,
        description="Step-distillation LoRA on the backend (models folder, loras/): 4 steps at guidance 1 "
                    "instead of 30 with guidance; Steps 1-8 pick another distilled schedule length",
    )
    steps: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Steps", default=30, min=1, max=200, description="Diffusion sampling steps (Wan2.1 VACE)")
    guidance: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Guidance", default=6.5, min=0.0, max=30.0, description="Classifier-free guidance scale (Wan2.1 VACE)")
    lora_path: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="LoRA", description="A tuned LoRA id (Tune LoRA fills it in) or a diffusers LoRA .safetensors on the backend machine (blank: none)",
        subtype="FILE_PATH", default="",
    )
    lora_weight: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Weight", default=0.7, min=0.0, max=2.0, description="How strongly the LoRA steers the fill (0: off)")
    seed: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Seed", default=0, min=0, description="Random seed of the fill (same seed, same result)")
    temporal_packing: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Pack Views", default=True,
        description="Use the best frames of earlier trajectories as context so views agree",
    )
    fit_gaussians: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Fit Gaussians", default=True,
        description="Also fit 3D Gaussian sequences to the result (native splats in Blender 5.3; a few CPU steps per frame)"
    )

    def to_params(self) -> dict:
        """Plain-data parameters for a job request (images are sent separately as arrays)."""
        return {
            "engine": self.engine, "prompt": self.prompt, "fast": self.fast, "steps": self.steps,
            "guidance": self.guidance,
            "lora_path": bpy.path.abspath(self.lora_path) if self.lora_path else "",
            "lora_weight": self.lora_weight, "seed": self.seed, "temporal_packing": self.temporal_packing,
            "fit_gaussians": self.fit_gaussians,
        }


class RECAST4D_PT_generation(SectionPanel, bpy.types.Panel):
    bl_idname = "RECAST4D_PT_generation"
    bl_label = "Generation"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        gen = scene_settings(context).generation
        layout = self.layout
        layout.use_property_split = True
        layout.prop(gen, "engine")
        problem = backend_info.reshoot_engine_problem(gen.engine)
        if problem:  # said before the job is sent, not after it failed
            error_ui.draw_wrapped(layout.column(), context, problem, icon="ERROR")
        layout.prop(gen, "prompt")
        col = layout.column(align=True)
        col.prop(gen, "edited_first_frame")
        col.prop(gen, "edit_mask")
        col = layout.column(align=True)
        col.active = gen.engine != "classical"
        col.prop(gen, "fast")
        col.prop(gen, "steps")
        sub = col.row()
        sub.active = not gen.fast  # the fast preset runs at guidance 1
        sub.prop(gen, "guidance")
        col.prop(gen, "lora_path")
        sub = col.row()
        sub.active = bool(gen.lora_path)
        sub.prop(gen, "lora_weight")
        col.prop(gen, "seed")
        col.prop(gen, "temporal_packing")
        layout.prop(gen, "fit_gaussians")


PROPERTY_CLASSES = (RECAST4D_PG_generation,)
CLASSES = (RECAST4D_PT_generation,)
