"""Blender ground truth: lift a Cycles render from camera A, render it into camera B, compare (needs bpy).

Scene: an emissive floor, a box and a ball (view-independent, smoothly varying colours), black world.
Cycles renders colour and the Depth pass from A and from B at 64x48, one sample exactly at each pixel
centre. We lift A (colour + depth) and render into B with :mod:`backend.geometry`; the true
visibility of B's pixels from A comes from B's own depth pass, reprojected into A and compared with
A's depth. The same data tells which depth convention Cycles writes: lifting the pass as planar z
must match B far better than lifting it as distance along the ray.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pytest
import torch

from backend.geometry import lift_frames, render_points
from protocol.blender_camera import camera_from_blender, params_from_blender_objects

pytestmark = pytest.mark.blender

WIDTH, HEIGHT = 64, 48
# 64x48 views have f ~ 53 px, so a floor seen at a grazing angle changes depth by more than 5% per
# pixel; the flying-pixel threshold is raised accordingly (exact Blender depth has no flying pixels).
EDGE = 0.1
TEXTURE_FREQUENCY = 0.6  # radians per metre: smooth enough for nearest-sample resampling at 64x48
NO_HIT_MIN = 1e9  # Cycles writes 1e10 where a pixel sees only the world background


def _emissive_material(bpy, name: str, offset: tuple[float, float, float]):
    """Emission = 0.15 + 0.7 * (0.5 + 0.5 * sin(world position)) per channel: smooth, view-independent."""
    mat = bpy.data.materials.new(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    coords = nodes.new("ShaderNodeTexCoord")
    sep = nodes.new("ShaderNodeSeparateXYZ")
    links.new(coords.outputs["Object"], sep.inputs[0])
    combine = nodes.new("ShaderNodeCombineColor")
    for channel, (axis, phase) in enumerate(zip(("X", "Y", "Z"), offset)):
        wave = nodes.new("ShaderNodeMath")
        wave.operation = "SINE"
        scaled = nodes.new("ShaderNodeMath")
        scaled.operation = "MULTIPLY_ADD"
        scaled.inputs[1].default_value = TEXTURE_FREQUENCY
        scaled.inputs[2].default_value = phase
        links.new(sep.outputs[axis], scaled.inputs[0])
        links.new(scaled.outputs[0], wave.inputs[0])
        level = nodes.new("ShaderNodeMath")
        level.operation = "MULTIPLY_ADD"
        level.inputs[1].default_value = 0.35
        level.inputs[2].default_value = 0.5
        links.new(wave.outputs[0], level.inputs[0])
        links.new(level.outputs[0], combine.inputs[channel])
    emission = nodes.new("ShaderNodeEmission")
    links.new(combine.outputs[0], emission.inputs["Color"])
    out = nodes.new("ShaderNodeOutputMaterial")
    links.new(emission.outputs[0], out.inputs["Surface"])
    return mat


def _build_scene(bpy):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.cycles.pixel_filter_type = "BOX"
    scene.cycles.filter_width = 0.01  # one sample exactly at each pixel centre
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.view_layers[0].use_pass_z = True
    shapes = [
        (bpy.ops.mesh.primitive_plane_add, {"size": 8.0, "location": (0.0, 0.0, 0.0)}, (0.0, 1.0, 2.0)),
        (bpy.ops.mesh.primitive_cube_add, {"size": 1.2, "location": (-0.4, 0.3, 0.6)}, (2.0, 0.5, 1.0)),
        (bpy.ops.mesh.primitive_uv_sphere_add, {"radius": 0.55, "location": (0.9, -0.6, 0.55),
                                                "segments": 48, "ring_count": 24}, (1.0, 2.5, 0.3)),
    ]
    for index, (add, kwargs, phases) in enumerate(shapes):
        add(**kwargs)
        obj = bpy.context.active_object
        if "segments" in kwargs:
            bpy.ops.object.shade_smooth()
        obj.data.materials.append(_emissive_material(bpy, f"mat{index}", phases))
    return scene


def _add_camera(bpy, scene, name: str, location: tuple[float, float, float]):
    data = bpy.data.cameras.new(name)
    data.lens = 30.0
    cam = bpy.data.objects.new(name, data)
    scene.collection.objects.link(cam)
    cam.location = location
    direction = -np.asarray(location) + np.array([0.0, 0.0, 0.4])
    import mathutils

    cam.rotation_euler = mathutils.Vector(direction.tolist()).to_track_quat("-Z", "Y").to_euler()
    bpy.context.view_layer.update()
    return cam


def _render(bpy, scene, cam, pass_name: str, folder: str) -> np.ndarray:
    """Render ``cam`` and return the chosen compositor output ``(H, W, 4)``, top row first."""
    scene.camera = cam
    tree = bpy.data.node_groups.new(f"out_{pass_name}", "CompositorNodeTree")
    scene.compositing_node_group = tree
    layers = tree.nodes.new("CompositorNodeRLayers")
    out = tree.nodes.new("NodeGroupOutput")
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    tree.links.new(layers.outputs[pass_name], out.inputs[0])
    path = os.path.join(folder, f"{cam.name}_{pass_name}.exr")
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(path)
    pixels = np.ascontiguousarray(np.array(image.pixels[:], dtype=np.float64).reshape(HEIGHT, WIDTH, 4)[::-1])
    bpy.data.images.remove(image)
    return pixels


@pytest.fixture(scope="module")
def blender_views() -> dict:
    import bpy

    scene = _build_scene(bpy)
    views = {}
    with tempfile.TemporaryDirectory(prefix="recast4d_geometry_") as folder:
        for name, location in (("A", (0.8, -5.0, 2.6)), ("B", (-1.0, -4.7, 2.9))):
            cam = _add_camera(bpy, scene, name, location)
            rgb = _render(bpy, scene, cam, "Image", folder)[..., :3]
            depth = _render(bpy, scene, cam, "Depth", folder)[..., 0]
            views[name] = (rgb, depth, camera_from_blender(params_from_blender_objects(cam, scene)))
    return views


def _true_visibility(views: dict) -> np.ndarray:
    """B's pixels whose surface point (from B's depth) is the surface A sees at its projection."""
    _, depth_a, cam_a = views["A"]
    _, depth_b, cam_b = views["B"]
    hit_b = depth_b < NO_HIT_MIN
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(cam_b.K).T
    world = (rays * depth_b[..., None]) @ cam_b.rotation + cam_b.center  # rows: R^T (x_cam - t)
    in_a = world @ cam_a.rotation.T + cam_a.world_to_camera[:3, 3]
    z_a = in_a[..., 2]
    uv = in_a @ cam_a.K.T
    x = np.floor(uv[..., 0] / z_a).astype(int)
    y = np.floor(uv[..., 1] / z_a).astype(int)
    inside = hit_b & (z_a > 0) & (x >= 0) & (x < WIDTH) & (y >= 0) & (y < HEIGHT)
    seen_depth = np.where(inside, depth_a[y.clip(0, HEIGHT - 1), x.clip(0, WIDTH - 1)], np.inf)
    return inside & (np.abs(seen_depth - z_a) <= 0.03 * z_a)


def _lift_and_render(views: dict, depth_kind: str):
    rgb_a, depth_a, cam_a = views["A"]
    _, _, cam_b = views["B"]
    points = lift_frames(torch.from_numpy(rgb_a[None]).float().clamp(0, 1),
                         torch.from_numpy(depth_a[None]).float(), cam_a.K, cam_a.world_to_camera,
                         depth_kind=depth_kind, max_depth=NO_HIT_MIN, edge_threshold=EDGE)
    return render_points(points, cam_b.K, cam_b.world_to_camera, WIDTH, HEIGHT)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def test_lifted_render_matches_blender_from_a_new_camera(blender_views: dict) -> None:
    truth = _true_visibility(blender_views)
    view = _lift_and_render(blender_views, "z")
    mask = view.mask[0].numpy()
    iou = (mask & truth).sum() / (mask | truth).sum()
    both = mask & truth
    psnr = _psnr(view.rgb[0].numpy()[both], blender_views["B"][0][both])
    print(f"Blender A->B: visibility IoU {iou:.4f}, PSNR {psnr:.2f} dB on {both.sum()} pixels "
          f"(B sees {int((blender_views['B'][1] < NO_HIT_MIN).sum())} surface pixels, {int(truth.sum())} seen by A)")
    assert truth.sum() > 0.3 * WIDTH * HEIGHT, "the scene must fill a good part of the view"
    assert (~truth & (blender_views["B"][1] < NO_HIT_MIN)).sum() > 20, "B must see something A cannot"
    assert iou >= 0.95
    assert psnr >= 30.0


def test_cycles_depth_pass_is_planar(blender_views: dict) -> None:
    """Lifted as planar z, A's pass reproduces B's pass; lifted as ray distance, it does not."""
    depth_b = blender_views["B"][1]
    errors = {}
    for kind in ("z", "ray"):
        view = _lift_and_render(blender_views, kind)
        both = view.mask[0].numpy() & (depth_b < NO_HIT_MIN)
        rendered = view.depth[0].numpy()[both]
        errors[kind] = float(np.median(np.abs(rendered - depth_b[both]) / depth_b[both]))
    print(f"median relative depth error A->B: as planar z {errors['z']:.4f}, as ray {errors['ray']:.4f}")
    assert errors["z"] < 0.01
    assert errors["ray"] > 3 * errors["z"]
