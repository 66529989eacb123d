"""Which depth Blender's Depth (Z) pass writes: planar z or distance along the ray (needs bpy).

A wide-angle camera with a shifted principal point looks at a large plane 5 m away, tilted by 25
degrees. For every pixel centre we intersect its ray with the plane analytically, which gives both
the planar depth and the distance along the ray (they differ by up to 4 m here). The
measured pass must equal ``BLENDER_DEPTH_PASS[engine]``'s prediction and not the other one.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from protocol.blender_camera import (
    BLENDER_DEPTH_NO_HIT,
    BLENDER_DEPTH_NO_HIT_MIN,
    BLENDER_DEPTH_PASS,
    camera_from_blender,
    params_from_blender_objects,
)
from protocol.camera import z_to_ray_depth

pytestmark = pytest.mark.blender

PLANE_DISTANCE_M = 5.0
PLANE_TILT_DEG = 25.0


def _render_depth(engine: str, plane_size: float = 200.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render the plane scene at 32x24; return (depth pass (H, W), analytic planar depth (H, W), K)."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = engine
    if engine == "CYCLES":
        scene.cycles.samples = 1
        scene.cycles.device = "CPU"
        scene.cycles.pixel_filter_type = "BOX"
        scene.cycles.filter_width = 0.01  # sample exactly at pixel centres
    else:
        scene.eevee.taa_render_samples = 1
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    scene.render.resolution_percentage = 100
    data = bpy.data.cameras.new("cam")
    data.lens = 20.0
    data.shift_x = 0.1  # off-centre principal point: the pass must still be planar/ray per pixel
    cam_obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(cam_obj)
    scene.camera = cam_obj
    bpy.ops.mesh.primitive_plane_add(size=plane_size, location=(0.0, 0.0, -PLANE_DISTANCE_M),
                                     rotation=(np.radians(PLANE_TILT_DEG), 0.0, 0.0))
    plane = bpy.context.active_object
    normal = np.array(plane.matrix_world.to_3x3() @ plane.data.polygons[0].normal)
    point = np.array(plane.matrix_world.translation)
    scene.view_layers[0].use_pass_z = True

    tree = bpy.data.node_groups.new("depth_out", "CompositorNodeTree")
    scene.compositing_node_group = tree
    layers = tree.nodes.new("CompositorNodeRLayers")
    out = tree.nodes.new("NodeGroupOutput")
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    tree.links.new(layers.outputs["Depth"], out.inputs[0])

    path = os.path.join(tempfile.mkdtemp(prefix="recast4d_depth_"), "depth.exr")
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(path)
    pixels = np.array(image.pixels[:], dtype=np.float64).reshape(24, 32, 4)[::-1, :, 0]  # top row first
    cam = camera_from_blender(params_from_blender_objects(cam_obj, scene))
    os.remove(path)
    # planar depth s of each pixel centre's ray C + s * R^T K^-1 [u, v, 1] hitting the plane
    v, u = np.mgrid[0:24, 0:32] + 0.5
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)
    dirs = pix @ np.linalg.inv(cam.K).T @ cam.rotation  # world directions, unit camera-z component
    planar = (normal @ (point - cam.center)) / (dirs @ normal)
    return pixels, planar, cam.K


def _check_engine(engine: str) -> None:
    depth, planar, K = _render_depth(engine)
    ray = z_to_ray_depth(planar, K)
    assert np.abs(ray - planar).max() > 0.5  # the two conventions are far apart here
    measured = "z" if np.allclose(depth, planar, rtol=2e-3) else "ray" if np.allclose(depth, ray, rtol=2e-3) else "?"
    assert measured == BLENDER_DEPTH_PASS[engine], (
        f"{engine} depth pass looks like {measured!r}: max |pass - z| = {np.abs(depth - planar).max():.4f}, "
        f"max |pass - ray| = {np.abs(depth - ray).max():.4f}")


def test_cycles_depth_pass_is_planar_z() -> None:
    _check_engine("CYCLES")


def test_cycles_depth_pass_marks_background() -> None:
    depth, planar, _ = _render_depth("CYCLES", plane_size=1.0)  # a 1 m plane covers only the middle
    hit = depth < BLENDER_DEPTH_NO_HIT_MIN
    assert 0 < hit.sum() < hit.size // 4
    np.testing.assert_allclose(depth[~hit], BLENDER_DEPTH_NO_HIT, rtol=1e-6)
    np.testing.assert_allclose(depth[hit], planar[hit], rtol=2e-3)


@pytest.mark.slow
def test_eevee_depth_pass_is_planar_z() -> None:
    # EEVEE renders through a software OpenGL context here (~30 s on 2 cores), hence slow.
    _check_engine("BLENDER_EEVEE")
