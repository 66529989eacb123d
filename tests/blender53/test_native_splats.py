"""Blender >= 5.3: a result's Gaussians import as ONE animated native GAUSSIAN_SPLAT cloud, render in
Cycles, the point layer is optional, Set Up Render configures splats, the preview shows splats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from backend_fixtures import COUNTS

pytestmark = pytest.mark.blender


def _evaluated(bpy, obj, frame: int):
    bpy.context.scene.frame_set(frame)
    return obj.evaluated_get(bpy.context.evaluated_depsgraph_get())


def _camera_looking_at_origin(bpy):
    scene = bpy.context.scene
    cam = bpy.data.objects.new("view", bpy.data.cameras.new("view"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.0, -4.0, 0.0), (math.pi / 2, 0.0, 0.0)  # looks along +Y
    return cam


def test_result_imports_as_one_animated_native_splat_cloud(native_splats, backend_files, tmp_path):
    import bpy

    from addon import results

    folder = backend_files("result")
    imported = results.import_usd_result(bpy.context, folder / "scene.usdc")
    assert len(imported.splat_objects) == 1 and not imported.gaussian_objects  # no sphere duplicate
    assert len(imported.point_objects) == 1
    splat = imported.splat_objects[0]
    assert splat.data.type == "GAUSSIAN_SPLAT"
    assert [m.type for m in splat.modifiers] == ["MESH_SEQUENCE_CACHE"]  # streamed, no per-frame objects
    assert len([o for o in bpy.data.objects if o.type == "POINTCLOUD"]) == 2
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end) == (1, len(COUNTS))
    for frame in (1, 3, 2):
        evaluated = _evaluated(bpy, splat, frame)
        assert len(evaluated.data.points) == COUNTS[frame - 1]
        assert {"scale", "rotation", "radiance:base"} <= {a.name for a in evaluated.data.attributes}

    results.setup_render(scene, camera=_camera_looking_at_origin(bpy), samples=8)
    assert scene.view_settings.view_transform == "Standard" and scene.cycles.use_denoising
    assert scene.eevee.taa_render_samples == 8
    scene.cycles.use_denoising = False  # a 32 x 32 test image: the denoiser costs more than it shows
    for obj in imported.point_objects:
        obj.hide_render = True  # render the splats alone
    scene.render.resolution_x = scene.render.resolution_y = 32
    scene.render.resolution_percentage = 100
    scene.render.filepath = str(tmp_path / "splats.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    pixels = np.array(image.pixels[:], np.float32).reshape(32, 32, 4)
    assert (pixels[..., :3].sum(-1) > 0.1).sum() >= 20


def test_point_layer_is_an_import_option_and_the_fallback_is_kept(native_splats, backend_files, tmp_path):
    import bpy

    from addon import results

    folder = backend_files("result")
    imported = results.import_usd_result(bpy.context, folder / "scene.usdc", import_points=False)
    assert len(imported.splat_objects) == 1 and not imported.point_objects
    assert [o.name for o in bpy.data.objects if o.type == "POINTCLOUD"] == [imported.splat_objects[0].name]
    # the sphere fallback, as Blender 4.2-5.2 get it, on request
    fallback = results.import_usd_result(bpy.context, folder / "scene.usdc", native_splats=False)
    assert len(fallback.gaussian_objects) == 1 and not fallback.splat_objects
    assert any(m.type == "NODES" for m in fallback.gaussian_objects[0].modifiers)


def test_import_result_operator_on_a_job(native_splats, backend_files, tmp_path):
    import bpy

    folder = backend_files("result")
    scene = bpy.context.scene
    job = scene.recast4d.jobs.add()
    job.job_id, job.state, job.result_dir, job.name = "j1", "DONE", str(folder), "shot"
    assert bpy.ops.recast4d.import_result(import_points=False) == {"FINISHED"}
    clouds = [o for o in bpy.data.objects if o.type == "POINTCLOUD"]
    assert len(clouds) == 1 and clouds[0].data.type == "GAUSSIAN_SPLAT"
    assert scene.render.engine == "CYCLES" and scene.view_settings.view_transform == "Standard"


def test_streaming_preview_shows_small_isotropic_splats(native_splats):
    import bpy

    from addon import results_stream

    scene = bpy.context.scene
    job = scene.recast4d.jobs.add()
    job.job_id, job.name = "j2", "preview"
    xyz = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    rgb = np.full((500, 3), 200, np.uint8)
    obj = results_stream.update_preview(scene, job, xyz, rgb)
    geometry = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    cloud = geometry.pointcloud
    assert cloud is not None and cloud.type == "GAUSSIAN_SPLAT" and len(cloud.points) == 500
    scale = np.zeros(500 * 3, np.float32)
    cloud.attributes["scale"].data.foreach_get("vector", scale)
    scale = scale.reshape(-1, 3)
    assert np.allclose(scale, scale[0, 0]) and 0 < scale[0, 0] < 0.05  # isotropic, small
    radiance = np.zeros(500 * 4, np.float32)
    cloud.attributes["radiance:base"].data.foreach_get("vector", radiance)
    colour = 0.5 + native_splats.SH_C0 * radiance.reshape(-1, 4)[:, :3]
    np.testing.assert_allclose(colour, 200 / 255, atol=1e-5)  # sRGB, as 3DGS stores it
