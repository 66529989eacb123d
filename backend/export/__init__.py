"""Exports: USD stages (time-sampled points, Gaussians, splat particle fields) and PLY files."""

from .ply import gaussian_ply_fields, read_gaussian_ply, write_gaussian_ply, write_points_ply
from .stream import export_gaussian_frames, gaussian_ply_path
from .usd_writer import HAS_SPLAT_SCHEMA, UsdSceneWriter, gf_quat_wxyz

__all__ = [
    "HAS_SPLAT_SCHEMA",
    "UsdSceneWriter",
    "export_gaussian_frames",
    "gaussian_ply_fields",
    "gaussian_ply_path",
    "gf_quat_wxyz",
    "read_gaussian_ply",
    "write_gaussian_ply",
    "write_points_ply",
]
