"""COLMAP text model (``cameras.txt`` + ``images.txt``, as ``colmap model_converter --output_type TXT``).

``cameras.txt``: one line per camera, ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...``; the pinhole part
of each model is read (``SIMPLE_PINHOLE f cx cy``, ``PINHOLE fx fy cx cy``, ``SIMPLE_RADIAL f cx cy k``,
``RADIAL f cx cy k1 k2``, ``OPENCV fx fy cx cy k1 k2 p1 p2``, ``FULL_OPENCV fx fy cx cy k1..k6 p1 p2``);
non-zero distortion gives a warning (undistort the frames with ``colmap image_undistorter`` first);
fisheye models are refused.

``images.txt``: two lines per registered image, ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` then
its 2-D points (may be empty). ``(QW, QX, QY, QZ)`` is the unit quaternion of the world-to-camera
rotation and ``T`` the world-to-camera translation, camera axes x right, y down, z forward: exactly
our OpenCV ``world_to_camera = [R(q) | T]``. Pixel coordinates have the top-left pixel's centre at
(0.5, 0.5), as ours. Lines starting with ``#`` are comments.

Images are ordered by ``NAME`` in natural order (``frame_2`` < ``frame_10``), the temporal order of
a video's frames (COLMAP's image ids follow its own import order). COLMAP leaves out the images it
could not register; when the names number the frames (``frame_00001.png``...), gaps in that
numbering are reported as missing images, and so is a model with fewer images than the clip has
frames (``num_frames``): a source camera is needed for every frame.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...camera import Camera
from ...errors import ValidationError
from .common import CameraFormatWarning, CameraPathData, checked_camera, require_cameras
from .transforms import natural_key

#: model name -> (number of params, index of fx, fy, cx, cy in them; fy = fx when the same index)
COLMAP_MODELS = {
    "SIMPLE_PINHOLE": (3, (0, 0, 1, 2)),
    "PINHOLE": (4, (0, 1, 2, 3)),
    "SIMPLE_RADIAL": (4, (0, 0, 1, 2)),
    "RADIAL": (5, (0, 0, 1, 2)),
    "OPENCV": (8, (0, 1, 2, 3)),
    "FULL_OPENCV": (12, (0, 1, 2, 3)),
}
_FRAME_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last number in an image name


def colmap_error(path: str | os.PathLike, line: int | None, problem: str) -> ValidationError:
    """A :class:`ValidationError` naming the COLMAP file (and line) and the problem."""
    where = os.fspath(path) + (f" line {line}" if line is not None else "")
    return ValidationError(f"COLMAP model {where}: {problem}")


def model_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(cameras.txt, images.txt)`` for a model folder or either of its two files."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    cameras_txt, images_txt = folder / "cameras.txt", folder / "images.txt"
    for file in (cameras_txt, images_txt):
        if not file.is_file():
            binary = file.with_suffix(".bin")
            hint = (f" (found {binary.name}: convert it with `colmap model_converter --input_path {folder} "
                    f"--output_path {folder} --output_type TXT`)") if binary.is_file() else ""
            raise colmap_error(file, None, f"file not found{hint}")
    return cameras_txt, images_txt


def is_colmap_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a COLMAP text model folder or its ``cameras.txt`` / ``images.txt``."""
    path = Path(path)
    if path.is_dir():
        return (path / "cameras.txt").is_file() or (path / "images.txt").is_file()
    return path.name in ("cameras.txt", "images.txt")


def _data_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise colmap_error(path, None, f"cannot read: {exc}") from exc
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1)
            if not line.lstrip().startswith("#")]


def read_colmap_cameras(path: Path) -> dict[int, tuple[np.ndarray, int, int]]:
    """``{camera_id: (K, width, height)}`` from ``cameras.txt`` (module docstring)."""
    cameras: dict[int, tuple[np.ndarray, int, int]] = {}
    for number, line in _data_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 4:
            raise colmap_error(path, number, "expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS...")
        model = fields[1].upper()
        if model not in COLMAP_MODELS:
            raise colmap_error(path, number, f"camera model {model!r} is not supported (pinhole models only: "
                                             f"{', '.join(COLMAP_MODELS)}); undistort the images first")
        count, (ifx, ify, icx, icy) = COLMAP_MODELS[model]
        try:
            camera_id, width, height = int(fields[0]), int(fields[2]), int(fields[3])
            params = [float(v) for v in fields[4:]]
        except ValueError as exc:
            raise colmap_error(path, number, f"not a camera line ({exc})") from exc
        if len(params) != count:
            raise colmap_error(path, number, f"{model} has {count} parameters, got {len(params)}")
        if not np.all(np.isfinite(params)):
            raise colmap_error(path, number, "parameters contain NaN or infinity")
        distortion = params[4 if ify != ifx else 3:]
        if any(abs(v) > 0 for v in distortion):
            warnings.warn(f"{path} line {number}: {model} distortion {distortion} is ignored: Recast 4D cameras "
                          "are pinhole; undistort the frames first (colmap image_undistorter)",
                          CameraFormatWarning, stacklevel=4)
        K = np.array([[params[ifx], 0.0, params[icx]], [0.0, params[ify], params[icy]], [0.0, 0.0, 1.0]])
        cameras[camera_id] = (K, width, height)
    if not cameras:
        raise colmap_error(path, None, "holds no camera")
    return cameras


def quaternion_to_rotation(qw: float, qx: float, qy: float, qz: float) -> np.ndarray:
    """3x3 rotation of the unit quaternion ``(w, x, y, z)`` (Hamilton convention, as COLMAP)."""
    q = np.array([qw, qx, qy, qz], dtype=np.float64)
    q = q / np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a 3x3 rotation (inverse of the above)."""
    R = np.asarray(R, dtype=np.float64)
    # symmetric 4x4 whose top eigenvector is the quaternion (Bar-Itzhack), robust for every angle
    K = np.array([
        [R[0, 0] - R[1, 1] - R[2, 2], R[1, 0] + R[0, 1], R[2, 0] + R[0, 2], R[2, 1] - R[1, 2]],
        [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], R[2, 1] + R[1, 2], R[0, 2] - R[2, 0]],
        [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], R[1, 0] - R[0, 1]],
        [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]],
    ]) / 3.0
    values, vectors = np.linalg.eigh(K)
    x, y, z, w = vectors[:, np.argmax(values)]
    q = np.array([w, x, y, z])
    return q if q[0] >= 0 else -q


def _missing_frame_names(names: list[str]) -> list[str]:
    """Names absent from a numbered sequence (``frame_00001.png``...): gaps between the first and last."""
    numbered = [(m, n) for n in names if (m := _FRAME_NUMBER.search(n)) is not None]
    if len(numbered) != len(names) or len(names) < 2:
        return []
    template = numbered[0][0]
    prefix, suffix = numbered[0][1][:template.start()], numbered[0][1][template.end():]
    numbers = sorted(int(m.group(1)) for m, _ in numbered)
    width = len(template.group(1))
    present = set(numbers)
    return [f"{prefix}{value:0{width}d}{suffix}" for value in range(numbers[0], numbers[-1] + 1)
            if value not in present]


def read_colmap(path: str | os.PathLike, num_frames: int | None = None) -> CameraPathData:
    """Cameras of a COLMAP text model, ordered by image name (see the module docstring).

    ``path``: the model folder (e.g. ``sparse/0``) or its ``cameras.txt`` / ``images.txt``.
    ``num_frames``: the clip's frame count; a model with fewer registered images is refused, naming
    the missing images when the names are numbered. ``extras["image_names"]`` lists the names in order.
    """
    cameras_txt, images_txt = model_files(path)
    intrinsics = read_colmap_cameras(cameras_txt)
    lines = _data_lines(images_txt)
    entries: list[tuple[str, Camera]] = []
    index = 0
    while index < len(lines):
        number, line = lines[index]
        fields = line.split()
        if not fields:  # blank separator lines
            index += 1
            continue
        if len(fields) < 10:
            raise colmap_error(images_txt, number, "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        try:
            qw, qx, qy, qz, tx, ty, tz = (float(v) for v in fields[1:8])
            camera_id = int(fields[8])
        except ValueError as exc:
            raise colmap_error(images_txt, number, f"not an image line ({exc})") from exc
        name = " ".join(fields[9:])
        if camera_id not in intrinsics:
            raise colmap_error(images_txt, number, f"image {name!r} uses CAMERA_ID {camera_id}, which "
                                                   f"{cameras_txt} does not define (has {sorted(intrinsics)})")
        quaternion = np.array([qw, qx, qy, qz])
        if not np.all(np.isfinite(quaternion)) or np.linalg.norm(quaternion) < 1e-12:
            raise colmap_error(images_txt, number, f"image {name!r} has no valid rotation quaternion")
        w2c = np.eye(4)
        w2c[:3, :3] = quaternion_to_rotation(qw, qx, qy, qz)
        w2c[:3, 3] = (tx, ty, tz)
        K, width, height = intrinsics[camera_id]
        cam = checked_camera(images_txt, len(entries), lambda K=K, w2c=w2c, w=width, h=height: Camera(K, w2c, w, h))
        entries.append((name, cam))
        # the next line lists the image's 2-D points (possibly empty); a 10+-field line with an
        # image-like header there would be the next image, so only skip what looks like points
        index += 1
        if index < len(lines) and not _looks_like_image_line(lines[index][1]):
            index += 1
    if not entries:
        raise colmap_error(images_txt, None, "holds no registered image")
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise colmap_error(images_txt, None, f"images listed twice: {duplicated[:5]}")
    entries.sort(key=lambda entry: natural_key(entry[0]))
    names = [name for name, _ in entries]
    missing = _missing_frame_names(names)
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise colmap_error(images_txt, None, f"{len(missing)} image(s) missing from the sequence (COLMAP did not "
                                             f"register them): {shown}; every frame needs a camera")
    if num_frames is not None and len(entries) != num_frames:
        raise colmap_error(images_txt, None, f"has {len(entries)} registered images but the clip has {num_frames} "
                                             "frames: every frame needs a camera (trim the clip or re-run COLMAP)")
    return CameraPathData([cam for _, cam in entries], extras={"image_names": names})


def _looks_like_image_line(line: str) -> bool:
    fields = line.split()
    if len(fields) < 10:
        return False
    try:
        int(fields[0])
        [float(v) for v in fields[1:8]]
        int(fields[8])
    except ValueError:
        return False
    # a POINTS2D line is triples (x, y, point3d_id): all numeric; an image line ends in a name
    try:
        float(fields[-1])
    except ValueError:
        return True
    return False


def write_colmap(path: str | os.PathLike, cameras: Sequence[Camera], image_names: Sequence[str] | None = None) -> None:
    """Write ``cameras`` as a COLMAP text model into folder ``path``: ``cameras.txt`` (one PINHOLE camera
    per distinct intrinsics), ``images.txt`` (empty 2-D point lists) and an empty ``points3D.txt``.

    ``image_names`` default to ``frame_00001.png``, ... Skew cannot be stored (dropped, warned).
    """
    from .common import LossyFormatWarning

    cams = require_cameras(cameras)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(image_names) if image_names is not None else [f"frame_{i + 1:05d}.png" for i in range(len(cams))]
    if len(names) != len(cams):
        raise colmap_error(folder, None, f"{len(names)} image names for {len(cams)} cameras")
    if any(abs(c.K[0, 1]) > 1e-12 for c in cams):
        warnings.warn(f"{folder}: COLMAP PINHOLE cameras have no skew; K[0, 1] is dropped",
                      LossyFormatWarning, stacklevel=2)
    ids: dict[tuple, int] = {}
    camera_lines, image_lines = [], []
    for i, (cam, name) in enumerate(zip(cams, names)):
        key = (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy)
        if key not in ids:
            ids[key] = len(ids) + 1
            camera_lines.append(f"{ids[key]} PINHOLE {cam.width} {cam.height} {cam.fx!r} {cam.fy!r} "
                                f"{cam.cx!r} {cam.cy!r}")
        qw, qx, qy, qz = rotation_to_quaternion(cam.rotation)
        tx, ty, tz = cam.world_to_camera[:3, 3]
        image_lines += [f"{i + 1} {qw!r} {qx!r} {qy!r} {qz!r} {tx!r} {ty!r} {tz!r} {ids[key]} {name}", ""]
    (folder / "cameras.txt").write_text("# Camera list with one line of data per camera:\n"
                                        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                                        + "\n".join(camera_lines) + "\n")
    (folder / "images.txt").write_text("# Image list with two lines of data per image:\n"
                                       "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                                       "#   POINTS2D[] as (X, Y, POINT3D_ID)\n" + "\n".join(image_lines) + "\n")
    (folder / "points3D.txt").write_text("# 3D point list (empty: written by Recast 4D from cameras only)\n")
