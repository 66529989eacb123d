"""Exports never carry NaN scales or zero quaternions: unusable Gaussians are dropped and counted,
foreign PLYs with them are refused with a typed error that names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement
from pxr import Usd, UsdGeom

from backend.export import UsdSceneWriter, export_gaussian_frames, gaussian_ply_fields, read_gaussian_ply
from backend.export.ply import write_gaussian_ply
from backend.export.usd_writer import HAS_SPLAT_SCHEMA
from backend.gaussians import FittedFrame, GaussianSet
from protocol.errors import ValidationError


def _set_with_bad_rows() -> GaussianSet:
    """8 Gaussians; rows 1..4 are unusable: NaN scale, infinite opacity, zero quaternion, a scale
    whose exp overflows. Row 5's quaternion is valid but not unit length."""
    gen = torch.Generator().manual_seed(0)
    g = GaussianSet(torch.randn(8, 3, generator=gen), torch.randn(8, 3, generator=gen) - 4.0,
                    torch.randn(8, 4, generator=gen), torch.randn(8, generator=gen), torch.randn(8, 1, 3, generator=gen))
    g.log_scales[1, 2] = float("nan")
    g.logit_opacities[2] = float("inf")
    g.quats[3] = 0.0
    g.log_scales[4, 0] = 200.0
    g.quats[5] = torch.tensor([0.0, 0.0, 3.0, 0.0])
    return g


GOOD_ROWS = [0, 5, 6, 7]


def test_ply_writer_drops_unusable_gaussians_and_writes_unit_quaternions(tmp_path: Path) -> None:
    g = _set_with_bad_rows()
    path = write_gaussian_ply(tmp_path / "g.ply", g)
    d = PlyData.read(str(path))["vertex"].data
    assert len(d) == len(GOOD_ROWS)
    quats = np.stack([d[f"rot_{i}"] for i in range(4)], 1)
    np.testing.assert_allclose(np.linalg.norm(quats, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(quats[1], [0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(d["x"], g.means[GOOD_ROWS, 0].numpy())
    assert np.isfinite(np.stack([d[name] for name in gaussian_ply_fields(0)], 1)).all()


def test_usd_writer_drops_unusable_gaussians_instead_of_failing_the_job(tmp_path: Path) -> None:
    with UsdSceneWriter(tmp_path / "s.usdc") as writer:
        writer.add_gaussian_frame(0, _set_with_bad_rows())
    stage = Usd.Stage.Open(str(tmp_path / "s.usdc"))
    points = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/gaussians"))
    assert len(points.GetPointsAttr().Get(1)) == len(GOOD_ROWS)
    scales = np.asarray(UsdGeom.PrimvarsAPI(points.GetPrim()).GetPrimvar("scale").Get(1))
    assert np.isfinite(scales).all() and (scales > 0).all()
    if HAS_SPLAT_SCHEMA:
        from pxr import UsdVol

        field = UsdVol.ParticleField3DGaussianSplat(stage.GetPrimAtPath("/Recast4D/gaussians_splats"))
        orientations = field.GetOrientationsAttr().Get(1)
        norms = [abs(q.GetLength() - 1.0) for q in orientations]
        assert len(orientations) == len(GOOD_ROWS) and max(norms) < 1e-6


def test_the_export_stream_counts_what_it_dropped(tmp_path: Path) -> None:
    frames = [FittedFrame(index=0, gaussians=_set_with_bad_rows())]
    out = list(export_gaussian_frames(frames, ply_dir=tmp_path / "ply"))
    assert out[0].dropped_invalid == 4 and len(out[0].gaussians) == len(GOOD_ROWS)


def test_reading_a_ply_with_nan_scales_or_zero_quaternions_is_refused_by_name(tmp_path: Path) -> None:
    names = gaussian_ply_fields(0)
    for bad_field, value in (("scale_1", np.nan), ("rot_0", 0.0)):
        vertex = np.zeros(3, dtype=[(name, "<f4") for name in names])
        vertex["rot_0"] = 1.0
        vertex[bad_field][1] = value
        if bad_field == "rot_0":
            vertex["rot_1"][1] = vertex["rot_2"][1] = vertex["rot_3"][1] = 0.0
        path = tmp_path / f"bad_{bad_field}.ply"
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
        with pytest.raises(ValidationError, match=rf"bad_{bad_field}\.ply: 1 of 3 Gaussians .*re-export"):
            read_gaussian_ply(path)
