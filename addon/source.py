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


def is_target_camera(scene: bpy.types.Scene, obj: bpy.types.Object | None) -> bool:
    """True for a camera that re-films the shot: a generated path (``recast4d_path_spec``) or an
    entry of the scene's Targets list. Such a camera is never taken as the source."""
    if obj is None:
        return False
    if obj.get("recast4d_path_spec"):
        return True
    settings = getattr(scene, "recast4d", None)
    return settings is not None and any(t.camera == obj for t in settings.targets)


def _is_source_candidate(self: bpy.types.PropertyGroup, obj: bpy.types.Object) -> bool:
    scene = self.id_data if isinstance(self.id_data, bpy.types.Scene) else None
    return obj.type == "CAMERA" and not (scene is not None and is_target_camera(scene, obj))


class RECAST4D_PG_source(bpy.types.PropertyGroup):
    """The shot to re-film and the camera that filmed it (static or animated, e.g. tracker-solved)."""

    kind: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Source", items=SOURCE_KIND_ITEMS, default="CLIP", description="What is re-filmed")
    clip: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Clip", type=bpy.types.MovieClip, description="The video to re-film (scene frame f shows clip frame "
        "f - clip start)")
    image: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Images", type=bpy.types.Image, description="The image sequence to re-film (its first file is the "
        "shot's first frame)")
    camera: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Camera", type=bpy.types.Object, poll=_is_source_candidate,
        description="Camera that filmed the source. Blank: the scene camera, which is pinned here when you add "
                    "a camera path or re-film, so a target camera made active later never becomes the source",
    )
    use_scene_range: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Scene Range", default=True,
        description="Re-film the scene's frame range (off: the Start and End frames below)"
    )
    frame_start: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Start", default=1, min=0, description="Scene frame of the shot's first frame")
    frame_end: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="End", default=81, min=0, description="Scene frame of the shot's last frame (inclusive)")


def source_camera_object(scene: bpy.types.Scene, source: RECAST4D_PG_source) -> bpy.types.Object:
    """The source camera: the pinned one, else the scene camera unless that is a target camera.

    Raises ``CameraError`` saying what to do if there is none (read-only: polls and panels call it;
    :func:`pin_source_camera` is the one that writes).
    """
    if source.camera is not None:
        return cameras.require_camera_object(source.camera, "source camera")
    camera = scene.camera
    if is_target_camera(scene, camera):
        raise _errors.CameraError(
            f"the scene camera {camera.name!r} is a target camera, not the one that filmed the shot; "
            "set Source > Camera to the source camera")
    return cameras.require_camera_object(camera, "source camera")


def pin_source_camera(scene: bpy.types.Scene, source: RECAST4D_PG_source) -> bpy.types.Object:
    """The source camera, written into ``source.camera`` if that was blank, so that it never follows
    the scene camera afterwards (Import Result / Set Up Render make a target the scene camera)."""
    camera = source_camera_object(scene, source)
    if source.camera is None:
        source.camera = camera
    return camera


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
    """One protocol ``Camera`` per source frame (OpenCV convention, pixels of the render size).

    Building a job pins the source camera (:func:`pin_source_camera`)."""
    return cameras.cameras_from_blender(scene, pin_source_camera(scene, source), source_frames(scene, source))


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
        if source.camera is None and context.scene.camera is not None:
            row = layout.row()
            row.active = False
            if is_target_camera(context.scene, context.scene.camera):
                row.label(text="Scene camera is a target", icon="ERROR")
            else:
                row.label(text=f"Uses {context.scene.camera.name}", icon="PINNED")
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
