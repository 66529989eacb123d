"""From Text or Image: the ``generate`` requests the add-on builds (checked by the backend's own
validator) and one real ``generate`` job (classical engine, source video as the reference) imported back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from backend_process import start_backend, stop_backend
from test_addon_tuning import small_scene

pytestmark = pytest.mark.blender

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


def test_polls_say_why_generating_is_disabled(registered_addon, recording_client):
    import bpy

    from addon import session

    session.detach_client()  # no backend yet
    with pytest.raises(RuntimeError, match="Connect to the backend"):
        bpy.ops.recast4d.generate_scene()
    session.attach_client(recording_client, start_timer=False)
    session.state().status["connected"] = True  # the backend answered (welcome)
    try:
        t2 = bpy.context.scene.recast4d.text_to_4d
        with pytest.raises(RuntimeError, match="Type a prompt"):
            bpy.ops.recast4d.generate_scene()
        t2.prompt = "a fox"
        t2.rings, t2.custom_rings = "CUSTOM", "[[0, 30]"
        with pytest.raises(RuntimeError, match="Custom rings must be JSON"):
            bpy.ops.recast4d.generate_scene()
        t2.custom_rings = "[[[0, 95]]]"
        with pytest.raises(RuntimeError, match="within"):
            bpy.ops.recast4d.generate_scene()
        t2.rings, t2.use_source = "PAPER", True
        bpy.context.scene.recast4d.source.kind = "CLIP"
        with pytest.raises(RuntimeError, match="Movie Clip"):
            bpy.ops.recast4d.generate_scene()
    finally:
        session.detach_client()


def test_prompt_only_and_image_requests_pass_the_backend_validator(recording_client):
    import bpy

    from backend.generate.rings import DEFAULT_RINGS
    from backend.pipelines.generate.request import GenerateRequest

    scene = bpy.context.scene
    settings = scene.recast4d
    t2 = settings.text_to_4d
    t2.prompt, t2.num_frames, t2.width, t2.height, t2.video_steps = "a red fox in snow", 17, 64, 48, 4
    settings.generation.seed = 7
    settings.outputs.ply, settings.outputs.cameras = True, True  # 'cameras' is not a generate output
    assert bpy.ops.recast4d.generate_scene() == {"FINISHED"}
    _, kind, params, inputs = recording_client.submitted[-1]
    request = GenerateRequest.from_params(params, inputs)
    assert kind == "generate" and inputs == {} and request.video_engine == "wan-t2v"
    assert (request.num_frames, request.width, request.height, request.fps) == (17, 64, 48, 16.0)
    assert request.video_options == {"num_inference_steps": 4, "seed": 7} and request.engine.seed == 7
    assert request.outputs == {"usd", "video", "ply"}
    assert request.outpaint.rings == [list(loop) for loop in DEFAULT_RINGS] and request.outpaint.strength == 0.7
    assert scene.recast4d.jobs[-1].kind == "generate" and scene.recast4d.jobs[-1].frame_start == scene.frame_start

    # an image datablock: row 0 of the array is the top row of the picture
    image = bpy.data.images.new("first", 12, 10)
    pixels = np.zeros((10, 12, 4), np.float32)
    pixels[..., 3] = 1.0
    pixels[-1, :, 0] = 1.0  # Blender's last pixel row is the top of the image: red there
    image.pixels.foreach_set(pixels.ravel())
    with pytest.raises(RuntimeError, match="Pick an image"):
        bpy.ops.recast4d.video_size_from_image()
    t2.image = image
    assert bpy.ops.recast4d.video_size_from_image() == {"FINISHED"}
    assert (t2.width, t2.height) == (688, 576)  # 12:10 at about 832x480 pixels, multiples of 16
    t2.rings = "FIRST"
    assert bpy.ops.recast4d.generate_scene() == {"FINISHED"}
    _, _, params, inputs = recording_client.submitted[-1]
    request = GenerateRequest.from_params(params, inputs)
    assert request.video_engine == "wan-i2v" and request.image.shape == (10, 12, 3) and request.image.dtype == np.uint8
    assert (request.image[0, :, 0] == 255).all() and (request.image[1:, :, 0] == 0).all()
    assert request.outpaint.rings == [list(DEFAULT_RINGS[0])]


def test_source_reference_request_passes_the_backend_validator(recording_client):
    import bpy

    from addon import text_to_4d
    from backend.pipelines.generate.request import GenerateRequest

    scene = small_scene(bpy, frames=3)
    scene.recast4d.text_to_4d.use_source = True
    scene.recast4d.text_to_4d.image = bpy.data.images.new("ignored", 4, 4)  # the source video wins
    request = text_to_4d.build_generate_request(bpy.context)
    assert set(request.inputs) == {"frames", "depth"} and request.inputs["depth"].shape == (3, 16, 24)
    validated = GenerateRequest.from_params(request.params, request.inputs)
    assert not validated.generates_video and validated.engine.depth == "given" and len(validated.cameras) == 3
    assert validated.engine.inpaint == "classical" and validated.prompt == "" and validated.fps == scene.render.fps
    assert validated.foreground is None  # no collection: the backend splits by motion

    # a foreground collection: rendered masks where the cube (in front of the wall plane) is seen
    foreground = bpy.data.collections.new("foreground")
    foreground.objects.link(bpy.data.objects["Cube"])
    scene.recast4d.text_to_4d.foreground = foreground
    request = text_to_4d.build_generate_request(bpy.context)
    masks = request.inputs["foreground"]
    assert masks.shape == (3, 16, 24) and masks.dtype == np.uint8
    assert 0 < masks.sum() < masks.size / 2  # the cube covers part of the view, the plane the rest
    assert masks[:, 8, 14].all() and not masks[:, 8, 2].any()  # cube right of centre (x = 0.5 m), wall left
    assert not any(o.hide_render for o in scene.objects)  # the hidden objects are shown again
    assert GenerateRequest.from_params(request.params, request.inputs).foreground.any()





def test_real_generate_job_from_the_scene_imports_like_any_result(registered_addon, tmp_path):
    """The real ``generate`` job kind (classical fill, one ring view, no fitting) on a 3-frame scene."""
    import bpy

    from addon import connection, jobs, session
    from addon.prefs import PreferenceValues

    proc, conn_file = start_backend(tmp_path, "backend.pipelines.generate")
    try:
        scene = small_scene(bpy, frames=3)
        t2 = scene.recast4d.text_to_4d
        t2.use_source, t2.rings, t2.custom_rings, t2.fit_iterations = True, "CUSTOM", "[[[0, 20]]]", 0
        t2.foreground_gaussians = False
        scene.recast4d.outputs.video = False
        connection.connect_backend(PreferenceValues(connection_file=str(conn_file)), start_timer=False)
        assert connection.wait_until_connected(30)
        assert bpy.ops.recast4d.generate_scene(wait_until_done=True, timeout_s=120) == {"FINISHED"}
        session.detach_client()
        job = scene.recast4d.jobs[-1]
        assert job.kind == "generate" and job.state == "DONE", f"{job.state}: {job.error}"
        assert job.frames_received == 3 and job.result_usd is not None
        imported = jobs.import_job_result(bpy.context, job)
        assert imported.point_objects
        scene.frame_set(scene.frame_start)
        obj = imported.point_objects[0]
        assert len(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.points) > 50
    finally:
        session.detach_client()
        stop_backend(proc)
