"""Orbit trajectories as three text lines: TrajectoryCrafter and ViewCrafter/Free4D ``traj.txt``.

Both describe a camera on a sphere around a pivot ``pivot_depth`` metres along the reference
(source) camera's optical axis, always looking at the pivot, with no roll and no other motion:

- TrajectoryCrafter: line 1 = theta (elevation, degrees, + moves the camera **up**), line 2 = phi
  (azimuth, degrees, + moves it right), line 3 = r (radius change as a fraction of the pivot
  distance, - moves closer). It spline-interpolates each line to 49 frames.
- ViewCrafter / Free4D: line 1 = **d_phi** (+ right), line 2 = **d_theta** (+ moves the camera
  **down**, per ViewCrafter's render_help), line 3 = d_r (fraction, - closer); 2..25 values a line,
  each starting at 0.

Pose for (up-angle u, right-angle a, r), in the reference camera frame (OpenCV)::

    delta = T(0, 0, d) @ R_y(-a) @ R_x(-u) @ T(0, 0, -d (1 + r))

(yaw about the reference vertical first, then pitch), so (0, 0, 0) is the reference camera.
The intrinsics come from the reference camera. Writing fits (u, a, r) per camera and warns about
what the format cannot hold (intrinsics, roll, off-pivot aim, timing).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import numpy as np

from ...camera import Camera, rigid_inverse
from ...errors import ValidationError
from .common import CameraPathData, FormatConstraintWarning, LossyFormatWarning, file_error, require_cameras

TRAJECTORYCRAFTER_FRAMES = 49
VIEWCRAFTER_MAX_VALUES = 25
_POSE_TOL_M = 1e-6
_ROT_TOL = 1e-6


def trajectorycrafter_reference() -> Camera:
    """TrajectoryCrafter's fixed camera: f = 500 px, principal point (512, 288), 1024x576, identity pose."""
    return Camera(np.array([[500.0, 0.0, 512.0], [0.0, 500.0, 288.0], [0.0, 0.0, 1.0]]), np.eye(4), 1024, 576)


def _rot(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    R = np.eye(4)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def _shift_z(z: float) -> np.ndarray:
    T = np.eye(4)
    T[2, 3] = z
    return T


def orbit_delta(up_deg: float, right_deg: float, r: float, pivot_depth: float) -> np.ndarray:
    """Camera-to-reference-camera 4x4 for a spherical pose (see module docstring)."""
    d = float(pivot_depth)
    return (_shift_z(d) @ _rot(1, -math.radians(right_deg)) @ _rot(0, -math.radians(up_deg))
            @ _shift_z(-d * (1.0 + r)))


def fit_orbit(reference: Camera, cam: Camera, pivot_depth: float) -> tuple[float, float, float]:
    """(up degrees, right degrees, r) whose orbit pose has ``cam``'s centre."""
    pivot = reference.center + pivot_depth * reference.camera_to_world[:3, 2]
    v = reference.rotation @ (cam.center - pivot)
    rho = float(np.linalg.norm(v))
    if rho < 1e-12:
        raise ValidationError("a camera sits on the pivot; an orbit trajectory cannot describe it")
    pitch = math.asin(max(-1.0, min(1.0, v[1] / rho)))  # +y = down
    yaw = math.atan2(-v[0], -v[2])
    return -math.degrees(pitch), -math.degrees(yaw), rho / pivot_depth - 1.0


def _orbit_camera(reference: Camera, up: float, right: float, r: float, pivot_depth: float) -> Camera:
    c2w = reference.camera_to_world @ orbit_delta(up, right, r, pivot_depth)
    return Camera(reference.K, rigid_inverse(c2w), reference.width, reference.height)


def _check_inputs(reference: Camera | None, pivot_depth: float | None, fmt: str) -> tuple[Camera, float]:
    if reference is None or pivot_depth is None:
        raise ValidationError(f"{fmt} trajectories are relative to a source camera and a pivot depth; "
                              "pass reference=<source Camera> and pivot_depth=<metres>")
    if not (math.isfinite(pivot_depth) and pivot_depth > 0):
        raise ValidationError(f"pivot_depth must be positive metres, got {pivot_depth}")
    return reference, float(pivot_depth)


def _fit_all(path: str | os.PathLike, cams: list[Camera], reference: Camera, pivot_depth: float,
             fmt: str) -> np.ndarray:
    values = np.array([fit_orbit(reference, c, pivot_depth) for c in cams])
    lost = ["intrinsics and image size (the reader takes them from the reference camera)"]
    max_pose_err = max_rot_err = 0.0
    k_changed = False
    for cam, (up, right, r) in zip(cams, values):
        back = _orbit_camera(reference, up, right, r, pivot_depth)
        max_pose_err = max(max_pose_err, float(np.linalg.norm(back.center - cam.center)))
        max_rot_err = max(max_rot_err, float(np.abs(back.rotation - cam.rotation).max()))
        k_changed |= not np.allclose(cam.K, reference.K) or (cam.width, cam.height) != (reference.width,
                                                                                          reference.height)
    if max_rot_err > _ROT_TOL:
        lost.append(f"roll and aim away from the pivot (rotation error up to {max_rot_err:.3g})")
    if max_pose_err > _POSE_TOL_M:
        lost.append(f"position error up to {max_pose_err:.3g} m")
    if k_changed:
        lost.append("per-frame zoom / intrinsics changes")
    warnings.warn(f"{os.fspath(path)}: {fmt} traj.txt keeps only an orbit (elevation, azimuth, radius) "
                  f"around the pivot; lost: {'; '.join(lost)}", LossyFormatWarning, stacklevel=4)
    return values


def _write_lines(path: str | os.PathLike, lines: Sequence[np.ndarray]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(" ".join(f"{v:.9g}" for v in line) + "\n")


def write_trajectorycrafter(path: str | os.PathLike, cameras: Sequence[Camera], reference: Camera | None,
                            pivot_depth: float | None) -> None:
    """Write theta / phi / r lines, one value per camera."""
    reference, pivot_depth = _check_inputs(reference, pivot_depth, "TrajectoryCrafter")
    values = _fit_all(path, require_cameras(cameras), reference, pivot_depth, "TrajectoryCrafter")
    _write_lines(path, [values[:, 0], values[:, 1], values[:, 2]])


def write_viewcrafter(path: str | os.PathLike, cameras: Sequence[Camera], reference: Camera | None,
                      pivot_depth: float | None) -> None:
    """Write d_phi / d_theta / d_r lines (at most 25 values: longer paths are resampled, with a warning)."""
    reference, pivot_depth = _check_inputs(reference, pivot_depth, "ViewCrafter")
    cams = require_cameras(cameras)
    values = _fit_all(path, cams, reference, pivot_depth, "ViewCrafter")
    if len(values) > VIEWCRAFTER_MAX_VALUES:
        keep = np.round(np.linspace(0, len(values) - 1, VIEWCRAFTER_MAX_VALUES)).astype(int)
        values = values[keep]
        warnings.warn(f"{os.fspath(path)}: ViewCrafter takes at most {VIEWCRAFTER_MAX_VALUES} values a line; "
                      f"{len(cams)} cameras were resampled to {VIEWCRAFTER_MAX_VALUES} keyframes",
                      LossyFormatWarning, stacklevel=3)
    if np.abs(values[0]).max() > 1e-6:
        warnings.warn(f"{os.fspath(path)}: ViewCrafter expects every line to start at 0 (the reference pose); "
                      f"the first camera is at {values[0].round(4).tolist()}", FormatConstraintWarning, stacklevel=3)
    if len(values) == 1:
        values = np.concatenate([np.zeros((1, 3)), values])
    _write_lines(path, [values[:, 1], -values[:, 0], values[:, 2]])


def interpolate_line(values: np.ndarray, num_frames: int) -> np.ndarray:
    """Resample keyframe values (evenly spaced in [0, 1]) to ``num_frames``: a natural cubic spline
    through them for more than 3 values, else linear (upstream uses scipy's smoothing spline)."""
    values = np.asarray(values, dtype=np.float64)
    m = len(values)
    x_new = np.linspace(0.0, 1.0, num_frames)
    if m == 1:
        return np.full(num_frames, values[0])
    x = np.linspace(0.0, 1.0, m)
    if m <= 3:
        return np.interp(x_new, x, values)
    h = x[1] - x[0]
    # second derivatives M with M[0] = M[-1] = 0 (natural spline): tridiagonal system
    A = np.zeros((m - 2, m - 2))
    np.fill_diagonal(A, 4.0)
    idx = np.arange(m - 3)
    A[idx, idx + 1] = A[idx + 1, idx] = 1.0
    rhs = 6.0 / h**2 * (values[2:] - 2.0 * values[1:-1] + values[:-2])
    M = np.concatenate([[0.0], np.linalg.solve(A, rhs), [0.0]])
    seg = np.clip((x_new / h).astype(int), 0, m - 2)
    t0, t1 = x[seg], x[seg + 1]
    a, b = (t1 - x_new) / h, (x_new - t0) / h
    return (a * values[seg] + b * values[seg + 1]
            + ((a**3 - a) * M[seg] + (b**3 - b) * M[seg + 1]) * h**2 / 6.0)


def _read_lines(path: str | os.PathLike, fmt: str) -> list[np.ndarray]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, f"cannot read: {exc}") from exc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) != 3:
        raise file_error(path, f"a {fmt} traj.txt has exactly 3 non-empty lines, found {len(lines)}")
    out = []
    for n, line in enumerate(lines, start=1):
        try:
            values = np.array([float(v) for v in line.replace(",", " ").split()])
        except ValueError as exc:
            raise file_error(path, f"line {n}: {exc}") from exc
        if not np.all(np.isfinite(values)):
            raise file_error(path, f"line {n} contains NaN or infinity")
        out.append(values)
    return out


def _cameras_from_values(path: str | os.PathLike, up: np.ndarray, right: np.ndarray, r: np.ndarray,
                         reference: Camera, pivot_depth: float, num_frames: int) -> list[Camera]:
    if num_frames < 1:
        raise ValidationError(f"num_frames must be at least 1, got {num_frames}")
    ups, rights, rs = (interpolate_line(v, num_frames) for v in (up, right, r))
    if np.any(1.0 + rs <= 0):
        raise file_error(path, "radius change r <= -1 puts the camera on or behind the pivot")
    return [_orbit_camera(reference, u, a, rr, pivot_depth) for u, a, rr in zip(ups, rights, rs)]


def read_trajectorycrafter(path: str | os.PathLike, reference: Camera | None = None,
                           pivot_depth: float = 1.0, num_frames: int = TRAJECTORYCRAFTER_FRAMES) -> CameraPathData:
    """Cameras for a TrajectoryCrafter traj.txt.

    ``reference`` defaults to TrajectoryCrafter's fixed camera; ``pivot_depth`` to 1, i.e. the
    path in units of the pivot distance (the file only holds a relative radius).
    """
    reference, pivot_depth = _check_inputs(reference or trajectorycrafter_reference(), pivot_depth,
                                           "TrajectoryCrafter")
    theta, phi, r = _read_lines(path, "TrajectoryCrafter")
    return CameraPathData(_cameras_from_values(path, theta, phi, r, reference, pivot_depth, num_frames))


def read_viewcrafter(path: str | os.PathLike, reference: Camera | None = None, pivot_depth: float = 1.0,
                     num_frames: int = VIEWCRAFTER_MAX_VALUES) -> CameraPathData:
    """Cameras for a ViewCrafter/Free4D traj.txt (lines d_phi, d_theta, d_r); defaults as TrajectoryCrafter."""
    reference, pivot_depth = _check_inputs(reference or trajectorycrafter_reference(), pivot_depth,
                                           "ViewCrafter")
    d_phi, d_theta, d_r = _read_lines(path, "ViewCrafter")
    for n, line in enumerate((d_phi, d_theta, d_r), start=1):
        if len(line) > VIEWCRAFTER_MAX_VALUES:
            raise file_error(path, f"line {n} has {len(line)} values; ViewCrafter allows 2..25")
    return CameraPathData(_cameras_from_values(path, -d_theta, d_phi, d_r, reference, pivot_depth, num_frames))
