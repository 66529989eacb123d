"""Blender camera conversion checked against a real bpy camera (needs the bpy wheel)."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.blender_camera import (
    apply_params_to_blender_objects,
    blender_from_camera,
    camera_from_blender,
    params_from_blender_objects,
)
from protocol.camera import Camera, project_points

pytestmark = pytest.mark.blender

CASES = [
    # (sensor_fit, res_x, res_y, percentage, aspect_x, aspect_y, shift_x, shift_y)
    ("AUTO", 64, 48, 100, 1.0, 1.0, 0.0, 0.0),
    ("AUTO", 48, 64, 50, 1.0, 1.0, 0.1, -0.2),
    ("AUTO", 64, 60, 100, 1.0, 1.3, 0.05, 0.07),  # aspect flips AUTO to VERTICAL
    ("HORIZONTAL", 40, 64, 100, 1.0, 1.0, -0.15, 0.1),
    ("HORIZONTAL", 64, 48, 75, 2.0, 1.0, 0.2, 0.3),
    ("VERTICAL", 64, 48, 100, 1.0, 1.0, 0.1, 0.1),
    ("VERTICAL", 48, 64, 200, 1.0, 1.5, -0.3, 0.25),
]


def _new_scene_camera(rng: np.random.Generator):
    import bpy
    from mathutils import Euler, Matrix, Vector

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    data = bpy.data.cameras.new("probe")
    obj = bpy.data.objects.new("probe", data)
    scene.collection.objects.link(obj)
    scene.camera = obj
    rot = Euler(tuple(rng.uniform(-np.pi, np.pi, 3)), "XYZ").to_matrix().to_4x4()
    # a non-unit object scale must not change the projection
    obj.matrix_world = Matrix.Translation(Vector(tuple(rng.uniform(-3, 3, 3)))) @ rot @ Matrix.Diagonal(
        (1.5, 0.7, 2.0, 1.0))
    return bpy, scene, obj


def _blender_ndc(scene, obj, points: np.ndarray) -> np.ndarray:
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    return np.array([tuple(world_to_camera_view(scene, obj, Vector(tuple(p)))) for p in points])


def _points_in_view(cam: Camera, rng: np.random.Generator, n: int = 40) -> np.ndarray:
    uv = rng.uniform([-0.2 * cam.width, -0.2 * cam.height], [1.2 * cam.width, 1.2 * cam.height], (n, 2))
    z = rng.uniform(0.5, 20.0, n)
    rays = np.linalg.solve(cam.K, np.concatenate([uv, np.ones((n, 1))], axis=1).T).T
    return (rays * z[:, None]) @ cam.camera_to_world[:3, :3].T + cam.center


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}x{c[2]}-{c[3]}pct-asp{c[4]}:{c[5]}" for c in CASES])
def test_projection_matches_world_to_camera_view(case: tuple) -> None:
    fit, rx, ry, pct, ax, ay, sx, sy = case
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    bpy, scene, obj = _new_scene_camera(rng)
    obj.data.lens = 28.0
    obj.data.sensor_width, obj.data.sensor_height = 32.0, 20.0
    obj.data.sensor_fit = fit
    obj.data.shift_x, obj.data.shift_y = sx, sy
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = rx, ry, pct
    r.pixel_aspect_x, r.pixel_aspect_y = ax, ay

    params = params_from_blender_objects(obj, scene)
    cam = camera_from_blender(params)
    assert (cam.width, cam.height) == (rx * pct // 100, ry * pct // 100)

    points = _points_in_view(cam, rng)
    ndc = _blender_ndc(scene, obj, points)
    uv, z = project_points(cam, points)
    ours = np.stack([uv[:, 0] / cam.width, 1.0 - uv[:, 1] / cam.height], axis=1)
    np.testing.assert_allclose(ours, ndc[:, :2], atol=1e-5)
    np.testing.assert_allclose(z, ndc[:, 2], rtol=1e-5)

    # round trip: Camera -> Blender values -> bpy -> Camera reproduces the projection
    back = blender_from_camera(cam, sensor_width=32.0, sensor_fit=fit, sensor_height=20.0)
    apply_params_to_blender_objects(back, obj, scene)
    cam2 = camera_from_blender(params_from_blender_objects(obj, scene))
    np.testing.assert_allclose(cam2.K, cam.K, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(cam2.world_to_camera, cam.world_to_camera, atol=1e-5)
    ndc2 = _blender_ndc(scene, obj, points)
    np.testing.assert_allclose(ndc2[:, :2], ndc[:, :2], atol=1e-5)


@pytest.mark.parametrize("fit,rx,ry", [("AUTO", 64, 48), ("AUTO", 48, 64), ("HORIZONTAL", 48, 64),
                                       ("VERTICAL", 64, 48)])
def test_nerfstudio_fov_matches_nerfstudio_blender_addon_formula(fit: str, rx: int, ry: int) -> None:
    """The vertical fov we write equals what nerfstudio's Blender add-on derives from ``camera.angle``."""
    import math

    from protocol.blender_camera import vertical_fov_deg

    _bpy, scene, obj = _new_scene_camera(np.random.default_rng(7))
    obj.data.lens, obj.data.sensor_fit = 30.0, fit
    scene.render.resolution_x, scene.render.resolution_y = rx, ry
    angle = obj.data.angle
    horizontal = fit == "HORIZONTAL" or (fit == "AUTO" and rx >= ry)
    expected = 2.0 * math.atan(math.tan(angle / 2.0) * ry / rx) if horizontal else angle
    assert vertical_fov_deg(params_from_blender_objects(obj, scene)) == pytest.approx(math.degrees(expected))
