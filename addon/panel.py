"""The "Recast 4D" tab of the 3D Viewport sidebar: the parent panel the feature sections attach to."""

from __future__ import annotations

import bpy

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
        self.layout.label(text="Re-film a shot along new camera paths", icon="CAMERA_DATA")


class SectionPanel:
    """Mix-in for the feature sections: sidebar sub-panels of :class:`RECAST4D_PT_main`."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = PANEL_CATEGORY
    bl_parent_id = PARENT_PANEL_ID


def scene_settings(context: bpy.types.Context):
    """The scene's ``recast4d`` property group (see :mod:`.props`)."""
    return context.scene.recast4d


CLASSES = (RECAST4D_PT_main,)
register, unregister = bpy.utils.register_classes_factory(CLASSES)
