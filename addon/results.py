"""Bring backend results into Blender: USD point clouds / Gaussians, generated videos, render set-up.

The USD result (``scene.usdc``) holds time-sampled ``UsdGeom.Points``: Blender's own USD importer
turns each into a POINTCLOUD object with a Mesh Sequence Cache modifier, which streams the frame's
points from disk on every frame change (nothing is copied into the .blend). We then add the
Cycles material (colour from ``displayColor``, radius from ``widths``) and, for Gaussians, the
splat geometry nodes and material from :mod:`.materials`.

Units: the backend writes metres, Z up (``metersPerUnit = 1``, ``upAxis = Z``), in the same world
frame as the cameras it was given, so the imported objects line up with the scene's cameras.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import materials
from .deps import protocol_module

_errors = protocol_module("errors")

GAUSSIAN_ATTRIBUTES = (materials.OPACITY_ATTRIBUTE, materials.SCALE_ATTRIBUTE)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")


@dataclass
class ImportedResult:
    """Objects created by one import and the frame range / rate they cover."""

    point_objects: list[bpy.types.Object] = field(default_factory=list)
    gaussian_objects: list[bpy.types.Object] = field(default_factory=list)
    frame_start: int = 1
    frame_end: int = 1
    fps: float | None = None

    @property
    def objects(self) -> list[bpy.types.Object]:
        return self.point_objects + self.gaussian_objects


def _usd_time_range(filepath: str) -> tuple[int, int, float] | None:
    """``(start, end, timeCodesPerSecond)`` from the stage metadata, if pxr is importable here."""
    try:
        from pxr import Usd  # Blender ships pxr; the bpy wheel may not
    except ImportError:
        return None
    stage = Usd.Stage.Open(filepath, Usd.Stage.LoadNone)
    if stage is None or not stage.HasAuthoredTimeCodeRange():
        return None
    return (int(round(stage.GetStartTimeCode())), int(round(stage.GetEndTimeCode())),
            float(stage.GetTimeCodesPerSecond()))


def _evaluated_attribute_names(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> set[str]:
    evaluated = obj.evaluated_get(depsgraph)
    return {attribute.name for attribute in evaluated.data.attributes}


def import_usd_result(context: bpy.types.Context, filepath: str | os.PathLike[str], *,
                      unlit: bool = True, sigma_extent: float = materials.DEFAULT_SIGMA_EXTENT,
                      ellipsoids: bool = False, set_frame_range: bool = True,
                      frame_start: int | None = None) -> ImportedResult:
    """Import a Recast 4D USD result and set its objects up for Cycles.

    Point clouds with ``opacity`` and ``scale`` attributes are treated as Gaussians (splat material
    and geometry nodes, ``ellipsoids`` for the instanced high-quality mode); others get the point
    material (``unlit``: emit the colour). ``frame_start`` places the result's first time sample
    at that scene frame (the cache file's ``frame_offset``), e.g. the first frame of the source
    shot when the file starts at 1. Raises ``ValidationError`` if the file is missing or has no
    point clouds.
    """
    path = Path(filepath)
    if not path.is_file():
        raise _errors.ValidationError(f"result file not found: {path}")
    before = set(bpy.data.objects)
    result = bpy.ops.wm.usd_import(
        filepath=str(path), import_points=True, import_cameras=False, import_lights=False,
        import_materials=False, set_frame_range=set_frame_range, create_collection=True,
        apply_unit_conversion_scale=True, relative_path=False,
    )
    if "FINISHED" not in result:
        raise _errors.ValidationError(f"Blender's USD importer could not read {path}")
    new_objects = [obj for obj in bpy.data.objects if obj not in before]
    clouds = [obj for obj in new_objects if obj.type == "POINTCLOUD"]
    if not clouds:
        for obj in new_objects:
            bpy.data.objects.remove(obj)
        raise _errors.ValidationError(f"{path.name} contains no point clouds (UsdGeom.Points)")

    imported = ImportedResult()
    depsgraph = context.evaluated_depsgraph_get()
    for obj in clouds:
        obj["recast4d_result"] = str(path)
        if set(GAUSSIAN_ATTRIBUTES) <= _evaluated_attribute_names(obj, depsgraph):
            setup_gaussian_object(obj, sigma_extent=sigma_extent, ellipsoids=ellipsoids)
            imported.gaussian_objects.append(obj)
        else:
            setup_point_object(obj, unlit=unlit)
            imported.point_objects.append(obj)

    scene = context.scene
    time_range = _usd_time_range(str(path))
    if time_range is not None:
        imported.frame_start, imported.frame_end, imported.fps = time_range
    else:
        imported.frame_start, imported.frame_end = scene.frame_start, scene.frame_end
    if frame_start is not None and frame_start != imported.frame_start:
        offset = frame_start - imported.frame_start
        for obj in clouds:
            for modifier in obj.modifiers:
                if modifier.type == "MESH_SEQUENCE_CACHE" and modifier.cache_file is not None:
                    modifier.cache_file.frame_offset = offset
        imported.frame_start += offset
        imported.frame_end += offset
    if set_frame_range:
        scene.frame_start, scene.frame_end = imported.frame_start, imported.frame_end
        if imported.fps:
            set_scene_fps(scene, imported.fps)
    return imported


def setup_point_object(obj: bpy.types.Object, *, unlit: bool = True) -> bpy.types.Material:
    """Give a point-cloud object the colour material (radius already comes from USD ``widths``)."""
    material = materials.point_cloud_material(f"{obj.name} Points", unlit=unlit)
    _assign_object_material(obj, material)
    return material


def _assign_object_material(obj: bpy.types.Object, material: bpy.types.Material) -> None:
    """Link ``material`` to the object, not its data: the cache modifier replaces the data per frame."""
    obj.data.materials.clear()
    obj.data.materials.append(None)
    slot = obj.material_slots[0]
    slot.link = "OBJECT"
    slot.material = material


def setup_gaussian_object(obj: bpy.types.Object, *, sigma_extent: float = materials.DEFAULT_SIGMA_EXTENT,
                          ellipsoids: bool = False) -> bpy.types.NodesModifier:
    """Add the splat material and the splat geometry-nodes modifier after the cache modifier."""
    material = materials.splat_material(
        f"{obj.name} Splats", sigma_extent=sigma_extent,
        attribute_type="INSTANCER" if ellipsoids else "GEOMETRY",
    )
    _assign_object_material(obj, material)
    group = materials.splat_geometry_nodes(f"{obj.name} Splat Geometry", material=material,
                                           sigma_extent=sigma_extent, ellipsoids=ellipsoids)
    modifier = obj.modifiers.new("Recast4D Splats", "NODES")
    modifier.node_group = group
    return modifier


def set_scene_fps(scene: bpy.types.Scene, fps: float) -> None:
    """Set ``render.fps``/``fps_base`` so that ``fps / fps_base`` equals ``fps`` (handles 29.97)."""
    if fps <= 0:
        raise _errors.ValidationError(f"frame rate must be positive, got {fps}")
    rounded = round(fps)
    if abs(fps - rounded) < 1e-6:
        scene.render.fps, scene.render.fps_base = int(rounded), 1.0
    else:
        whole = int(round(fps * 1.001))
        scene.render.fps, scene.render.fps_base = whole, whole / fps


def import_video(filepath: str | os.PathLike[str], *, camera: bpy.types.Object | None = None,
                 frame_start: int = 1) -> bpy.types.MovieClip | bpy.types.Image:
    """Load a generated video (mp4 -> Movie Clip, PNG sequence folder or first PNG -> image sequence).

    With ``camera``, the clip is also shown as that camera's background, so looking through the
    target camera shows the re-filmed video next to the 3D result. The video's first frame plays at
    scene frame ``frame_start``.
    """
    path = Path(filepath)
    if path.is_dir():
        frames = sorted(path.glob("*.png"))
        if not frames:
            raise _errors.ValidationError(f"no PNG frames in {path}")
        path = frames[0]
    if not path.is_file():
        raise _errors.ValidationError(f"video not found: {path}")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        media: bpy.types.MovieClip | bpy.types.Image = bpy.data.movieclips.load(str(path), check_existing=True)
        media.frame_start = frame_start
    else:
        media = bpy.data.images.load(str(path), check_existing=True)
        media.source = "SEQUENCE"
    if camera is not None and camera.type == "CAMERA":
        camera.data.show_background_images = True
        background = camera.data.background_images.new()
        if isinstance(media, bpy.types.MovieClip):
            background.source = "MOVIE_CLIP"
            background.clip = media
        else:
            background.source = "IMAGE"
            background.image = media
            background.image_user.frame_duration = len(sorted(path.parent.glob("*.png")))
            background.image_user.frame_start = frame_start
    return media


def setup_render(scene: bpy.types.Scene, *, camera: bpy.types.Object | None = None,
                 frame_range: tuple[int, int] | None = None, fps: float | None = None,
                 samples: int | None = None, transparent_bounces: int = 64,
                 film_transparent: bool | None = None) -> None:
    """Cycles settings that render points and splats, plus the shot's camera, range and rate.

    Only what points/splats need is changed: the engine, at least ``transparent_bounces``
    transparent bounces (each overlapping splat is one bounce) and 4 light bounces. Samples,
    denoising and the film are the user's unless ``samples`` / ``film_transparent`` are given.
    (Call it through ``render_setup.setup_render_for_job``, which remembers what changed.)
    """
    scene.render.engine = "CYCLES"
    cycles = scene.cycles
    if samples is not None:
        cycles.samples = samples
        cycles.preview_samples = min(samples, 16)
    cycles.transparent_max_bounces = max(cycles.transparent_max_bounces, transparent_bounces)
    cycles.max_bounces = max(cycles.max_bounces, 4)
    if film_transparent is not None:
        scene.render.film_transparent = film_transparent
    if camera is not None:
        if camera.type != "CAMERA":
            raise _errors.ValidationError(f"{camera.name} is not a camera")
        scene.camera = camera
    if frame_range is not None:
        scene.frame_start, scene.frame_end = frame_range
    if fps is not None:
        set_scene_fps(scene, fps)
