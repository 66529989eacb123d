"""Pieces the pipeline subcommands (``run``, ``tune``, ``generate``) share: progress bars, camera files, names."""

from __future__ import annotations

import sys
from pathlib import Path

from protocol.errors import ValidationError
from protocol.paths.formats import CameraPathData, read_camera_path


def read_camera_file(path: Path) -> CameraPathData:
    """Cameras (and fps, time map) from any supported camera-path file; a clear error if missing."""
    if not path.exists():
        raise ValidationError(f"camera path file not found: {path}")
    return read_camera_path(path)


def source_camera_dicts(path: Path, num_frames: int, width: int, height: int) -> list[dict]:
    """The source cameras of a ``--camera`` file (any camera-path format, a transforms.json or a COLMAP
    model folder) for a clip of ``num_frames`` frames of ``width x height`` pixels, as request dicts.

    One camera (a static shot) or one per frame; a different count or image size is an error that
    names the file.
    """
    if not path.exists():
        raise ValidationError(f"camera file not found: {path}")
    cameras = read_camera_path(path, num_frames=num_frames, width=width, height=height).cameras
    if len(cameras) not in (1, num_frames):
        raise ValidationError(f"camera file {path}: {len(cameras)} cameras for a clip of {num_frames} frames; "
                              "it needs one per frame (or one for a static camera): trim the clip or the cameras")
    sizes = sorted({(c.width, c.height) for c in cameras})
    if sizes != [(width, height)]:
        raise ValidationError(f"camera file {path}: cameras are {' / '.join(f'{w}x{h}' for w, h in sizes)} but the "
                              f"clip is {width}x{height}; write the cameras for the clip's resolution")
    return [c.to_dict() for c in cameras]


def safe_name(text: str, index: int) -> str:
    """``text`` reduced to letters, digits, ``-`` and ``_`` (a trajectory, file or LoRA id); ``path<index>`` if empty."""
    clean = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text).strip("_")
    return clean or f"path{index}"


class ProgressBars:
    """One tqdm bar per stage on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self) -> None:
        self._bar = None
        self._stage = None

    def update(self, stage: str, step: int, total: int, message: str = "") -> None:
        from tqdm import tqdm

        if stage != self._stage:
            self.close_bar()
            self._stage = stage
            self._bar = tqdm(total=max(total, 1), desc=f"{stage:>11}", unit="step", file=sys.stderr,
                             leave=True, dynamic_ncols=True, disable=None)
        bar = self._bar
        if bar is not None and not bar.disable:
            bar.total = max(total, 1)
            bar.n = min(step, bar.total)
            if message:
                bar.set_postfix_str(message[:60], refresh=False)
            bar.refresh()
        elif message and step in (0, total):
            print(f"[{stage}] {message}", file=sys.stderr)

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_bar()

