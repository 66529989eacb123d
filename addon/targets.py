"""Targets section: the camera objects to re-film along, and "Add Camera Path" from presets.

A generated path is an ordinary keyframed camera (location, XYZ rotation, lens, shift) created from
``protocol.paths`` (the same camera math the backend and CLI use) relative to the source camera,
which may itself be animated; the user can then edit its keyframes freely.
"""

from __future__ import annotations

import bpy

from . import cameras, source
from .deps import protocol_module
from .panel import SectionPanel, poll_active_camera, report_errors, scene_settings

_errors = protocol_module("errors")


_paths = protocol_module("paths")


def _preset_items(_self, _context) -> list[tuple[str, str, str]]:
    return [(name, preset.label, preset.description) for name, preset in _paths.PRESETS.items()]


_direction_items_cache: dict[str, list[tuple[str, str, str]]] = {}


def _direction_items(self, _context) -> list[tuple[str, str, str]]:
    # Blender needs the returned strings kept alive while the enum is shown: cache them.
    preset = _paths.PRESETS.get(self.preset)
    if preset is None:
        return [("", "", "")]
    if preset.name not in _direction_items_cache:
        _direction_items_cache[preset.name] = [(d, d.title(), f"{preset.label} {d}") for d in preset.directions]
    return _direction_items_cache[preset.name]


class RECAST4D_PG_target(bpy.types.PropertyGroup):
    """One target camera: re-film the shot as seen by ``camera`` at every source frame."""

    camera: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Camera", type=bpy.types.Object, poll=lambda _self, obj: obj.type == "CAMERA"
    )
    enabled: bpy.props.BoolProperty(name="Enabled", default=True)  # type: ignore[valid-type]
    path_spec: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Path", description="Preset the path was made from (informative; keyframes are the truth)"
    )


def enabled_target_cameras(settings) -> list[bpy.types.Object]:
    """Camera objects of the enabled targets, in list order (missing/deleted ones skipped)."""
    return [t.camera for t in settings.targets if t.enabled and t.camera is not None and t.camera.type == "CAMERA"]


def add_camera_path(context: bpy.types.Context, spec_text: str, *, pivot_depth: float,
                    name: str | None = None) -> bpy.types.Object:
    """Create a keyframed camera following ``spec_text`` relative to the source camera.

    The source camera is sampled at every source frame (static or animated), ``make_path`` maps those
    cameras to the new path (``pivot_depth`` metres in front of the source camera is the orbit
    centre), and the new camera is keyed at the same frames and added to the targets.
    """
    scene = context.scene
    settings = scene_settings(context)
    src = settings.source
    spec = _paths.parse_path_spec(spec_text)
    frames = source.source_frames(scene, src)
    source_object = source.pin_source_camera(scene, src)
    sources = cameras.cameras_from_blender(scene, source_object, frames)
    path = _paths.make_path(spec, sources, pivot_depth)
    if len(path) != len(frames):
        raise _errors.ValidationError(f"camera path has {len(path)} cameras for {len(frames)} frames")
    obj = cameras.new_camera_object(context, name or f"Recast {spec.to_text()}", like=source_object)
    cameras.keyframe_camera_path(obj, path, frames)
    obj["recast4d_path_spec"] = spec.to_text()
    target = settings.targets.add()
    target.camera = obj
    target.path_spec = spec.to_text()
    settings.active_target_index = len(settings.targets) - 1
    return obj


class RECAST4D_OT_add_camera_path(bpy.types.Operator):
    """Create a new keyframed camera that moves relative to the source camera (you can edit its keys)"""

    bl_idname = "recast4d.add_camera_path"
    bl_label = "Add Camera Path"
    bl_options = {"REGISTER", "UNDO"}

    preset: bpy.props.EnumProperty(name="Move", items=_preset_items)  # type: ignore[valid-type]
    direction: bpy.props.EnumProperty(name="Direction", items=_direction_items)  # type: ignore[valid-type]
    amount: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Amount", default=-1.0, description="In the move's unit (degrees, fraction of pivot depth, or x lens); "
        "negative: the preset's default",
    )
    timing: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Timing", items=[("gradual", "Gradual", "Ease from the source pose to the full move"),
                              ("direct", "Direct", "The full move from the first frame")],
    )
    use_bullet_time: bpy.props.BoolProperty(name="Bullet Time", default=False)  # type: ignore[valid-type]
    freeze_frame: bpy.props.IntProperty(name="Freeze Source Frame", default=0, min=0)  # type: ignore[valid-type]
    pivot_depth: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Pivot Depth", default=3.0, min=0.01, unit="LENGTH",
        description="Distance in front of the source camera that orbits circle and dollies aim at",
    )
    spec_text: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Spec", default="", description="Full path spec (e.g. 'orbit:up:15+dolly:in:0.2'); overrides the above",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        src = scene_settings(context).source
        try:
            source.source_camera_object(context.scene, src)
            source.source_frames(context.scene, src)
        except _errors.Recast4DError as exc:
            cls.poll_message_set(f"Needs a source camera and frame range: {exc}")
            return False
        return True

    def build_spec_text(self) -> str:
        if self.spec_text.strip():
            return self.spec_text
        preset = _paths.PRESETS[self.preset]
        amount = preset.amount.default if self.amount < 0 else self.amount
        text = f"{self.preset}:{self.direction or preset.directions[0]}:{amount:g}"
        if self.use_bullet_time:
            text = f"bullet:{self.freeze_frame}:{text}"
        return text if self.timing == "gradual" else f"{text}:{self.timing}"

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        def run() -> str:
            obj = add_camera_path(context, self.build_spec_text(), pivot_depth=self.pivot_depth)
            return f"Added camera path {obj.name!r}"

        return report_errors(self, run)


class RECAST4D_OT_add_target(bpy.types.Operator):
    """Add the active camera object as a target"""

    bl_idname = "recast4d.add_target"
    bl_label = "Add Active Camera"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return poll_active_camera(cls, context, "Select a camera object first")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = scene_settings(context)
        if any(t.camera == context.active_object for t in settings.targets):
            self.report({"WARNING"}, f"{context.active_object.name} is already a target")
            return {"CANCELLED"}
        item = settings.targets.add()
        item.camera = context.active_object
        settings.active_target_index = len(settings.targets) - 1
        return {"FINISHED"}


class RECAST4D_OT_remove_target(bpy.types.Operator):
    """Remove the selected target from the list (the camera object is kept)"""

    bl_idname = "recast4d.remove_target"
    bl_label = "Remove Target"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = scene_settings(context)
        if not 0 <= settings.active_target_index < len(settings.targets):
            cls.poll_message_set("No target selected")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = scene_settings(context)
        settings.targets.remove(settings.active_target_index)
        settings.active_target_index = min(settings.active_target_index, len(settings.targets) - 1)
        return {"FINISHED"}


class RECAST4D_UL_targets(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):  # noqa: D102
        row = layout.row(align=True)
        row.prop(item, "enabled", text="")
        row.prop(item, "camera", text="", emboss=False, icon="OUTLINER_OB_CAMERA")
        if item.path_spec:
            row.label(text=item.path_spec)


class RECAST4D_PT_targets(SectionPanel, bpy.types.Panel):
    bl_idname = "RECAST4D_PT_targets"
    bl_label = "Targets"

    def draw(self, context: bpy.types.Context) -> None:
        settings = scene_settings(context)
        layout = self.layout
        row = layout.row()
        row.template_list("RECAST4D_UL_targets", "", settings, "targets", settings, "active_target_index", rows=3)
        col = row.column(align=True)
        col.operator(RECAST4D_OT_add_target.bl_idname, text="", icon="ADD")
        col.operator(RECAST4D_OT_remove_target.bl_idname, text="", icon="REMOVE")
        layout.operator(RECAST4D_OT_add_camera_path.bl_idname, icon="CAMERA_DATA")


PROPERTY_CLASSES = (RECAST4D_PG_target,)
CLASSES = (RECAST4D_OT_add_camera_path, RECAST4D_OT_add_target, RECAST4D_OT_remove_target,
           RECAST4D_UL_targets, RECAST4D_PT_targets)
