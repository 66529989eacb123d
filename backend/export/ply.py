"""PLY files: 3DGS Gaussians in the Inria / nerfstudio layout, and plain coloured point clouds.

3DGS layout (binary little endian, one ``vertex`` element, all ``float``), in this order:
``x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{3(K-1)-1} opacity scale_0 scale_1 scale_2
rot_0 rot_1 rot_2 rot_3`` with **pre-activation values**: log-scales (natural log of std-devs in
metres), logit opacity, SH coefficients (``f_dc``: colour = ``SH_C0 * f_dc + 0.5``, sRGB-encoded),
and the wxyz quaternion normalised to unit length. Blender 5.3's ``wm.ply_import`` reads this as a
``GAUSSIAN_SPLAT`` point cloud with ``radiance:base`` (colour + opacity), ``scale`` and ``rotation``. ``nx ny nz`` are zeros. ``f_rest`` is
channel-major (all R coefficients of bands >= 1, then G, then B), as the Inria code writes
``features_rest.transpose(1, 2).flatten(1)``. The SH degree is recovered from the f_rest count.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError

from backend.gaussians.gaussian_set import MAX_SH_DEGREE, GaussianSet
from protocol.errors import ValidationError

from .sanitize import exportable_gaussians, invalid_gaussian_rows


def gaussian_ply_fields(sh_degree: int) -> list[str]:
    """Vertex property names of a 3DGS PLY for ``sh_degree`` (0..3), in file order."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _atomic_write(path: Path, ply: PlyData) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        ply.write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_gaussian_ply(path: str | os.PathLike, gaussians: GaussianSet) -> Path:
    """Write ``gaussians`` as a binary 3DGS PLY (see module docstring); atomic (temp file + rename).

    Unusable Gaussians (NaN/infinite values, zero scales, zero quaternions) are dropped and the
    quaternions normalised (:func:`~backend.export.sanitize.exportable_gaussians`)."""
    path = Path(path)
    g = exportable_gaussians(gaussians.detach().to("cpu"), what=str(path)).gaussians
    n = len(g)
    sh = g.sh.float().numpy()
    columns = [
        g.means.float().numpy(),
        np.zeros((n, 3), dtype=np.float32),
        sh[:, 0, :],
        sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (sh.shape[1] - 1)),  # explicit width: n may be 0
        g.logit_opacities.float().numpy()[:, None],
        g.log_scales.float().numpy(),
        g.quats.float().numpy(),
    ]
    data = np.concatenate(columns, axis=1).astype(np.float32)
    names = gaussian_ply_fields(g.sh_degree)
    vertex = np.empty(data.shape[0], dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        vertex[name] = data[:, i]
    _atomic_write(path, PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<"))
    return path


def read_gaussian_ply(path: str | os.PathLike, device: torch.device | str = "cpu") -> GaussianSet:
    """Read a 3DGS PLY (Inria / nerfstudio / gsplat layouts; ``nx ny nz`` optional)."""
    try:
        ply = PlyData.read(str(path))
    except (OSError, ValueError, PlyParseError) as exc:
        raise ValidationError(f"cannot read PLY file {path}: {exc}") from exc
    if "vertex" not in ply:
        raise ValidationError(f"{path} has no 'vertex' element; not a Gaussian-splat PLY")
    v = ply["vertex"].data
    names = set(v.dtype.names or ())
    required = {"x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                "rot_0", "rot_1", "rot_2", "rot_3"}
    missing = sorted(required - names)
    if missing:
        raise ValidationError(f"{path} is not a 3DGS PLY: missing fields {', '.join(missing)}")
    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    degree = next((d for d in range(MAX_SH_DEGREE + 1) if 3 * ((d + 1) ** 2 - 1) == n_rest), None)
    if degree is None:
        raise ValidationError(f"{path}: {n_rest} f_rest fields do not match any SH degree 0..{MAX_SH_DEGREE}")

    def cols(*field_names: str) -> np.ndarray:
        return np.stack([np.asarray(v[f], dtype=np.float32) for f in field_names], axis=1)

    n = len(v)
    k = (degree + 1) ** 2
    sh = np.zeros((n, k, 3), dtype=np.float32)
    sh[:, 0] = cols("f_dc_0", "f_dc_1", "f_dc_2")
    if n_rest:
        rest = cols(*[f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k - 1)
        sh[:, 1:] = rest.transpose(0, 2, 1)
    gaussians = GaussianSet(
        means=torch.from_numpy(cols("x", "y", "z")).to(device),
        log_scales=torch.from_numpy(cols("scale_0", "scale_1", "scale_2")).to(device),
        quats=torch.from_numpy(cols("rot_0", "rot_1", "rot_2", "rot_3")).to(device),
        logit_opacities=torch.from_numpy(cols("opacity")[:, 0]).to(device),
        sh=torch.from_numpy(sh).to(device),
        sh_degree=degree,
    )
    bad = int(invalid_gaussian_rows(gaussians).sum())
    if bad:
        raise ValidationError(f"{path}: {bad} of {n} Gaussians have NaN/infinite values, zero scales or a zero "
                              f"quaternion (rot_0..rot_3); re-export the file or drop those rows")
    return gaussians


def write_points_ply(path: str | os.PathLike, points: np.ndarray, colors: np.ndarray | None = None) -> Path:
    """Binary PLY point cloud: ``x y z`` float (metres) and, with ``colors`` (N, 3) floats in [0, 1],
    ``red green blue`` uchar (rounded). Atomic write."""
    path = Path(path)
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValidationError(f"points must have shape (N, 3), got {pts.shape}")
    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        col = np.asarray(colors, dtype=np.float32)
        if col.shape != pts.shape:
            raise ValidationError(f"colors must have shape {pts.shape}, got {col.shape}")
        dtype += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(pts.shape[0], dtype=dtype)
    vertex["x"], vertex["y"], vertex["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if colors is not None:
        rgb8 = np.clip(np.rint(col * 255.0), 0, 255).astype(np.uint8)
        vertex["red"], vertex["green"], vertex["blue"] = rgb8[:, 0], rgb8[:, 1], rgb8[:, 2]
    _atomic_write(path, PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<"))
    return path
