"""From Text or Image: a ``generate`` job (CoCo4D) whose 4D scene imports like any other result.

Request (see ``backend/pipelines/generate/request.py``): ``params`` = ``prompt``, the generated
reference video's ``num_frames`` / ``width`` / ``height`` / ``fps`` and ``video`` options (Wan2.1 T2V,
or I2V when an image is given), ``engine`` (fill engine, sampler, seed, LoRA: the Generation
section's), ``outpaint`` (camera ``rings``: loops of ``[elevation, azimuth]`` degrees, ``strength``,
``fit_iterations``), ``gaussians`` and ``outputs``. ``inputs`` = ``image`` uint8 (H, W, 3) from a
Blender Image, or, with "From Source", the current source as the reference video:
``frames`` uint8 (F, H, W, 3), ``depth`` float32 (F, H, W) metres (planar z, "This Scene" only) and
per-frame source ``cameras`` (OpenCV, ``protocol.camera``), optionally ``foreground`` uint8 (F, H, W)
masks rendered from a collection; then no video is generated.
"""

from __future__ import annotations

import json
import uuid

import bpy
import numpy as np

from . import backend_info, capture, capture_task, error_ui, outputs, session, source, submit, tuning
from .deps import protocol_module
from .panel import SectionPanel, report_errors, scene_settings

_errors = protocol_module("errors")

#: The paper's rings (``backend/generate/rings.py`` ``DEFAULT_RINGS``), elevation/azimuth degrees.
PAPER_RINGS = [[[0.0, 30.0], [0.0, -30.0], [15.0, 0.0], [-15.0, 0.0]],
               [[15.0, 30.0], [15.0, -30.0], [-15.0, 30.0], [-15.0, -30.0]]]
RING_ITEMS = [
    ("PAPER", "Two Loops (8 views)", "Loop 1: (0, +-30), (+-15, 0); loop 2: (+-15, +-30) degrees, as in the paper"),
    ("FIRST", "One Loop (4 views)", "Only the first loop: faster, for small camera moves"),
    ("CUSTOM", "Custom", "Loops typed as JSON: [[[elevation, azimuth], ...], ...] in degrees"),
]
MAX_RING_ANGLE_DEG = 89.0


def _size_property(name: str, default: int, description: str):
    return bpy.props.IntProperty(name=name, default=default, min=16, max=1280, step=16, subtype="PIXEL",
                                 description=description)


class RECAST4D_PG_text_to_4d(bpy.types.PropertyGroup):
    """Per-scene settings of the "From Text or Image" section."""

    prompt: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Prompt", default="", description="What to generate (<= 4 KiB); needed unless the source is the reference")
    image: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Image", type=bpy.types.Image,
        description="Optional first frame: the video is generated from image + prompt (Wan2.1 I2V)")
    use_source: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="From Source", default=False,
        description="Use the current source (Source section) as the reference video instead of generating one; "
                    "'This Scene' also sends its depth")
    num_frames: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Frames", default=81, min=5, max=161, description="Frames of the generated video (rounded to 4k + 1)")
    width: _size_property("Width", 832, "Width of the generated video (rounded down to a multiple of 16)")  # type: ignore[valid-type]
    height: _size_property("Height", 480, "Height of the generated video (rounded down to a multiple of 16)")  # type: ignore[valid-type]
    fps: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="FPS", default=16.0, min=1.0, max=120.0,
        description="Frame rate of the generated video (Wan2.1 makes 16 fps motion); a source reference "
                    "uses the scene's")
    video_steps: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Steps", default=30, min=1, max=200, description="Sampling steps of the video model")
    rings: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Rings", items=RING_ITEMS, default="PAPER", description="Camera rings the background is outpainted over")
    custom_rings: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Custom Rings", default="[[[0, 30], [0, -30]]]",
        description="Loops of [elevation, azimuth] views in degrees (JSON), outpainted loop by loop")
    strength: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Strength", default=0.7, min=0.0, max=1.0,
        description="How strongly the video engine re-paints each pasted ring view (0: keep the paste)")
    fit_iterations: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Iterations", default=-1, min=-1, max=10_000,
        description="Background Gaussian optimisation steps after each ring view; -1: the backend device's "
                    "default (50 on a GPU, 3 on a CPU, so a CPU backend finishes in minutes)")
    foreground: bpy.props.PointerProperty(  # type: ignore[valid-type]
        name="Subject", type=bpy.types.Collection,
        description="Foreground: with 'This Scene' as the reference, the objects of this collection are the moving "
                    "foreground (rendered masks); blank: the backend splits by motion")
    foreground_gaussians: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Fit Subject", default=True,
        description="Fit the moving foreground (the subject) as per-frame Gaussians")

    def ring_loops(self) -> list[list[list[float]]]:
        """The chosen rings as ``[[[elevation, azimuth], ...], ...]`` degrees (``ValidationError`` if unusable)."""
        if self.rings == "PAPER":
            return [list(map(list, loop)) for loop in PAPER_RINGS]
        if self.rings == "FIRST":
            return [list(map(list, PAPER_RINGS[0]))]
        try:
            loops = json.loads(self.custom_rings)
            parsed = [[[float(e), float(a)] for e, a in loop] for loop in loops]
        except (ValueError, TypeError) as exc:
            raise _errors.ValidationError(
                "custom rings must be JSON like [[[0, 30], [0, -30]], [[15, 30]]]: loops of [elevation, azimuth] "
                f"degrees ({exc})") from exc
        if not parsed or not all(parsed) or any(max(abs(e), abs(a)) > MAX_RING_ANGLE_DEG for loop in parsed
                                                for e, a in loop):
            raise _errors.ValidationError(f"custom rings need at least one non-empty loop, angles within "
                                          f"+-{MAX_RING_ANGLE_DEG:g} degrees")
        return parsed


def build_generate_request(context: bpy.types.Context) -> submit.JobRequest:
    """Collect the prompt, optional image or source reference and the options into a ``generate`` job
    (blocking: :func:`generate_request_steps`)."""
    return capture.run_capture(generate_request_steps(context.scene))


def generate_request_steps(scene: bpy.types.Scene) -> capture.Capture:
    """:func:`build_generate_request` as steps (one per rendered or read frame of the source and of the
    foreground masks), so Generate 4D Scene runs it a frame at a time (Esc cancels)."""
    settings = scene.recast4d
    t2 = settings.text_to_4d
    gen = settings.generation.to_params()
    prompt = t2.prompt.strip()
    params: dict = {
        "prompt": prompt,
        "fps": scene.render.fps / scene.render.fps_base,
        "engine": {"inpaint": gen["engine"], "lora": gen["lora_path"] or None, "lora_weight": gen["lora_weight"],
                   "steps": gen["steps"], "guidance": gen["guidance"], "seed": gen["seed"]},
        "outpaint": {"rings": t2.ring_loops(), "strength": round(t2.strength, 4),
                     **({"fit_iterations": t2.fit_iterations} if t2.fit_iterations >= 0 else {})},
        "gaussians": {"enabled": t2.foreground_gaussians},
        "outputs": outputs.generate_outputs(scene),
    }
    inputs: dict = {}
    if t2.use_source:
        if t2.foreground is not None and settings.source.kind != "SCENE":  # checked before the capture
            raise _errors.ValidationError("a foreground collection needs 'This Scene' as the source "
                                          "(the masks are rendered)")
        frames, source_cameras, rgb, depth = yield from tuning.capture_source_steps(scene)
        params["cameras"] = [c.to_dict() for c in source_cameras]
        params["depth_kind"] = "z"
        params["engine"]["depth"] = "given" if depth is not None else "depth-anything"
        inputs["frames"] = rgb
        if depth is not None:
            inputs["depth"] = depth
        if t2.foreground is not None and depth is not None:
            camera = source.source_camera_object(scene, settings.source)
            inputs["foreground"] = yield from foreground_mask_steps(scene, camera, frames, t2.foreground, depth)
    else:
        if not prompt:
            raise _errors.ValidationError("type a prompt: it says what to generate (an image alone is not enough)")
        params.update(num_frames=t2.num_frames, width=t2.width, height=t2.height, fps=round(t2.fps, 3),
                      video={"num_inference_steps": t2.video_steps, "seed": gen["seed"]})
        params["engine"]["depth"] = "depth-anything"
        if t2.image is not None:
            inputs["image"] = capture.to_uint8_rgb(capture.image_pixels(t2.image))
            params["video_engine"] = "wan-i2v"
        else:
            params["video_engine"] = "wan-t2v"
    return submit.JobRequest(uuid.uuid4().hex, "generate", params, inputs)


def foreground_mask_steps(scene: bpy.types.Scene, camera: bpy.types.Object, frames: list[int],
                          collection: bpy.types.Collection, depth: np.ndarray) -> capture.Capture:
    """``(F, H, W)`` uint8 masks, 1 where an object of ``collection`` is the visible surface; one step
    per rendered image.

    The scene is rendered again with only the collection's objects (``capture.iter_render_scene_source``);
    a pixel is foreground where that depth is set and equals the full scene's planar depth ``depth``
    (metres, same frames) within 0.1 % (so background objects in front of the foreground occlude it).
    """
    members = set(collection.all_objects)
    if not members:
        raise _errors.ValidationError(f"the foreground collection {collection.name!r} holds no objects")
    others = [obj for obj in scene.objects if obj not in members and obj.type != "CAMERA" and not obj.hide_render]
    for obj in others:
        obj.hide_render = True
    try:
        _, foreground_depth = yield from capture.iter_render_scene_source(scene, camera, frames)
    finally:
        for obj in others:
            obj.hide_render = False
    visible = (foreground_depth > 0) & (np.abs(foreground_depth - depth) <= 1e-3 * np.maximum(depth, 1e-3))
    return visible.astype(np.uint8)


#: Pixel count of Wan2.1's 480P videos (832x480): the size "Match Image" keeps.
WAN_480P_PIXELS = 832 * 480


def video_size_for_aspect(width: int, height: int) -> tuple[int, int]:
    """A ``(width, height)`` with the aspect of ``width x height``, multiples of 16, about 832x480 pixels."""
    if width <= 0 or height <= 0:
        raise _errors.ValidationError(f"the image has no pixels ({width}x{height})")
    scale = (WAN_480P_PIXELS / (width * height)) ** 0.5
    return (min(1280, max(16, round(width * scale / 16) * 16)), min(1280, max(16, round(height * scale / 16) * 16)))


class RECAST4D_OT_video_size_from_image(bpy.types.Operator):
    """Set the generated video's width and height to the image's aspect (the image is stretched otherwise)"""

    bl_idname = "recast4d.video_size_from_image"
    bl_label = "Match Image"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if scene_settings(context).text_to_4d.image is None:
            cls.poll_message_set("Pick an image first")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        t2 = scene_settings(context).text_to_4d

        def run() -> str:
            t2.width, t2.height = video_size_for_aspect(*t2.image.size[:])
            return f"Video size {t2.width}x{t2.height}"
        return report_errors(self, run)


def generate_problem(context: bpy.types.Context) -> str | None:
    """Why a generate job cannot be started now, in words, or ``None``."""
    problem = session.connection_problem()
    if problem:
        return problem
    settings = scene_settings(context)
    t2 = settings.text_to_4d
    if t2.use_source:
        problem = source.source_problem(context.scene, settings.source)
        if problem:
            return problem
        if t2.foreground is not None and settings.source.kind != "SCENE":
            return "A foreground collection needs 'This Scene' as the source (clear it for clips)"
    elif not t2.prompt.strip():
        return "Type a prompt (an image alone is not enough), or use the source as the reference"
    try:
        t2.ring_loops()
    except _errors.Recast4DError as exc:
        return str(exc)[:1].upper() + str(exc)[1:]
    return backend_info.generate_engine_problem(use_source=t2.use_source, has_image=t2.image is not None,
                                                inpaint_engine=settings.generation.engine)


class RECAST4D_OT_generate_scene(capture_task.ModalCapture, bpy.types.Operator):
    """Generate a 4D scene from the prompt (and image, or the source video, captured a frame at a time:
    Esc cancels) on the backend"""

    bl_idname = "recast4d.generate_scene"
    bl_label = "Generate 4D Scene"

    wait_until_done: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Wait Until Done", default=False, options={"SKIP_SAVE"},
        description="Block until the job ends and its results arrived (for 'blender -b' scripts)")
    timeout_s: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Timeout", default=7200.0, min=1.0, options={"SKIP_SAVE"},
        description="Wait Until Done: seconds to wait before giving up (the job keeps running on the backend)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        problem = generate_problem(context)
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    cancel_message = "Generate 4D Scene cancelled while capturing the source; nothing was sent"

    def start_capture(self, scene: bpy.types.Scene) -> capture_task.CaptureTask:
        return capture_task.start(generate_request_steps(scene), "Generate 4D Scene: capturing the source")

    def finish_capture(self, context: bpy.types.Context, task: capture_task.CaptureTask) -> set[str]:
        return tuning.submit_captured(self, context, task, place_result)

    def execute(self, context: bpy.types.Context) -> set[str]:
        return tuning.submit_and_wait(self, context, build_generate_request, place_result)


def place_result(context: bpy.types.Context, request: submit.JobRequest, job) -> None:
    """A result made from the source video starts at the shot's first frame; a generated one at the
    scene's start."""
    scene = context.scene
    if "frames" in request.inputs:
        job.frame_start = source.source_frames(scene, scene_settings(context).source)[0]
    else:
        job.frame_start = scene.frame_start


#: The generate job's stages in pipeline order (``backend/pipelines/generate/pipeline.py``).
GENERATE_STAGES = ("reference", "depth", "split", "background", "outpaint", "animate", "compose", "volume",
                   "foreground")


def latest_generate_job(settings):
    """The most recently added ``generate`` job of the scene, or ``None``."""
    for job in reversed(list(settings.jobs)):
        if job.kind == "generate":
            return job
    return None


def generate_progress_rows(job) -> list[tuple[str, float]]:
    """``(text, fraction)`` per stage the job has reported, in pipeline order, e.g.
    ``("outpaint 3/8: ring 1/2, view 3/4 (+15, +0): 12.5% to fill", 0.375)``."""
    rank = {name: i for i, name in enumerate(GENERATE_STAGES)}
    rows = []
    for stage in sorted(job.stages, key=lambda s: rank.get(s.name, len(rank))):
        count = f" {stage.step}/{stage.total}" if stage.total > 1 else ""
        message = f": {stage.message}" if stage.message and stage.message not in ("started", "done") else ""
        rows.append((f"{stage.name}{count}{message}", stage.fraction))
    return rows


def draw_generate_progress(layout: bpy.types.UILayout, settings) -> None:
    """The last generate job's state and one progress bar per stage (the outpaint bar names ring and view)."""
    job = latest_generate_job(settings)
    if job is None:
        return
    box = layout.box()
    state = job.bl_rna.properties["state"].enum_items[job.state].name
    box.label(text=f"Last scene job: {state}", icon="SHADERFX")
    for text, fraction in generate_progress_rows(job):
        box.progress(text=text, factor=fraction, type="BAR")
    if job.error:
        box.label(text=job.error.splitlines()[0], icon="ERROR")


class RECAST4D_PT_text_to_4d(SectionPanel, bpy.types.Panel):
    bl_idname = "RECAST4D_PT_text_to_4d"
    bl_label = "From Text or Image"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        t2 = scene_settings(context).text_to_4d
        layout = self.layout
        layout.use_property_split = True
        layout.prop(t2, "prompt")
        layout.prop(t2, "use_source")
        col = layout.column(align=True)
        col.active = not t2.use_source
        col.template_ID(t2, "image", open="image.open")
        col.prop(t2, "num_frames")
        col.prop(t2, "width")
        col.prop(t2, "height")
        if t2.image is not None:
            col.operator(RECAST4D_OT_video_size_from_image.bl_idname, icon="IMAGE_DATA")
        col.prop(t2, "fps")
        col.prop(t2, "video_steps")
        col = layout.column(align=True)
        col.prop(t2, "rings")
        if t2.rings == "CUSTOM":
            col.prop(t2, "custom_rings", text="")
        col.prop(t2, "strength")
        col.prop(t2, "fit_iterations")
        row = layout.row()
        row.active = t2.use_source and scene_settings(context).source.kind == "SCENE"
        row.prop(t2, "foreground")
        layout.prop(t2, "foreground_gaussians")
        error_ui.draw_wrapped(layout, context, "Fill engine, sampler, LoRA and outputs: Generation section", icon="INFO")
        layout.operator(RECAST4D_OT_generate_scene.bl_idname, icon="SHADERFX")
        draw_generate_progress(layout, scene_settings(context))


PROPERTY_CLASSES = (RECAST4D_PG_text_to_4d,)
CLASSES = (RECAST4D_OT_generate_scene, RECAST4D_OT_video_size_from_image, RECAST4D_PT_text_to_4d)
