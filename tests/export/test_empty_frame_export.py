"""An empty Gaussian frame (nothing in view) exports as an empty PLY and an empty USD time sample."""

from __future__ import annotations

from backend.export import UsdSceneWriter
from backend.export.ply import read_gaussian_ply, write_gaussian_ply
from backend.gaussians import GaussianSet


def test_empty_gaussian_frame_round_trips(tmp_path) -> None:
    from pxr import Usd, UsdGeom

    empty = GaussianSet.empty(sh_degree=1)
    assert len(read_gaussian_ply(write_gaussian_ply(tmp_path / "empty.ply", empty))) == 0
    with UsdSceneWriter(tmp_path / "scene.usdc", start_frame=1) as writer:
        writer.add_gaussian_frame(0, empty)
    stage = Usd.Stage.Open(str(tmp_path / "scene.usdc"))
    points = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/gaussians"))
    assert len(points.GetPointsAttr().Get(1)) == 0
