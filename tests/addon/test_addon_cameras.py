"""Camera export and "Add Camera Path" against the protocol camera math (bpy wheel)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.blender


def _animated_source_camera(bpy, *, frames=(1, 5), lens=35.0, sensor_fit="AUTO", shift=(0.05, -0.02),
                            animated=True):
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = frames
    data = bpy.data.cameras.new("src")
    data.lens, data.sensor_fit = lens, sensor_fit
    data.shift_x, data.shift_y = shift
    obj = bpy.data.objects.new("src", data)
    scene.collection.objects.link(obj)
    obj.location, obj.rotation_euler = (0.0, -4.0, 1.0), (math.radians(85), 0.0, 0.0)
    scene.camera = obj
    if not animated:
        return obj
    obj.keyframe_insert("location", frame=frames[0])
    obj.keyframe_insert("rotation_euler", frame=frames[0])
    obj.location, obj.rotation_euler = (0.5, -3.5, 1.2), (math.radians(80), 0.0, math.radians(10))
    obj.keyframe_insert("location", frame=frames[1])
    obj.keyframe_insert("rotation_euler", frame=frames[1])
    data.keyframe_insert("lens", frame=frames[0])
    data.lens = lens * 1.2
    data.keyframe_insert("lens", frame=frames[1])
    scene.camera = obj
    return obj


@pytest.mark.parametrize("sensor_fit", ["AUTO", "HORIZONTAL", "VERTICAL"])
def test_exported_cameras_match_matrix_world_and_intrinsics(registered_addon, sensor_fit):
    import bpy

    from addon import cameras

    obj = _animated_source_camera(bpy, sensor_fit=sensor_fit)
    scene = bpy.context.scene
    scene.frame_set(3)
    exported = cameras.cameras_from_blender(scene, obj, range(1, 6))
    assert scene.frame_current == 3  # restored
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    for frame, cam in zip(range(1, 6), exported):
        scene.frame_set(frame)
        c2w_blender = np.array(obj.matrix_world)
        np.testing.assert_allclose(cam.camera_to_world @ flip, c2w_blender, atol=1e-5)
        data = obj.data
        fit = sensor_fit if sensor_fit != "AUTO" else "HORIZONTAL"  # 64x48 is landscape
        sensor = data.sensor_height if sensor_fit == "VERTICAL" else data.sensor_width
        extent = 64 if fit == "HORIZONTAL" else 48
        f_px = data.lens * extent / sensor
        assert cam.width == 64 and cam.height == 48
        np.testing.assert_allclose([cam.fx, cam.fy], [f_px, f_px], rtol=1e-5)
        np.testing.assert_allclose(cam.cx, 32 - data.shift_x * extent, rtol=1e-5)
        np.testing.assert_allclose(cam.cy, 24 + data.shift_y * extent, rtol=1e-5)


def _all_preset_specs():
    from protocol import paths

    specs = []
    for name, preset in paths.PRESETS.items():
        specs.append(f"{name}:{preset.directions[0]}")
        specs.append(f"{name}:{preset.directions[-1]}:{preset.amount.default * 0.5 + preset.amount.minimum * 0.5:g}:direct")
    specs.append("bullet:2:orbit:right:30")
    specs.append("orbit:up:15+dolly:in:0.2")
    return specs


@pytest.mark.parametrize("spec_text", _all_preset_specs())
def test_preset_keyframes_equal_protocol_camera_math(registered_addon, spec_text):
    import bpy

    from addon import cameras, targets
    from protocol import paths

    src = _animated_source_camera(bpy)
    scene = bpy.context.scene
    frames = list(range(1, 6))
    sources = cameras.cameras_from_blender(scene, src, frames)
    expected = paths.make_path(spec_text, sources, 3.0)

    obj = targets.add_camera_path(bpy.context, spec_text, pivot_depth=3.0)
    assert scene.recast4d.targets[-1].camera == obj
    assert obj.animation_data is not None and obj.data.animation_data is not None
    for frame, want in zip(frames, expected):
        scene.frame_set(frame)
        got = cameras.camera_at_current_frame(scene, obj)
        assert cameras.cameras_equal(got, want, atol_pose=2e-5, rtol_k=2e-5), (frame, got, want)


def test_add_camera_path_operator_poll_explains_missing_camera(registered_addon):
    import bpy

    assert bpy.context.scene.camera is None
    assert not bpy.ops.recast4d.add_camera_path.poll()  # the default source is a Movie Clip: none picked
    with pytest.raises(RuntimeError, match="Pick a Movie Clip"):
        bpy.ops.recast4d.add_camera_path(preset="orbit", spec_text="orbit:left:10")
    bpy.context.scene.recast4d.source.kind = "SCENE"
    with pytest.raises(RuntimeError, match="source camera"):
        bpy.ops.recast4d.add_camera_path(preset="orbit", spec_text="orbit:left:10")


@pytest.mark.parametrize("fmt", ["nerfstudio", "recammaster", "trajectorycrafter", "viewcrafter", "gen3c"])
def test_camera_path_export_import_round_trip(registered_addon, tmp_path, fmt):
    import warnings

    import bpy

    from addon import camera_io, cameras, targets

    lossless_pose = fmt in ("nerfstudio", "recammaster", "gen3c")
    # traj.txt formats are relative to one (static) reference camera and a pivot
    _animated_source_camera(bpy, shift=(0.0, 0.0), animated=lossless_pose)
    scene = bpy.context.scene
    obj = targets.add_camera_path(bpy.context, "orbit:left:20", pivot_depth=3.0)
    ext = {"nerfstudio": ".json", "recammaster": ".json", "gen3c": ".npz"}.get(fmt, ".txt")
    path = tmp_path / f"path{ext}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        camera_io.export_camera_path(bpy.context, obj, str(path), fmt, pivot_depth=3.0)
        imported = camera_io.import_camera_path(bpy.context, str(path), fmt, pivot_depth=3.0)
    assert imported is not obj and imported.type == "CAMERA"
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        want = cameras.camera_at_current_frame(scene, obj)
        got = cameras.camera_at_current_frame(scene, imported)
        if lossless_pose:
            np.testing.assert_allclose(got.world_to_camera, want.world_to_camera, atol=1e-4)
        else:  # traj.txt stores angles + radius around the pivot: the centre survives, roll may not
            np.testing.assert_allclose(got.center, want.center, atol=2e-3)
        if fmt == "nerfstudio":
            np.testing.assert_allclose(got.K, want.K, rtol=1e-4)
