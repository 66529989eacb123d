"""Result outputs of ``reshoot`` and ``generate`` jobs: which files the backend writes and streams.

The USD stage is always asked for (it is what "Import Result" loads). The others map one to one to
the backend's ``params["outputs"]`` names (``backend/pipelines/reshoot/request.py``):
``video`` (one MP4 per trajectory), ``png`` (PNG frames), ``masks`` (hole masks), ``ply`` (Gaussian
PLY files per frame) and ``cameras`` (the trajectories' cameras as JSON; ``reshoot`` only).
"""

from __future__ import annotations

import bpy

from .panel import SectionPanel, scene_settings

#: ``(property, wire name, label, description)`` of the optional outputs, in wire order.
OPTIONAL_OUTPUTS = (
    ("video", "video", "Videos", "One MP4 video per target camera (shown on the camera as a background clip)"),
    ("png", "png", "PNG Frames", "Every output frame as a PNG file"),
    ("masks", "masks", "Hole Masks", "The holes the fill engine painted, per frame (PNG)"),
    ("ply", "ply", "Gaussian PLY", "Per-frame Gaussians as PLY files (3D Gaussian Splatting layout)"),
    ("cameras", "cameras", "Cameras", "The target cameras of every frame as JSON (re-film jobs only)"),
)
#: Outputs a ``generate`` job knows (``backend/pipelines/generate/request.py``: no camera file).
GENERATE_OUTPUT_NAMES = frozenset({"usd", "ply", "video", "png", "masks"})


def _bool(label: str, description: str, default: bool):
    """A boolean property of one optional output."""
    return bpy.props.BoolProperty(name=label, description=description, default=default)


class RECAST4D_PG_outputs(bpy.types.PropertyGroup):
    """Which result files jobs produce besides the USD stage (always produced)."""

    video: _bool("Videos", OPTIONAL_OUTPUTS[0][3], True)  # type: ignore[valid-type]
    png: _bool("PNG Frames", OPTIONAL_OUTPUTS[1][3], False)  # type: ignore[valid-type]
    masks: _bool("Hole Masks", OPTIONAL_OUTPUTS[2][3], False)  # type: ignore[valid-type]
    ply: _bool("Gaussian PLY", OPTIONAL_OUTPUTS[3][3], False)  # type: ignore[valid-type]
    cameras: _bool("Cameras", OPTIONAL_OUTPUTS[4][3], True)  # type: ignore[valid-type]

    def to_list(self, allowed: frozenset[str] | None = None) -> list[str]:
        """Wire names: ``"usd"`` first, then the enabled optional outputs (only ``allowed`` ones if given)."""
        names = ["usd"] + [wire for prop, wire, _, _ in OPTIONAL_OUTPUTS if getattr(self, prop)]
        return [n for n in names if allowed is None or n in allowed]


def reshoot_outputs(scene: bpy.types.Scene) -> list[str]:
    """``params["outputs"]`` of a ``reshoot`` job from ``scene``'s output options."""
    return scene.recast4d.outputs.to_list()


def generate_outputs(scene: bpy.types.Scene) -> list[str]:
    """``params["outputs"]`` of a ``generate`` job from ``scene``'s output options (without camera files)."""
    return scene.recast4d.outputs.to_list(GENERATE_OUTPUT_NAMES)


class RECAST4D_PT_outputs(SectionPanel, bpy.types.Panel):
    """Generation > Outputs: the result files to produce."""

    bl_idname = "RECAST4D_PT_outputs"
    bl_label = "Outputs"
    bl_parent_id = "RECAST4D_PT_generation"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        outputs = scene_settings(context).outputs
        col = self.layout.column(heading="Write", align=True)
        row = col.row()
        row.enabled = False
        row.label(text="USD stage (always)", icon="CHECKMARK")
        for prop, _, _, _ in OPTIONAL_OUTPUTS:
            col.prop(outputs, prop)


PROPERTY_CLASSES = (RECAST4D_PG_outputs,)
CLASSES = (RECAST4D_PT_outputs,)
