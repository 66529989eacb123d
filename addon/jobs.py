"""Jobs section: the per-scene job list (saved in the .blend), progress per stage, results.

The job list is plain data on the scene (``Scene.recast4d.jobs``), so it survives saving and
reopening; a job's results are re-fetched from the backend by ``job_id`` after a restart. Runtime
state (the client thread, sockets) lives in :mod:`.session`, never in properties.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from . import results
from .deps import protocol_module
from .panel import SectionPanel, report_errors, scene_settings

_errors = protocol_module("errors")

JOB_STATES = [
    ("PENDING", "Pending", "Not yet accepted by the backend"),
    ("UPLOADING", "Uploading", "Sending source frames and cameras"),
    ("QUEUED", "Queued", "Waiting for the GPU"),
    ("RUNNING", "Running", "Computing"),
    ("STREAMING", "Streaming", "Receiving results"),
    ("CANCELLING", "Cancelling", "Cancel sent, waiting for the backend to stop"),
    ("CANCELLED", "Cancelled", "Stopped by you"),
    ("FAILED", "Failed", "The backend reported an error"),
    ("DONE", "Done", "All results received"),
]
ACTIVE_STATES = {"PENDING", "UPLOADING", "QUEUED", "RUNNING", "STREAMING", "CANCELLING"}
FINAL_STATES = {"CANCELLED", "FAILED", "DONE"}


class RECAST4D_PG_job_stage(bpy.types.PropertyGroup):
    """Progress of one pipeline stage of a job (``name`` is the stage name)."""

    step: bpy.props.IntProperty(default=0, min=0)  # type: ignore[valid-type]
    total: bpy.props.IntProperty(default=0, min=0)  # type: ignore[valid-type]
    message: bpy.props.StringProperty()  # type: ignore[valid-type]

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total > 0 else 0.0


class RECAST4D_PG_job(bpy.types.PropertyGroup):
    """One submitted job; ``name`` shows in the list, ``job_id`` is the backend's key."""

    job_id: bpy.props.StringProperty(name="Job ID")  # type: ignore[valid-type]
    token: bpy.props.StringProperty(  # type: ignore[valid-type]
        options={"HIDDEN"}, description="Ownership token from the backend (job.accepted): lets a later Blender "
        "session resume, re-fetch or cancel this job")
    kind: bpy.props.StringProperty(name="Kind", default="reshoot")  # type: ignore[valid-type]
    state: bpy.props.EnumProperty(name="State", items=JOB_STATES, default="PENDING")  # type: ignore[valid-type]
    stages: bpy.props.CollectionProperty(type=RECAST4D_PG_job_stage)  # type: ignore[valid-type]
    current_stage: bpy.props.StringProperty(name="Stage")  # type: ignore[valid-type]
    error: bpy.props.StringProperty(name="Error")  # type: ignore[valid-type]
    error_code: bpy.props.StringProperty(name="Error Code")  # type: ignore[valid-type]
    result_dir: bpy.props.StringProperty(name="Results", subtype="DIR_PATH")  # type: ignore[valid-type]
    frame_start: bpy.props.IntProperty(  # type: ignore[valid-type]
        default=0, description="Scene frame of the shot's first frame (where the result is placed; 0: as in the file)"
    )
    frames_received: bpy.props.IntProperty(default=0, min=0)  # type: ignore[valid-type]
    frames_expected: bpy.props.IntProperty(default=0, min=0)  # type: ignore[valid-type]
    target_cameras: bpy.props.StringProperty(  # type: ignore[valid-type]
        description="Names of the target camera objects, comma separated, in trajectory order"
    )
    trajectories: bpy.props.StringProperty(  # type: ignore[valid-type]
        description="Trajectory names sent to the backend (result sub-folders), same order as the cameras"
    )
    imported: bpy.props.BoolProperty(default=False)  # type: ignore[valid-type]
    streams: bpy.props.StringProperty(  # type: ignore[valid-type]
        description="Result stream names announced by the backend, comma separated (to re-fetch them)"
    )

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    def stage(self, name: str) -> RECAST4D_PG_job_stage:
        """The stage entry called ``name``, created on first use."""
        entry = self.stages.get(name)
        if entry is None:
            entry = self.stages.add()
            entry.name = name
        return entry

    @property
    def result_usd(self) -> Path | None:
        """The USD result file if it has arrived."""
        if not self.result_dir:
            return None
        folder = Path(bpy.path.abspath(self.result_dir))
        for name in ("scene.usdc", "scene.usd", "scene.usda"):
            if (folder / name).is_file():
                return folder / name
        found = sorted(folder.glob("*.usd*")) if folder.is_dir() else []
        return found[0] if found else None

    def result_video(self, trajectory: str) -> Path | None:
        """The finished video of one trajectory: ``<traj>/video.mp4`` (backend output folder),
        ``<traj>.mp4`` (streamed file), else the ``<traj>/frames`` PNG folder."""
        if not self.result_dir:
            return None
        root = Path(bpy.path.abspath(self.result_dir))
        folder = root / trajectory
        for candidate in (folder / "video.mp4", root / f"{trajectory}.mp4", folder / "frames"):
            if candidate.exists():
                return candidate
        return None


def find_job(scene: bpy.types.Scene, job_id: str) -> RECAST4D_PG_job | None:
    """The job with ``job_id`` in ``scene``'s list, or ``None``."""
    for job in scene.recast4d.jobs:
        if job.job_id == job_id:
            return job
    return None


def active_job(context: bpy.types.Context) -> RECAST4D_PG_job | None:
    settings = scene_settings(context)
    if 0 <= settings.active_job_index < len(settings.jobs):
        return settings.jobs[settings.active_job_index]
    return None


def poll_selected_job(cls: type[bpy.types.Operator], context: bpy.types.Context) -> RECAST4D_PG_job | None:
    """For operator polls: the selected job, or ``None`` with the poll message asking to select one."""
    job = active_job(context)
    if job is None:
        cls.poll_message_set("Select a job in the list")
    return job


def import_job_result(context: bpy.types.Context, job: RECAST4D_PG_job, *, ellipsoids: bool = False,
                      setup_render: bool = True) -> results.ImportedResult:
    """Import a finished job's USD result (+ videos on its target cameras) and set up the render."""
    path = job.result_usd
    if path is None:
        raise _errors.ValidationError(f"job {job.name!r} has no USD result yet (folder: {job.result_dir or 'none'})")
    imported = results.import_usd_result(context, path, ellipsoids=ellipsoids,
                                         frame_start=job.frame_start if job.frame_start > 0 else None)
    names = [n for n in job.target_cameras.split(",") if n]
    targets = [bpy.data.objects.get(n) for n in names]
    for trajectory, camera in zip([t for t in job.trajectories.split(",") if t], targets):
        video = job.result_video(trajectory)
        if video is not None:
            results.import_video(video, camera=camera, frame_start=imported.frame_start)
    if setup_render:
        camera = next((c for c in targets if c is not None and c.type == "CAMERA"), None)
        results.setup_render(context.scene, camera=camera,
                             transparent_bounces=64 if imported.gaussian_objects else 8)
    job.imported = True
    return imported


class RECAST4D_OT_import_result(bpy.types.Operator):
    """Import the selected job's 4D result as point clouds set up for Cycles"""

    bl_idname = "recast4d.import_result"
    bl_label = "Import Result"
    bl_options = {"REGISTER", "UNDO"}

    ellipsoids: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Ellipsoid Splats", default=False,
        description="Higher-quality Gaussians as instanced ellipsoids (slower; for final frames)",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = poll_selected_job(cls, context)
        if job is None:
            return False
        if job.result_usd is None:
            cls.poll_message_set("This job has no USD result yet; fetch it from the backend first")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        def run() -> str:
            imported = import_job_result(context, active_job(context), ellipsoids=self.ellipsoids)
            return f"Imported {len(imported.objects)} object(s), frames {imported.frame_start}-{imported.frame_end}"

        return report_errors(self, run)


class RECAST4D_OT_import_usd_file(bpy.types.Operator):
    """Import a Recast 4D USD result file (points and Gaussians) and set it up for Cycles"""

    bl_idname = "recast4d.import_usd_file"
    bl_label = "Import Recast 4D Result (.usd)"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")  # type: ignore[valid-type]
    filter_glob: bpy.props.StringProperty(default="*.usd;*.usdc;*.usda", options={"HIDDEN"})  # type: ignore[valid-type]
    ellipsoids: bpy.props.BoolProperty(name="Ellipsoid Splats", default=False)  # type: ignore[valid-type]

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        def run() -> str:
            imported = results.import_usd_result(context, self.filepath, ellipsoids=self.ellipsoids)
            return f"Imported {len(imported.objects)} object(s)"

        return report_errors(self, run)


class RECAST4D_OT_setup_render(bpy.types.Operator):
    """Cycles settings for points and splats, the selected target camera active, result frame range"""

    bl_idname = "recast4d.setup_render"
    bl_label = "Set Up Render"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = scene_settings(context)
        camera = None
        if 0 <= settings.active_target_index < len(settings.targets):
            camera = settings.targets[settings.active_target_index].camera
        results.setup_render(context.scene, camera=camera)
        return {"FINISHED"}


class RECAST4D_OT_render_shot(bpy.types.Operator):
    """Set up the render and render the whole shot with Cycles"""

    bl_idname = "recast4d.render_shot"
    bl_label = "Render Shot"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.scene.camera is None:
            cls.poll_message_set("The scene has no active camera; pick a target and press Set Up Render")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        bpy.ops.recast4d.setup_render()
        if bpy.app.background:
            bpy.ops.render.render(animation=True)
        else:
            bpy.ops.render.render("INVOKE_DEFAULT", animation=True)
        return {"FINISHED"}


class RECAST4D_OT_remove_job(bpy.types.Operator):
    """Remove the selected job from the list (files on disk and on the backend are kept)"""

    bl_idname = "recast4d.remove_job"
    bl_label = "Remove Job"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = poll_selected_job(cls, context)
        if job is None:
            return False
        if job.is_active:
            cls.poll_message_set("Cancel the job before removing it")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = scene_settings(context)
        settings.jobs.remove(settings.active_job_index)
        settings.active_job_index = max(0, min(settings.active_job_index, len(settings.jobs) - 1))
        return {"FINISHED"}


class RECAST4D_UL_jobs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):  # noqa: D102
        row = layout.row(align=True)
        row.label(text=item.name or item.job_id[:8], icon="RENDER_ANIMATION")
        row.label(text=item.bl_rna.properties["state"].enum_items[item.state].name)


def draw_job_detail(layout: bpy.types.UILayout, job: RECAST4D_PG_job) -> None:
    """Per-stage progress bars, the error text and the result buttons of one job."""
    box = layout.box()
    box.label(text=f"{job.kind} {job.job_id[:12]}", icon="INFO")
    for stage in job.stages:
        text = f"{stage.name}: {stage.step}/{stage.total}" if stage.total else stage.name
        box.progress(text=text, factor=stage.fraction, type="BAR")
    if job.frames_expected:
        box.progress(text=f"frames {job.frames_received}/{job.frames_expected}",
                     factor=min(1.0, job.frames_received / job.frames_expected), type="BAR")
    if job.error:
        col = box.column(align=True)
        col.alert = True
        for line in job.error.splitlines()[:6]:
            col.label(text=line, icon="ERROR")


class RECAST4D_PT_jobs(SectionPanel, bpy.types.Panel):
    bl_idname = "RECAST4D_PT_jobs"
    bl_label = "Jobs"

    def draw(self, context: bpy.types.Context) -> None:
        settings = scene_settings(context)
        layout = self.layout
        layout.operator("recast4d.submit_job", icon="PLAY")
        row = layout.row()
        row.template_list("RECAST4D_UL_jobs", "", settings, "jobs", settings, "active_job_index", rows=3)
        col = row.column(align=True)
        col.operator(RECAST4D_OT_remove_job.bl_idname, text="", icon="REMOVE")
        job = active_job(context)
        if job is None:
            return
        draw_job_detail(layout, job)
        row = layout.row(align=True)
        row.operator("recast4d.cancel_job", icon="CANCEL")
        row.operator("recast4d.fetch_results", icon="IMPORT")
        layout.operator(RECAST4D_OT_import_result.bl_idname, icon="POINTCLOUD_DATA")
        row = layout.row(align=True)
        row.operator(RECAST4D_OT_setup_render.bl_idname, icon="SCENE")
        row.operator(RECAST4D_OT_render_shot.bl_idname, icon="RENDER_ANIMATION")


def menu_import(self, context: bpy.types.Context) -> None:
    self.layout.operator(RECAST4D_OT_import_usd_file.bl_idname, text="Recast 4D Result (.usd)")


PROPERTY_CLASSES = (RECAST4D_PG_job_stage, RECAST4D_PG_job)
CLASSES = (RECAST4D_OT_import_result, RECAST4D_OT_import_usd_file, RECAST4D_OT_setup_render,
           RECAST4D_OT_render_shot, RECAST4D_OT_remove_job, RECAST4D_UL_jobs, RECAST4D_PT_jobs)
