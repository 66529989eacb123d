"""Everything a reshoot job writes into its output folder, written as soon as it exists.

Layout of ``out_dir``::

    scene.usdc                     time-sampled point cloud (/Recast4D/point_cloud) + Gaussians
    ply/gaussians_00000.ply ...    3DGS PLY per frame (Inria layout)
    <traj>/video.mp4               the finished shot along trajectory <traj>
    <traj>/render.mp4              the raw render before filling (holes black)
    <traj>/frames/frame_00000.png  the finished shot as lossless PNGs
    <traj>/masks/mask_00000.png    255 where pixels were generated (the holes)
    <traj>/cameras.json            the trajectory as a nerfstudio camera path (+ fx, fy, cx, cy)
    report.json                    stage timings, hole ratios, engine settings, versions
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from backend.media import write_mp4, write_png_sequence
from protocol.camera import Camera
from protocol.paths.formats import write_camera_path


def write_trajectory_outputs(
    out_dir: Path,
    name: str,
    render: np.ndarray,
    filled: np.ndarray,
    holes: np.ndarray,
    cameras: list[Camera],
    source_frames: list[int],
    fps: float,
    outputs: frozenset[str],
) -> dict[str, str]:
    """Write one trajectory's videos, PNGs, masks and cameras; returns ``{kind: relative path}``."""
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    if "video" in outputs:
        write_mp4(folder / "video.mp4", filled, fps)
        write_mp4(folder / "render.mp4", render, fps)
        written["video"] = f"{name}/video.mp4"
        written["render"] = f"{name}/render.mp4"
    if "png" in outputs:
        write_png_sequence(folder / "frames", filled)
        written["frames"] = f"{name}/frames"
    if "masks" in outputs:
        mask_rgb = np.repeat((holes.astype(np.uint8) * 255)[..., None], 3, axis=-1)
        write_png_sequence(folder / "masks", mask_rgb, prefix="mask_")
        written["masks"] = f"{name}/masks"
    if "cameras" in outputs:
        write_camera_path(folder / "cameras.json", cameras, "nerfstudio", fps=fps, source_frames=source_frames)
        written["cameras"] = f"{name}/cameras.json"
    return written


def versions() -> dict[str, str]:
    """Versions of the pieces that shape results (for ``report.json``)."""
    import torch

    out = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__}
    for module in ("diffusers", "transformers", "numpy", "cv2", "pxr"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        out[module] = str(getattr(mod, "__version__", getattr(mod, "Usd", None) and "usd-core"))
    return out


def write_report(out_dir: Path, report: dict[str, Any]) -> Path:
    """Write ``report.json`` atomically (a reader never sees half a file)."""
    path = out_dir / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=_plain))
    os.replace(tmp, path)
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
