"""File > Import / Export of camera paths in the formats of ``protocol.paths.formats``.

Formats: nerfstudio camera_path JSON (+ explicit intrinsics; keeps fps and bullet-time source
frames), ReCamMaster, TrajectoryCrafter / ViewCrafter-Free4D ``traj.txt`` (relative to the source
camera and a pivot depth), GEN3C ``.npz``. Export samples a camera object at every scene frame;
import creates a keyframed camera starting at the scene's first frame.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings

import bpy
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import cameras, source
from .deps import protocol_module
from .panel import poll_active_camera, scene_settings

_errors = protocol_module("errors")
_formats = protocol_module("paths.formats")
_paths = protocol_module("paths")

FORMAT_ITEMS = [
    ("nerfstudio", "nerfstudio (.json)", "nerfstudio camera_path JSON with explicit intrinsics, fps, source frames"),
    ("recammaster", "ReCamMaster (.json)", "ReCamMaster extrinsics per frame"),
    ("trajectorycrafter", "TrajectoryCrafter (.txt)", "theta/phi/r relative to the source camera and pivot"),
    ("viewcrafter", "ViewCrafter / Free4D (.txt)", "phi/theta/r relative to the source camera and pivot"),
    ("gen3c", "GEN3C (.npz)", "GEN3C camera arrays"),
]
_EXTENSIONS = {"nerfstudio": ".json", "recammaster": ".json", "trajectorycrafter": ".txt",
               "viewcrafter": ".txt", "gen3c": ".npz"}
#: Scene custom property: ``{absolute path: format}`` of the traj.txt files this add-on wrote, so that
#: "From File" reads them back (the two traj.txt layouts cannot be told apart by their content).
WRITTEN_FORMATS_KEY = "recast4d_written_camera_paths"
#: The same for this Blender session (files written from another scene or .blend).
_written_formats: dict[str, str] = {}
#: File-name words that name a traj.txt layout.
_NAME_HINTS = (("trajectorycrafter", "trajectorycrafter"), ("trajcrafter", "trajectorycrafter"),
               ("viewcrafter", "viewcrafter"), ("free4d", "viewcrafter"))


def _key(filepath: str) -> str:
    return os.path.normcase(os.path.abspath(bpy.path.abspath(filepath)))


def remember_written_format(scene: bpy.types.Scene, filepath: str, fmt: str) -> None:
    """Note that this add-on wrote ``filepath`` in ``fmt`` (only traj.txt files need it)."""
    if _EXTENSIONS.get(fmt) != ".txt":
        return
    _written_formats[_key(filepath)] = fmt
    known = _scene_formats(scene)
    known[_key(filepath)] = fmt
    scene[WRITTEN_FORMATS_KEY] = json.dumps(known, sort_keys=True)


def _scene_formats(scene: bpy.types.Scene) -> dict[str, str]:
    try:
        return dict(json.loads(str(scene.get(WRITTEN_FORMATS_KEY, "") or "{}")))
    except ValueError:
        return {}


def guess_format(scene: bpy.types.Scene, filepath: str) -> str | None:
    """"From File" for a traj.txt: the format this add-on wrote it in, else a format named in the file
    name (``..._viewcrafter.txt``), else ``None`` (JSON and NPZ files are told apart by the reader)."""
    if os.path.splitext(filepath)[1].lower() != ".txt":
        return None
    key = _key(filepath)
    fmt = _written_formats.get(key) or _scene_formats(scene).get(key)
    if fmt:
        return fmt
    stem = os.path.basename(filepath).lower()
    return next((fmt for word, fmt in _NAME_HINTS if word in stem), None)


def _reference_camera(context: bpy.types.Context):
    """The source camera at the scene's first frame (traj.txt and ReCamMaster are relative to it), or None."""
    scene = context.scene
    try:
        obj = source.source_camera_object(scene, scene_settings(context).source)
    except _errors.Recast4DError:
        return None
    return cameras.cameras_from_blender(scene, obj, [scene.frame_start])[0]


def export_camera_path(context: bpy.types.Context, obj: bpy.types.Object, filepath: str, fmt: str, *,
                       pivot_depth: float = 3.0) -> list[str]:
    """Write ``obj`` sampled at every scene frame to ``filepath``; returns the format's warnings."""
    scene = context.scene
    frames = list(range(scene.frame_start, scene.frame_end + 1))
    path_cameras = cameras.cameras_from_blender(scene, obj, frames)
    source_frames = None
    spec_text = obj.get("recast4d_path_spec")
    if spec_text:
        spec = _paths.parse_path_spec(str(spec_text))
        if spec.freeze_frame is not None:
            source_frames = _paths.source_frame_map(spec, len(frames), len(frames))
    fps = scene.render.fps / scene.render.fps_base
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", _formats.CameraFormatWarning)
        _formats.write_camera_path(filepath, path_cameras, fmt, fps, source_frames=source_frames,
                                   reference=_reference_camera(context), pivot_depth=pivot_depth)
    remember_written_format(scene, filepath, fmt)
    return [str(w.message) for w in caught if issubclass(w.category, _formats.CameraFormatWarning)]


def import_camera_path(context: bpy.types.Context, filepath: str, fmt: str | None, *,
                       pivot_depth: float = 3.0) -> bpy.types.Object:
    """Read a camera-path file and create a keyframed camera from the scene's first frame.

    The scene's render size is set to the file's image size if they differ (the keyed lens and
    shift are only exact for that size). ``traj.txt`` formats are relative to the source camera at
    the first frame and ``pivot_depth``, and are sampled over the scene's frame range.
    """
    scene = context.scene
    if fmt is None:
        fmt = guess_format(scene, filepath)
        if fmt is None and filepath.lower().endswith(".txt"):
            raise _errors.ValidationError(
                f"{bpy.path.basename(filepath)}: a traj.txt may be TrajectoryCrafter or ViewCrafter / Free4D; "
                "pick one in the file browser's Format option")
    reference = _reference_camera(context)
    # traj.txt files hold key values only: sample them over the scene's frame range
    num_frames = scene.frame_end - scene.frame_start + 1 if fmt in ("trajectorycrafter", "viewcrafter") else None
    data = _formats.read_camera_path(filepath, fmt, reference=reference, pivot_depth=pivot_depth,
                                     num_frames=num_frames,
                                     width=scene.render.resolution_x, height=scene.render.resolution_y)
    if not data.cameras:
        raise _errors.ValidationError(f"{filepath} holds no cameras")
    first = data.cameras[0]
    render = scene.render
    width = render.resolution_x * render.resolution_percentage // 100
    height = render.resolution_y * render.resolution_percentage // 100
    if (width, height) != (first.width, first.height):
        render.resolution_x, render.resolution_y, render.resolution_percentage = first.width, first.height, 100
    like = None
    with contextlib.suppress(_errors.Recast4DError):  # no source camera: Blender's default sensor
        like = source.source_camera_object(scene, scene_settings(context).source)
    name = bpy.path.display_name_from_filepath(filepath)
    obj = cameras.new_camera_object(context, name, like=like)
    frames = cameras.camera_path_frames(scene, len(data.cameras))
    cameras.keyframe_camera_path(obj, data.cameras, frames)
    if frames[-1] > scene.frame_end:
        scene.frame_end = frames[-1]
    return obj


class RECAST4D_OT_export_camera_path(bpy.types.Operator, ExportHelper):
    """Export the active camera's path (every scene frame) as a camera-path file"""

    bl_idname = "recast4d.export_camera_path"
    bl_label = "Export Camera Path"

    filename_ext = ".json"
    filter_glob: bpy.props.StringProperty(  # type: ignore[valid-type]
        default="*.json;*.txt;*.npz", options={"HIDDEN"}, description="File types shown in the browser")
    format: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Format", items=FORMAT_ITEMS, default="nerfstudio", description="Camera-path format to write")
    pivot_depth: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Pivot Depth", default=3.0, min=0.01, unit="LENGTH",
        description="traj.txt formats: distance in front of the source camera the path orbits",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return poll_active_camera(cls, context, "Select the camera whose path to export")

    def check(self, context: bpy.types.Context) -> bool:
        self.filename_ext = _EXTENSIONS[self.format]
        return super().check(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            messages = export_camera_path(context, context.active_object, self.filepath, self.format,
                                          pivot_depth=self.pivot_depth)
        except _errors.Recast4DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for message in messages:
            self.report({"WARNING"}, message)
        return {"FINISHED"}


class RECAST4D_OT_import_camera_path(bpy.types.Operator, ImportHelper):
    """Import a camera-path file as a new keyframed camera"""

    bl_idname = "recast4d.import_camera_path"
    bl_label = "Import Camera Path"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: bpy.props.StringProperty(  # type: ignore[valid-type]
        default="*.json;*.txt;*.npz", options={"HIDDEN"}, description="File types shown in the browser")
    format: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Format", items=[("AUTO", "From File", "Tell the format from the extension and content"), *FORMAT_ITEMS],
        default="AUTO", description="Camera-path format of the file (From File: by extension and content; a "
        "traj.txt this add-on wrote is recognised)",
    )
    pivot_depth: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Pivot Depth", default=3.0, min=0.01, unit="LENGTH",
        description="traj.txt formats: distance in front of the source camera the path orbits")
    add_as_target: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Add as Target", default=True, description="Add the imported camera to the Targets list")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.scene is None:
            cls.poll_message_set("Needs a scene to add the camera to")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            obj = import_camera_path(context, self.filepath, None if self.format == "AUTO" else self.format,
                                     pivot_depth=self.pivot_depth)
        except _errors.Recast4DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if self.add_as_target:
            item = scene_settings(context).targets.add()
            item.camera, item.path_spec = obj, bpy.path.basename(self.filepath)
        self.report({"INFO"}, f"Imported {obj.name!r}")
        return {"FINISHED"}


def menu_import(self, context: bpy.types.Context) -> None:
    self.layout.operator(RECAST4D_OT_import_camera_path.bl_idname, text="Camera Path (Recast 4D)")


def menu_export(self, context: bpy.types.Context) -> None:
    self.layout.operator(RECAST4D_OT_export_camera_path.bl_idname, text="Camera Path (Recast 4D)")


PROPERTY_CLASSES = ()
CLASSES = (RECAST4D_OT_export_camera_path, RECAST4D_OT_import_camera_path)
