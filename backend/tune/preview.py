"""Previews kept in each round's folder: a data strip (PNG) and generated videos (mp4).

``data_preview.png``: one row per sample, the middle frame of the ground truth, the model input
with holes in grey (as VACE sees it) and the hole mask in white. ``preview_GG.mp4``: the render
along the target path (holes black) beside the video the round's LoRA generated from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.media import write_mp4

from .data import TrainingPair

GREY = 128


def data_preview_image(pairs: list[TrainingPair]) -> np.ndarray:
    """``(rows * H, 3 * W, 3)`` uint8: per pair, middle frame of clean | input with grey holes | holes."""
    rows = []
    for pair in pairs:
        mid = pair.clean.shape[0] // 2
        hole = pair.hole[mid]
        model_input = np.where(hole[..., None], np.uint8(GREY), pair.degraded[mid])
        mask = np.repeat((hole * 255).astype(np.uint8)[..., None], 3, axis=-1)
        rows.append(np.concatenate([pair.clean[mid], model_input, mask], axis=1))
    return np.concatenate(rows, axis=0)


def write_data_preview(path: Path, pairs: list[TrainingPair]) -> Path | None:
    """Write :func:`data_preview_image` as a PNG (nothing when there are no pairs)."""
    import cv2

    if not pairs:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(data_preview_image(pairs), cv2.COLOR_RGB2BGR))
    return path


def write_preview_video(path: Path, render: np.ndarray, filled: np.ndarray, fps: float) -> Path:
    """Side-by-side mp4 of the render (holes black) and the generated video, both ``(F,H,W,3)`` uint8."""
    frames = np.concatenate([render, filled], axis=2)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2  # H.264 wants even sizes
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_mp4(path, frames, fps)
