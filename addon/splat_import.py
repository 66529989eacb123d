"""File > Import > Recast 4D Gaussian Splats (.ply): one 3DGS PLY as a native splat cloud (Blender >= 5.3).

Blender's own PLY importer reads the file (:func:`.results.import_gaussian_ply`); this operator
first checks the splats (a NaN scale or a zero quaternion is refused with a message instead of being
silently replaced by the identity), then applies the add-on's splat render settings.
"""

from __future__ import annotations

import bpy

from . import results, splats
from .panel import report_errors


class RECAST4D_OT_import_splat_ply(bpy.types.Operator):
    """Import a 3DGS PLY (Inria layout, as the Recast 4D backend writes per frame) as native Gaussian splats"""

    bl_idname = "recast4d.import_splat_ply"
    bl_label = "Import Gaussian Splats (.ply)"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(  # type: ignore[valid-type]
        subtype="FILE_PATH", description="The 3DGS PLY file (Inria layout, as the backend writes it)")
    filter_glob: bpy.props.StringProperty(  # type: ignore[valid-type]
        default="*.ply", options={"HIDDEN"}, description="File types shown in the file browser")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not splats.native_splats_supported():
            cls.poll_message_set("Native Gaussian splats need Blender 5.3 or later")
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        def run() -> str:
            cloud = results.import_gaussian_ply(context, self.filepath)
            splats.configure_splat_render(context.scene, samples=max(context.scene.cycles.samples, splats.SPLAT_MIN_SAMPLES))
            return f"Imported {len(cloud.data.points)} Gaussian splats as '{cloud.name}'"

        return report_errors(self, run)


def menu_import(self, context: bpy.types.Context) -> None:
    self.layout.operator(RECAST4D_OT_import_splat_ply.bl_idname, text="Recast 4D Gaussian Splats (.ply)")


PROPERTY_CLASSES: tuple = ()
CLASSES = (RECAST4D_OT_import_splat_ply,)
