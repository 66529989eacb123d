"""Bring backend results into Blender: USD point clouds / Gaussians, generated videos, render set-up.

The USD result (``scene.usdc``) holds time-sampled ``UsdGeom.Points`` and, for Gaussians, a
``UsdVol.ParticleField3DGaussianSplat`` prim: Blender's own USD importer turns each into a
POINTCLOUD object with a Mesh Sequence Cache modifier, which streams the frame's points from disk
on every frame change (nothing is copied into the .blend). On Blender >= 5.3 the splat prim becomes
a native ``GAUSSIAN_SPLAT`` cloud (:mod:`.splats`); elsewhere the Gaussian points get the sphere
splat geometry nodes and material from :mod:`.materials`. Point clouds get the Cycles point
material (colour from ``displayColor``, radius from ``widths``).

Units: the backend writes metres, Z up (``metersPerUnit = 1``, ``upAxis = Z``), in the same world
frame as the cameras it was given, so the imported objects line up with the scene's cameras.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import materials, splats
from .deps import protocol_module

_errors = protocol_module("errors")

GAUSSIAN_ATTRIBUTES = (materials.OPACITY_ATTRIBUTE, materials.SCALE_ATTRIBUTE)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")


@dataclass
class ImportedResult:
    """Objects created by one import and the frame range / rate they cover.

    ``splat_objects``: native ``GAUSSIAN_SPLAT`` clouds (Blender >= 5.3); ``gaussian_objects``: the
    sphere-splat fallback of the same Gaussians (Blender 4.2-5.2, or a file without the splat prim);
    ``point_objects``: the coloured point-cloud layer.
    """

    point_objects: list[bpy.types.Object] = field(default_factory=list)
    gaussian_objects: list[bpy.types.Object] = field(default_factory=list)
    splat_objects: list[bpy.types.Object] = field(default_factory=list)
    frame_start: int = 1
    frame_end: int = 1
    fps: float | None = None

    @property
    def objects(self) -> list[bpy.types.Object]:
        return self.point_objects + self.gaussian_objects + self.splat_objects


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


def usd_importer_available() -> bool:
    """True if this Blender build has the USD importer (``bpy.ops.wm.usd_import``); custom builds
    may be compiled without USD."""
    return "usd_import" in dir(bpy.ops.wm)


class ImportTransaction:
    """Remembers what existed before an import so that a failed import removes everything it
    created (objects, their data, cache files, collections) and restores the scene's range and rate."""

    def __init__(self, scene: bpy.types.Scene) -> None:
        self.scene = scene
        self.objects = set(bpy.data.objects)
        self.collections = set(bpy.data.collections)
        self.cache_files = set(bpy.data.cache_files)
        self.pointclouds = set(bpy.data.pointclouds)
        self.materials = set(bpy.data.materials)
        self.node_groups = set(bpy.data.node_groups)
        self.meshes = set(bpy.data.meshes)
        self.settings = (scene.frame_start, scene.frame_end, scene.frame_current,
                         scene.render.fps, scene.render.fps_base)

    def new_objects(self) -> list[bpy.types.Object]:
        return [obj for obj in bpy.data.objects if obj not in self.objects]

    def remove_objects(self, objects: list[bpy.types.Object]) -> None:
        """Delete ``objects`` and their point-cloud data (an import option dropped them)."""
        for obj in objects:
            data = obj.data
            bpy.data.objects.remove(obj)
            if isinstance(data, bpy.types.PointCloud) and data.users == 0:
                bpy.data.pointclouds.remove(data)

    def roll_back(self) -> None:
        created = [obj for obj in bpy.data.objects if obj not in self.objects]
        for collection, before in ((bpy.data.collections, self.collections), (bpy.data.cache_files, self.cache_files),
                                   (bpy.data.node_groups, self.node_groups), (bpy.data.materials, self.materials)):
            created += [datablock for datablock in collection if datablock not in before]
        bpy.data.batch_remove(created)
        orphans = [c for c in bpy.data.pointclouds if c not in self.pointclouds and c.users == 0]
        orphans += [m for m in bpy.data.meshes if m not in self.meshes and m.users == 0]
        bpy.data.batch_remove(orphans)
        scene = self.scene
        scene.frame_start, scene.frame_end = self.settings[0], self.settings[1]
        scene.render.fps, scene.render.fps_base = self.settings[3], self.settings[4]
        scene.frame_set(self.settings[2])


def import_gaussian_ply(context: bpy.types.Context, filepath: str | os.PathLike[str]) -> bpy.types.Object:
    """Import one 3DGS PLY (Inria layout, as ``backend/export/ply.py`` writes) as a native
    ``GAUSSIAN_SPLAT`` point cloud with Blender's PLY importer, after checking its splats.

    Needs Blender >= 5.3 (:func:`.splats.native_splats_supported`). Raises ``ValidationError`` (and
    leaves nothing behind) if the file is missing, is not a Gaussian PLY, or holds NaN/negative
    scales or zero quaternions.
    """
    path = Path(filepath)
    if not path.is_file():
        raise _errors.ValidationError(f"PLY file not found: {path}")
    if not splats.native_splats_supported():
        raise _errors.ValidationError(
            f"this Blender cannot render Gaussian splats, so {path.name} cannot be imported as splats; "
            "Blender 5.3 or later can (import the job's USD result for the sphere splats)")
    problems = splats.ply_splat_problems(str(path))
    if problems:
        raise _errors.ValidationError(f"{path.name}: {'; '.join(problems)}; fix or re-export the file "
                                      "(nothing was imported)")
    transaction = ImportTransaction(context.scene)
    try:
        result = bpy.ops.wm.ply_import(filepath=str(path))
        clouds = [obj for obj in transaction.new_objects() if splats.is_native_splat(obj)]
        if "FINISHED" not in result or not clouds:
            raise _errors.ValidationError(
                f"{path.name} is not a Gaussian-splat PLY (needs x y z f_dc_0..2 opacity scale_0..2 rot_0..3)")
        splats.check_splat_frames(context, clouds, [context.scene.frame_current], path.name)
    except BaseException:
        transaction.roll_back()
        raise
    clouds[0]["recast4d_result"] = str(path)
    return clouds[0]


def import_usd_result(context: bpy.types.Context, filepath: str | os.PathLike[str], *,
                      unlit: bool = True, sigma_extent: float = materials.DEFAULT_SIGMA_EXTENT,
                      ellipsoids: bool = False, set_frame_range: bool = True,
                      frame_start: int | None = None, import_points: bool = True,
                      native_splats: bool | None = None, check_frames: bool = True) -> ImportedResult:
    """Import a Recast 4D USD result and set its objects up for rendering.

    Gaussians: where this Blender renders native splats (:func:`.splats.native_splats_supported`,
    or ``native_splats=True``) and the file has the ``ParticleField3DGaussianSplat`` prim, they come
    in as ONE animated ``GAUSSIAN_SPLAT`` point cloud per Gaussian sequence (Mesh Sequence Cache:
    streamed per frame, nothing copied into the .blend) and the sphere version of the same
    Gaussians is not kept. Otherwise the Gaussian ``UsdGeom.Points`` prim (``opacity`` and ``scale``
    attributes) gets the sphere-splat material and geometry nodes (``ellipsoids`` for the instanced
    mode). Other point clouds get the point material (``unlit``: emit the colour); with
    ``import_points=False`` they are not kept. ``frame_start`` places the result's first time sample
    at that scene frame (the cache file's ``frame_offset``). ``check_frames``: read every frame's
    Gaussians and refuse NaN/negative scales or zero quaternions.

    Raises ``ValidationError`` (and leaves nothing of the import behind, scene range and rate
    restored) if the file is missing, Blender has no USD importer, the file has no point clouds,
    or its Gaussians are unusable.
    """
    path = Path(filepath)
    if not path.is_file():
        raise _errors.ValidationError(f"result file not found: {path}")
    if not usd_importer_available():
        raise _errors.ValidationError(
            f"this Blender build has no USD importer (bpy.ops.wm.usd_import), so {path.name} cannot be "
            "read; use an official Blender build (4.2 or later), which includes USD")
    native = splats.native_splats_supported() if native_splats is None else native_splats
    transaction = ImportTransaction(context.scene)
    try:
        return _import_usd_objects(context, path, transaction, unlit=unlit, sigma_extent=sigma_extent,
                                   ellipsoids=ellipsoids, set_frame_range=set_frame_range, frame_start=frame_start,
                                   import_points=import_points, native=native, check_frames=check_frames)
    except BaseException:
        transaction.roll_back()
        raise


def _import_usd_objects(context: bpy.types.Context, path: Path, transaction: ImportTransaction, *,
                        unlit: bool, sigma_extent: float, ellipsoids: bool, set_frame_range: bool,
                        frame_start: int | None, import_points: bool, native: bool,
                        check_frames: bool) -> ImportedResult:
    result = bpy.ops.wm.usd_import(
        filepath=str(path), import_points=True, import_cameras=False, import_lights=False,
        import_materials=False, set_frame_range=set_frame_range, create_collection=True,
        apply_unit_conversion_scale=True, relative_path=False,
    )
    if "FINISHED" not in result:
        raise _errors.ValidationError(f"Blender's USD importer could not read {path}")
    clouds = [obj for obj in transaction.new_objects() if obj.type == "POINTCLOUD"]
    if not clouds:
        raise _errors.ValidationError(f"{path.name} contains no point clouds (UsdGeom.Points)")

    # classify: native splat clouds, the Gaussians' Points prim (sphere splats), plain point clouds
    depsgraph = context.evaluated_depsgraph_get()
    splat_clouds = [obj for obj in clouds if splats.is_native_splat(obj)]
    gaussian_points = [obj for obj in clouds if obj not in splat_clouds
                       and set(GAUSSIAN_ATTRIBUTES) <= _evaluated_attribute_names(obj, depsgraph)]
    plain_points = [obj for obj in clouds if obj not in splat_clouds and obj not in gaussian_points]
    if not import_points and not (gaussian_points or (native and splat_clouds)):
        raise _errors.ValidationError(
            f"{path.name} has no Gaussians, only point clouds: import it with 'Point Cloud Layer' on, "
            "or re-film with Fit Gaussians on to get splats")
    imported = ImportedResult(point_objects=plain_points if import_points else [])
    if native and splat_clouds:  # the native splats show the Gaussians; the sphere version is not kept
        imported.splat_objects = splat_clouds
    else:
        imported.gaussian_objects = gaussian_points

    scene = context.scene
    time_range = _usd_time_range(str(path))
    if time_range is not None:
        imported.frame_start, imported.frame_end, imported.fps = time_range
    else:  # no pxr here: Blender's importer has set the scene range to the file's
        imported.frame_start, imported.frame_end = scene.frame_start, scene.frame_end
    if frame_start is not None and frame_start != imported.frame_start:
        offset = frame_start - imported.frame_start
        for obj in clouds:
            for modifier in obj.modifiers:
                if modifier.type == "MESH_SEQUENCE_CACHE" and modifier.cache_file is not None:
                    modifier.cache_file.frame_offset = offset
        imported.frame_start += offset
        imported.frame_end += offset
    if check_frames and (splat_clouds or gaussian_points):
        # The Gaussians' Points prim holds the same Gaussians as the splat prim, as written (Blender's
        # importer turns a zero quaternion of the splat prim into the identity): check it when present
        splats.check_splat_frames(context, gaussian_points or splat_clouds,
                                  range(imported.frame_start, imported.frame_end + 1), path.name)
    transaction.remove_objects([obj for obj in clouds if obj not in imported.objects])
    for obj in imported.objects:
        obj["recast4d_result"] = str(path)
    for obj in imported.gaussian_objects:
        setup_gaussian_object(obj, sigma_extent=sigma_extent, ellipsoids=ellipsoids)
    for obj in imported.point_objects:
        setup_point_object(obj, unlit=unlit)
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
    Native Gaussian splats (if the scene holds any) get what they need from
    :func:`.splats.configure_splat_render`. (Call it through ``render_setup.setup_render_for_job``,
    which remembers what changed.)
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
    if splats.scene_has_native_splats(scene):
        splats.configure_splat_render(scene, samples=samples)
    if camera is not None:
        if camera.type != "CAMERA":
            raise _errors.ValidationError(f"{camera.name} is not a camera")
        scene.camera = camera
    if frame_range is not None:
        scene.frame_start, scene.frame_end = frame_range
    if fps is not None:
        set_scene_fps(scene, fps)
