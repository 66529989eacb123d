"""End-to-end check with a real Cycles render: a small emissive square lands where ``project_points``
says, to a fraction of a pixel (this also pins the +0.5 pixel-centre convention). Needs bpy."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from protocol.blender_camera import camera_from_blender, params_from_blender_objects
from protocol.camera import project_points

pytestmark = pytest.mark.blender

CASES = [
    # (sensor_fit, res_x, res_y, percentage, aspect_x, aspect_y, shift_x, shift_y, camera euler XYZ rad)
    ("VERTICAL", 48, 32, 100, 1.0, 1.5, 0.1, -0.15, (0.0, 0.0, 0.0)),
    ("AUTO", 96, 64, 50, 2.0, 1.0, -0.12, 0.08, (0.3, -0.2, 0.4)),
    ("AUTO", 32, 48, 100, 1.0, 1.0, 0.05, 0.2, (-0.1, 0.25, -0.3)),
]


def _render_marker(case: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Render the marker; return (intensity-weighted centroid in pixels, projected centre in pixels)."""
    import bpy
    from mathutils import Euler, Vector

    fit, rx, ry, pct, ax, ay, sx, sy, euler = case
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 64
    scene.cycles.pixel_filter_type = "BOX"  # pixel value = coverage of the pixel's own square
    scene.cycles.filter_width = 1.0
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = rx, ry, pct
    render.pixel_aspect_x, render.pixel_aspect_y = ax, ay
    data = bpy.data.cameras.new("cam")
    data.lens, data.sensor_fit, data.shift_x, data.shift_y = 30.0, fit, sx, sy
    cam_obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(cam_obj)
    scene.camera = cam_obj
    cam_obj.location = (0.3, -0.2, 0.1)
    cam_obj.rotation_euler = Euler(euler, "XYZ")
    bpy.context.view_layer.update()

    # a 30 cm square parallel to the image plane (so its image is a square), 4 m away, off-axis
    rot = cam_obj.matrix_world.to_3x3()
    centre = cam_obj.matrix_world.translation + rot @ Vector((0.35, 0.25, -4.0))
    bpy.ops.mesh.primitive_plane_add(size=0.3, location=centre, rotation=cam_obj.rotation_euler)
    marker = bpy.context.active_object
    material = bpy.data.materials.new("marker")
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (0.0, 0.0, 0.0, 1.0)
    bsdf.inputs["Emission Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    bsdf.inputs["Emission Strength"].default_value = 1.0
    marker.data.materials.append(material)

    path = os.path.join(tempfile.mkdtemp(prefix="recast4d_marker_"), "marker.exr")
    render.image_settings.file_format = "OPEN_EXR"
    render.image_settings.color_depth = "32"
    render.filepath = path
    bpy.ops.render.render(write_still=True)
    width, height = rx * pct // 100, ry * pct // 100
    pixels = np.array(bpy.data.images.load(path).pixels[:]).reshape(height, width, 4)[::-1, :, 0]
    os.remove(path)
    assert pixels.max() > 0.5, "marker not visible"
    v, u = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    weights = pixels / pixels.sum()
    centroid = np.array([(weights * u).sum(), (weights * v).sum()])
    cam = camera_from_blender(params_from_blender_objects(cam_obj, scene))
    assert (cam.width, cam.height) == (width, height)
    projected, _ = project_points(cam, np.array(centre))
    return centroid, projected


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}x{c[2]}-{c[3]}pct" for c in CASES])
def test_cycles_render_lands_where_camera_projects(case: tuple) -> None:
    centroid, projected = _render_marker(case)
    np.testing.assert_allclose(centroid, projected, atol=0.15)
