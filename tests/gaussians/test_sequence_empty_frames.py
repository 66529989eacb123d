"""A frame with no points (e.g. no valid depth in it) must not stop a Gaussian sequence."""

from __future__ import annotations

import numpy as np

from backend.gaussians import FitConfig, SequenceFrame, fit_sequence
from protocol.camera import Camera

CAMERA = Camera.from_fov(60.0, 16, 12)
IMAGE = np.zeros((12, 16, 3), np.float32)


def _frame(num_points: int) -> SequenceFrame:
    xyz = np.stack([np.linspace(-0.2, 0.2, num_points), np.zeros(num_points), np.full(num_points, 2.0)], 1)
    return SequenceFrame(xyz.astype(np.float32), np.full((num_points, 3), 0.5, np.float32),
                         np.full(num_points, 0.01, np.float32), [(IMAGE, CAMERA)])


def test_empty_frames_come_out_empty_and_the_sequence_goes_on() -> None:
    out = list(fit_sequence([_frame(3), _frame(0), _frame(3)], FitConfig(iterations=2)))
    assert [f.index for f in out] == [0, 1, 2]
    assert [len(f.gaussians) for f in out] == [3, 0, 3]
    assert out[2].kept_from_previous == 3, "frame 2 warm-starts from frame 0, the last one with Gaussians"
    first_empty = list(fit_sequence([_frame(0), _frame(3)], FitConfig(iterations=2)))
    assert [len(f.gaussians) for f in first_empty] == [0, 3]
    assert first_empty[1].initialised == 3
