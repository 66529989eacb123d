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
        name="Camera", type=bpy.types.Object, poll=lambda _self, obj: obj.type == "CAMERA",
        description="The camera the shot is re-filmed through (its animation is the new path)",
    )
    enabled: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Enabled", default=True, description="Re-film along this camera in the next job")
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


def _preset_changed(self, _context) -> None:
    """Dialog: a new move shows its own default amount (a value, never a "-1 = default")."""
    preset = _paths.PRESETS.get(self.preset)
    if preset is not None:
        self.amount = preset.amount.default


class RECAST4D_OT_add_camera_path(bpy.types.Operator):
    """Create a new keyframed camera that moves relative to the source camera (you can edit its keys)"""

    bl_idname = "recast4d.add_camera_path"
    bl_label = "Add Camera Path"
    bl_options = {"REGISTER", "UNDO"}

    preset: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Move", items=_preset_items, update=_preset_changed, description="The camera move")
    direction: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Direction", items=_direction_items, description="Which way the camera moves")
    amount: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Amount", default=_paths.PRESETS["orbit"].amount.default, min=0.0,
        description="How far: degrees (orbit, pan, tilt, roll), fraction of the pivot depth (dolly) or focal "
                    "length factor (zoom); starts at the move's default",
    )
    timing: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Timing", items=[("gradual", "Gradual", "Ease from the source pose to the full move"),
                              ("direct", "Direct", "The full move from the first frame")],
        description="How the move unfolds over the shot",
    )
    use_bullet_time: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Bullet Time", default=False,
        description="Freeze the action at one frame while the camera moves (the frozen frame plays throughout)")
    freeze_frame: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Freeze Frame", default=1,
        description="Bullet Time: the scene frame whose content is frozen (a frame of the source shot)")
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
        problem = source.source_problem(context.scene, src)
        if problem:
            cls.poll_message_set(f"Needs a usable source first: {problem}")
            return False
        return True

    def amount_value(self) -> float:
        """The amount to use: the dialog's value, or the move's default when a script did not set one."""
        preset = _paths.PRESETS[self.preset]
        return self.amount if self.properties.is_property_set("amount") else preset.amount.default

    def freeze_index(self, context: bpy.types.Context) -> int:
        """Bullet Time: the frozen scene frame as an index into the shot (0 = its first frame)."""
        frames = source.source_frames(context.scene, scene_settings(context).source)
        if not frames[0] <= self.freeze_frame <= frames[-1]:
            raise _errors.ValidationError(
                f"Freeze Frame {self.freeze_frame} is outside the shot (frames {frames[0]}-{frames[-1]})")
        return self.freeze_frame - frames[0]

    def build_spec_text(self, context: bpy.types.Context | None = None) -> str:
        if self.spec_text.strip():
            return self.spec_text
        preset = _paths.PRESETS[self.preset]
        text = f"{self.preset}:{self.direction or preset.directions[0]}:{self.amount_value():g}"
        if self.use_bullet_time:
            text = f"bullet:{self.freeze_index(context or bpy.context)}:{text}"
        return text if self.timing == "gradual" else f"{text}:{self.timing}"

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if not self.properties.is_property_set("amount"):
            self.amount = _paths.PRESETS[self.preset].amount.default
        if not self.properties.is_property_set("freeze_frame"):
            self.freeze_frame = source.source_frames(context.scene, scene_settings(context).source)[0]
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "preset")
        layout.prop(self, "direction")
        preset = _paths.PRESETS.get(self.preset)
        unit = {"deg": "degrees"}.get(preset.amount.unit, preset.amount.unit) if preset else ""
        layout.prop(self, "amount", text=f"Amount ({unit})" if len(unit) <= 8 else "Amount")
        layout.prop(self, "timing")
        layout.prop(self, "pivot_depth")
        layout.prop(self, "use_bullet_time")
        if self.use_bullet_time:
            layout.prop(self, "freeze_frame")
        layout.prop(self, "spec_text")

    def execute(self, context: bpy.types.Context) -> set[str]:
        def run() -> str:
            obj = add_camera_path(context, self.build_spec_text(context), pivot_depth=self.pivot_depth)
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
