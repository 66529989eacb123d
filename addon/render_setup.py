"""Set Up Render / Render Shot: change only what points and splats need, and undo it on request.

The one place the add-on calls :func:`.results.setup_render` (the Cycles settings that points and
splats need) is :func:`setup_render_for_job`. Around that call it

- reads every watched setting before and after, and remembers the user's original value of each
  one that changed (the oldest original wins when Set Up Render runs twice) in the scene's
  custom property :data:`BACKUP_KEY`, saved with the .blend; *Restore Render Settings* puts them
  back;
- makes the job's own target camera the scene camera (not the Targets list's active row);
- optionally hides the original scene objects (a "This Scene" source would render twice) and the
  job's streamed preview object from the render (remembered and restored the same way);
- checks denoising against the build: a Blender without OpenImageDenoise gets a message and
  denoising turned off for the shot, not a traceback.
"""

from __future__ import annotations

import json

import bpy

from . import results
from .deps import protocol_module

_errors = protocol_module("errors")

#: Scene custom property holding the user's settings that Set Up Render changed (JSON).
BACKUP_KEY = "recast4d_render_backup"
#: ``(owner, attribute)`` of the settings watched for changes; owner ``scene``, ``render``, ``cycles``,
#: ``eevee`` or ``view`` (the view settings).
WATCHED_SETTINGS = (
    ("render", "engine"), ("render", "film_transparent"), ("render", "fps"), ("render", "fps_base"),
    ("scene", "frame_start"), ("scene", "frame_end"),
    ("cycles", "samples"), ("cycles", "preview_samples"), ("cycles", "use_denoising"), ("cycles", "denoiser"),
    ("cycles", "max_bounces"), ("cycles", "transparent_max_bounces"),
    ("eevee", "taa_render_samples"), ("view", "view_transform"), ("view", "look"),  # native splats
)
#: Object types that render as geometry (candidates for "hide the original scene objects").
GEOMETRY_TYPES = {"MESH", "CURVE", "CURVES", "SURFACE", "META", "FONT", "POINTCLOUD", "VOLUME", "GREASEPENCIL"}
SPLAT_TRANSPARENT_BOUNCES = 64
POINT_TRANSPARENT_BOUNCES = 8


def _owner(scene: bpy.types.Scene, name: str):
    return {"scene": scene, "render": scene.render, "cycles": getattr(scene, "cycles", None),
            "eevee": getattr(scene, "eevee", None), "view": scene.view_settings}[name]


def read_settings(scene: bpy.types.Scene) -> dict[str, object]:
    """The watched settings as ``{"render.engine": "CYCLES", ...}`` (plain values)."""
    values: dict[str, object] = {}
    for owner_name, attribute in WATCHED_SETTINGS:
        owner = _owner(scene, owner_name)
        if owner is not None and hasattr(owner, attribute):
            value = getattr(owner, attribute)
            values[f"{owner_name}.{attribute}"] = value if isinstance(value, bool | int | float | str) else str(value)
    values["scene.camera"] = scene.camera.name if scene.camera is not None else ""
    return values


def load_backup(scene: bpy.types.Scene) -> dict:
    """The remembered originals: ``{"settings": {...}, "hidden": [object names]}`` (empty if none)."""
    try:
        data = json.loads(str(scene.get(BACKUP_KEY, "") or "{}"))
    except ValueError:
        data = {}
    return {"settings": dict(data.get("settings", {})), "hidden": list(data.get("hidden", []))}


def _save_backup(scene: bpy.types.Scene, backup: dict) -> None:
    if backup["settings"] or backup["hidden"]:
        scene[BACKUP_KEY] = json.dumps(backup, sort_keys=True)
    elif BACKUP_KEY in scene:
        del scene[BACKUP_KEY]


def has_backup(scene: bpy.types.Scene) -> bool:
    """True if Set Up Render changed something that Restore can put back."""
    backup = load_backup(scene)
    return bool(backup["settings"] or backup["hidden"])


def has_openimagedenoise() -> bool:
    """Whether this Blender build's Cycles has OpenImageDenoise (Debian's builds may not)."""
    try:
        import _cycles
    except ImportError:
        return False
    return bool(getattr(_cycles, "with_openimagedenoise", False))


def job_camera_objects(job) -> list[bpy.types.Object]:
    """The job's own target cameras that still exist, in trajectory order."""
    objects = [bpy.data.objects.get(name) for name in job.target_cameras.split(",") if name]
    return [obj for obj in objects if obj is not None and obj.type == "CAMERA"]


def result_objects(job) -> list[bpy.types.Object]:
    """Objects imported from the job's result folder (``recast4d_result`` under ``job.result_dir``)."""
    folder = bpy.path.abspath(job.result_dir) if job.result_dir else None
    return [obj for obj in bpy.data.objects
            if obj.get("recast4d_result") and (folder is None or str(obj["recast4d_result"]).startswith(folder))]


def preview_objects(job) -> list[bpy.types.Object]:
    """The job's streamed preview object(s) (``recast4d_job`` = its id)."""
    return [obj for obj in bpy.data.objects if obj.get("recast4d_job") == job.job_id]


def original_scene_objects(scene: bpy.types.Scene) -> list[bpy.types.Object]:
    """Renderable geometry of ``scene`` that is not a Recast 4D result or preview: the original shot."""
    return [obj for obj in scene.objects if obj.type in GEOMETRY_TYPES and not obj.hide_render
            and not obj.get("recast4d_result") and not obj.get("recast4d_job")]


def setup_render_for_job(scene: bpy.types.Scene, job=None, *, camera: bpy.types.Object | None = None,
                         hide_originals: bool = False, hide_preview: bool = False,
                         splats: bool | None = None) -> list[str]:
    """Set ``scene`` up to render ``job``'s result through ``camera`` (default: the job's first target
    camera). Remembers what changed (:func:`restore_render`). Returns messages for the user.

    ``splats`` (default: whether the job's imported result has Gaussians) raises the transparent
    bounce limit splats need; points need only a few.
    """
    messages: list[str] = []
    if camera is None and job is not None:
        cameras = job_camera_objects(job)
        camera = cameras[0] if cameras else None
    if camera is not None and camera.type != "CAMERA":
        raise _errors.ValidationError(f"{camera.name!r} is not a camera")
    if splats is None:
        splats = job is not None and any(o.modifiers.get("Recast4D Splats") for o in result_objects(job))
    before = read_settings(scene)
    results.setup_render(scene, camera=camera,
                         transparent_bounces=SPLAT_TRANSPARENT_BOUNCES if splats else POINT_TRANSPARENT_BOUNCES)
    cycles = scene.cycles
    if cycles.use_denoising and cycles.denoiser == "OPENIMAGEDENOISE" and not has_openimagedenoise():
        cycles.use_denoising = False
        messages.append("This Blender build has no OpenImageDenoise: denoising is off for this render "
                        "(Restore Render Settings turns it back on)")
    backup = load_backup(scene)
    for key, value in read_settings(scene).items():
        if value != before.get(key) and key not in backup["settings"]:
            backup["settings"][key] = before.get(key)
    hide: list[bpy.types.Object] = []
    if hide_originals:
        hide += original_scene_objects(scene)
    if hide_preview and job is not None:
        hide += [obj for obj in preview_objects(job) if not obj.hide_render]
    for obj in hide:
        obj.hide_render = True
        if obj.name not in backup["hidden"]:
            backup["hidden"].append(obj.name)
    if hide:
        messages.append(f"Hidden from the render: {len(hide)} object(s)")
    _save_backup(scene, backup)
    return messages


def restore_render(scene: bpy.types.Scene) -> int:
    """Put back every setting Set Up Render changed and show the objects it hid; returns how many."""
    backup = load_backup(scene)
    restored = 0
    for key, value in backup["settings"].items():
        owner_name, _, attribute = key.partition(".")
        if key == "scene.camera":
            scene.camera = bpy.data.objects.get(value) if value else None
            restored += 1
            continue
        owner = _owner(scene, owner_name)
        if owner is None or not hasattr(owner, attribute):
            continue
        try:
            setattr(owner, attribute, value)
            restored += 1
        except (TypeError, ValueError):  # an enum value this build does not have
            pass
    for name in backup["hidden"]:
        obj = bpy.data.objects.get(name)
        if obj is not None:
            obj.hide_render = False
            restored += 1
    _save_backup(scene, {"settings": {}, "hidden": []})
    return restored


# --------------------------------------------------------------------------- operators
_camera_items_cache: list[tuple[str, str, str]] = []


def _job_camera_items(_self, context: bpy.types.Context) -> list[tuple[str, str, str]]:
    """Enum items: the selected job's target cameras (Blender needs the strings kept alive)."""
    from .jobs import active_job

    job = active_job(context) if context is not None else None
    items = [(o.name, o.name, f"Render through {o.name}, one of this job's target cameras")
             for o in (job_camera_objects(job) if job is not None else [])]
    _camera_items_cache[:] = items or [("", "(none)", "The job has no target camera left")]
    return _camera_items_cache


def _poll_job_camera(cls: type[bpy.types.Operator], context: bpy.types.Context):
    """For polls: the selected job if one of its target cameras still exists (else the reason)."""
    from .jobs import poll_selected_job

    job = poll_selected_job(cls, context)
    if job is None:
        return None
    if not job_camera_objects(job):
        cls.poll_message_set("This job's target camera is gone; re-film or import the result into a scene with it")
        return None
    return job


class _RenderOptions:
    """Properties shared by Set Up Render and Render Shot (shown in their dialog)."""

    camera: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Camera", items=_job_camera_items, description="The job's target camera to render through")
    hide_originals: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Hide Original Objects", default=False, options={"SKIP_SAVE"},
        description="Hide the scene's own geometry from the render (a 'This Scene' source would show twice); "
                    "Restore Render Settings shows it again")
    hide_preview: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Hide Preview", default=True, options={"SKIP_SAVE"},
        description="Hide the job's streamed preview points from the render (the imported result replaces them)")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        self.hide_originals = context.scene.recast4d.source.kind == "SCENE"
        return context.window_manager.invoke_props_dialog(self, width=300)

    def set_up(self, context: bpy.types.Context) -> bool:
        from .jobs import active_job

        job = active_job(context)
        camera = bpy.data.objects.get(self.camera) if self.camera else None
        try:
            messages = setup_render_for_job(context.scene, job, camera=camera, hide_originals=self.hide_originals,
                                            hide_preview=self.hide_preview)
        except _errors.Recast4DError as exc:
            self.report({"ERROR"}, str(exc))
            return False
        for message in messages:
            self.report({"WARNING"} if "no OpenImageDenoise" in message else {"INFO"}, message)
        return True


class RECAST4D_OT_setup_render(_RenderOptions, bpy.types.Operator):
    """Render through the job's target camera with Cycles; changes only what points and splats need and
    remembers the rest (Restore Render Settings puts it back)"""

    bl_idname = "recast4d.setup_render"
    bl_label = "Set Up Render"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _poll_job_camera(cls, context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        return {"FINISHED"} if self.set_up(context) else {"CANCELLED"}


class RECAST4D_OT_render_shot(_RenderOptions, bpy.types.Operator):
    """Set up the render for the selected job and render the whole shot with Cycles"""

    bl_idname = "recast4d.render_shot"
    bl_label = "Render Shot"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _poll_job_camera(cls, context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self.set_up(context):
            return {"CANCELLED"}
        if bpy.app.background:
            bpy.ops.render.render(animation=True)
        else:
            bpy.ops.render.render("INVOKE_DEFAULT", animation=True)
        return {"FINISHED"}


class RECAST4D_OT_restore_render(bpy.types.Operator):
    """Put back the render settings, scene camera and object visibility that Set Up Render changed"""

    bl_idname = "recast4d.restore_render"
    bl_label = "Restore Render Settings"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not has_backup(context.scene):
            cls.poll_message_set("Set Up Render has changed nothing to restore")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        self.report({"INFO"}, f"Restored {restore_render(context.scene)} setting(s)")
        return {"FINISHED"}


PROPERTY_CLASSES = ()
CLASSES = (RECAST4D_OT_setup_render, RECAST4D_OT_render_shot, RECAST4D_OT_restore_render)
