"""Jobs section: the per-scene job list (saved in the .blend), progress per stage, results.

The job list is plain data on the scene (``Scene.recast4d.jobs``), so it survives saving and
reopening; a job's results are re-fetched from the backend by ``job_id`` after a restart. Runtime
state (the client thread, sockets) lives in :mod:`.session`, never in properties.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from . import capture_task, error_ui, job_ledger, render_setup, results, session
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
#: Pipeline stages in the order they run, with the words the panel shows for them (the backend's
#: ``progress.stage`` names: ``backend/pipelines/*/pipeline.py``). Unknown stages follow, humanised.
STAGE_LABELS = {
    "upload": "Upload", "depth": "Depth", "lift": "Lift to points", "render": "Render views",
    "fill": "Fill holes", "fill_depth": "Fill depth", "write_videos": "Write videos", "fuse": "Fuse points",
    "gaussians": "Gaussians", "points": "Points", "export": "Export", "stream": "Send results",
    "video": "Reference video", "tune": "Tune", "train": "Train",
}


def stage_label(name: str) -> str:
    """How the panel names a backend stage: ``fill_depth`` -> ``Fill depth``."""
    if name in STAGE_LABELS:
        return STAGE_LABELS[name]
    text = name.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:] if text else "Stage"


def ordered_stages(job) -> list:
    """The job's stages in pipeline order (known stages first, in the order they run), so that two
    runs of the same job kind always list them alike, whatever order their progress arrived in."""
    order = {name: i for i, name in enumerate(STAGE_LABELS)}
    arrival = {stage.name: i for i, stage in enumerate(job.stages)}
    return sorted(job.stages, key=lambda s: (order.get(s.name, len(order)), arrival[s.name]))


class RECAST4D_PG_job_stage(bpy.types.PropertyGroup):
    """Progress of one pipeline stage of a job (``name`` is the backend's stage name)."""

    step: bpy.props.IntProperty(default=0, min=0, description="Steps of this stage done")  # type: ignore[valid-type]
    total: bpy.props.IntProperty(default=0, min=0, description="Steps of this stage (0: unknown)")  # type: ignore[valid-type]
    message: bpy.props.StringProperty(description="The backend's last note on this stage")  # type: ignore[valid-type]

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total > 0 else 0.0


class RECAST4D_PG_job(bpy.types.PropertyGroup):
    """One submitted job; ``name`` shows in the list, ``job_id`` is the backend's key."""

    job_id: bpy.props.StringProperty(name="Job ID", description="The backend's id of this job")  # type: ignore[valid-type]
    token: bpy.props.StringProperty(  # type: ignore[valid-type]
        options={"HIDDEN"}, description="Ownership token from the backend (job.accepted): lets a later Blender "
        "session resume, re-fetch or cancel this job")
    kind: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Kind", default="reshoot", description="Job kind: reshoot (re-film), tune or generate")
    state: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="State", items=JOB_STATES, default="PENDING", description="Where the job is")
    stages: bpy.props.CollectionProperty(  # type: ignore[valid-type]
        type=RECAST4D_PG_job_stage, description="Progress of each pipeline stage")
    current_stage: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Stage", description="The stage the backend reported last")
    error: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Error", description="The backend's full error message (with how to fix it)")
    error_code: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Error Code", description="Machine-readable error code (e.g. missing_weights)")
    result_dir: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Results", subtype="DIR_PATH", description="Folder holding this job's result files")
    frame_start: bpy.props.IntProperty(  # type: ignore[valid-type]
        default=0, description="Scene frame of the shot's first frame (where the result is placed; 0: as in the file)"
    )
    frames_received: bpy.props.IntProperty(  # type: ignore[valid-type]
        default=0, min=0, description="Result frames received so far")
    frames_expected: bpy.props.IntProperty(  # type: ignore[valid-type]
        default=0, min=0, description="Result frames the backend announced")
    target_cameras: bpy.props.StringProperty(  # type: ignore[valid-type]
        description="Names of the target camera objects, comma separated, in trajectory order"
    )
    trajectories: bpy.props.StringProperty(  # type: ignore[valid-type]
        description="Trajectory names sent to the backend (result sub-folders), same order as the cameras"
    )
    imported: bpy.props.BoolProperty(  # type: ignore[valid-type]
        default=False, description="The result was imported into the scene")
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
                      setup_render: bool = True, import_points: bool = True) -> results.ImportedResult:
    """Import a finished job's USD result (+ videos on its target cameras) and set up the render."""
    path = job.result_usd
    if path is None:
        raise _errors.ValidationError(f"job {job.name!r} has no USD result yet (folder: {job.result_dir or 'none'})")
    problem = usd_problem()
    if problem:
        raise _errors.ValidationError(problem)
    imported = results.import_usd_result(context, path, ellipsoids=ellipsoids, import_points=import_points,
                                         frame_start=job.frame_start if job.frame_start > 0 else None)
    names = [n for n in job.target_cameras.split(",") if n]
    targets = [bpy.data.objects.get(n) for n in names]
    for trajectory, camera in zip([t for t in job.trajectories.split(",") if t], targets):
        video = job.result_video(trajectory)
        if video is not None:
            results.import_video(video, camera=camera, frame_start=imported.frame_start)
    if setup_render:
        # the imported result replaces the streamed preview: hide that from the render (restorable)
        render_setup.setup_render_for_job(context.scene, job, hide_preview=True, splats=bool(imported.gaussian_objects))
    job.imported = True
    return imported


def blender_has_usd() -> bool:
    """Whether this Blender build has the USD importer (``bpy.app.build_options.usd``)."""
    return bool(getattr(bpy.app.build_options, "usd", False))


def usd_problem() -> str | None:
    """Why this Blender cannot import USD results (a build without USD, e.g. Debian's), or ``None``."""
    if not blender_has_usd():
        return ("This Blender build has no USD support (some Linux distribution packages leave it out), so the "
                "result cannot be imported; use a Blender from blender.org, or the job's videos/PLY files")
    return None


class RECAST4D_OT_import_result(bpy.types.Operator):
    """Import the selected job's 4D result as point clouds set up for Cycles"""

    bl_idname = "recast4d.import_result"
    bl_label = "Import Result"
    bl_options = {"REGISTER", "UNDO"}

    ellipsoids: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Ellipsoid Splats", default=False,
        description="Higher-quality Gaussians as instanced ellipsoids (slower; for final frames)",
    )
    import_points: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Point Cloud Layer", default=True,
        description="Also import the coloured point clouds (the Gaussians come in either way)",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = poll_selected_job(cls, context)
        if job is None:
            return False
        if job.result_usd is None:
            cls.poll_message_set("This job has no USD result yet; fetch it from the backend first")
            return False
        problem = usd_problem()
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        def run() -> str:
            imported = import_job_result(context, active_job(context), ellipsoids=self.ellipsoids,
                                         import_points=self.import_points)
            note = "" if imported.splat_objects or imported.gaussian_objects else " (no Gaussians in this result)"
            return (f"Imported {len(imported.objects)} object(s), frames {imported.frame_start}-{imported.frame_end}"
                    f"{note}")

        return report_errors(self, run)


class RECAST4D_OT_import_usd_file(bpy.types.Operator):
    """Import a Recast 4D USD result file (points and Gaussians) and set it up for Cycles"""

    bl_idname = "recast4d.import_usd_file"
    bl_label = "Import Recast 4D Result (.usd)"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(  # type: ignore[valid-type]
        subtype="FILE_PATH", description="The Recast 4D USD result to import")
    filter_glob: bpy.props.StringProperty(  # type: ignore[valid-type]
        default="*.usd;*.usdc;*.usda", options={"HIDDEN"}, description="File types shown in the browser")
    ellipsoids: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Ellipsoid Splats", default=False,
        description="Higher-quality Gaussians as instanced ellipsoids (slower; for final frames)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        problem = usd_problem()
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        def run() -> str:
            imported = results.import_usd_result(context, self.filepath, ellipsoids=self.ellipsoids)
            return f"Imported {len(imported.objects)} object(s)"

        return report_errors(self, run)


class RECAST4D_OT_remove_job(bpy.types.Operator):
    """Remove the selected job from the list (files on disk and on the backend are kept). This is not an
    undo step: job bookkeeping stays out of undo so that Ctrl+Z never loses a job"""

    bl_idname = "recast4d.remove_job"
    bl_label = "Remove Job"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = poll_selected_job(cls, context)
        if job is None:
            return False
        if job.is_active and session.connection_problem() is None and job.state != "CANCELLING":
            cls.poll_message_set("Cancel the job before removing it")
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        job = active_job(context)
        if job.is_active:  # disconnected, or cancelling: the backend may still be computing it
            return context.window_manager.invoke_confirm(
                self, event, title="Remove Job", message="The backend may still be computing this job; "
                "remove it from the list anyway (its id is forgotten, results are not fetched)?", confirm_text="Remove")
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = scene_settings(context)
        job = settings.jobs[settings.active_job_index]
        job_ledger.forget_job(job.job_id)
        settings.jobs.remove(settings.active_job_index)
        settings.active_job_index = max(0, min(settings.active_job_index, len(settings.jobs) - 1))
        return {"FINISHED"}


def job_state_text(job) -> str:
    """The job's state as the panel says it. A job the backend calls done is *Receiving* while its
    result streams are still arriving, and says so when frames are missing."""
    label = job.bl_rna.properties["state"].enum_items[job.state].name
    if job.state != "DONE":
        return label
    counts = f" {job.frames_received}/{job.frames_expected}" if job.frames_expected else ""
    if session.job_streams_open(job.job_id):
        return f"Receiving{counts}"
    if job.frames_expected and job.frames_received < job.frames_expected:
        return f"Done, {job.frames_received}/{job.frames_expected} frames here"
    return label


def job_row_text(job) -> tuple[str, str]:
    """``(what, state)`` of a job row: kind and target camera(s), e.g. ``("Re-film Orbit L10", "Running")``."""
    kinds = {"reshoot": "Re-film", "tune": "Tune", "generate": "Generate"}
    what = kinds.get(job.kind, job.kind.title() or "Job")
    names = [n for n in job.target_cameras.split(",") if n]
    if names:
        target = names[0].removeprefix("Recast ")
        what = f"{what} {target}" + (f" +{len(names) - 1}" if len(names) > 1 else "")
    return what, job_state_text(job)


class RECAST4D_UL_jobs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):  # noqa: D102
        what, state = job_row_text(item)
        row = layout.row(align=True)
        row.label(text=what, icon="RENDER_ANIMATION")
        sub = row.row()
        sub.alignment = "RIGHT"
        sub.label(text=state)


def draw_job_detail(layout: bpy.types.UILayout, job: RECAST4D_PG_job, context: bpy.types.Context | None = None) -> None:
    """Per-stage progress bars (pipeline order, readable names), the full error and the job's id."""
    context = context or bpy.context
    box = layout.box()
    what, state = job_row_text(job)
    box.label(text=f"{what}: {state}", icon="INFO")
    for stage in ordered_stages(job):
        label = stage_label(stage.name)
        text = f"{label} {stage.step}/{stage.total}" if stage.total else label
        box.progress(text=text, factor=stage.fraction, type="BAR")
    if job.frames_expected:
        box.progress(text=f"Frames {job.frames_received}/{job.frames_expected}",
                     factor=min(1.0, job.frames_received / job.frames_expected), type="BAR")
    if job.error:
        error_ui.draw_error_box(box, context, error_ui.error_text(context, "job") or job.error, "job")
    row = box.row()
    row.active = False
    row.label(text=f"ID {job.job_id[:12]}")


class RECAST4D_PT_jobs(SectionPanel, bpy.types.Panel):
    bl_idname = "RECAST4D_PT_jobs"
    bl_label = "Jobs"

    def draw(self, context: bpy.types.Context) -> None:
        settings = scene_settings(context)
        layout = self.layout
        layout.operator("recast4d.submit_job", icon="PLAY")
        task = capture_task.active_task()
        if task is not None:
            layout.progress(text=task.last.what if task.last else "Capturing...", factor=task.fraction, type="BAR")
        row = layout.row()
        row.template_list("RECAST4D_UL_jobs", "", settings, "jobs", settings, "active_job_index", rows=3)
        col = row.column(align=True)
        col.operator(RECAST4D_OT_remove_job.bl_idname, text="", icon="REMOVE")
        job = active_job(context)
        if job is None:
            return
        draw_job_detail(layout, job, context)
        row = layout.row(align=True)
        row.operator("recast4d.cancel_job", icon="CANCEL")
        row.operator("recast4d.fetch_results", text="Fetch", icon="IMPORT")
        layout.operator(RECAST4D_OT_import_result.bl_idname, icon="POINTCLOUD_DATA")
        row = layout.row(align=True)
        row.operator("recast4d.setup_render", text="Set Up", icon="SCENE")
        row.operator("recast4d.render_shot", text="Render", icon="RENDER_ANIMATION")
        layout.operator("recast4d.restore_render", icon="LOOP_BACK")


def menu_import(self, context: bpy.types.Context) -> None:
    self.layout.operator(RECAST4D_OT_import_usd_file.bl_idname, text="Recast 4D Result (.usd)")


PROPERTY_CLASSES = (RECAST4D_PG_job_stage, RECAST4D_PG_job)
CLASSES = (RECAST4D_OT_import_result, RECAST4D_OT_import_usd_file, RECAST4D_OT_remove_job, RECAST4D_UL_jobs,
           RECAST4D_PT_jobs)
