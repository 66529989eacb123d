"""Blender camera objects <-> protocol :class:`Camera` lists, per frame.

All conversions go through ``protocol.blender_camera`` (OpenCV convention inside Recast 4D: x right,
y down, z forward, ``world_to_camera`` 4x4 in metres, ``K`` in pixels of the rendered image). This
module only reads/writes Blender data per frame: ``matrix_world``, lens, sensor, shift and the scene
resolution, and writes keyframes (location, XYZ Euler rotation, lens, shift) so users can edit the
generated paths like any other animation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import bpy
import mathutils
import numpy as np

from .deps import protocol_module

_bcam = protocol_module("blender_camera")
_errors = protocol_module("errors")

#: Camera data paths keyframed on generated camera paths (object transform + camera data).
OBJECT_KEY_PATHS = ("location", "rotation_euler")
DATA_KEY_PATHS = ("lens", "shift_x", "shift_y")


def require_camera_object(obj: bpy.types.Object | None, role: str = "camera") -> bpy.types.Object:
    """Return ``obj`` if it is a perspective camera object, else raise ``CameraError`` saying why."""
    if obj is None:
        raise _errors.CameraError(f"no {role} set")
    if obj.type != "CAMERA":
        raise _errors.CameraError(f"{role} {obj.name!r} is a {obj.type.lower()}, not a camera")
    if obj.data.type != "PERSP":
        raise _errors.CameraError(f"{role} {obj.name!r} is {obj.data.type.lower()}; only perspective cameras work")
    return obj


def camera_at_current_frame(scene: bpy.types.Scene, obj: bpy.types.Object):
    """The protocol ``Camera`` of ``obj`` as evaluated at the scene's current frame."""
    params = _bcam.params_from_blender_objects(obj, scene)
    return _bcam.camera_from_blender(params)


def cameras_from_blender(scene: bpy.types.Scene, obj: bpy.types.Object, frames: Iterable[int]) -> list:
    """Export ``obj`` (static or animated) as one protocol ``Camera`` per frame in ``frames``.

    Sets each frame (so drivers, constraints and parents are evaluated), reads ``matrix_world``,
    lens, sensor, shift and resolution, and restores the scene's current frame afterwards.
    """
    require_camera_object(obj)
    frames = list(frames)
    if not frames:
        raise _errors.ValidationError("no frames to export")
    original = scene.frame_current, scene.frame_subframe
    cameras = []
    try:
        for frame in frames:
            scene.frame_set(int(frame))
            cameras.append(camera_at_current_frame(scene, obj))
    finally:
        scene.frame_set(original[0], subframe=original[1])
    return cameras


def _matrix_from_numpy(matrix: np.ndarray) -> mathutils.Matrix:
    return mathutils.Matrix([list(map(float, row)) for row in np.asarray(matrix)])


def active_collection(scene: bpy.types.Scene, context: bpy.types.Context | None = None) -> bpy.types.Collection:
    """Where new objects go, as with Blender's own Add menu: the active collection of ``scene``'s view
    layer in ``context`` (default: the current one), else the scene's root collection."""
    context = context or bpy.context
    if getattr(context, "scene", None) == scene:
        layer_collection = getattr(getattr(context, "view_layer", None), "active_layer_collection", None)
        if layer_collection is not None and layer_collection.collection is not None:
            return layer_collection.collection
    return scene.collection


def new_camera_object(context: bpy.types.Context, name: str,
                      like: bpy.types.Object | None = None) -> bpy.types.Object:
    """A new camera object linked to the active collection, copying sensor/clip settings of ``like``."""
    data = bpy.data.cameras.new(name)
    if like is not None and like.type == "CAMERA":
        src = like.data
        data.sensor_width, data.sensor_height, data.sensor_fit = src.sensor_width, src.sensor_height, src.sensor_fit
        data.clip_start, data.clip_end = src.clip_start, src.clip_end
        data.lens_unit = src.lens_unit
    obj = bpy.data.objects.new(name, data)
    active_collection(context.scene, context).objects.link(obj)
    return obj


def keyframe_camera_path(obj: bpy.types.Object, cameras: Sequence, frames: Sequence[int]) -> None:
    """Keyframe ``obj`` so that at ``frames[i]`` it renders exactly ``cameras[i]``.

    The sensor size/fit of ``obj`` is kept and the lens and shift are derived for it; the scene's
    resolution is not changed (the path's cameras must have the scene's render size). Rotations are
    written as XYZ Euler angles made compatible with the previous key, so interpolation never spins.
    """
    require_camera_object(obj)
    if len(cameras) != len(frames):
        raise _errors.ValidationError(f"{len(cameras)} cameras for {len(frames)} frames")
    data = obj.data
    obj.rotation_mode = "XYZ"
    previous_euler: mathutils.Euler | None = None
    for cam, frame in zip(cameras, frames):
        params = _bcam.blender_from_camera(
            cam, sensor_width=data.sensor_width, sensor_fit=data.sensor_fit, sensor_height=data.sensor_height,
            clip_start=data.clip_start, clip_end=data.clip_end,
        )
        matrix = _matrix_from_numpy(params.matrix_world)
        location, rotation, _scale = matrix.decompose()
        euler = rotation.to_euler("XYZ", previous_euler) if previous_euler else rotation.to_euler("XYZ")
        previous_euler = euler
        obj.location = location
        obj.rotation_euler = euler
        obj.scale = (1.0, 1.0, 1.0)
        data.lens = params.lens_mm
        data.shift_x = params.shift_x
        data.shift_y = params.shift_y
        for path in OBJECT_KEY_PATHS:
            obj.keyframe_insert(data_path=path, frame=frame)
        for path in DATA_KEY_PATHS:
            data.keyframe_insert(data_path=path, frame=frame)


def camera_path_frames(scene: bpy.types.Scene, count: int, start: int | None = None) -> list[int]:
    """``count`` consecutive frame numbers starting at ``start`` (default: the scene's start frame)."""
    first = scene.frame_start if start is None else start
    return list(range(first, first + count))


def cameras_equal(a, b, *, atol_pose: float = 1e-5, rtol_k: float = 1e-5) -> bool:
    """Whether two protocol cameras render the same image (pose within ``atol_pose`` m, K relative)."""
    return (a.width == b.width and a.height == b.height
            and np.allclose(a.world_to_camera, b.world_to_camera, atol=atol_pose)
            and np.allclose(a.K, b.K, rtol=rtol_k, atol=1e-6 * max(a.width, a.height)))


__all__ = [
    "active_collection", "camera_at_current_frame", "camera_path_frames", "cameras_equal", "cameras_from_blender",
    "keyframe_camera_path", "new_camera_object", "require_camera_object",
]
