"""Submit, cancel and re-fetch jobs: build the ``reshoot`` request from the scene and send it.

Request (see ``backend/pipelines/request.py``): ``params`` = fps, per-frame source ``cameras``,
``depth_kind``, ``trajectories`` (one per enabled target camera: its per-frame cameras and, for
bullet-time paths, the source frame each output frame shows), prompt, engine and Gaussian options;
``inputs`` = ``frames`` uint8 (F, H, W, 3), ``depth`` float32 (F, H, W) when the source is this
scene, optional ``edit_frame`` / ``edit_masks``. Cameras are OpenCV (``protocol.camera``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import bpy
import numpy as np

from . import (
    backend_info,
    cameras,
    capture,
    capture_task,
    job_ledger,
    outputs,
    results_stream,
    session,
    source,
    targets,
)
from .deps import protocol_module
from .jobs import FINAL_STATES, active_job, find_job, poll_selected_job
from .panel import report_errors, scene_settings

_errors = protocol_module("errors")
_paths = protocol_module("paths")


@dataclass
class JobRequest:
    """A job ready to send: id, kind, params (plain data), input arrays, target camera names."""

    job_id: str
    kind: str
    params: dict
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    target_names: list[str] = field(default_factory=list)
    trajectory_names: list[str] = field(default_factory=list)


def _trajectory_name(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "camera"
    candidate, i = base, 1
    while candidate in used:
        i += 1
        candidate = f"{base}_{i}"
    used.add(candidate)
    return candidate


def _time_map(obj: bpy.types.Object, count: int) -> list[int] | None:
    spec_text = obj.get("recast4d_path_spec")
    if not spec_text:
        return None
    spec = _paths.parse_path_spec(str(spec_text))
    return None if spec.freeze_frame is None else [int(i) for i in _paths.source_frame_map(spec, count, count)]


def _image_mask(image: bpy.types.Image, count: int, shape: tuple[int, int]) -> np.ndarray:
    pixels = capture.image_pixels(image)
    if pixels.shape[:2] != shape:
        raise _errors.ValidationError(f"edit mask {image.name!r} is {pixels.shape[1]}x{pixels.shape[0]}, "
                                      f"the source is {shape[1]}x{shape[0]}")
    mask = pixels[..., :3].mean(axis=-1) > 0.5
    return np.repeat(mask[None], count, axis=0).astype(np.uint8)


def source_capture(scene: bpy.types.Scene, frames: list[int]) -> capture.Capture:
    """The configured source's capture as steps (one per frame); returns ``(frames uint8 (F,H,W,3),
    depth float32 (F,H,W) or None)``."""
    src = scene.recast4d.source
    if src.kind == "SCENE":
        return (yield from capture.iter_render_scene_source(scene, source.pin_source_camera(scene, src), frames))
    if src.kind == "IMAGES":
        if src.image is None:
            raise _errors.ValidationError("pick an image sequence as the source")
        return (yield from capture.iter_image_sequence_frames(src.image, len(frames))), None
    if src.clip is None:
        raise _errors.ValidationError("pick a Movie Clip as the source")
    # scene frame f shows clip frame f - clip.frame_start (the Movie Clip editor's mapping)
    first = frames[0] - src.clip.frame_start
    if first < 0:
        raise _errors.ValidationError(
            f"the shot starts at frame {frames[0]} but clip {src.clip.name!r} starts at frame {src.clip.frame_start}")
    return (yield from capture.iter_movie_clip_frames(scene, src.clip, len(frames), first)), None


def source_arrays(context: bpy.types.Context, frames: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """``(frames uint8 (F,H,W,3), depth float32 (F,H,W) or None)`` for the configured source (blocking)."""
    return capture.run_capture(source_capture(context.scene, frames))


def build_reshoot_request(context: bpy.types.Context) -> JobRequest:
    """Collect source frames, cameras, targets and generation settings into a ``reshoot`` job (blocking)."""
    return capture.run_capture(reshoot_request_steps(context.scene))


def reshoot_request_steps(scene: bpy.types.Scene) -> capture.Capture:
    """:func:`build_reshoot_request` as steps: the source capture yields one step per frame, then
    the request is returned. Takes the scene, not a context (a modal operator runs it over many events)."""
    settings = scene.recast4d
    src = settings.source
    frames = source.source_frames(scene, src)
    target_objects = targets.enabled_target_cameras(settings)
    if not target_objects:
        raise _errors.ValidationError("add at least one target camera (Targets > Add Camera Path)")
    source_cameras = source.export_source_cameras(scene, src)
    width, height = source_cameras[0].width, source_cameras[0].height
    rgb, depth = yield from source_capture(scene, frames)
    if rgb.shape[1:3] != (height, width):
        raise _errors.ValidationError(
            f"the source frames are {rgb.shape[2]}x{rgb.shape[1]} but the scene renders {width}x{height}; "
            "press 'Match Scene to Source' in the Source section")
    used: set[str] = set()
    trajectories = []
    for obj in target_objects:
        trajectory = {"name": _trajectory_name(obj.name, used),
                      "cameras": [c.to_dict() for c in cameras.cameras_from_blender(scene, obj, frames)]}
        time_map = _time_map(obj, len(frames))
        if time_map is not None:
            trajectory["time_map"] = time_map
        trajectories.append(trajectory)
    generation = settings.generation
    gen = generation.to_params()
    params = {
        "fps": scene.render.fps / scene.render.fps_base,
        "cameras": [c.to_dict() for c in source_cameras],
        "depth_kind": "z",
        "trajectories": trajectories,
        "prompt": gen["prompt"],
        "engine": {
            "inpaint": gen["engine"], "depth": "given" if depth is not None else "depth-anything",
            "lora": gen["lora_path"] or None, "lora_weight": gen["lora_weight"], "steps": gen["steps"],
            "guidance": gen["guidance"], "seed": gen["seed"], "temporal_packing": gen["temporal_packing"],
            "fast": gen["fast"] and gen["engine"] != "classical",
        },
        "gaussians": {"enabled": gen["fit_gaussians"]},
        "outputs": outputs.reshoot_outputs(scene),
        "start_frame": frames[0],
    }
    inputs: dict[str, np.ndarray] = {"frames": rgb}
    if depth is not None:
        inputs["depth"] = depth
    if generation.edited_first_frame is not None:
        edit = capture.to_uint8_rgb(capture.image_pixels(generation.edited_first_frame))
        if edit.shape != rgb.shape[1:]:
            raise _errors.ValidationError(f"the edited first frame must be {width}x{height} like the source")
        inputs["edit_frame"] = edit
        if generation.edit_mask is not None:
            inputs["edit_masks"] = _image_mask(generation.edit_mask, len(frames), (height, width))
    return JobRequest(uuid.uuid4().hex, "reshoot", params, inputs, [o.name for o in target_objects],
                      [t["name"] for t in trajectories])


def submit_request(context: bpy.types.Context, request: JobRequest, scene: bpy.types.Scene | None = None):
    """Send ``request`` through the session's client and add it to the scene's job list (and to the
    undo-proof ledger, :mod:`.job_ledger`)."""
    client = session.current_client()
    if client is None:
        raise _errors.Recast4DError("not connected to a backend", code="not_connected")
    scene = scene or context.scene
    settings = scene.recast4d
    job = settings.jobs.add()
    job.name = f"{request.kind} {datetime.now():%H:%M:%S}"
    job.job_id, job.kind, job.state = request.job_id, request.kind, "UPLOADING"
    job.frame_start = int(request.params.get("start_frame", 0))
    job.target_cameras = ",".join(request.target_names)
    job.trajectories = ",".join(request.trajectory_names)
    settings.active_job_index = len(settings.jobs) - 1
    client.submit(request.job_id, request.kind, request.params, request.inputs)
    job_ledger.record_job(scene, job)
    return job


def submit_problem(context: bpy.types.Context) -> str | None:
    """Why *Re-film Shot* cannot run now, in words (its poll message), or ``None``."""
    problem = session.connection_problem()
    if problem:
        return problem
    if capture_task.active_task() is not None:
        return "A source capture is running (Esc cancels it)"
    settings = scene_settings(context)
    problem = source.source_problem(context.scene, settings.source)
    if problem:
        return problem
    if not targets.enabled_target_cameras(settings):
        return "Add at least one target camera (Targets > Add Camera Path)"
    return backend_info.reshoot_engine_problem(settings.generation.engine)


class RECAST4D_OT_submit_job(capture_task.ModalCapture, bpy.types.Operator):
    """Capture the shot (a frame at a time, Esc cancels), then send it, its cameras and the target paths to
    the backend"""

    bl_idname = "recast4d.submit_job"
    bl_label = "Re-film Shot"
    bl_options = {"REGISTER", "UNDO"}

    wait_until_done: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Wait Until Done", default=False, options={"SKIP_SAVE"},
        description="Block until the job ends and its results arrived (for 'blender -b' scripts, where "
                    "timers never run)",
    )
    timeout_s: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Timeout", default=3600.0, min=1.0, options={"SKIP_SAVE"},
        description="Wait Until Done: seconds to wait before giving up (the job keeps running on the backend)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return backend_info.poll_with(cls, submit_problem(context))

    cancel_message = "Re-film cancelled while capturing the source; nothing was sent"

    def start_capture(self, scene: bpy.types.Scene) -> capture_task.CaptureTask:
        return start_reshoot_capture(scene)

    def finish_capture(self, context: bpy.types.Context, task: capture_task.CaptureTask) -> set[str]:
        try:
            request = finish_reshoot_capture(context, task)
        except _errors.Recast4DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Submitted job {request.job_id[:8]}")
        return {"FINISHED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            task = self.start_capture(context.scene)
        except _errors.Recast4DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        try:
            task.run_to_end()
        finally:
            capture_task.stop(task)
        outcome = self.finish_capture(context, task)
        if "FINISHED" not in outcome or not self.wait_until_done:
            return outcome
        job_id = task.result.job_id
        done = session.drain_blocking(lambda: job_finished(job_id), timeout_s=self.timeout_s)
        job = find_job(context.scene, job_id)
        if job is None:
            return {"FINISHED"}
        if not done:
            self.report({"ERROR"}, f"job {job_id[:8]} still {job.state.lower()} after {self.timeout_s:.0f} s")
            return {"CANCELLED"}
        if job.state != "DONE":
            self.report({"ERROR"}, f"job {job_id[:8]} {job.state.lower()}: {job.error}")
            return {"CANCELLED"}
        return {"FINISHED"}


def start_reshoot_capture(scene: bpy.types.Scene) -> capture_task.CaptureTask:
    """Start capturing the source for a re-film job (a :class:`~.capture_task.CaptureTask`; advance it
    step by step, or ``run_to_end``), then hand it to :func:`finish_reshoot_capture`."""
    return capture_task.start(reshoot_request_steps(scene), "Re-film: capturing the source")


def finish_reshoot_capture(context: bpy.types.Context, task: capture_task.CaptureTask) -> JobRequest:
    """Submit a finished capture's request (raises its error as one ``Recast4DError``)."""
    capture_task.stop(task)
    if task.cancelled:
        raise _errors.Cancelled("the capture was cancelled; nothing was sent")
    if task.error:
        raise _errors.Recast4DError(task.error, code="capture_failed")
    request = task.result
    submit_request(context, request)
    return request


def job_finished(job_id: str) -> bool:
    """The job reached a final state and every received chunk was applied."""
    _, job = results_stream.find_job_anywhere(job_id)
    if job is None:
        return True  # the job entry is gone (file closed): nothing left to wait for
    return job.state in FINAL_STATES and not session.state().pending_chunks


def cancel_job(job) -> str:
    """Ask the backend to stop ``job``. Not connected: the cancel is sent as soon as the add-on
    connects again (the job shows *Cancelling* until the backend confirms). Returns a report line."""
    client = session.current_client()
    job.state = "CANCELLING"
    if client is None or not session.state().status.get("connected"):
        session.queue_cancel(job.job_id)
        return f"Job {job.name or job.job_id[:8]}: the cancel is sent when the backend is reachable again"
    client.cancel(job.job_id)
    return f"Cancelling job {job.name or job.job_id[:8]}"


class RECAST4D_OT_cancel_job(bpy.types.Operator):
    """Ask the backend to stop the selected job (while disconnected: as soon as it is reachable again)"""

    bl_idname = "recast4d.cancel_job"
    bl_label = "Cancel"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = active_job(context)
        if job is None or not job.is_active:
            cls.poll_message_set("The selected job is not running")
            return False
        if job.state == "CANCELLING":
            cls.poll_message_set("Already cancelling; waiting for the backend to confirm")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        job = active_job(context)
        self.report({"INFO"}, cancel_job(job))
        job_ledger.record_job(context.scene, job)
        return {"FINISHED"}


def fetch_results(job) -> list[str]:
    """Ask the backend to stream all of ``job``'s known result streams again (after a restart)."""
    client = session.current_client()
    if client is None:
        raise _errors.Recast4DError("not connected to a backend", code="not_connected")
    streams = [name for name in job.streams.split(",") if name]
    if not streams:
        raise _errors.ValidationError(f"job {job.name!r} has announced no result streams yet")
    job.frames_received = 0
    for stream in streams:
        client.resend(job.job_id, stream, 0)
    return streams


class RECAST4D_OT_fetch_results(bpy.types.Operator):
    """Download the selected job's results again (e.g. after reopening Blender)"""

    bl_idname = "recast4d.fetch_results"
    bl_label = "Fetch Results"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = poll_selected_job(cls, context)
        if job is None:
            return False
        problem = session.connection_problem()
        if problem:
            cls.poll_message_set(problem)
            return False
        if not job.streams:
            cls.poll_message_set("This job has no results on the backend yet")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        return report_errors(self, lambda: f"Fetching {', '.join(fetch_results(active_job(context)))}")


PROPERTY_CLASSES = ()
CLASSES = (RECAST4D_OT_submit_job, RECAST4D_OT_cancel_job, RECAST4D_OT_fetch_results)
