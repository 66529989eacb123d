"""Apply backend events to the scene's job list, and streamed result chunks to Blender data.

Result streams the add-on understands (``result.begin`` ``meta`` / ``result.chunk`` arrays):

- **file streams**: ``filename`` in the stream meta (``declare_stream(name, {"meta": {...}})``) or
  in the chunk meta names a result file by relative path (``scene.usdc``, ``orbit/video.mp4``);
  each chunk carries a 1-D ``uint8`` array ``data`` with the next piece of the file, written to
  ``<job.result_dir>/<filename>.part``; ``result.end`` renames it to its final name. One file per
  stream.
- **point streams**: chunks with ``xyz`` (N, 3) float32 metres and optional ``rgb`` (N, 3) uint8
  or float: the partial preview. The newest frame replaces the geometry of the job's preview object
  (a vertex-only mesh drawn and rendered as points, or as small native splats on Blender >= 5.3),
  so artists see the result build up.
- ``meta["output_dir"]`` (stream meta): a local backend points at its job output folder; if that
  folder exists on this machine it becomes ``job.result_dir`` and the file bytes of that stream
  are consumed without writing (never into the backend's folder).

Every function here runs on the main thread (from the timer tick or the blocking drain).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from .deps import protocol_module
from .jobs import find_job

JOB_STATE_FROM_WIRE = {"queued": "QUEUED", "running": "RUNNING", "streaming": "STREAMING",
                       "done": "DONE", "failed": "FAILED", "cancelled": "CANCELLED"}
PREVIEW_SUFFIX = " Preview"
#: ``job.error_code`` of a job whose results arrived but could not be stored here (see :func:`chunk_failed`).
LOCAL_FAILURE = "result_write_failed"
#: Preview frames are thinned to at most this many points so that applying one stays well inside a
#: timer tick (262k points cost ~50 ms of main-thread time, 20k ~5 ms); the imported USD result
#: always has every point.
PREVIEW_MAX_POINTS = 40_000
#: Standard deviation (metres) of the preview's isotropic splats on Blender >= 5.3 (the points
#: preview draws 1 cm spheres; a 6 mm sigma covers about the same area).
PREVIEW_SPLAT_SIGMA = 0.006

# (job_id, stream) -> stream meta from result.begin; open result files; streams whose file could
# not be written (their later chunks are skipped, their .part file is never renamed). Runtime only.
_stream_meta: dict[tuple[str, str], dict[str, Any]] = {}
_open_files: dict[tuple[str, str], Any] = {}
_failed_streams: set[tuple[str, str]] = set()


def message_of(event: Any) -> Any:
    """The typed ``protocol.messages`` object inside a client ``Event`` (or the object itself)."""
    message = getattr(event, "message", None)
    return message if message is not None else event


def find_job_anywhere(job_id: str | None):
    """``(scene, job)`` for ``job_id`` in any open scene, or ``(None, None)``."""
    if not job_id:
        return None, None
    for scene in bpy.data.scenes:
        job = find_job(scene, job_id) if hasattr(scene, "recast4d") else None
        if job is not None:
            return scene, job
    return None, None


def default_result_dir(job_id: str) -> Path:
    """Where streamed result files go: next to the .blend if saved, else the extension's user dir."""
    if bpy.data.filepath:
        base = Path(bpy.path.abspath("//")) / "recast4d_results"
    else:
        package = __package__ or "recast4d"
        try:
            base = Path(bpy.utils.extension_path_user(package, path="results", create=True))
        except (ValueError, KeyError):  # not installed as an extension (development checkout)
            base = Path(bpy.app.tempdir or "/tmp") / "recast4d_results"
    return base / job_id


def apply_event(kind: str, event: Any, status: dict[str, Any]) -> None:
    """Update connection status or the job named by ``event.job_id`` (cheap, property writes only)."""
    if kind == "welcome":
        gpu = getattr(event, "gpu", None)
        status.update(connected=True, server_session=event.server_session,
                      capabilities=list(event.capabilities),
                      gpu=f"{gpu.name} ({gpu.mem / 2**30:.0f} GiB)" if gpu else "no GPU")
        return
    if kind in ("pong",):
        status["connected"] = True
        for job_id, state in getattr(event, "jobs", {}).items():
            _, job = find_job_anywhere(job_id)
            if (job is not None and state in JOB_STATE_FROM_WIRE and job.state != "CANCELLING"
                    and job.error_code != LOCAL_FAILURE):  # the backend's "done" does not undo a local failure
                job.state = JOB_STATE_FROM_WIRE[state]
        return
    if kind.startswith("client."):  # synthetic events of the client's I/O thread
        detail = getattr(event, "data", None) or {}
        if kind == "client.connected":
            status.update(connected=True, connecting=False, error="")
        elif kind in ("client.unreachable", "client.reconnecting"):
            status.update(connected=False, connecting=True,
                          error=str(detail.get("message") or "backend not answering; retrying"))
        elif kind == "client.server_restarted":
            status["error"] = "the backend restarted; unfinished jobs are resumed if it kept them"
        elif kind == "client.error":
            status["error"] = f"{detail.get('code', 'error')}: {detail.get('message', '')}"
        return
    if kind == "result.end":  # closes the stream's file even if its job left the job list meanwhile
        _end_stream(event.job_id, event.stream)
        return
    _, job = find_job_anywhere(getattr(event, "job_id", None))
    if kind == "error" and job is None:
        status["error"] = f"{event.code}: {event.msg}"
        return
    if job is None:
        return
    if kind == "job.accepted":
        if getattr(event, "token", ""):
            job.token = event.token  # saved with the .blend: a later session proves ownership with it
        if job.state in ("PENDING", "UPLOADING"):
            job.state = "QUEUED"
    elif kind == "job.rejected":
        job.state, job.error_code, job.error = "FAILED", event.code, event.detail or event.code
    elif kind == "job.status":
        new_state = JOB_STATE_FROM_WIRE.get(event.state)
        if new_state and not (job.state == "CANCELLING" and new_state not in ("DONE", "FAILED", "CANCELLED")):
            job.state = new_state
        if new_state == "DONE":  # progress is coalesced on the wire: the last step may never arrive
            for stage in job.stages:
                stage.step = max(stage.step, stage.total)
        if event.state == "failed" and event.detail:
            job.error = event.detail
    elif kind == "progress":
        stage = job.stage(event.stage)
        stage.step, stage.total, stage.message = max(0, event.step), max(0, event.total), event.msg
        job.current_stage = event.stage
        if job.state in ("PENDING", "UPLOADING", "QUEUED"):
            job.state = "RUNNING"
    elif kind == "result.begin":
        _begin_stream(job, event)
    elif kind == "cancelled":
        job.state = "CANCELLED"
    elif kind == "error":
        job.state, job.error_code, job.error = "FAILED", event.code, event.msg or event.code


def _begin_stream(job, event) -> None:
    meta = dict(event.meta or {})
    key = (job.job_id, event.stream)
    if not meta.get("from_chunk"):  # the stream starts over (Fetch Results, resume after a restart):
        _discard_file(key)  # a half-written file must not get the same bytes appended again
        if job.error_code == LOCAL_FAILURE:  # a new try: the backend's state counts again
            job.state, job.error_code, job.error = "STREAMING", "", ""
    _stream_meta[key] = meta
    known = [name for name in job.streams.split(",") if name]
    if event.stream not in known:
        job.streams = ",".join([*known, event.stream])
        job.frames_expected += int(event.frames or 0)
    output_dir = meta.get("output_dir")
    if isinstance(output_dir, str) and os.path.isdir(output_dir):
        job.result_dir = output_dir  # local backend: use its output folder, skip the bytes
        meta["local"] = True
    elif not job.result_dir:
        job.result_dir = str(default_result_dir(job.job_id))


def _discard_file(key: tuple[str, str]) -> None:
    """Forget a stream's half-written file (it stays a ``.part`` file) and any earlier failure."""
    handle = _open_files.pop(key, None)
    if handle is not None:
        handle.close()
    _failed_streams.discard(key)


def _end_stream(job_id: str, stream: str) -> None:
    key = (job_id, stream)
    handle = _open_files.pop(key, None)
    if handle is not None:
        handle.close()
        if key not in _failed_streams:
            part = Path(handle.name)
            os.replace(part, part.with_name(part.name[: -len(".part")]))
    _failed_streams.discard(key)
    _stream_meta.pop(key, None)


def chunk_failed(chunk: Any, exc: Exception) -> None:
    """A chunk could not be applied (unusable file name, disk full...): the job shows why, the
    stream's file is abandoned as ``.part`` and its remaining chunks are skipped (Fetch Results
    starts it over)."""
    key = (chunk.job_id, chunk.stream)
    handle = _open_files.pop(key, None)
    if handle is not None:
        handle.close()
    _failed_streams.add(key)
    _, job = find_job_anywhere(chunk.job_id)
    if job is not None:
        job.state, job.error_code = "FAILED", LOCAL_FAILURE
        job.error = f"could not store result stream {chunk.stream!r}: {exc}"


def safe_relative_path(name: str) -> Path:
    """A result file name from the backend as a safe relative path (``orbit/video.mp4``).

    Absolute paths, drive letters and ``..`` components are refused (a file must land inside the
    job's result folder).
    """
    parts = [p for p in str(name).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." or ":" in p for p in parts) or str(name).startswith(("/", "\\")):
        raise ValueError(f"unusable result file name {name!r}")
    return Path(*parts)


def apply_chunk(chunk: Any, chunk_meta: dict[str, Any] | None = None, *, show_preview: bool = True) -> None:
    """Consume one ``result.chunk``: append a file piece or replace the preview point geometry.

    ``chunk_meta`` is the chunk's own metadata (as the job emitted it); a ``filename`` there
    overrides the stream's. ``show_preview=False`` counts a points frame without rebuilding the
    preview (a newer frame is already waiting to replace it).
    """
    scene, job = find_job_anywhere(chunk.job_id)
    if job is None:
        return
    key = (chunk.job_id, chunk.stream)
    if key in _failed_streams:
        return
    meta = {**_stream_meta.get(key, {}), **(chunk_meta or {})}
    if "filename" in meta:
        _stream_meta.setdefault(key, {})["filename"] = meta["filename"]
    arrays = chunk.arrays
    if "filename" in meta and "data" in arrays and meta.get("local"):
        return  # the file is already on this machine in the backend's output folder
    if "filename" in meta and "data" in arrays:
        handle = _open_files.get(key)
        if handle is None:
            folder = Path(bpy.path.abspath(job.result_dir or str(default_result_dir(job.job_id))))
            folder.mkdir(parents=True, exist_ok=True)
            job.result_dir = str(folder)
            target = folder / safe_relative_path(meta["filename"])
            target.parent.mkdir(parents=True, exist_ok=True)
            # written as <name>.part and renamed at result.end: a file that exists is complete
            handle = _open_files[key] = open(target.with_name(target.name + ".part"), "wb")  # noqa: SIM115
        handle.write(memoryview(np.ascontiguousarray(arrays["data"], dtype=np.uint8)))  # no copy
    elif "xyz" in arrays:
        if show_preview:
            update_preview(scene, job, arrays["xyz"], arrays.get("rgb"))
        job.frames_received += 1


def update_preview(scene: bpy.types.Scene, job, xyz: np.ndarray, rgb: np.ndarray | None) -> bpy.types.Object:
    """Replace the job's preview geometry with ``xyz`` (N, 3) metres and ``rgb`` colours.

    The preview is a vertex-only mesh (point count can change every frame) with a ``displayColor``
    point attribute; geometry nodes turn it into a point cloud so Cycles renders it like the result.
    Where Blender renders native splats (>= 5.3) the cloud is of type ``GAUSSIAN_SPLAT``, each point a
    small isotropic splat (:data:`PREVIEW_SPLAT_SIGMA`) coloured by ``radiance:base``.
    Frames above :data:`PREVIEW_MAX_POINTS` are thinned with a regular stride.
    """
    from . import splats

    native = splats.native_splats_supported()
    name = f"{job.name or job.job_id[:8]}{PREVIEW_SUFFIX}"
    obj = bpy.data.objects.get(name)
    if obj is None or obj.type != "MESH":
        mesh = bpy.data.meshes.new(name)
        obj = bpy.data.objects.new(name, mesh)
        from .cameras import active_collection

        active_collection(scene).objects.link(obj)  # like Blender's Add menu: the active collection
        obj["recast4d_job"] = job.job_id
        _add_points_modifier(obj, splat_type=native)
    mesh = obj.data
    points = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    stride = max(1, -(-len(points) // PREVIEW_MAX_POINTS))
    points = np.ascontiguousarray(points[::stride])
    mesh.clear_geometry()
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", points.ravel())
    if rgb is not None:
        colors = np.asarray(rgb).reshape(-1, 3)[::stride]
        srgb = colors.astype(np.float32) / 255.0 if colors.dtype == np.uint8 else colors.astype(np.float32)
        linear = protocol_module("color").srgb_to_linear(srgb)  # frames are sRGB, colour attributes linear
        rgba = np.ones((len(points), 4), np.float32)
        rgba[:, :3] = linear
        attribute = mesh.color_attributes.get("displayColor") or mesh.color_attributes.new(
            "displayColor", "FLOAT_COLOR", "POINT")
        attribute.data.foreach_set("color", rgba.ravel())
        if native:  # the splats' SH DC holds the sRGB colour (3DGS convention)
            _set_point_attribute(mesh, splats.RADIANCE_ATTRIBUTE, "FLOAT4", splats.preview_radiance(srgb))
    if native:
        _set_point_attribute(mesh, splats.SCALE_ATTRIBUTE, "FLOAT_VECTOR",
                             np.full((len(points), 3), PREVIEW_SPLAT_SIGMA, np.float32))
    mesh.update()
    return obj


def _set_point_attribute(mesh: bpy.types.Mesh, name: str, data_type: str, values: np.ndarray) -> None:
    attribute = mesh.attributes.get(name)
    if attribute is None or attribute.data_type != data_type:
        if attribute is not None:
            mesh.attributes.remove(attribute)
        attribute = mesh.attributes.new(name, data_type, "POINT")
    attribute.data.foreach_set("vector", np.ascontiguousarray(values, np.float32).ravel())


def _add_points_modifier(obj: bpy.types.Object, *, splat_type: bool = False) -> None:
    """The preview's geometry nodes: Mesh to Points, then (``splat_type``) Set Point Cloud Type to
    3D Gaussian Splat, then the point material."""
    from . import materials

    group_name = "Recast4D Preview Splats" if splat_type else "Recast4D Preview Points"
    group = bpy.data.node_groups.get(group_name)
    if group is None:
        group = bpy.data.node_groups.new(group_name, "GeometryNodeTree")
        group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
        group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
        group_in, group_out = group.nodes.new("NodeGroupInput"), group.nodes.new("NodeGroupOutput")
        to_points = group.nodes.new("GeometryNodeMeshToPoints")
        to_points.inputs["Radius"].default_value = 0.01
        set_material = group.nodes.new("GeometryNodeSetMaterial")
        set_material.inputs["Material"].default_value = materials.point_cloud_material("Recast4D Preview")
        group.links.new(group_in.outputs[0], to_points.inputs["Mesh"])
        points_out = to_points.outputs["Points"]
        if splat_type:
            set_type = group.nodes.new("GeometryNodePointsSetType")
            set_type.inputs["Type"].default_value = "3D Gaussian Splat"
            group.links.new(points_out, set_type.inputs["Points"])
            points_out = set_type.outputs[0]
        group.links.new(points_out, set_material.inputs["Geometry"])
        group.links.new(set_material.outputs["Geometry"], group_out.inputs[0])
    obj.modifiers.new("Recast4D Points", "NODES").node_group = group


def close_all_streams() -> None:
    """Close any half-written result files (unregister / disconnect); they stay ``.part`` files."""
    for handle in _open_files.values():
        handle.close()
    _open_files.clear()
    _stream_meta.clear()
    _failed_streams.clear()
