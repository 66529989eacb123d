"""Generation > Tune LoRA and Generation > Outputs: the ``tune`` request the add-on builds (checked by
the backend's own validator), the tuned LoRA offered in the LoRA field, outputs reaching ``params``."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.blender


def small_scene(bpy, frames: int = 5):
    """A 24x16 Cycles scene (plane + cube seen by an animated camera), "This Scene" as the source."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 24, 16, 100
    scene.frame_start, scene.frame_end = 1, frames
    scene.world = bpy.data.worlds.new("world")
    bpy.ops.mesh.primitive_plane_add(size=6, location=(0, 6, 0), rotation=(math.pi / 2, 0, 0))
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.5, 4, 0))
    cam = bpy.data.objects.new("source", bpy.data.cameras.new("source"))
    scene.collection.objects.link(cam)
    cam.rotation_euler = (math.pi / 2, 0, 0)
    for frame, x in ((1, 0.0), (frames, 0.3)):
        cam.location = (x, 0, 0)
        cam.keyframe_insert("location", frame=frame)
    scene.camera = cam
    scene.recast4d.source.kind = "SCENE"
    return scene


def test_new_operators_and_properties_register_with_backend_defaults(registered_addon):
    import bpy

    from addon import tuning
    from backend.tune.config import TuneConfig
    from backend.tune.model import LORA_ID_PATTERN

    for op in ("tune_lora", "use_tuned_lora", "generate_scene"):
        assert hasattr(bpy.ops.recast4d, op)
    for panel in ("RECAST4D_PT_tune", "RECAST4D_PT_outputs", "RECAST4D_PT_text_to_4d"):
        assert hasattr(bpy.types, panel)
    settings = bpy.context.scene.recast4d
    defaults = TuneConfig()
    assert (settings.tune.steps, settings.tune.rank) == (defaults.steps, defaults.rank)
    assert settings.tune.to_params()["angles"] == defaults.angles  # max angle 75 -> 30, 45, 60, 75
    assert tuning.angle_schedule(60) == [30, 45, 60] and tuning.angle_schedule(50) == [30, 45, 50]
    assert tuning.angle_schedule(20) == [20]
    assert tuning.LORA_ID_PATTERN.pattern == LORA_ID_PATTERN.pattern
    assert settings.outputs.to_list() == ["usd", "video", "cameras"]  # the former fixed list


def test_polls_say_why_tuning_is_disabled(registered_addon, recording_client):
    import bpy

    from addon import session

    session.detach_client()  # no backend yet
    with pytest.raises(RuntimeError, match="Connect to the backend"):
        bpy.ops.recast4d.tune_lora()
    with pytest.raises(RuntimeError, match="No tune job has finished"):
        bpy.ops.recast4d.use_tuned_lora(lora_id="x")
    session.attach_client(recording_client, start_timer=False)
    session.state().status["connected"] = True  # the backend answered (welcome)
    try:
        bpy.context.scene.recast4d.source.kind = "CLIP"
        with pytest.raises(RuntimeError, match="Pick a Movie Clip"):  # tuning a clip needs the clip
            bpy.ops.recast4d.tune_lora()
        small_scene(bpy, frames=3)
        with pytest.raises(RuntimeError, match="at least 5 frames"):
            bpy.ops.recast4d.tune_lora()
        bpy.context.scene.frame_end = 5
        bpy.context.scene.recast4d.tune.lora_id = "no spaces"
        with pytest.raises(RuntimeError, match="LoRA ID"):
            bpy.ops.recast4d.tune_lora()
    finally:
        session.detach_client()


def test_tune_job_params_pass_the_backend_validator_and_the_lora_is_offered(recording_client):
    import bpy

    from addon import submit, targets, tuning
    from backend.pipelines.tune.request import TuneRequest

    scene = small_scene(bpy)
    tune = scene.recast4d.tune
    tune.steps, tune.rank, tune.max_angle = 8, 4, 45.0
    scene.recast4d.generation.prompt = "a cube in front of a wall"
    assert bpy.ops.recast4d.tune_lora() == {"FINISHED"}
    (job_id, kind, params, inputs), = recording_client.submitted
    assert kind == "tune" and inputs["frames"].shape == (5, 16, 24, 3) and inputs["depth"].shape == (5, 16, 24)
    request = TuneRequest.from_params(params, inputs)  # the backend's own validation accepts it
    assert (request.config.steps, request.config.rank, request.config.angles) == (8, 4, [30.0, 45.0])
    assert request.config.prompt == "a cube in front of a wall" and request.depth_kind == "z"
    assert request.lora_id == f"Scene-{job_id[:8]}" and len(request.cameras) == 5
    assert request.cameras[0].world_to_camera[0, 3] != request.cameras[-1].world_to_camera[0, 3]  # animated

    job = scene.recast4d.jobs[-1]
    assert job.kind == "tune" and job.job_id == job_id and job.state == "UPLOADING"
    assert tuning.offer_finished_loras(scene) == []  # still running: nothing offered
    assert not bpy.ops.recast4d.use_tuned_lora.poll()
    job.state = "DONE"
    assert tuning.offer_finished_loras(scene) == [request.lora_id]
    assert scene.recast4d.generation.lora_path == request.lora_id
    assert tuning.offer_finished_loras(scene) == []  # offered once: a user's later choice is kept
    scene.recast4d.generation.lora_path = ""
    assert bpy.ops.recast4d.use_tuned_lora(lora_id=request.lora_id) == {"FINISHED"}
    assert scene.recast4d.generation.lora_path == request.lora_id

    # the re-film job then uses the LoRA by id (a plain id is no file path to make absolute)
    targets.add_camera_path(bpy.context, "orbit:left:10", pivot_depth=5.0)
    scene.recast4d.outputs.png, scene.recast4d.outputs.cameras, scene.recast4d.outputs.ply = True, False, True
    reshoot = submit.build_reshoot_request(bpy.context)
    assert reshoot.params["engine"]["lora"] == request.lora_id
    assert reshoot.params["outputs"] == ["usd", "video", "png", "ply"]
    from backend.pipelines.reshoot.request import ReshootRequest

    assert ReshootRequest.from_params(reshoot.params, reshoot.inputs).outputs == {"usd", "video", "png", "ply"}


def test_a_typed_lora_id_is_sent_and_the_timer_stops_when_nothing_is_pending(recording_client):
    import bpy

    from addon import tuning

    scene = small_scene(bpy)
    scene.recast4d.tune.lora_id = "my-shot_v1"
    request = tuning.build_tune_request(bpy.context)
    assert request.params["lora_id"] == "my-shot_v1"
    tuning.remember_tune_job(scene, request)  # no job entry for it: it is not pending
    assert bpy.app.timers.is_registered(tuning._offer_tick)
    assert tuning._offer_tick() is None
    tuning.stop_timer()
    assert not bpy.app.timers.is_registered(tuning._offer_tick)


def test_the_lora_id_comes_from_the_streamed_report_when_it_arrived(registered_addon, tmp_path):
    import json

    import bpy

    from addon import submit, tuning

    scene = bpy.context.scene
    job = scene.recast4d.jobs.add()
    job.job_id, job.kind, job.state, job.result_dir = "t1", "tune", "DONE", str(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"lora_id": "registered-id", "rounds": []}))
    tuning.remember_tune_job(scene, submit.JobRequest("t1", "tune", {"lora_id": "sent-id"}))
    assert tuning.offer_finished_loras(scene) == ["registered-id"]
    assert scene.recast4d.generation.lora_path == "registered-id"
    assert scene.recast4d.tune.tuned_loras[0].name == "registered-id"
    tuning.stop_timer()


def test_new_panels_draw(registered_addon):
    import types

    import bpy
    from test_addon_ui import CheckingLayout

    from addon import outputs, text_to_4d, tuning

    settings = bpy.context.scene.recast4d
    job = settings.jobs.add()
    job.job_id, job.state = "t1", "DONE"
    entry = settings.tune.tuned_loras.add()
    entry.name, entry.job_id, entry.offered = "shot-lora", "t1", True
    settings.text_to_4d.rings = "CUSTOM"
    class Layout(CheckingLayout):  # operator() hands back its properties, as Blender's layout does
        def _child(self, *args, **kwargs) -> Layout:
            return Layout(self._bpy, self._log)

        row = column = box = split = _child

        def operator(self, idname: str, **kwargs):
            super().operator(idname, **kwargs)
            return types.SimpleNamespace()

    log: list = []
    for cls in (tuning.RECAST4D_PT_tune, outputs.RECAST4D_PT_outputs, text_to_4d.RECAST4D_PT_text_to_4d):
        cls.draw(type("PanelStandIn", (), {"layout": Layout(bpy, log)})(), bpy.context)
    assert ("operator", "recast4d.tune_lora") in log and ("operator", "recast4d.use_tuned_lora") in log
    assert ("label", "shot-lora (done)") in log and ("prop", "max_angle") in log
    assert ("prop", "ply") in log and ("prop", "custom_rings") in log
    assert ("operator", "recast4d.generate_scene") in log
    assert not bpy.app.timers.is_registered(tuning._offer_tick)  # nothing pending: no timer
    job.state, entry.offered = "RUNNING", False  # e.g. a reopened .blend whose tune job still runs: drawing starts the watch
    tuning.RECAST4D_PT_tune.draw(type("PanelStandIn", (), {"layout": Layout(bpy, log)})(), bpy.context)
    assert bpy.app.timers.is_registered(tuning._offer_tick)
    tuning.stop_timer()


@pytest.mark.slow
def test_real_tune_job_registers_its_lora_and_offers_it(registered_addon, tmp_path):
    """The real ``tune`` job kind on a tiny random Wan VACE (2 steps at 32x32): the id it registered
    ends up in Generation > LoRA. Tune options beyond steps/rank/angles are shrunk for the CPU."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import bpy

    from addon import connection, session, submit, tuning
    from addon.prefs import PreferenceValues

    repo = Path(__file__).resolve().parents[2]
    from tiny_models import build_tiny_vace_pipeline

    models = tmp_path / "models"
    build_tiny_vace_pipeline().save_pretrained(models / "Wan2.1-VACE-1.3B-diffusers")

    conn_file = tmp_path / "server.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
               RECAST4D_MODELS=str(models), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--jobs-dir", str(tmp_path / "jobs"),
         "--connection-file", str(conn_file), "--job-kinds", "backend.pipelines.tune"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not conn_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "backend did not start"
            time.sleep(0.05)
        scene = small_scene(bpy)
        scene.recast4d.tune.steps, scene.recast4d.tune.rank, scene.recast4d.tune.max_angle = 2, 4, 20.0
        request = tuning.build_tune_request(bpy.context)
        request.params["tune"].update(width=32, height=32, num_frames=5, samples_per_round=1, generation_steps=2,
                                      checkpoint_every=1)
        connection.connect_backend(PreferenceValues(connection_file=str(conn_file)), start_timer=False)
        job = submit.submit_request(bpy.context, request)
        tuning.remember_tune_job(scene, request)
        assert session.drain_blocking(lambda: submit.job_finished(job.job_id), timeout_s=240)
        assert job.state == "DONE", f"{job.state}: {job.error}"
        assert tuning.offer_finished_loras(scene) == [request.params["lora_id"]]
        assert scene.recast4d.generation.lora_path == request.params["lora_id"]
        assert (models / "loras" / request.params["lora_id"] / "pytorch_lora_weights.safetensors").is_file()
    finally:
        tuning.stop_timer()
        session.detach_client()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
