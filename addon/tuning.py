"""Generation > Tune LoRA: tune a per-video LoRA on the current source (``tune`` job), then use it.

Request (see ``backend/pipelines/tune/request.py``): ``params`` = fps, per-frame source ``cameras``
(OpenCV, ``protocol.camera``), ``depth_kind`` ``"z"``, ``lora_id``, prompt and ``tune`` options
(``steps``, ``rank``, ``angles`` degrees); ``inputs`` = ``frames`` uint8 (F, H, W, 3) and, for "This
Scene" (rendered with a depth pass), ``depth`` float32 (F, H, W) metres. A Movie Clip or image sequence
sends no depth and ``depth_engine = "depth-anything"``: the backend estimates it with the same depth
stage a re-film job uses (and the source camera's motion puts it into the scene's scale).

The backend registers the finished LoRA as ``<models>/loras/<lora_id>``, where ``reshoot`` jobs find
it by id. The add-on always sends the id (typed, or ``<scene>-<job id>``) and remembers it per job;
when the job is done the id it registered (``lora_id`` of the streamed ``report.json``, else the id
sent) is put into Generation > LoRA (:func:`offer_finished_loras`, run by a timer while tune jobs are
pending and by the blocking "wait" path; the section's "Use" buttons offer it again later).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import bpy

from . import backend_info, capture, capture_task, session, source, submit
from .deps import protocol_module
from .jobs import find_job
from .panel import SectionPanel, report_errors, scene_settings

_errors = protocol_module("errors")

#: Same rule as the backend's ``backend.tune.model.LORA_ID_PATTERN`` (checked by the tests).
LORA_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: Backend ``TuneConfig`` defaults (``backend/tune/config.py``).
DEFAULT_STEPS, DEFAULT_RANK, DEFAULT_MAX_ANGLE = 2000, 128, 75.0
FIRST_ROUND_ANGLE, ROUND_ANGLE_STEP, MIN_ANGLE = 30.0, 15.0, 5.0
MIN_TUNE_FRAMES = 5
#: The depth engine the backend runs for footage sent without depth (Movie Clip, image sequence).
DEPTH_ENGINE_FOR_FOOTAGE = "depth-anything"
OFFER_INTERVAL_S = 1.0


def angle_schedule(max_angle: float) -> list[float]:
    """Self-iterative round angles in degrees ending at ``max_angle``: 30, 45, 60, ... like the backend
    default (``max_angle = 75`` gives exactly ``[30, 45, 60, 75]``); below 30 a single round."""
    if not MIN_ANGLE < max_angle <= 180.0:
        raise _errors.ValidationError(f"the maximum angle must be in ({MIN_ANGLE:g}, 180] degrees, got {max_angle:g}")
    angles = [min(FIRST_ROUND_ANGLE, max_angle)]
    while angles[-1] + ROUND_ANGLE_STEP < max_angle - 1e-6:
        angles.append(angles[-1] + ROUND_ANGLE_STEP)
    if angles[-1] < max_angle:
        angles.append(float(max_angle))
    return angles


class RECAST4D_PG_tuned_lora(bpy.types.PropertyGroup):
    """A LoRA a tune job registers: ``name`` is the LoRA id, ``job_id`` the tune job."""

    job_id: bpy.props.StringProperty(name="Job ID", description="The tune job that registers it")  # type: ignore[valid-type]
    offered: bpy.props.BoolProperty(  # type: ignore[valid-type]
        default=False, description="Already put into Generation > LoRA once the job finished")


class RECAST4D_PG_tune(bpy.types.PropertyGroup):
    """Per-scene options of the LoRA tuning job (defaults as the backend's)."""

    lora_id: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="LoRA ID", default="",
        description="Name the tuned LoRA is registered under on the backend (letters, digits, '.', '-', '_'; "
                    "blank: shot name + job id)",
    )
    steps: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Steps", default=DEFAULT_STEPS, min=1, max=100_000, description="Optimiser steps over all rounds")
    rank: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Rank", default=DEFAULT_RANK, min=1, max=1024, description="LoRA rank")
    max_angle: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Max Angle", default=DEFAULT_MAX_ANGLE, min=10.0, max=180.0, precision=0,
        description="Largest camera turn (degrees) the last self-iterative round trains on; "
                    "rounds grow 30, 45, 60, ... up to it")
    tuned_loras: bpy.props.CollectionProperty(  # type: ignore[valid-type]
        type=RECAST4D_PG_tuned_lora, description="LoRAs tune jobs of this scene register")

    def to_params(self) -> dict:
        """The ``tune`` options map (``TuneConfig`` fields)."""
        return {"steps": self.steps, "rank": self.rank, "angles": angle_schedule(self.max_angle)}


def capture_source_steps(scene: bpy.types.Scene) -> capture.Capture:
    """``(scene frames, source cameras, frames uint8 (F,H,W,3), depth float32 (F,H,W) or None)`` of the
    configured source, captured as for a re-film job: one step per frame (``submit.source_capture``),
    so a modal operator runs it a frame at a time (``capture.run_capture`` runs it to the end)."""
    src = scene.recast4d.source
    frames = source.source_frames(scene, src)
    source_cameras = source.export_source_cameras(scene, src)
    width, height = source_cameras[0].width, source_cameras[0].height
    rgb, depth = yield from submit.source_capture(scene, frames)
    if rgb.shape[1:3] != (height, width):
        raise _errors.ValidationError(
            f"the source frames are {rgb.shape[2]}x{rgb.shape[1]} but the scene renders {width}x{height}; "
            "press 'Match Scene to Source' in the Source section")
    return frames, source_cameras, rgb, depth


def _default_lora_id(scene: bpy.types.Scene, job_id: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", scene.name).strip("._-") or "shot"
    return f"{base[:80]}-{job_id[:8]}"


def build_tune_request(context: bpy.types.Context) -> submit.JobRequest:
    """Collect the source frames, depth and cameras and the tune options into a ``tune`` job (blocking)."""
    return capture.run_capture(tune_request_steps(context.scene))


def tune_request_steps(scene: bpy.types.Scene) -> capture.Capture:
    """:func:`build_tune_request` as steps: the source capture yields one step per frame, then the
    request is returned (the Tune LoRA button runs it a frame at a time, Esc cancels)."""
    settings = scene.recast4d
    tune = settings.tune
    lora_id = tune.lora_id.strip()
    if lora_id and not LORA_ID_PATTERN.match(lora_id):
        raise _errors.ValidationError(f"LoRA id {lora_id!r} must be 1-100 letters, digits, '.', '-' or '_', "
                                      "starting with a letter or digit")
    options = tune.to_params()
    count = len(source.source_frames(scene, settings.source))
    if count < MIN_TUNE_FRAMES:  # checked before the (slow) capture
        raise _errors.ValidationError(f"tuning needs a shot of at least {MIN_TUNE_FRAMES} frames, this one has {count}")
    frames, source_cameras, rgb, depth = yield from capture_source_steps(scene)
    if depth is None and settings.source.kind == "SCENE":
        raise _errors.ValidationError("the scene render gave no depth maps; enable the Z pass and try again")
    job_id = uuid.uuid4().hex
    params = {
        "fps": scene.render.fps / scene.render.fps_base,
        "cameras": [c.to_dict() for c in source_cameras],
        "depth_kind": "z",
        "lora_id": lora_id or _default_lora_id(scene, job_id),
        "prompt": settings.generation.prompt,
        "tune": options,
    }
    inputs = {"frames": rgb}
    if depth is not None:
        inputs["depth"] = depth
    else:  # Movie Clip / image sequence: the backend estimates depth, as for a re-film job
        params["depth_engine"] = DEPTH_ENGINE_FOR_FOOTAGE
    return submit.JobRequest(job_id, "tune", params, inputs)


def submit_and_wait(operator: bpy.types.Operator, context: bpy.types.Context,
                    build: Callable[[bpy.types.Context], submit.JobRequest],
                    after_submit: Callable[[bpy.types.Context, submit.JobRequest, object], None] | None = None,
                    ) -> set[str]:
    """Build a request with ``build(context)``, submit it (``after_submit(context, request, job)`` then
    adjusts the new job entry), and with ``operator.wait_until_done`` block until it ends (for
    ``blender -b`` scripts, reading ``operator.timeout_s``); errors become operator reports."""
    wm = context.window_manager
    wm.progress_begin(0, 1)
    try:
        request = build(context)
        job = submit.submit_request(context, request)
        if after_submit is not None:
            after_submit(context, request, job)
    except _errors.Recast4DError as exc:
        operator.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    finally:
        wm.progress_end()
    if request.kind == "tune":
        remember_tune_job(context.scene, request)
    operator.report({"INFO"}, f"Submitted {request.kind} job {request.job_id[:8]}")
    if not operator.wait_until_done:
        return {"FINISHED"}
    job_id = request.job_id
    done = session.drain_blocking(lambda: submit.job_finished(job_id), timeout_s=operator.timeout_s)
    offer_finished_loras(context.scene)
    job = find_job(context.scene, job_id)
    if not done:
        operator.report({"ERROR"}, f"job {job_id[:8]} not finished after {operator.timeout_s:.0f} s")
        return {"CANCELLED"}
    if job is not None and job.state != "DONE":
        operator.report({"ERROR"}, f"job {job_id[:8]} {job.state.lower()}: {job.error}")
        return {"CANCELLED"}
    return {"FINISHED"}


def remember_tune_job(scene: bpy.types.Scene, request: submit.JobRequest) -> None:
    """Keep the LoRA id a submitted tune job registers, and start the timer that offers it when done."""
    entry = scene.recast4d.tune.tuned_loras.add()
    entry.name, entry.job_id = request.params["lora_id"], request.job_id
    _start_timer()


def _start_timer() -> None:
    if not bpy.app.timers.is_registered(_offer_tick):
        bpy.app.timers.register(_offer_tick, first_interval=OFFER_INTERVAL_S, persistent=True)


def ensure_offer_timer(scene: bpy.types.Scene) -> None:
    """Start the offer timer if ``scene`` has pending tune jobs (e.g. after reopening a .blend)."""
    if not bpy.app.timers.is_registered(_offer_tick) and _pending(scene):
        _start_timer()


def registered_lora_id(job, sent_id: str) -> str:
    """The id a finished tune job registered: ``lora_id`` of its ``report.json`` (streamed with the
    results) when that file is there, else ``sent_id``, the id the request named."""
    if job.result_dir:
        report = Path(bpy.path.abspath(job.result_dir)) / "report.json"
        try:
            lora_id = json.loads(report.read_text()).get("lora_id") if report.is_file() else None
        except (OSError, ValueError, AttributeError):
            lora_id = None
        if isinstance(lora_id, str) and LORA_ID_PATTERN.match(lora_id):
            return lora_id
    return sent_id


def offer_finished_loras(scene: bpy.types.Scene) -> list[str]:
    """Put the LoRA of each newly finished tune job into Generation > LoRA; returns the ids offered."""
    offered = []
    for entry in scene.recast4d.tune.tuned_loras:
        if entry.offered or not _finished(scene, entry):
            continue
        entry.name = registered_lora_id(find_job(scene, entry.job_id), entry.name)
        scene.recast4d.generation.lora_path = entry.name
        entry.offered = True
        offered.append(entry.name)
    return offered


def _finished(scene: bpy.types.Scene, entry: RECAST4D_PG_tuned_lora) -> bool:
    job = find_job(scene, entry.job_id)
    return job is not None and job.state == "DONE"


def _pending(scene: bpy.types.Scene) -> bool:
    settings = getattr(scene, "recast4d", None)
    if settings is None:
        return False
    for entry in settings.tune.tuned_loras:
        job = find_job(scene, entry.job_id)
        if not entry.offered and job is not None and job.state not in ("FAILED", "CANCELLED"):
            return True
    return False


def _offer_tick() -> float | None:
    """Timer: offer finished LoRAs; stops once no tune job is pending in any scene."""
    try:
        for scene in bpy.data.scenes:
            if getattr(scene, "recast4d", None) is not None:
                offer_finished_loras(scene)
        return OFFER_INTERVAL_S if any(_pending(scene) for scene in bpy.data.scenes) else None
    except (AttributeError, ReferenceError):  # the add-on was unregistered meanwhile
        return None


def stop_timer() -> None:
    """For ``unregister()``: drop the offer timer."""
    if bpy.app.timers.is_registered(_offer_tick):
        bpy.app.timers.unregister(_offer_tick)


def tune_problem(context: bpy.types.Context) -> str | None:
    """Why a tune job cannot be started now, in words, or ``None``."""
    problem = session.connection_problem() or backend_info.tune_engine_problem()
    if problem:
        return problem
    settings = scene_settings(context)
    problem = source.source_problem(context.scene, settings.source)
    if problem:
        return problem
    if settings.source.kind in ("CLIP", "IMAGES"):  # no depth is sent: the backend estimates it
        problem = backend_info.engine_problem("depth", DEPTH_ENGINE_FOR_FOOTAGE)
        if problem:
            return problem
    try:
        count = len(source.source_frames(context.scene, settings.source))
    except _errors.Recast4DError as exc:
        return str(exc)
    if count < MIN_TUNE_FRAMES:
        return f"Tuning needs at least {MIN_TUNE_FRAMES} frames (the shot has {count})"
    lora_id = settings.tune.lora_id.strip()
    if lora_id and not LORA_ID_PATTERN.match(lora_id):
        return "The LoRA ID must start with a letter or digit; then letters, digits, '.', '-', '_' (<= 100)"
    return None


class RECAST4D_OT_tune_lora(capture_task.ModalCapture, bpy.types.Operator):
    """Capture the shot (a frame at a time, Esc cancels), then tune a LoRA for it on the backend (a long
    GPU job); its id goes into the LoRA field when done"""

    bl_idname = "recast4d.tune_lora"
    bl_label = "Tune LoRA"

    wait_until_done: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Wait Until Done", default=False, options={"SKIP_SAVE"},
        description="Block until the job ends (for 'blender -b' scripts, where timers never run)")
    timeout_s: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Timeout", default=86400.0, min=1.0, options={"SKIP_SAVE"},
        description="Wait Until Done: seconds to wait before giving up (the job keeps running on the backend)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        problem = tune_problem(context)
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    cancel_message = "Tune LoRA cancelled while capturing the source; nothing was sent"

    def start_capture(self, scene: bpy.types.Scene) -> capture_task.CaptureTask:
        return capture_task.start(tune_request_steps(scene), "Tune LoRA: capturing the source")

    def finish_capture(self, context: bpy.types.Context, task: capture_task.CaptureTask) -> set[str]:
        return submit_captured(self, context, task)

    def execute(self, context: bpy.types.Context) -> set[str]:
        return submit_and_wait(self, context, build_tune_request)


def submit_captured(operator: bpy.types.Operator, context: bpy.types.Context, task: capture_task.CaptureTask,
                    after_submit: Callable[[bpy.types.Context, submit.JobRequest, object], None] | None = None,
                    ) -> set[str]:
    """Submit the request a finished modal capture built (``ModalCapture.finish_capture``), as
    :func:`submit_and_wait` does; a cancelled or failed capture becomes one report."""
    capture_task.stop(task)
    if task.cancelled:
        operator.report({"WARNING"}, "The capture was cancelled; nothing was sent")
        return {"CANCELLED"}
    if task.error:
        operator.report({"ERROR"}, task.error)
        return {"CANCELLED"}
    return submit_and_wait(operator, context, lambda _context: task.result, after_submit)


class RECAST4D_OT_use_tuned_lora(bpy.types.Operator):
    """Use this tuned LoRA in Generation > LoRA"""

    bl_idname = "recast4d.use_tuned_lora"
    bl_label = "Use LoRA"
    bl_options = {"REGISTER", "UNDO"}

    lora_id: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="LoRA ID", options={"SKIP_SAVE"}, description="The tuned LoRA to put into Generation > LoRA")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not any(_finished(context.scene, e) for e in scene_settings(context).tune.tuned_loras):
            cls.poll_message_set("No tune job has finished yet")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        def run() -> str:
            entry = scene_settings(context).tune.tuned_loras.get(self.lora_id)
            if entry is None or not _finished(context.scene, entry):
                raise _errors.ValidationError(f"no finished tune job registered a LoRA {self.lora_id!r}")
            scene_settings(context).generation.lora_path = entry.name
            return f"Generation LoRA: {entry.name}"
        return report_errors(self, run)


class RECAST4D_PT_tune(SectionPanel, bpy.types.Panel):
    """Generation > Tune LoRA."""

    bl_idname = "RECAST4D_PT_tune"
    bl_label = "Tune LoRA"
    bl_parent_id = "RECAST4D_PT_generation"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        settings = scene_settings(context)
        tune = settings.tune
        layout = self.layout
        layout.use_property_split = True
        layout.prop(tune, "lora_id")
        col = layout.column(align=True)
        col.prop(tune, "steps")
        col.prop(tune, "rank")
        col.prop(tune, "max_angle")
        layout.operator(RECAST4D_OT_tune_lora.bl_idname, icon="MOD_NOISE")
        ensure_offer_timer(context.scene)  # a reopened .blend's running tune jobs are watched again
        for entry in reversed(tune.tuned_loras):
            job = find_job(context.scene, entry.job_id)
            row = layout.row()
            state = job.state.lower() if job is not None else "removed"
            row.label(text=f"{entry.name} ({state})", icon="CHECKMARK" if state == "done" else "TIME")
            sub = row.row()
            sub.enabled = state == "done" and settings.generation.lora_path != entry.name
            sub.operator(RECAST4D_OT_use_tuned_lora.bl_idname, text="Use").lora_id = entry.name


PROPERTY_CLASSES = (RECAST4D_PG_tuned_lora, RECAST4D_PG_tune)
CLASSES = (RECAST4D_OT_tune_lora, RECAST4D_OT_use_tuned_lora, RECAST4D_PT_tune)
