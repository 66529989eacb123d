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

from . import cameras, capture, outputs, results_stream, session, source, targets
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


def source_arrays(context: bpy.types.Context, frames: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """``(frames uint8 (F,H,W,3), depth float32 (F,H,W) or None)`` for the configured source."""
    scene = context.scene
    src = scene_settings(context).source
    if src.kind == "SCENE":
        return capture.render_scene_source(scene, source.source_camera_object(scene, src), frames)
    if src.kind == "IMAGES":
        if src.image is None:
            raise _errors.ValidationError("pick an image sequence as the source")
        return capture.image_sequence_frames(src.image, len(frames)), None
    if src.clip is None:
        raise _errors.ValidationError("pick a Movie Clip as the source")
    # scene frame f shows clip frame f - clip.frame_start (the Movie Clip editor's mapping)
    first = frames[0] - src.clip.frame_start
    if first < 0:
        raise _errors.ValidationError(
            f"the shot starts at frame {frames[0]} but clip {src.clip.name!r} starts at frame {src.clip.frame_start}")
    return capture.movie_clip_frames(scene, src.clip, len(frames), first), None


def build_reshoot_request(context: bpy.types.Context) -> JobRequest:
    """Collect source frames, cameras, targets and generation settings into a ``reshoot`` job."""
    scene = context.scene
    settings = scene_settings(context)
    src = settings.source
    frames = source.source_frames(scene, src)
    target_objects = targets.enabled_target_cameras(settings)
    if not target_objects:
        raise _errors.ValidationError("add at least one target camera (Targets > Add Camera Path)")
    source_cameras = source.export_source_cameras(scene, src)
    width, height = source_cameras[0].width, source_cameras[0].height
    rgb, depth = source_arrays(context, frames)
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
        "outputs": outputs.reshoot_outputs(context),
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


def submit_request(context: bpy.types.Context, request: JobRequest):
    """Send ``request`` through the session's client and add it to the scene's job list."""
    client = session.current_client()
    if client is None:
        raise _errors.Recast4DError("not connected to a backend", code="not_connected")
    settings = scene_settings(context)
    job = settings.jobs.add()
    job.name = f"{request.kind} {datetime.now():%H:%M:%S}"
    job.job_id, job.kind, job.state = request.job_id, request.kind, "UPLOADING"
    job.frame_start = int(request.params.get("start_frame", 0))
    job.target_cameras = ",".join(request.target_names)
    job.trajectories = ",".join(request.trajectory_names)
    settings.active_job_index = len(settings.jobs) - 1
    client.submit(request.job_id, request.kind, request.params, request.inputs)
    return job


class RECAST4D_OT_submit_job(bpy.types.Operator):
    """Send the shot, its cameras and the target paths to the backend"""

    bl_idname = "recast4d.submit_job"
    bl_label = "Re-film Shot"

    wait_until_done: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Wait Until Done", default=False, options={"SKIP_SAVE"},
        description="Block until the job ends and its results arrived (for 'blender -b' scripts, where "
                    "timers never run)",
    )
    timeout_s: bpy.props.FloatProperty(name="Timeout", default=3600.0, min=1.0, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if session.current_client() is None:
            cls.poll_message_set("Connect to the backend first (Backend section)")
            return False
        settings = scene_settings(context)
        problem = source.source_problem(context.scene, settings.source)
        if problem:
            cls.poll_message_set(problem)
            return False
        if not targets.enabled_target_cameras(settings):
            cls.poll_message_set("Add at least one target camera")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        wm = context.window_manager
        wm.progress_begin(0, 1)
        try:
            request = build_reshoot_request(context)
            job = submit_request(context, request)
        except _errors.Recast4DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            wm.progress_end()
        self.report({"INFO"}, f"Submitted job {request.job_id[:8]}")
        if self.wait_until_done:
            job_id = request.job_id
            done = session.drain_blocking(lambda: job_finished(job_id), timeout_s=self.timeout_s)
            job = find_job(context.scene, job_id) or job
            if not done:
                self.report({"ERROR"}, f"job {job_id[:8]} still {job.state.lower()} after {self.timeout_s:.0f} s")
                return {"CANCELLED"}
            if job.state != "DONE":
                self.report({"ERROR"}, f"job {job_id[:8]} {job.state.lower()}: {job.error}")
                return {"CANCELLED"}
        return {"FINISHED"}


def job_finished(job_id: str) -> bool:
    """The job reached a final state and every received chunk was applied."""
    _, job = results_stream.find_job_anywhere(job_id)
    if job is None:
        return True  # the job entry is gone (file closed): nothing left to wait for
    return job.state in FINAL_STATES and not session.state().pending_chunks


class RECAST4D_OT_cancel_job(bpy.types.Operator):
    """Ask the backend to stop the selected job"""

    bl_idname = "recast4d.cancel_job"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = active_job(context)
        if job is None or not job.is_active:
            cls.poll_message_set("The selected job is not running")
            return False
        if session.current_client() is None:
            cls.poll_message_set("Not connected to the backend")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        job = active_job(context)
        session.current_client().cancel(job.job_id)
        job.state = "CANCELLING"
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

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        job = poll_selected_job(cls, context)
        if job is None:
            return False
        if session.current_client() is None:
            cls.poll_message_set("Connect to the backend first")
            return False
        if not job.streams:
            cls.poll_message_set("This job has no results on the backend yet")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        return report_errors(self, lambda: f"Fetching {', '.join(fetch_results(active_job(context)))}")


PROPERTY_CLASSES = ()
CLASSES = (RECAST4D_OT_submit_job, RECAST4D_OT_cancel_job, RECAST4D_OT_fetch_results)
