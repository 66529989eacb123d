"""USD result import (points and Gaussians) -> point counts per frame and a tiny Cycles render."""

from __future__ import annotations

import math

import numpy as np
import pytest
from addon_usd_fixtures import write_points_usd

pytestmark = pytest.mark.blender

COUNTS = [120, 180, 240, 300]


def _evaluated_count(bpy, obj, frame: int) -> int:
    bpy.context.scene.frame_set(frame)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    return len(evaluated.data.points)


def _render_tiny(bpy, tmp_path, name: str) -> np.ndarray:
    scene = bpy.context.scene
    data = bpy.data.cameras.new("view")
    cam = bpy.data.objects.new("view", data)
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.0, 0.0, 0.0), (math.pi / 2, 0.0, 0.0)  # looks along +Y
    from addon import results

    results.setup_render(scene, camera=cam, samples=2, transparent_bounces=16)
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 32
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(tmp_path / f"{name}.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    pixels = np.array(image.pixels[:], dtype=np.float32).reshape(32, 32, 4)
    bpy.data.images.remove(image)
    return pixels


@pytest.mark.parametrize("gaussians", [False, True], ids=["points", "gaussians"])
def test_usd_result_import_counts_and_renders(registered_addon, tmp_path, gaussians):
    import bpy

    from addon import results

    usd = write_points_usd(tmp_path / "scene.usdc", COUNTS, gaussians=gaussians, fps=30.0, first_frame=1)
    imported = results.import_usd_result(bpy.context, usd)
    objects = imported.gaussian_objects if gaussians else imported.point_objects
    assert len(objects) == 1 and len(imported.objects) == 1
    obj = objects[0]
    assert obj.type == "POINTCLOUD"
    assert any(m.type == "MESH_SEQUENCE_CACHE" for m in obj.modifiers)
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end) == (1, len(COUNTS))
    assert scene.render.fps / scene.render.fps_base == pytest.approx(30.0)
    for frame in (1, 3, 4, 2):
        assert _evaluated_count(bpy, obj, frame) == COUNTS[frame - 1]
    scene.frame_set(2)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    names = {a.name for a in evaluated.data.attributes}
    assert {"displayColor", "radius"} <= names
    radius = np.zeros(COUNTS[1], np.float32)
    evaluated.data.attributes["radius"].data.foreach_get("value", radius)
    expected_radius = 0.08 / 2 if not gaussians else 3.0 * 0.08 / 3.0  # widths/2, or 3 sigma
    np.testing.assert_allclose(radius, expected_radius, rtol=1e-5)
    assert obj.material_slots[0].material is not None

    pixels = _render_tiny(bpy, tmp_path, "gaussians" if gaussians else "points")
    lit = pixels[..., :3].sum(axis=-1) > 0.05  # empty world renders black
    assert lit.sum() >= 10, f"only {lit.sum()} non-background pixels"


def test_ellipsoid_mode_instances_spheres(registered_addon, tmp_path):
    import bpy

    from addon import results

    usd = write_points_usd(tmp_path / "g.usdc", [50, 60], gaussians=True)
    imported = results.import_usd_result(bpy.context, usd, ellipsoids=True)
    obj = imported.gaussian_objects[0]
    bpy.context.scene.frame_set(2)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    instances = [inst for inst in depsgraph.object_instances if inst.is_instance and inst.parent
                 and inst.parent.original == obj]
    assert len(instances) == 60
    pixels = _render_tiny(bpy, tmp_path, "ellipsoids")
    assert (pixels[..., :3].sum(axis=-1) > 0.05).sum() >= 10


def test_missing_or_pointless_usd_gives_clear_errors(registered_addon, tmp_path):
    import bpy
    from pxr import Usd, UsdGeom

    from addon import results
    from protocol.errors import ValidationError

    with pytest.raises(ValidationError, match="not found"):
        results.import_usd_result(bpy.context, tmp_path / "nope.usdc")
    stage = Usd.Stage.CreateNew(str(tmp_path / "empty.usda"))
    UsdGeom.Xform.Define(stage, "/root")
    stage.GetRootLayer().Save()
    with pytest.raises(ValidationError, match="no point clouds"):
        results.import_usd_result(bpy.context, tmp_path / "empty.usda")


def test_job_result_import_brings_usd_videos_and_render_setup(registered_addon, tmp_path):
    import bpy

    from backend.media import write_mp4, write_png_sequence

    results_dir = tmp_path / "job"
    (results_dir / "orbit").mkdir(parents=True)
    write_points_usd(results_dir / "scene.usdc", [30, 40], fps=25.0, first_frame=5)
    frames = np.full((2, 16, 16, 3), 128, np.uint8)
    write_mp4(results_dir / "orbit" / "video.mp4", frames, fps=25.0)
    write_png_sequence(results_dir / "dolly" / "frames", frames)
    scene = bpy.context.scene
    cams = []
    for name in ("orbit cam", "dolly cam"):
        cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        scene.collection.objects.link(cam)
        cams.append(cam)
    job = scene.recast4d.jobs.add()
    job.job_id, job.state, job.result_dir = "j1", "DONE", str(results_dir)
    job.frame_start = 7  # the shot started at scene frame 7; the file's samples start at 5
    job.target_cameras, job.trajectories = "orbit cam,dolly cam", "orbit,dolly"

    imported = registered_addon.jobs.import_job_result(bpy.context, job)
    assert job.imported and len(imported.point_objects) == 1
    assert (scene.frame_start, scene.frame_end) == (7, 8) and scene.render.fps == 25
    for frame, count in ((7, 30), (8, 40)):
        scene.frame_set(frame)
        points = imported.point_objects[0].evaluated_get(bpy.context.evaluated_depsgraph_get()).data.points
        assert len(points) == count
    assert scene.camera == cams[0] and scene.render.engine == "CYCLES"
    orbit_bg, dolly_bg = cams[0].data.background_images[0], cams[1].data.background_images[0]
    assert orbit_bg.source == "MOVIE_CLIP" and orbit_bg.clip.frame_duration == 2 and orbit_bg.clip.frame_start == 7
    assert dolly_bg.source == "IMAGE" and dolly_bg.image.source == "SEQUENCE"
    assert dolly_bg.image_user.frame_start == 7
    assert bpy.ops.recast4d.render_shot.poll()


@pytest.mark.slow  # imports torch
def test_backend_usd_writer_output_imports_as_points_and_gaussians(registered_addon, tmp_path):
    """The file the backend actually writes (``backend.export.usd_writer``) imports our way."""
    import bpy

    torch = pytest.importorskip("torch")
    from addon import results
    from backend.export.usd_writer import UsdSceneWriter
    from backend.gaussians.gaussian_set import GaussianSet

    n = 150
    rng = np.random.default_rng(1)
    with UsdSceneWriter(tmp_path / "scene.usdc", fps=24.0, start_frame=1) as writer:
        for frame in range(3):
            xyz = (rng.normal(size=(n, 3)) + [0.0, 4.0, 0.0]).astype(np.float32)
            writer.add_point_cloud_frame(frame, xyz, rng.random((n, 3)).astype(np.float32))
            writer.add_gaussian_frame(frame, GaussianSet(
                means=torch.from_numpy(xyz), log_scales=torch.full((n, 3), -3.0),
                quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1), logit_opacities=torch.zeros(n),
                sh=torch.rand(n, 1, 3)))
    imported = results.import_usd_result(bpy.context, tmp_path / "scene.usdc")
    assert len(imported.point_objects) == 1 and len(imported.gaussian_objects) == 1
    assert (imported.frame_start, imported.frame_end) == (1, 3)
    gaussians = imported.gaussian_objects[0]
    bpy.context.scene.frame_set(3)
    evaluated = gaussians.evaluated_get(bpy.context.evaluated_depsgraph_get())
    radius = np.zeros(n, np.float32)
    evaluated.data.attributes["radius"].data.foreach_get("value", radius)
    np.testing.assert_allclose(radius, 3.0 * np.exp(-3.0), rtol=1e-4)  # 3 sigma of the largest axis
