"""End to end with a real backend process: submit from the scene, stream, import, render.

A real ``recast4d serve`` subprocess (``backend.cli``) loads the small ``addon_lift`` job kind
(``addon_e2e_jobkind.py``: lifts the uploaded depth to points, streams them, writes and streams a
USD file). The add-on renders "this scene" with depth, submits through the real ``ThreadedClient``,
drains events with its session code (timer ticks, then the blocking path), imports the USD result
and renders it with Cycles.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from backend_process import start_backend, stop_backend

pytestmark = pytest.mark.blender

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]








@pytest.fixture
def backend_server(tmp_path):
    proc, conn_file = start_backend(tmp_path, "addon_e2e_jobkind")
    yield conn_file
    stop_backend(proc)


def _scene_with_camera_and_target(bpy):
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 24, 16, 100
    scene.frame_start, scene.frame_end = 1, 3
    scene.world = bpy.data.worlds.new("world")
    bpy.ops.mesh.primitive_plane_add(size=6, location=(0, 6, 0), rotation=(math.pi / 2, 0, 0))
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.5, 4, 0))
    cam = bpy.data.objects.new("source", bpy.data.cameras.new("source"))
    scene.collection.objects.link(cam)
    cam.rotation_euler = (math.pi / 2, 0, 0)
    scene.camera = cam
    settings = scene.recast4d
    settings.source.kind = "SCENE"
    return scene, cam


def test_submit_stream_import_render_with_real_backend(registered_addon, backend_server, tmp_path):
    import bpy

    from addon import connection, results, session, submit, targets
    from addon.prefs import PreferenceValues

    scene, _ = _scene_with_camera_and_target(bpy)
    targets.add_camera_path(bpy.context, "orbit:left:10", pivot_depth=5.0)
    request = submit.build_reshoot_request(bpy.context)
    assert request.inputs["frames"].shape == (3, 16, 24, 3) and request.inputs["depth"].shape == (3, 16, 24)
    assert request.params["engine"]["depth"] == "given" and len(request.params["trajectories"]) == 1
    request.kind = "addon_lift"

    client = connection.connect_backend(PreferenceValues(connection_file=str(backend_server)), start_timer=False)
    assert session.current_client() is client
    assert connection.wait_until_connected(60)  # a cold backend process on a loaded CI machine takes a while
    job = submit.submit_request(bpy.context, request)
    job.result_dir = str(tmp_path / "results")
    # a few real timer ticks first (each within budget), then the blocking path for `blender -b`
    ticks = []
    for _ in range(40):
        c0 = time.thread_time()
        session.tick()
        ticks.append(time.thread_time() - c0)  # main-thread CPU per tick (see test_addon_session)
        if job.state in ("DONE", "FAILED"):
            break
        time.sleep(0.02)
    assert max(ticks) < 0.020, f"slowest tick used {max(ticks) * 1000:.1f} ms of CPU"
    assert session.drain_blocking(lambda: job.state in ("DONE", "FAILED", "CANCELLED")
                                  and not session.state().pending_chunks and (tmp_path / "results" / "scene.usdc").exists(),
                                  timeout_s=120), f"{job.state}: {job.error} (results in {job.result_dir})"
    assert job.state == "DONE", job.error
    assert session.state().status.get("connected")
    assert "lift" in job.stages and all(stage.step == stage.total for stage in job.stages)
    assert job.frames_received == 3 and job.frames_expected == 3
    preview = bpy.data.objects[f"{job.name} Preview"]
    assert len(preview.data.vertices) == 16 * 24  # every pixel hits the plane or the cube

    imported = results.import_usd_result(bpy.context, tmp_path / "results" / "scene.usdc")
    obj = imported.point_objects[0]
    for frame in (1, 2, 3):
        scene.frame_set(frame)
        assert len(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.points) == 16 * 24
    # the lifted points sit where the scene's geometry is: the plane at y = 6, the cube front at y = 3.5
    scene.frame_set(1)
    positions = np.zeros(16 * 24 * 3, np.float32)
    obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.attributes["position"].data.foreach_get(
        "vector", positions)
    ys = np.round(positions.reshape(-1, 3)[:, 1], 2)
    assert set(np.unique(ys)) <= {3.5, 6.0} and 6.0 in ys and 3.5 in ys

    for o in list(bpy.data.objects):  # render only the imported result
        if o.type == "MESH":
            bpy.data.objects.remove(o)
    results.setup_render(scene, camera=scene.camera, samples=1)
    scene.render.filepath = str(tmp_path / "e2e.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    pixels = np.array(image.pixels[:], np.float32).reshape(16, 24, 4)
    assert (pixels[..., :3].sum(-1) > 0.05).sum() > 50

    session.detach_client()
    assert client.state == "closed"

    # "Blender restart": save, reopen, lose the local files, reconnect and re-fetch by job id
    import shutil

    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    shutil.rmtree(tmp_path / "results")
    job = bpy.context.scene.recast4d.jobs[0]
    assert job.state == "DONE" and set(job.streams.split(",")) == {"points", "usd"}
    connection.connect_backend(PreferenceValues(connection_file=str(backend_server)), start_timer=False)
    assert sorted(submit.fetch_results(job)) == ["points", "usd"]
    usd = tmp_path / "results" / "scene.usdc"
    assert session.drain_blocking(lambda: usd.exists() and not session.state().pending_chunks
                                  and job.frames_received == 3, timeout_s=60)
    session.detach_client()
    assert results.import_usd_result(bpy.context, usd).point_objects


@pytest.mark.slow
def test_real_reshoot_pipeline_from_the_scene(registered_addon, tmp_path):
    """The real ``reshoot`` job kind (classical fill, no Gaussians) on a tiny scene, imported back."""
    import bpy

    from addon import connection, jobs, session, targets
    from addon.prefs import PreferenceValues

    proc, conn_file = start_backend(tmp_path, "backend.pipelines.reshoot")
    try:
        scene, _ = _scene_with_camera_and_target(bpy)
        target = targets.add_camera_path(bpy.context, "orbit:left:8", pivot_depth=5.0)
        scene.recast4d.generation.engine = "classical"
        scene.recast4d.generation.fit_gaussians = False
        connection.connect_backend(PreferenceValues(connection_file=str(conn_file)), start_timer=False)
        assert connection.wait_until_connected(30)  # Re-film is refused while still connecting
        # the operator's blocking mode, as a `blender -b` script would use it
        assert bpy.ops.recast4d.submit_job(wait_until_done=True, timeout_s=240) == {"FINISHED"}
        session.detach_client()
        job = scene.recast4d.jobs[-1]
        assert job.state == "DONE", f"{job.state}: {job.error}"
        assert job.frames_received == 3 and job.result_usd is not None
        imported = jobs.import_job_result(bpy.context, job)
        obj = imported.point_objects[0]
        for frame in (scene.frame_start, scene.frame_end):
            scene.frame_set(frame)
            assert len(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.points) > 100
        assert scene.camera == target
        assert target.data.background_images[0].clip is not None  # the re-filmed video on the target
    finally:
        session.detach_client()
        stop_backend(proc)


@pytest.mark.slow
def test_start_local_backend_then_connect_and_stop(registered_addon, tmp_path, monkeypatch):
    """'Start Local Backend': launch `python -m backend.cli serve`, connect via its file, stop it."""
    from addon import connection, session
    from addon.prefs import PreferenceValues

    monkeypatch.setenv("RECAST4D_JOBS", str(tmp_path / "jobs"))
    prefs = PreferenceValues(python_path=sys.executable, connection_file=str(tmp_path / "server.json"))
    process = connection.start_local_backend(prefs)
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / "server.json").exists():
            assert process.poll() is None, "the backend exited"
            assert time.monotonic() < deadline, "no connection file"
            time.sleep(0.1)
        connection.connect_backend(prefs, start_timer=False)
        assert session.drain_blocking(lambda: bool(session.state().status.get("connected")), timeout_s=30)
        assert session.state().status.get("gpu")
    finally:
        session.detach_client()
        connection.stop_started_backend()
    assert process.poll() is not None


def test_cancel_reaches_the_running_job(registered_addon, backend_server):
    import bpy

    from addon import connection, session, submit, targets
    from addon.prefs import PreferenceValues

    _scene_with_camera_and_target(bpy)
    targets.add_camera_path(bpy.context, "dolly:in:0.2", pivot_depth=5.0)
    request = submit.build_reshoot_request(bpy.context)
    request.kind = "addon_lift"
    request.params["test_delay_s"] = 2.0
    connection.connect_backend(PreferenceValues(connection_file=str(backend_server)), start_timer=False)
    try:
        job = submit.submit_request(bpy.context, request)
        assert session.drain_blocking(lambda: job.state == "RUNNING", timeout_s=30)
        bpy.context.scene.recast4d.active_job_index = len(bpy.context.scene.recast4d.jobs) - 1
        assert bpy.ops.recast4d.cancel_job() == {"FINISHED"}
        assert job.state == "CANCELLING"
        assert session.drain_blocking(lambda: job.state == "CANCELLED", timeout_s=30), job.state
        assert not bpy.ops.recast4d.cancel_job.poll()  # nothing left to cancel
    finally:
        session.detach_client()
