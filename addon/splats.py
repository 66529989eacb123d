"""Native Gaussian splats (Blender >= 5.3): capability check, checks of imported splats, render set-up.

Blender 5.3 gives ``PointCloud.type`` the value ``GAUSSIAN_SPLAT``: Cycles and EEVEE then render each
point as a 3D Gaussian. The USD importer turns the result's ``UsdVol.ParticleField3DGaussianSplat``
prim into such a point cloud with a Mesh Sequence Cache modifier (streamed per frame from the file),
and the PLY importer reads a 3DGS PLY as one. Attributes of a native splat cloud (point domain):

- ``position`` (FLOAT_VECTOR): centres, metres, world frame of the job's cameras (Z up);
- ``scale`` (FLOAT_VECTOR): per-axis standard deviations, metres (linear, not log);
- ``rotation`` (QUATERNION): unit quaternion, ``w x y z``; absent means identity;
- ``radiance:base`` (FLOAT4): the SH DC coefficients (x y z = R G B) and the opacity (w, 0..1).
  The colour is ``0.5 + SH_C0 * dc``, an **sRGB-encoded** value as in 3DGS; Cycles converts it to
  scene-linear and composites the splats in linear light (3DGS composites in sRGB, so
  semi-transparent edges look wider in Blender than in the backend's reference rasteriser; the
  data conventions themselves agree, see ``tests/blender53/test_splat_conventions.py``).

On Blender 4.2-5.2 there is no such type: :func:`native_splats_supported` says so (by capability,
never by version string) and the caller falls back to the sphere splats of :mod:`.materials`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import bpy
import numpy as np

from .deps import protocol_module

_errors = protocol_module("errors")

SPLAT_TYPE = "GAUSSIAN_SPLAT"
RADIANCE_ATTRIBUTE = "radiance:base"
SCALE_ATTRIBUTE = "scale"
ROTATION_ATTRIBUTE = "rotation"
#: Rotation attributes checked on import: native splats' ``rotation``, the USD Points prim's ``orient``.
ROTATION_ATTRIBUTES = (ROTATION_ATTRIBUTE, "orient")
#: 3DGS's degree-0 spherical-harmonics constant: colour = 0.5 + SH_C0 * dc.
SH_C0 = 0.28209479177387814
#: A rotation quaternion shorter than this cannot be normalised (a zero quaternion): bad input.
MIN_QUATERNION_NORM = 1e-6
#: Cycles samples at and above which the denoiser is on (splat edges are sampled stochastically:
#: measured on 40 splats, 64 samples: 32.4 dB without, 38.4 dB with OpenImageDenoise).
DENOISE_FROM_SAMPLES = 8
#: Cycles samples the splat PLY import raises a scene to (fewer leave splat edges speckled: on
#: ``make demo``'s native render 8 / 16 / 32 samples gave SSIM 0.830 / 0.845 / 0.854 on seen pixels).
SPLAT_MIN_SAMPLES = 32


def native_splats_supported() -> bool:
    """True if this Blender renders native Gaussian splats (``PointCloud.type`` offers ``GAUSSIAN_SPLAT``)."""
    prop = bpy.types.PointCloud.bl_rna.properties.get("type")
    return prop is not None and SPLAT_TYPE in prop.enum_items


def is_native_splat(obj: bpy.types.Object) -> bool:
    """True for a point-cloud object whose data is of type ``GAUSSIAN_SPLAT``."""
    return obj.type == "POINTCLOUD" and getattr(obj.data, "type", None) == SPLAT_TYPE


def _read(attribute: bpy.types.Attribute, components: int, prop: str) -> np.ndarray:
    values = np.empty(len(attribute.data) * components, np.float32)
    attribute.data.foreach_get(prop, values)
    return values.reshape(-1, components)


def _count_bad_rows(values: np.ndarray, *, negative_is_bad: bool = False) -> int:
    if np.isfinite(values.sum()) and not (negative_is_bad and values.min() < 0):  # fast path: all good
        return 0
    bad = ~np.isfinite(values).all(axis=1)
    if negative_is_bad:
        bad |= (values < 0).any(axis=1)
    return int(bad.sum())


def splat_problems(pointcloud: bpy.types.PointCloud) -> list[str]:
    """What is wrong with one evaluated Gaussian point cloud (native splats, or the Gaussians'
    ``scale``/``orient`` points of the USD result): NaN/infinite or negative scales, zero or
    non-finite rotation quaternions, NaN positions or radiance. Empty when usable.

    Cost: about 15 ms for 262k splats (reads plus vectorised checks; the counts are only computed
    for a cloud that fails).
    """
    problems = []
    attributes = pointcloud.attributes
    checks = (("position", 3, "vector"), (SCALE_ATTRIBUTE, 3, "vector"), (RADIANCE_ATTRIBUTE, 4, "vector"))
    for name, components, prop in checks:
        attribute = attributes.get(name)
        if attribute is None:
            continue
        bad = _count_bad_rows(_read(attribute, components, prop), negative_is_bad=name == SCALE_ATTRIBUTE)
        if bad:
            what = "NaN, infinite or negative" if name == SCALE_ATTRIBUTE else "NaN or infinite"
            problems.append(f"{bad} splat(s) with {what} {name}")
    for name in ROTATION_ATTRIBUTES:
        rotation = attributes.get(name)
        if rotation is None:
            continue
        quats = _read(rotation, 4, "value")
        norms_sq = np.einsum("ij,ij->i", quats, quats)
        if not (np.isfinite(norms_sq.sum()) and norms_sq.min() > MIN_QUATERNION_NORM**2):
            bad = int((~(np.isfinite(norms_sq) & (norms_sq > MIN_QUATERNION_NORM**2))).sum())
            problems.append(f"{bad} splat(s) with a zero or NaN rotation quaternion ({name})")
    return problems


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply_vertex_columns(path: str, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Columns ``names`` of the ``vertex`` element of a binary PLY (the 3DGS layout: one vertex
    element first, scalar properties). Used to check what the file holds: Blender's PLY importer
    silently turns a zero quaternion into the identity. Raises ``ValidationError`` for other layouts."""
    with open(path, "rb") as handle:
        if handle.readline().strip() != b"ply":
            raise _errors.ValidationError(f"{path} is not a PLY file")
        fmt, count, fields, element = None, 0, [], None
        while True:
            line = handle.readline()
            if not line:
                raise _errors.ValidationError(f"{path}: PLY header has no end_header")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                element = words[1]
                if element == "vertex":
                    count = int(words[2])
                elif not fields:
                    raise _errors.ValidationError(f"{path}: the vertex element must come first")
            elif words[0] == "property" and element == "vertex":
                if words[1] == "list" or words[1] not in _PLY_TYPES:
                    raise _errors.ValidationError(f"{path}: unsupported vertex property {' '.join(words[1:])}")
                fields.append((words[2], _PLY_TYPES[words[1]]))
        if fmt not in ("binary_little_endian", "binary_big_endian"):
            raise _errors.ValidationError(f"{path}: only binary PLY files hold Gaussian splats, got {fmt}")
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + code) for name, code in fields])
        data = np.fromfile(handle, dtype=dtype, count=count)
    if len(data) != count:
        raise _errors.ValidationError(f"{path}: {len(data)} of {count} vertices present (truncated file)")
    missing = [name for name in names if name not in dtype.names]
    if missing:
        raise _errors.ValidationError(f"{path} is not a 3DGS PLY: missing {', '.join(missing)}")
    return {name: np.asarray(data[name], np.float32) for name in names}


def ply_splat_problems(path: str) -> list[str]:
    """NaN/infinite log-scales or zero/NaN quaternions in a 3DGS PLY (its raw columns)."""
    columns = read_ply_vertex_columns(path, ("scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"))
    scales = np.stack([columns[f"scale_{i}"] for i in range(3)], axis=1)
    norms = np.linalg.norm(np.stack([columns[f"rot_{i}"] for i in range(4)], axis=1), axis=1)
    problems = []
    if (bad := int((~np.isfinite(scales).all(axis=1)).sum())):
        problems.append(f"{bad} splat(s) with NaN or infinite scale")
    if (bad := int((~(np.isfinite(norms) & (norms > MIN_QUATERNION_NORM))).sum())):
        problems.append(f"{bad} splat(s) with a zero or NaN rotation quaternion")
    return problems


def check_splat_frames(context: bpy.types.Context, objects: Sequence[bpy.types.Object],
                       frames: Iterable[int], source: str) -> None:
    """Evaluate ``objects`` at every frame of ``frames`` and raise ``ValidationError`` naming the
    file (``source``), the frame and the attribute if any frame holds unusable splats.

    While it runs, the cache modifiers of the scene's other objects are switched off (only the
    checked objects are streamed); they and the scene's current frame are restored afterwards.
    Cost per frame: one frame change of the checked objects plus :func:`splat_problems`.
    """
    scene = context.scene
    original = scene.frame_current
    paused = [modifier for obj in scene.objects if obj not in objects for modifier in obj.modifiers
              if modifier.type == "MESH_SEQUENCE_CACHE" and modifier.show_viewport]
    for modifier in paused:
        modifier.show_viewport = False
    try:
        for frame in frames:
            scene.frame_set(frame)
            depsgraph = context.evaluated_depsgraph_get()
            for obj in objects:
                problems = splat_problems(obj.evaluated_get(depsgraph).data)
                if problems:
                    raise _errors.ValidationError(
                        f"{source}: frame {frame} of '{obj.name}' has {'; '.join(problems)}. "
                        "Re-export the result (the backend writes finite scales and unit quaternions) "
                        "or fix the file; nothing was imported")
    finally:
        for modifier in paused:
            modifier.show_viewport = True
        scene.frame_set(original)


def configure_splat_render(scene: bpy.types.Scene, *, samples: int | None = None) -> None:
    """What native splats need from the render settings, for Cycles and EEVEE alike.

    - Cycles samples each splat's footprint stochastically: with ``samples`` given, that many and
      the denoiser on from :data:`DENOISE_FROM_SAMPLES` samples (``None`` keeps the user's samples
      and denoising; transparent bounces do not limit native splats).
    - EEVEE: ``taa_render_samples`` = ``samples`` when given (its anti-aliasing samples also smooth
      the splats).
    - The "Standard" view transform: the splats carry the video's sRGB colours, which AgX or Filmic
      would tone-map away from the re-filmed video.
    """
    if samples is not None:
        scene.cycles.samples = samples
        scene.cycles.use_denoising = samples >= DENOISE_FROM_SAMPLES
        scene.eevee.taa_render_samples = samples
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"


def scene_has_native_splats(scene: bpy.types.Scene) -> bool:
    """True if an object of ``scene`` is a native splat cloud (then the render set-up adds splat settings)."""
    return any(is_native_splat(obj) for obj in scene.objects)


def preview_radiance(rgb: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """``radiance:base`` values (N, 4) for sRGB colours ``rgb`` (N, 3) in 0..1: SH DC and opacity."""
    radiance = np.empty((len(rgb), 4), np.float32)
    radiance[:, :3] = (np.asarray(rgb, np.float32) - 0.5) / SH_C0
    radiance[:, 3] = opacity
    return radiance
