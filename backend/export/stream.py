"""Write fitted Gaussian frames to USD and PLY as they come out of ``fit_sequence``.

``export_gaussian_frames`` is a pass-through generator: each frame is appended to the USD stage
(saved per the writer's ``save_every``) and written as ``<ply_dir>/<name>_<index:05d>.ply`` *before*
it is handed on, so a consumer (e.g. the server streaming results) only sees frames that are
already on disk, and a crash keeps them. The frame handed on holds exactly what was written:
unusable Gaussians dropped (counted in ``dropped_invalid``) and unit quaternions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from backend.gaussians.sequence import FittedFrame

from .ply import write_gaussian_ply
from .sanitize import exportable_gaussians
from .usd_writer import UsdSceneWriter


def gaussian_ply_path(ply_dir: str | os.PathLike, index: int, name: str = "gaussians") -> Path:
    """Path of frame ``index``'s 3DGS PLY inside ``ply_dir``."""
    return Path(ply_dir) / f"{name}_{index:05d}.ply"


def export_gaussian_frames(
    frames: Iterable[FittedFrame],
    *,
    usd_writer: UsdSceneWriter | None = None,
    ply_dir: str | os.PathLike | None = None,
    name: str = "gaussians",
) -> Iterator[FittedFrame]:
    """Append every frame to ``usd_writer`` (prim ``name``) and/or write its PLY, then yield it."""
    if ply_dir is not None:
        Path(ply_dir).mkdir(parents=True, exist_ok=True)
    for frame in frames:
        clean = exportable_gaussians(frame.gaussians, what=f"frame {frame.index} of {name}")
        frame = dataclasses.replace(frame, gaussians=clean.gaussians,
                                    dropped_invalid=frame.dropped_invalid + clean.dropped)
        if usd_writer is not None:
            usd_writer.add_gaussian_frame(frame.index, frame.gaussians, name=name)
        if ply_dir is not None:
            write_gaussian_ply(gaussian_ply_path(ply_dir, frame.index, name), frame.gaussians)
        yield frame
