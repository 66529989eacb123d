"""Issue 14, the user-level script: what an artist does, against a real ``recast4d serve`` process.

Two re-film jobs in a row (the second must film from the original source camera although the first
import made its target the scene camera), an undo right after submitting, a disconnect and a
reconnect; at every step the test reads what the panels would show (``trust_helpers.draw_panel``).

Headless: operators run their ``execute`` (no window, so Re-film captures in one go instead of a
step per ``TIMER`` event) and the session's events are drained with its blocking path, since
``bpy.app.timers`` never fire in the background.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from backend_process import start_backend, stop_backend
from trust_helpers import draw_panel, small_scene

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def _rows(bpy, jobs_module) -> list[tuple[str, str]]:
    return [jobs_module.job_row_text(job) for job in bpy.context.scene.recast4d.jobs]


def _sent_source_cameras(jobs_dir, job_id: str) -> np.ndarray:
    """The source camera poses the backend received (world-to-camera 4x4 per frame)."""
    request = json.loads((jobs_dir / job_id / "request.json").read_text())
    return np.array([c["world_to_camera"] for c in request["params"]["cameras"]], dtype=float)


def test_two_jobs_undo_and_reconnect_as_a_user_would(registered_addon, tmp_path):
    import bpy

    from addon import cameras, connection, jobs, session, submit
    from addon.prefs import PreferenceValues

    proc, conn_file = start_backend(tmp_path, "backend.pipelines.reshoot")
    prefs = PreferenceValues(connection_file=str(conn_file))
    try:
        scene, shot_cam = small_scene(bpy)
        scene.recast4d.generation.fit_gaussians = False
        scene.recast4d.outputs.video = False
        expected = np.array([c.world_to_camera for c in cameras.cameras_from_blender(scene, shot_cam, [1, 2, 3])])

        connection.connect_backend(prefs, start_timer=False)
        assert connection.wait_until_connected(60)
        backend = draw_panel(bpy, connection.RECAST4D_PT_backend).text()
        assert "Connected" in backend and "inpaint classical" in backend  # engines, not protocol features

        # job 1: a path, Re-film, and straight away Ctrl+Z
        assert bpy.ops.recast4d.add_camera_path(preset="orbit", direction="left", amount=10.0,
                                                pivot_depth=5.0) == {"FINISHED"}
        bpy.ops.ed.undo_push(message="Add Camera Path")
        assert bpy.ops.recast4d.submit_job() == {"FINISHED"}
        bpy.ops.ed.undo_push(message="Re-film Shot")
        bpy.ops.ed.undo()
        assert [row[0] for row in _rows(bpy, jobs)] == ["Re-film orbit:left:10"]  # the job is still listed
        first = bpy.context.scene.recast4d.jobs[0].job_id
        assert session.drain_blocking(lambda: submit.job_finished(first), timeout_s=120)
        scene = bpy.context.scene
        assert _rows(bpy, jobs) == [("Re-film orbit:left:10", "Done")], scene.recast4d.jobs[0].error
        scene.recast4d.active_job_index = 0
        assert bpy.ops.recast4d.import_result() == {"FINISHED"}
        assert scene.camera.name == "Recast orbit:left:10"  # Import Result made the target the scene camera
        previews = [o for o in bpy.data.objects if o.get("recast4d_job") == first]
        assert previews and all(o.hide_render for o in previews)  # the result replaces the preview

        # the backend connection drops, and comes back
        assert bpy.ops.recast4d.disconnect() == {"FINISHED"}
        offline = draw_panel(bpy, jobs.RECAST4D_PT_jobs)
        assert not offline.enabled_operator("recast4d.submit_job")
        assert "Not connected" in draw_panel(bpy, connection.RECAST4D_PT_backend).text()
        connection.connect_backend(prefs, start_timer=False)
        assert connection.wait_until_connected(60)

        # job 2 along another path: filmed from the original camera, not the scene camera
        assert bpy.ops.recast4d.add_camera_path(preset="orbit", direction="right", amount=10.0,
                                                pivot_depth=5.0) == {"FINISHED"}
        scene.recast4d.targets[0].enabled = False
        assert bpy.ops.recast4d.submit_job() == {"FINISHED"}
        second = scene.recast4d.jobs[-1].job_id
        assert session.drain_blocking(lambda: submit.job_finished(second), timeout_s=120)
        for job_id in (first, second):
            np.testing.assert_allclose(_sent_source_cameras(tmp_path / "jobs", job_id), expected, atol=1e-5)
        assert _rows(bpy, jobs) == [("Re-film orbit:left:10", "Done"), ("Re-film orbit:right:10", "Done")]
        panel = draw_panel(bpy, jobs.RECAST4D_PT_jobs).text()
        assert "Re-film orbit:right:10: Done" in panel and "Traceback" not in panel
        assert scene.recast4d.source.camera.name == "Shot Cam"  # pinned (Python refs die with an undo: by name)
    finally:
        session.detach_client()
        stop_backend(proc)
