"""The demo's Blender scene: moving objects over textured ground, a source camera, Cycles renders.

Everything is procedural (checker, brick, wave and noise textures), so nothing is downloaded.
World units are metres, Blender's Z-up world. The source camera stands ``CAMERA_DISTANCE`` metres
from the middle of the set and looks down at it; a back wall closes the view, so every source pixel
hits geometry (exact depth everywhere, no sky).

Lighting is chosen so that a few Cycles samples give a clean image: one sun with a zero angle (hard,
noise-free shadows), no indirect bounces, and a small emission term in every material standing in
for ambient light. The view transform is "Standard" (plain sRGB), so pixel values are the albedo
times light, comparable between the source, the ground truth and the re-filmed shot.

Needs ``bpy`` (the bpy wheel); imported only by the demo and its test.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import imageio.v3 as iio
import mathutils
import numpy as np

SCENE_COLLECTION = "Demo Scene"
SOURCE_CAMERA = "Source Camera"
CAMERA_DISTANCE = 6.5  # metres from the source camera to the orbit pivot (the middle of the set)
CAMERA_LOCATION = (0.0, -6.0, 2.5)
CAMERA_TARGET = (0.0, 0.0, 0.6)


@dataclass
class SceneConfig:
    """Size and timing of the demo shot: ``width`` x ``height`` pixels, frames 1..``frames``."""

    width: int = 192
    height: int = 108
    frames: int = 25
    fps: int = 24
    samples: int = 8
    threads: int = 2


def _look_at(location: tuple[float, float, float], target: tuple[float, float, float]) -> tuple[float, float, float]:
    """XYZ Euler angles (radians) that point a Blender camera (looking down its -Z) at ``target``."""
    direction = np.subtract(target, location, dtype=float)
    yaw = math.atan2(direction[1], direction[0]) - math.pi / 2
    pitch = math.atan2(direction[2], math.hypot(direction[0], direction[1]))
    return (math.pi / 2 + pitch, 0.0, yaw)


def _material(name: str, texture: str, colour_a: tuple, colour_b: tuple, *, scale: float = 4.0,
              ambient: float = 0.35) -> bpy.types.Material:
    """Diffuse material with a procedural texture between two colours plus an ambient emission term."""
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender < 5.0
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    coords = nodes.new("ShaderNodeTexCoord")
    if texture == "checker":
        tex = nodes.new("ShaderNodeTexChecker")
        tex.inputs["Color1"].default_value = (*colour_a, 1.0)
        tex.inputs["Color2"].default_value = (*colour_b, 1.0)
        tex.inputs["Scale"].default_value = scale
        colour = tex.outputs["Color"]
    elif texture == "brick":
        tex = nodes.new("ShaderNodeTexBrick")
        tex.inputs["Color1"].default_value = (*colour_a, 1.0)
        tex.inputs["Color2"].default_value = (*colour_b, 1.0)
        tex.inputs["Mortar"].default_value = (0.9, 0.9, 0.85, 1.0)
        tex.inputs["Scale"].default_value = scale
        colour = tex.outputs["Color"]
    else:  # "wave" / "noise": a ramp between the two colours driven by the texture's factor
        tex = nodes.new("ShaderNodeTexWave" if texture == "wave" else "ShaderNodeTexNoise")
        tex.inputs["Scale"].default_value = scale
        mix = nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        links.new(tex.outputs["Fac"], mix.inputs["Factor"])
        mix.inputs["A"].default_value = (*colour_a, 1.0)
        mix.inputs["B"].default_value = (*colour_b, 1.0)
        colour = mix.outputs["Result"]
    links.new(coords.outputs["Object"], tex.inputs["Vector"])
    bsdf = nodes.new("ShaderNodeBsdfDiffuse")
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = ambient
    add = nodes.new("ShaderNodeAddShader")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(colour, bsdf.inputs["Color"])
    links.new(colour, emission.inputs["Color"])
    links.new(bsdf.outputs["BSDF"], add.inputs[0])
    links.new(emission.outputs["Emission"], add.inputs[1])
    links.new(add.outputs["Shader"], output.inputs["Surface"])
    return material


def _add(collection: bpy.types.Collection, primitive: str, material: bpy.types.Material, **kwargs) -> bpy.types.Object:
    getattr(bpy.ops.mesh, primitive)(**kwargs)
    obj = bpy.context.active_object
    for owner in obj.users_collection:
        owner.objects.unlink(obj)
    collection.objects.link(obj)
    obj.data.materials.append(material)
    return obj


def _key(obj: bpy.types.Object, frame: int, **values) -> None:
    for name, value in values.items():
        setattr(obj, name, value)
        obj.keyframe_insert(data_path=name, frame=frame)


def build_scene(config: SceneConfig) -> bpy.types.Scene:
    """Reset Blender to an empty scene and build the demo shot; returns the scene.

    Set: a 16 x 16 m checker ground, a 16 x 5 m brick back wall 4 m behind the centre, a wave-textured pillar.
    Motion over frames 1..F: a checker cube slides left to right while turning, a noise-textured
    ball rolls towards the camera and bounces, a striped box rises and sinks. The scene camera is
    the static source camera ``CAMERA_DISTANCE`` m from the centre, 35 mm lens on a 36 mm sensor.
    """
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = "Recast 4D demo"
    collection = bpy.data.collections.new(SCENE_COLLECTION)
    scene.collection.children.link(collection)
    last = config.frames

    ground = _material("Ground", "checker", (0.75, 0.72, 0.6), (0.18, 0.3, 0.22), scale=1.0)
    wall = _material("Wall", "brick", (0.62, 0.22, 0.12), (0.42, 0.14, 0.1), scale=1.5)
    pillar = _material("Pillar", "wave", (0.15, 0.35, 0.8), (0.9, 0.85, 0.3), scale=3.0)
    cube = _material("Cube", "checker", (0.95, 0.55, 0.05), (0.2, 0.05, 0.35), scale=3.0)
    ball = _material("Ball", "noise", (0.1, 0.7, 0.75), (0.95, 0.95, 0.95), scale=6.0)
    box = _material("Box", "wave", (0.85, 0.1, 0.35), (0.95, 0.9, 0.8), scale=4.0)

    _add(collection, "primitive_plane_add", ground, size=16.0, location=(0.0, 1.0, 0.0))
    back_wall = _add(collection, "primitive_plane_add", wall, size=1.0, location=(0.0, 4.0, 2.5),
                     rotation=(math.pi / 2, 0.0, 0.0))
    back_wall.data.transform(mathutils.Matrix.Diagonal((16.0, 5.0, 1.0, 1.0)))  # metric texture coordinates
    _add(collection, "primitive_cylinder_add", pillar, radius=0.35, depth=2.4, location=(2.0, 2.2, 1.2))

    moving_cube = _add(collection, "primitive_cube_add", cube, size=0.9, location=(-2.2, 0.6, 0.45))
    _key(moving_cube, 1, location=(-2.2, 0.6, 0.45), rotation_euler=(0.0, 0.0, 0.0))
    _key(moving_cube, last, location=(1.0, 0.2, 0.45), rotation_euler=(0.0, 0.0, math.radians(120)))
    moving_ball = _add(collection, "primitive_uv_sphere_add", ball, radius=0.45, location=(0.6, 2.5, 0.45),
                       segments=32, ring_count=16)
    bpy.ops.object.shade_smooth()
    for i, frame in enumerate(np.linspace(1, last, 5).round().astype(int)):
        height = 0.45 + (0.7 if i % 2 else 0.0)
        _key(moving_ball, int(frame), location=(0.6 - 0.3 * i, 2.5 - 0.5 * i, height))
    lift_box = _add(collection, "primitive_cube_add", box, size=0.6, location=(-1.3, 2.6, 0.3))
    _key(lift_box, 1, location=(-1.3, 2.6, 0.3))
    _key(lift_box, max(1, last // 2), location=(-1.3, 2.6, 1.4))
    _key(lift_box, last, location=(-1.3, 2.6, 0.3))

    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy, sun.data.angle = 3.0, 0.0
    sun.rotation_euler = (math.radians(40), math.radians(-20), math.radians(-30))
    collection.objects.link(sun)

    camera = bpy.data.objects.new(SOURCE_CAMERA, bpy.data.cameras.new(SOURCE_CAMERA))
    camera.data.lens, camera.data.sensor_width, camera.data.sensor_fit = 35.0, 36.0, "HORIZONTAL"
    camera.location = CAMERA_LOCATION
    camera.rotation_euler = _look_at(CAMERA_LOCATION, CAMERA_TARGET)
    scene.collection.objects.link(camera)
    scene.camera = camera

    world = bpy.data.worlds.new("Demo World")
    world.color = (0.05, 0.05, 0.06)
    scene.world = world
    configure_render(scene, config)
    return scene


def configure_render(scene: bpy.types.Scene, config: SceneConfig) -> None:
    """Cycles on the CPU, few samples, no denoising, no indirect light, plain sRGB output."""
    render = scene.render
    render.engine = "CYCLES"
    render.resolution_x, render.resolution_y, render.resolution_percentage = config.width, config.height, 100
    render.fps, render.fps_base = config.fps, 1.0
    render.threads_mode, render.threads = "FIXED", config.threads
    render.film_transparent = False
    scene.frame_start, scene.frame_end = 1, config.frames
    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = config.samples
    cycles.use_adaptive_sampling = False
    cycles.use_denoising = False
    cycles.max_bounces = 0
    cycles.seed = 0
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"


def scene_objects() -> list[bpy.types.Object]:
    """The objects of the demo set (geometry and the sun), not cameras or imported results."""
    return [obj for obj in bpy.data.collections[SCENE_COLLECTION].all_objects if obj.type != "CAMERA"]


def render_animation(scene: bpy.types.Scene, camera: bpy.types.Object, visible: list[bpy.types.Object], *,
                     view_transform: str = "Standard", transparent: bool = False) -> np.ndarray:
    """Render the scene's frame range through ``camera`` showing only ``visible``; ``(F, H, W, 3)`` uint8.

    ``transparent``: transparent film, ``(F, H, W, 4)`` RGBA with straight alpha (0 where no
    object covers the pixel).

    Every other object is left out of this render (``hide_render``, restored afterwards); row 0 of
    each frame is the top. ``view_transform`` "Standard" encodes linear light as sRGB; "Raw" writes
    the rendered values unchanged (for colours that are already sRGB-encoded).
    """
    keep = set(visible)
    saved_hidden = [(obj, obj.hide_render) for obj in bpy.data.objects if obj.type != "CAMERA"]
    saved_camera, saved_path = scene.camera, scene.render.filepath
    saved_transform = scene.view_settings.view_transform
    settings = scene.render.image_settings
    saved_format = (settings.file_format, settings.color_mode, settings.color_depth)
    saved_transparent = scene.render.film_transparent
    channels = 4 if transparent else 3
    try:
        for obj, _ in saved_hidden:
            obj.hide_render = obj not in keep
        scene.camera = camera
        scene.view_settings.view_transform = view_transform
        settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGBA" if transparent else "RGB", "8"
        scene.render.film_transparent = transparent
        with tempfile.TemporaryDirectory(prefix="recast4d_demo_") as tmp:
            scene.render.filepath = str(Path(tmp) / "frame_")
            bpy.ops.render.render(animation=True)
            files = sorted(Path(tmp).glob("frame_*.png"))
            frames = np.stack([iio.imread(f)[..., :channels] for f in files])
    finally:
        scene.camera, scene.render.filepath = saved_camera, saved_path
        scene.view_settings.view_transform = saved_transform
        settings.file_format, settings.color_mode, settings.color_depth = saved_format
        scene.render.film_transparent = saved_transparent
        for obj, hidden in saved_hidden:
            obj.hide_render = hidden
    expected = scene.frame_end - scene.frame_start + 1
    if frames.shape[0] != expected:
        raise RuntimeError(f"Cycles wrote {frames.shape[0]} frames, expected {expected}")
    return frames


def scale_point_radius(obj: bpy.types.Object, factor: float) -> bpy.types.NodesModifier:
    """Diagnostic: a geometry-nodes modifier (after the cache modifier) multiplying every point's radius.

    Cycles draws each point as a sphere; disks of diameter one pixel footprint on a pixel grid leave
    the corners between four neighbours uncovered (about 21 % of the area), a factor >= sqrt(2) closes them.
    """
    group = bpy.data.node_groups.new(f"{obj.name} radius x{factor:g}", "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    group_in, group_out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    radius = nodes.new("GeometryNodeInputRadius")
    multiply = nodes.new("ShaderNodeMath")
    multiply.operation = "MULTIPLY"
    multiply.inputs[1].default_value = factor
    set_radius = nodes.new("GeometryNodeSetPointRadius")
    links.new(group_in.outputs[0], set_radius.inputs["Points"])
    links.new(radius.outputs[0], multiply.inputs[0])
    links.new(multiply.outputs[0], set_radius.inputs["Radius"])
    links.new(set_radius.outputs[0], group_out.inputs[0])
    modifier = obj.modifiers.new("Demo radius scale", "NODES")
    modifier.node_group = group
    return modifier
