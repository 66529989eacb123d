"""Source section: what is re-filmed (Movie Clip, image sequence or this scene) and its camera."""

from __future__ import annotations

import bpy

from . import cameras
from .deps import protocol_module
from .panel import SectionPanel, scene_settings

_errors = protocol_module("errors")

SOURCE_KIND_ITEMS = [
    ("CLIP", "Movie Clip", "A video loaded as a Movie Clip (e.g. the one you tracked)"),
    ("IMAGES", "Image Sequence", "An image sequence loaded as an Image"),
    ("SCENE", "This Scene", "Render the scene camera's frames with a depth pass and use them as the source"),
]


def _is_camera(_self: bpy.types.PropertyGroup, obj: bpy.types.Object) -> bool:
    return obj.type == "CAMERA"


class RECAST4D_PG_source(bpy.types.PropertyGroup):
    """The shot to re-film and the camera that filmed it (static or animated, e.g. tracker-solved)."""

    kind: bpy.props.EnumProperty(name="Source", items=SOURCE_KIND_ITEMS, default="CLIP")  # type: ignore[valid-type]
    clip: bpy.props.PointerProperty(name="Clip", type=bpy.types.MovieClip)  # type: ignore[valid-type]
    image: bpy.props.PointerProperty(name="Images", type=bpy.types.Image)  # type: ignore[valid-type]
    camera: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Source Camera", type=bpy.types.Object, poll=_is_camera,
        description="Camera that filmed the source (blank: the scene camera)",
    )
    use_scene_range: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Use Scene Range", default=True, description="Re-film the scene's frame range"
    )
    frame_start: bpy.props.IntProperty(name="Start", default=1, min=0)  # type: ignore[valid-type]
    frame_end: bpy.props.IntProperty(name="End", default=81, min=0)  # type: ignore[valid-type]


def source_camera_object(scene: bpy.types.Scene, source: RECAST4D_PG_source) -> bpy.types.Object:
    """The source camera (the explicit one, else the scene camera); ``CameraError`` if there is none."""
    return cameras.require_camera_object(source.camera or scene.camera, "source camera")


def source_frames(scene: bpy.types.Scene, source: RECAST4D_PG_source) -> list[int]:
    """Scene frame numbers of the shot, first to last inclusive (``ValidationError`` if empty)."""
    if source.use_scene_range:
        start, end = scene.frame_start, scene.frame_end
    else:
        start, end = source.frame_start, source.frame_end
    if end < start:
        raise _errors.ValidationError(f"frame range is empty: start {start} > end {end}")
    return list(range(start, end + 1))


def source_problem(scene: bpy.types.Scene, source: RECAST4D_PG_source) -> str | None:
    """Why this source cannot be submitted, in words, or ``None`` when it is usable."""
    if source.kind == "CLIP" and source.clip is None:
        return "Pick a Movie Clip as the source"
    if source.kind == "IMAGES" and source.image is None:
        return "Pick an image sequence as the source"
    try:
        source_camera_object(scene, source)
        source_frames(scene, source)
    except _errors.Recast4DError as exc:
        return str(exc)[:1].upper() + str(exc)[1:]
    return None


def export_source_cameras(scene: bpy.types.Scene, source: RECAST4D_PG_source) -> list:
    """One protocol ``Camera`` per source frame (OpenCV convention, pixels of the render size)."""
    return cameras.cameras_from_blender(scene, source_camera_object(scene, source), source_frames(scene, source))


class RECAST4D_OT_use_clip_range(bpy.types.Operator):
    """Set the scene frame range and render size from the source clip or image sequence"""

    bl_idname = "recast4d.use_clip_range"
    bl_label = "Match Scene to Source"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        source = scene_settings(context).source
        media = source.clip if source.kind == "CLIP" else source.image if source.kind == "IMAGES" else None
        if media is None:
            cls.poll_message_set("Pick a Movie Clip or image sequence first")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        source = scene_settings(context).source
        media = source.clip if source.kind == "CLIP" else source.image
        width, height = media.size[:]
        if width and height:
            scene.render.resolution_x, scene.render.resolution_y = width, height
            scene.render.resolution_percentage = 100
        duration = max(int(getattr(media, "frame_duration", 1)), 1)
        start = int(getattr(media, "frame_start", scene.frame_start))  # Images have no frame_start
        scene.frame_start = start
        scene.frame_end = start + duration - 1
        self.report({"INFO"}, f"Scene set to {width}x{height}, frames {scene.frame_start}-{scene.frame_end}")
        return {"FINISHED"}


class RECAST4D_PT_source(SectionPanel, bpy.types.Panel):
    bl_idname = "RECAST4D_PT_source"
    bl_label = "Source"

    def draw(self, context: bpy.types.Context) -> None:
        source = scene_settings(context).source
        layout = self.layout
        layout.use_property_split = True
        layout.prop(source, "kind")
        if source.kind == "CLIP":
            layout.template_ID(source, "clip", open="clip.open")
        elif source.kind == "IMAGES":
            layout.template_ID(source, "image", open="image.open")
        layout.prop(source, "camera")
        layout.prop(source, "use_scene_range")
        if not source.use_scene_range:
            col = layout.column(align=True)
            col.prop(source, "frame_start")
            col.prop(source, "frame_end")
        if source.kind != "SCENE":
            layout.operator(RECAST4D_OT_use_clip_range.bl_idname, icon="SEQUENCE")
        problem = source_problem(context.scene, source)
        if problem:
            layout.label(text=problem, icon="INFO")


PROPERTY_CLASSES = (RECAST4D_PG_source,)
CLASSES = (RECAST4D_OT_use_clip_range, RECAST4D_PT_source)
