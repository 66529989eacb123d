"""The "Recast 4D" tab of the 3D Viewport sidebar: the parent panel the feature sections attach to."""

from __future__ import annotations

from collections.abc import Callable

import bpy

from .deps import protocol_module

_errors = protocol_module("errors")

PANEL_CATEGORY = "Recast 4D"
PARENT_PANEL_ID = "RECAST4D_PT_main"


class RECAST4D_PT_main(bpy.types.Panel):
    """Parent panel; sections (Backend, Source, Targets, Generation, Jobs) are its sub-panels."""

    bl_idname = PARENT_PANEL_ID
    bl_label = "Recast 4D"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = PANEL_CATEGORY

    def draw(self, context: bpy.types.Context) -> None:
        self.layout.label(text="Re-film along new paths", icon="CAMERA_DATA")


class SectionPanel:
    """Mix-in for the feature sections: sidebar sub-panels of :class:`RECAST4D_PT_main`."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = PANEL_CATEGORY
    bl_parent_id = PARENT_PANEL_ID


def scene_settings(context: bpy.types.Context):
    """The scene's ``recast4d`` property group (see :mod:`.props`)."""
    return context.scene.recast4d


def report_errors(operator: bpy.types.Operator, action: Callable[[], object]) -> set[str]:
    """Run an operator's work: a ``Recast4DError`` becomes an error report and ``{'CANCELLED'}``;
    otherwise a ``str`` that ``action`` returns is reported as info, and the result is ``{'FINISHED'}``."""
    try:
        outcome = action()
    except _errors.Recast4DError as exc:
        operator.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    if isinstance(outcome, str):
        operator.report({"INFO"}, outcome)
    return {"FINISHED"}


def poll_active_camera(cls: type[bpy.types.Operator], context: bpy.types.Context, why: str) -> bool:
    """For operator polls: True if the active object is a camera, else False with ``why`` as the message."""
    obj = context.active_object
    if obj is None or obj.type != "CAMERA":
        cls.poll_message_set(why)
        return False
    return True


CLASSES = (RECAST4D_PT_main,)
register, unregister = bpy.utils.register_classes_factory(CLASSES)
