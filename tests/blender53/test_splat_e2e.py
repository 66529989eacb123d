"""Blender 5.3 end to end, as in real use: the add-on (in this Blender) re-films a tiny scene with a
real ``reshoot`` backend process (the backend's own Python), Gaussians on; the streamed result is
imported as one animated native splat cloud and rendered in Cycles through the target camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
from backend_process import start_backend, stop_backend

pytestmark = pytest.mark.blender


def _tiny_scene(bpy):
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 24, 16, 100
    scene.frame_start, scene.frame_end = 1, 3
    scene.world = bpy.data.worlds.new("world")
    bpy.ops.mesh.primitive_plane_add(size=6, location=(0, 6, 0), rotation=(math.pi / 2, 0, 0))
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.5, 4, 0))
    camera = bpy.data.objects.new("source", bpy.data.cameras.new("source"))
    scene.collection.objects.link(camera)
    camera.rotation_euler = (math.pi / 2, 0, 0)
    scene.camera = camera
    scene.recast4d.source.kind = "SCENE"
    return scene


def test_reshoot_with_gaussians_imports_as_native_splats(native_splats, tmp_path):
    import bpy

    from addon import connection, jobs, session, targets
    from addon.prefs import PreferenceValues

    proc, conn_file = start_backend(tmp_path, "backend.pipelines.reshoot")
    try:
        scene = _tiny_scene(bpy)
        target = targets.add_camera_path(bpy.context, "orbit:left:8", pivot_depth=5.0)
        scene.recast4d.generation.engine = "classical"
        scene.recast4d.generation.fit_gaussians = True
        connection.connect_backend(PreferenceValues(connection_file=str(conn_file)), start_timer=False)
        assert connection.wait_until_connected(30)  # Re-film is refused while still connecting
        assert bpy.ops.recast4d.submit_job(wait_until_done=True, timeout_s=240) == {"FINISHED"}
        session.detach_client()
        job = scene.recast4d.jobs[-1]
        assert job.state == "DONE", f"{job.state}: {job.error}"
        imported = jobs.import_job_result(bpy.context, job, import_points=False)
    finally:
        session.detach_client()
        stop_backend(proc)
    assert len(imported.splat_objects) == 1 and not imported.point_objects and not imported.gaussian_objects
    splat = imported.splat_objects[0]
    assert [m.type for m in splat.modifiers] == ["MESH_SEQUENCE_CACHE"]
    for frame in (scene.frame_start, scene.frame_end):
        scene.frame_set(frame)
        assert len(splat.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.points) > 100
    assert scene.camera == target and scene.view_settings.view_transform == "Standard"
    for obj in bpy.data.objects:  # render the imported splats alone
        if obj.type == "MESH":
            obj.hide_render = True
    scene.cycles.use_denoising = False
    scene.render.filepath = str(tmp_path / "splats.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    pixels = np.array(image.pixels[:], np.float32).reshape(16, 24, 4)
    assert (pixels[..., :3].sum(-1) > 0.05).mean() > 0.8  # the splats cover the view
