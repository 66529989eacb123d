"""Read and write camera paths by format name or file extension."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ...camera import Camera
from ...errors import ValidationError
from .colmap import is_colmap_model, read_colmap, write_colmap
from .common import CameraPathData, file_error, load_json
from .gen3c import read_gen3c, write_gen3c
from .nerfstudio import read_nerfstudio_doc, write_nerfstudio
from .orbit_txt import read_trajectorycrafter, read_viewcrafter, write_trajectorycrafter, write_viewcrafter
from .recammaster import read_recammaster_doc, write_recammaster
from .transforms import is_transforms_doc, read_transforms_doc, write_transforms

FORMATS = ("nerfstudio", "recammaster", "trajectorycrafter", "viewcrafter", "gen3c", "transforms", "colmap")
FORMAT_ALIASES = {"free4d": "viewcrafter", "ns": "nerfstudio", "camerapath": "nerfstudio",
                  "transformsjson": "transforms", "instantngp": "transforms", "ngp": "transforms"}


def canonical_format(name: str) -> str:
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    key = FORMAT_ALIASES.get(key, key)
    if key not in FORMATS:
        raise ValidationError(f"unknown camera path format {name!r}; choose one of {list(FORMATS)} (or free4d)")
    return key


def _json_format(path: str | os.PathLike, doc: dict) -> str:
    if "camera_path" in doc:
        return "nerfstudio"
    if is_transforms_doc(doc):
        return "transforms"
    if doc and all(str(k).startswith("frame") for k in doc):
        return "recammaster"
    raise file_error(path, "JSON is neither a nerfstudio camera_path (no 'camera_path' key), a nerfstudio / "
                           "instant-ngp transforms.json ('frames' with 'transform_matrix') nor "
                           "ReCamMaster extrinsics (keys frame0, frame1, ...)")


def read_camera_path(path: str | os.PathLike, format: str | None = None, *, reference: Camera | None = None,
                     pivot_depth: float = 1.0, num_frames: int | None = None, camera_name: str = "cam01",
                     width: int | None = None, height: int | None = None) -> CameraPathData:
    """Read a camera path file into OpenCV cameras.

    ``format`` is one of :data:`FORMATS` (``free4d`` = ``viewcrafter``); when omitted it is taken
    from the file: a folder, ``cameras.txt`` or ``images.txt`` -> COLMAP text model, ``.npz`` ->
    GEN3C, ``.json`` -> nerfstudio camera_path, transforms.json or ReCamMaster by content. Other
    ``.txt`` files need an explicit format (TrajectoryCrafter and ViewCrafter files look alike).
    Format-specific options: ``reference``/``pivot_depth``/``num_frames`` (the two traj.txt
    formats, and ``reference`` supplies K and size for ReCamMaster), ``camera_name`` (ReCamMaster),
    ``width``/``height`` (GEN3C files without ``image_size``, transforms.json without ``w``/``h``),
    ``num_frames`` (COLMAP: the clip's frame count, every frame needs a registered image).
    """
    if not os.path.exists(path):
        raise file_error(path, "does not exist")
    ext = os.path.splitext(os.fspath(path))[1].lower()
    doc = None
    if format is None:
        if is_colmap_model(path):
            format = "colmap"
        elif ext == ".npz":
            format = "gen3c"
        elif ext == ".json":
            doc = load_json(path)
            format = _json_format(path, doc)
        elif ext == ".txt":
            raise file_error(path, "a traj.txt may be TrajectoryCrafter (theta, phi, r) or ViewCrafter/Free4D "
                                   "(phi, theta, r); pass format='trajectorycrafter' or 'viewcrafter'")
        else:
            raise file_error(path, f"cannot tell the format from the extension {ext!r}; pass format=")
    fmt = canonical_format(format)
    if fmt == "nerfstudio":
        return read_nerfstudio_doc(path, doc if doc is not None else load_json(path))
    if fmt == "transforms":
        return read_transforms_doc(path, doc if doc is not None else load_json(path), width, height)
    if fmt == "colmap":
        return read_colmap(path, num_frames)
    if fmt == "recammaster":
        return read_recammaster_doc(path, doc if doc is not None else load_json(path), camera_name, reference)
    if fmt == "gen3c":
        return read_gen3c(path, width, height)
    reader = read_trajectorycrafter if fmt == "trajectorycrafter" else read_viewcrafter
    return reader(path, reference, pivot_depth, **({} if num_frames is None else {"num_frames": num_frames}))


def write_camera_path(path: str | os.PathLike, cameras: Sequence[Camera], format: str, fps: float = 30.0, *,
                      source_frames: Sequence[int] | None = None, reference: Camera | None = None,
                      pivot_depth: float | None = None, camera_name: str = "cam01") -> None:
    """Write ``cameras`` in ``format``; lossy formats emit :class:`LossyFormatWarning` saying what is lost.

    ``fps`` and ``source_frames`` (bullet-time map) are stored by nerfstudio only (``fps`` also by
    transforms.json); the traj.txt formats need the ``reference`` source camera and ``pivot_depth``
    (metres) they orbit around; ``colmap`` writes a model folder at ``path``.
    """
    fmt = canonical_format(format)
    if not (isinstance(fps, int | float) and fps > 0):
        raise ValidationError(f"fps must be positive, got {fps}")
    if source_frames is not None and len(source_frames) != len(cameras):
        raise ValidationError(f"{len(source_frames)} source frames for {len(cameras)} cameras")
    if fmt == "nerfstudio":
        write_nerfstudio(path, cameras, fps, source_frames)
    elif fmt == "recammaster":
        write_recammaster(path, cameras, camera_name)
    elif fmt == "gen3c":
        write_gen3c(path, cameras)
    elif fmt == "transforms":
        write_transforms(path, cameras, fps)
    elif fmt == "colmap":
        write_colmap(path, cameras)
    elif fmt == "trajectorycrafter":
        write_trajectorycrafter(path, cameras, reference, pivot_depth)
    else:
        write_viewcrafter(path, cameras, reference, pivot_depth)
