"""Frames from fit_sequence reach USD and PLY on disk before the next frame is fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pxr import Usd, UsdGeom

from backend.export import UsdSceneWriter, export_gaussian_frames, gaussian_ply_path, read_gaussian_ply
from backend.gaussians import FitConfig, SequenceFrame, fit_sequence, gaussians_from_points, rasterize
from protocol.camera import Camera


def test_frames_are_on_disk_as_soon_as_they_are_yielded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cam = Camera.from_fov(40.0, 16, 16)
    frames = []
    for t in range(3):
        n = 20 + 5 * t
        pts = np.stack([rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n), np.full(n, 3.0)], 1)
        colors = rng.uniform(0, 1, (n, 3))
        image = rasterize(gaussians_from_points(pts, colors, np.full(n, 0.05)), cam).rgb.detach()
        frames.append(SequenceFrame(pts, colors, np.full(n, 0.05), [(image, cam)]))

    usd_path = tmp_path / "job.usdc"
    writer = UsdSceneWriter(usd_path, fps=24.0, start_frame=1)
    fitted = fit_sequence(frames, FitConfig(iterations=2, prune_interval=0), warm_iterations=1)
    seen = 0
    for frame in export_gaussian_frames(fitted, usd_writer=writer, ply_dir=tmp_path / "ply"):
        # a fresh reader (another process would see the same) finds this frame already saved
        stage = Usd.Stage.Open(str(usd_path))
        points = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/gaussians")).GetPointsAttr()
        assert points.GetTimeSamples() == [float(1 + i) for i in range(frame.index + 1)]
        np.testing.assert_allclose(np.asarray(points.Get(Usd.TimeCode(1 + frame.index))),
                                   frame.gaussians.means.numpy())
        ply = read_gaussian_ply(gaussian_ply_path(tmp_path / "ply", frame.index))
        assert torch.equal(ply.means, frame.gaussians.means)
        seen += 1
    writer.close()
    assert seen == 3
