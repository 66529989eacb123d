"""Pure-numpy conversion between Blender camera data and the OpenCV :class:`~protocol.camera.Camera`.

Blender conventions (what this module reproduces, following Blender's
``BKE_camera_params_compute_viewplane``):

- A Blender camera looks down its local **-Z** axis with **+Y up** and +X right; OpenCV looks down
  +Z with +Y down. So ``camera_to_world(OpenCV) = normalize(matrix_world) @ diag(1, -1, -1, 1)``.
  Object scale in ``matrix_world`` is ignored (as Blender does when rendering).
- Render size in pixels: ``W = floor(resolution_x * resolution_percentage / 100)``, same for H.
- Sensor fit: ``AUTO`` picks HORIZONTAL when ``W * pixel_aspect_x >= H * pixel_aspect_y``, else
  VERTICAL. AUTO and HORIZONTAL use ``sensor_width`` as the sensor size; VERTICAL uses ``sensor_height``.
- ``ycor = pixel_aspect_y / pixel_aspect_x``; the fitted extent in x-pixel units is
  ``viewfac = W`` (horizontal fit) or ``viewfac = ycor * H`` (vertical fit).
- Intrinsics in pixels (pixel centres at +0.5, as everywhere in Recast 4D)::

      fx = lens_mm * viewfac / sensor_mm      fy = fx / ycor
      cx = W / 2 - shift_x * viewfac          cy = H / 2 + shift_y * viewfac / ycor

  i.e. shifts are fractions of the larger (fitted) image dimension, +shift_x moves the view right
  (content left), +shift_y moves the view up (content down).

Only perspective cameras are supported; orthographic/panoramic cameras raise :class:`CameraError`
on the Blender side (the add-on checks ``camera.type`` before calling here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .camera import Camera, rigid_inverse
from .errors import CameraError

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")
# OpenCV camera axes expressed in Blender camera axes (and back: the matrix is its own inverse).
BLENDER_TO_OPENCV_AXES = np.diag([1.0, -1.0, -1.0, 1.0])
_MIN_LENS_MM = 1e-3
_MAX_ABS_SHIFT = 10.0  # Blender's UI/RNA limit for shift_x / shift_y


@dataclass(frozen=True)
class BlenderCameraParams:
    """The Blender values that define a perspective render camera.

    ``matrix_world`` is the camera object's 4x4 world matrix (Blender convention, metres);
    ``lens_mm``, ``sensor_width``, ``sensor_height`` are in millimetres; ``shift_x``/``shift_y``
    are fractions of the fitted image dimension; ``resolution_x/y`` and
    ``resolution_percentage`` are the scene render settings; ``pixel_aspect_x/y`` the render pixel
    aspect; ``clip_start``/``clip_end`` in metres (carried through, not part of :class:`Camera`).
    """

    matrix_world: np.ndarray = field(default_factory=lambda: np.eye(4))
    lens_mm: float = 50.0
    sensor_width: float = 36.0
    sensor_height: float = 24.0
    sensor_fit: str = "AUTO"
    shift_x: float = 0.0
    shift_y: float = 0.0
    resolution_x: int = 1920
    resolution_y: int = 1080
    resolution_percentage: int = 100
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0
    clip_start: float = 0.1
    clip_end: float = 1000.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "matrix_world", np.asarray(self.matrix_world, dtype=np.float64))
        _validate_params(self)

    @property
    def render_width(self) -> int:
        """Rendered image width in pixels (after ``resolution_percentage``)."""
        return self.resolution_x * self.resolution_percentage // 100

    @property
    def render_height(self) -> int:
        """Rendered image height in pixels (after ``resolution_percentage``)."""
        return self.resolution_y * self.resolution_percentage // 100

    @property
    def effective_sensor_fit(self) -> str:
        """``HORIZONTAL`` or ``VERTICAL``: what ``AUTO`` resolves to for this render size and aspect."""
        return effective_sensor_fit(self.sensor_fit, self.render_width, self.render_height,
                                    self.pixel_aspect_x, self.pixel_aspect_y)

    def to_dict(self) -> dict:
        """Plain-data form for msgpack/JSON."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["matrix_world"] = self.matrix_world.tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> BlenderCameraParams:
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (TypeError, ValueError) as exc:
            raise CameraError(f"bad Blender camera parameters: {exc}") from exc


def _validate_params(p: BlenderCameraParams) -> None:
    if p.matrix_world.shape != (4, 4) or not np.all(np.isfinite(p.matrix_world)):
        raise CameraError(f"matrix_world must be a finite 4x4 matrix, got shape {p.matrix_world.shape}")
    if p.sensor_fit not in SENSOR_FITS:
        raise CameraError(f"sensor_fit must be one of {SENSOR_FITS}, got {p.sensor_fit!r}")
    for name in ("lens_mm", "sensor_width", "sensor_height", "pixel_aspect_x", "pixel_aspect_y"):
        value = getattr(p, name)
        if not (math.isfinite(value) and value > 0):
            raise CameraError(f"{name} must be a positive number, got {value}")
    for name in ("shift_x", "shift_y"):
        if not math.isfinite(getattr(p, name)):
            raise CameraError(f"{name} must be finite")
    if p.resolution_x <= 0 or p.resolution_y <= 0 or p.resolution_percentage <= 0:
        raise CameraError(
            f"resolution must be positive, got {p.resolution_x}x{p.resolution_y} at {p.resolution_percentage}%")
    if p.render_width <= 0 or p.render_height <= 0:
        raise CameraError(f"render size is zero: {p.resolution_x}x{p.resolution_y} at {p.resolution_percentage}%")
    if not (0 < p.clip_start < p.clip_end):
        raise CameraError(f"need 0 < clip_start < clip_end, got {p.clip_start}, {p.clip_end}")


def effective_sensor_fit(sensor_fit: str, width: int, height: int,
                         pixel_aspect_x: float = 1.0, pixel_aspect_y: float = 1.0) -> str:
    """Resolve ``AUTO`` the way Blender does: HORIZONTAL when ``width*aspect_x >= height*aspect_y``."""
    if sensor_fit not in SENSOR_FITS:
        raise CameraError(f"sensor_fit must be one of {SENSOR_FITS}, got {sensor_fit!r}")
    if sensor_fit != "AUTO":
        return sensor_fit
    return "HORIZONTAL" if width * pixel_aspect_x >= height * pixel_aspect_y else "VERTICAL"


def _fit_terms(fit: str, width: int, height: int, ycor: float) -> float:
    """``viewfac``: the fitted image extent measured in x-pixel units."""
    return float(width) if fit == "HORIZONTAL" else ycor * float(height)


def normalized_rotation(matrix_world: np.ndarray) -> np.ndarray:
    """``matrix_world`` with unit-length axes (scale removed); raises on shear, mirror or zero scale."""
    M = np.array(matrix_world, dtype=np.float64)
    if not np.allclose(M[3], [0.0, 0.0, 0.0, 1.0]):
        raise CameraError("matrix_world last row must be [0, 0, 0, 1] (no projective part)")
    norms = np.linalg.norm(M[:3, :3], axis=0)
    if np.any(norms < 1e-12):
        raise CameraError("matrix_world has a zero scale axis")
    M[:3, :3] /= norms
    R = M[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-5) or np.linalg.det(R) <= 0:
        raise CameraError("matrix_world has shear or a mirror; a camera needs a rotation + translation")
    # Re-orthonormalise tiny float32 drift from Blender so Camera's validation always passes.
    U, _, Vt = np.linalg.svd(R)
    M[:3, :3] = U @ Vt
    return M


def intrinsics_from_blender(params: BlenderCameraParams) -> np.ndarray:
    """3x3 OpenCV K in pixels for the rendered image (see the module docstring for the formulas)."""
    width, height = params.render_width, params.render_height
    fit = params.effective_sensor_fit
    ycor = params.pixel_aspect_y / params.pixel_aspect_x
    viewfac = _fit_terms(fit, width, height, ycor)
    sensor = params.sensor_height if params.sensor_fit == "VERTICAL" else params.sensor_width
    fx = params.lens_mm * viewfac / sensor
    fy = fx / ycor
    cx = 0.5 * width - params.shift_x * viewfac
    cy = 0.5 * height + params.shift_y * viewfac / ycor
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def camera_from_blender(params: BlenderCameraParams) -> Camera:
    """OpenCV :class:`Camera` (K in pixels of the rendered image, world-to-camera) for a Blender camera."""
    c2w_blender = normalized_rotation(params.matrix_world)
    c2w_cv = c2w_blender @ BLENDER_TO_OPENCV_AXES
    return Camera(intrinsics_from_blender(params), rigid_inverse(c2w_cv),
                  params.render_width, params.render_height)


def matrix_world_from_camera(cam: Camera) -> np.ndarray:
    """Blender ``matrix_world`` (unit scale) for an OpenCV camera pose."""
    return cam.camera_to_world @ BLENDER_TO_OPENCV_AXES


def blender_from_camera(
    cam: Camera,
    sensor_width: float = 36.0,
    sensor_fit: str = "AUTO",
    sensor_height: float = 24.0,
    clip_start: float = 0.1,
    clip_end: float = 1000.0,
) -> BlenderCameraParams:
    """Blender values that render exactly ``cam`` (resolution at 100 %).

    ``sensor_width``/``sensor_height`` (mm) and ``sensor_fit`` are free choices that only change
    how the focal length is expressed in ``lens_mm``; the VERTICAL fit expresses it against
    ``sensor_height``. Non-square pixels (``fx != fy``) become ``pixel_aspect_x/y`` with the smaller
    one set to 1 (Blender needs both >= 1). A skewed K (``K[0, 1] != 0``) cannot be represented and
    raises :class:`CameraError`.
    """
    if abs(cam.K[0, 1]) > 1e-9 * max(cam.fx, 1.0):
        raise CameraError(f"Blender cameras have no skew; K[0, 1] = {cam.K[0, 1]:g} must be 0")
    # fy = fx * aspect_x / aspect_y  =>  aspect_x / aspect_y = fy / fx
    ratio = cam.fy / cam.fx
    aspect_x, aspect_y = (ratio, 1.0) if ratio >= 1.0 else (1.0, 1.0 / ratio)
    ycor = aspect_y / aspect_x
    fit = effective_sensor_fit(sensor_fit, cam.width, cam.height, aspect_x, aspect_y)
    viewfac = _fit_terms(fit, cam.width, cam.height, ycor)
    sensor = sensor_height if sensor_fit == "VERTICAL" else sensor_width
    lens = cam.fx * sensor / viewfac
    shift_x = (0.5 * cam.width - cam.cx) / viewfac
    shift_y = (cam.cy - 0.5 * cam.height) * ycor / viewfac
    if lens < _MIN_LENS_MM:
        raise CameraError(f"focal length {cam.fx:g} px gives a lens of {lens:g} mm, too short for Blender")
    if abs(shift_x) > _MAX_ABS_SHIFT or abs(shift_y) > _MAX_ABS_SHIFT:
        raise CameraError(f"principal point ({cam.cx:g}, {cam.cy:g}) needs a shift beyond Blender's +-10")
    return BlenderCameraParams(
        matrix_world=matrix_world_from_camera(cam), lens_mm=lens, sensor_width=sensor_width,
        sensor_height=sensor_height, sensor_fit=sensor_fit, shift_x=shift_x, shift_y=shift_y,
        resolution_x=cam.width, resolution_y=cam.height, resolution_percentage=100,
        pixel_aspect_x=aspect_x, pixel_aspect_y=aspect_y, clip_start=clip_start, clip_end=clip_end,
    )


def with_resolution_percentage(params: BlenderCameraParams, percentage: int) -> BlenderCameraParams:
    """Same camera rendered at another ``resolution_percentage`` (intrinsics scale with the size)."""
    return replace(params, resolution_percentage=int(percentage))


def vertical_fov_deg(params: BlenderCameraParams) -> float:
    """Vertical field of view in degrees of the rendered image (nerfstudio's ``fov``), shift ignored."""
    cam = camera_from_blender(params)
    return math.degrees(2.0 * math.atan(0.5 * cam.height / cam.fy))


# Which depth each engine's "Depth" (Z) render pass writes, measured with bpy 5.0.1: a wide-angle,
# lens-shifted camera renders a plane 5 m away tilted by 25 degrees at 32x24; every pixel matches the
# analytic planar depth of its pixel-centre ray to 1e-4 m (the ray distance differs by up to 4.2 m).
# Proven by tests/cameras/test_blender_depth_pass.py (Cycles and EEVEE).
# "z" = planar depth along the optical axis; "ray" = distance from the camera centre along the ray.
BLENDER_DEPTH_PASS: dict[str, str] = {"CYCLES": "z", "BLENDER_EEVEE": "z", "BLENDER_EEVEE_NEXT": "z"}
# Cycles writes 1e10 into the Depth pass where a pixel hits nothing (background); treat depth at or
# above BLENDER_DEPTH_NO_HIT_MIN as "no surface" (tested on Cycles).
BLENDER_DEPTH_NO_HIT = 1e10
BLENDER_DEPTH_NO_HIT_MIN = 1e9


def params_from_blender_objects(camera_object: Any, scene: Any) -> BlenderCameraParams:
    """Read :class:`BlenderCameraParams` from a bpy camera object and scene, without importing bpy.

    ``camera_object`` is a ``bpy.types.Object`` whose ``data`` is a perspective ``Camera``;
    ``scene`` supplies ``render.resolution_*`` and ``render.pixel_aspect_*``.
    """
    data = camera_object.data
    if getattr(data, "type", "PERSP") != "PERSP":
        raise CameraError(f"camera {camera_object.name!r} is {data.type}; only perspective cameras are supported")
    render = scene.render
    return BlenderCameraParams(
        matrix_world=np.array([list(row) for row in camera_object.matrix_world], dtype=np.float64),
        lens_mm=float(data.lens), sensor_width=float(data.sensor_width),
        sensor_height=float(data.sensor_height), sensor_fit=str(data.sensor_fit),
        shift_x=float(data.shift_x), shift_y=float(data.shift_y),
        resolution_x=int(render.resolution_x), resolution_y=int(render.resolution_y),
        resolution_percentage=int(render.resolution_percentage),
        pixel_aspect_x=float(render.pixel_aspect_x), pixel_aspect_y=float(render.pixel_aspect_y),
        clip_start=float(data.clip_start), clip_end=float(data.clip_end),
    )


def apply_params_to_blender_objects(params: BlenderCameraParams, camera_object: Any, scene: Any = None) -> None:
    """Write ``params`` onto a bpy camera object (and the scene's render settings when given).

    ``matrix_world`` is assigned as nested lists; bpy reads a nested sequence assigned to a matrix
    property column by column, so the transpose is passed (the bpy round-trip test checks this).
    The lens unit is left as is.
    """
    data = camera_object.data
    data.type = "PERSP"
    data.lens = params.lens_mm
    data.sensor_width = params.sensor_width
    data.sensor_height = params.sensor_height
    data.sensor_fit = params.sensor_fit
    data.shift_x = params.shift_x
    data.shift_y = params.shift_y
    data.clip_start = params.clip_start
    data.clip_end = params.clip_end
    camera_object.matrix_world = params.matrix_world.T.tolist()
    if scene is not None:
        render = scene.render
        render.resolution_x = params.resolution_x
        render.resolution_y = params.resolution_y
        render.resolution_percentage = params.resolution_percentage
        render.pixel_aspect_x = params.pixel_aspect_x
        render.pixel_aspect_y = params.pixel_aspect_y
