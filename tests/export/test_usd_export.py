"""USD stage writer: per-time-sample round trips with pxr, frame range, splat prims, crash safety."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from pxr import Usd, UsdGeom

from backend.export import HAS_SPLAT_SCHEMA, UsdSceneWriter, gf_quat_wxyz
from backend.gaussians import SH_C0, GaussianSet
from protocol.color import srgb_to_linear
from protocol.errors import ValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _gaussians(n: int, seed: int, degree: int = 1) -> GaussianSet:
    gen = torch.Generator().manual_seed(seed)
    return GaussianSet(
        means=torch.randn(n, 3, generator=gen),
        log_scales=torch.randn(n, 3, generator=gen) - 3.0,
        quats=torch.randn(n, 4, generator=gen),
        logit_opacities=torch.randn(n, generator=gen),
        sh=0.3 * torch.randn(n, (degree + 1) ** 2, 3, generator=gen),
        sh_degree=degree,
    )


def _cloud(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)).astype(np.float32), rng.uniform(0, 1, (n, 3)).astype(np.float32),
            rng.uniform(0.001, 0.02, n).astype(np.float32))


def test_point_cloud_and_gaussian_sequences_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "job.usdc"
    counts = [30, 45, 20]
    with UsdSceneWriter(path, fps=30.0, start_frame=101) as writer:
        for i, n in enumerate(counts):
            pts, col, widths = _cloud(n, i)
            writer.add_point_cloud_frame(i, pts, col, widths, name="source_points")
            writer.add_gaussian_frame(i, _gaussians(n + 1, i))
        assert writer.end_frame == 103

    stage = Usd.Stage.Open(str(path))
    assert stage.GetTimeCodesPerSecond() == 30.0 and stage.GetFramesPerSecond() == 30.0
    assert (stage.GetStartTimeCode(), stage.GetEndTimeCode()) == (101.0, 103.0)
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert stage.GetDefaultPrim().GetPath() == "/Recast4D"

    cloud = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/source_points"))
    gauss = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/gaussians"))
    assert cloud and gauss
    assert cloud.GetPointsAttr().GetTimeSamples() == [101.0, 102.0, 103.0]
    primvars = UsdGeom.PrimvarsAPI(gauss.GetPrim())
    for name in ("opacity", "scale", "orient"):
        assert primvars.GetPrimvar(name).GetInterpolation() == UsdGeom.Tokens.vertex
    for i, n in enumerate(counts):
        t = Usd.TimeCode(101 + i)
        pts, col, widths = _cloud(n, i)
        np.testing.assert_array_equal(np.asarray(cloud.GetPointsAttr().Get(t)), pts)
        np.testing.assert_array_equal(np.asarray(cloud.GetWidthsAttr().Get(t)), widths)
        np.testing.assert_array_equal(np.asarray(cloud.GetDisplayColorPrimvar().Get(t)), col)

        g = _gaussians(n + 1, i)
        np.testing.assert_allclose(np.asarray(gauss.GetPointsAttr().Get(t)), g.means.numpy())
        np.testing.assert_allclose(np.asarray(gauss.GetWidthsAttr().Get(t)),
                                   2 * g.scales.max(dim=1).values.numpy(), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(gauss.GetDisplayColorPrimvar().Get(t)),
                                   srgb_to_linear(g.sh[:, 0].numpy() * SH_C0 + 0.5), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(primvars.GetPrimvar("opacity").Get(t)), g.opacities.numpy(),
                                   rtol=1e-6)
        np.testing.assert_allclose(np.asarray(primvars.GetPrimvar("scale").Get(t)), g.scales.numpy(),
                                   rtol=1e-6)
        orient = primvars.GetPrimvar("orient").Get(t)
        assert len(orient) == n + 1
        np.testing.assert_allclose([gf_quat_wxyz(q) for q in orient], g.rotations.numpy(), atol=1e-6)
        extent = np.asarray(gauss.GetExtentAttr().Get(t))
        assert (extent[0] <= g.means.numpy().min(0)).all() and (extent[1] >= g.means.numpy().max(0)).all()


@pytest.mark.skipif(not HAS_SPLAT_SCHEMA, reason="usd-core without UsdVol.ParticleField3DGaussianSplat")
def test_gaussian_splat_particle_field(tmp_path: Path) -> None:
    from pxr import UsdVol

    path = tmp_path / "splats.usdc"
    with UsdSceneWriter(path, fps=24.0, start_frame=1) as writer:
        for i in range(2):
            writer.add_gaussian_frame(i, _gaussians(10 + i, i, degree=2), name="actor")
    stage = Usd.Stage.Open(str(path))
    field = UsdVol.ParticleField3DGaussianSplat(stage.GetPrimAtPath("/Recast4D/actor_splats"))
    assert field
    for i in range(2):
        t = Usd.TimeCode(1 + i)
        g = _gaussians(10 + i, i, degree=2)
        np.testing.assert_allclose(np.asarray(field.GetPositionsAttr().Get(t)), g.means.numpy())
        np.testing.assert_allclose(np.asarray(field.GetScalesAttr().Get(t)), g.scales.numpy(), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(field.GetOpacitiesAttr().Get(t)), g.opacities.numpy(),
                                   rtol=1e-6)
        np.testing.assert_allclose([gf_quat_wxyz(q) for q in field.GetOrientationsAttr().Get(t)],
                                   g.rotations.numpy(), atol=1e-6)
        sh = np.asarray(field.GetRadianceSphericalHarmonicsCoefficientsAttr().Get(t))
        np.testing.assert_allclose(sh.reshape(10 + i, 9, 3), g.sh.numpy(), rtol=1e-6)
    assert field.GetRadianceSphericalHarmonicsDegreeAttr().Get() == 2


def test_frames_saved_before_a_crash_survive(tmp_path: Path) -> None:
    path = tmp_path / "crash.usdc"
    script = textwrap.dedent(f"""
        import os
        import numpy as np
        from backend.export import UsdSceneWriter
        writer = UsdSceneWriter({str(path)!r}, fps=24.0, start_frame=1)
        for i in range(4):
            writer.add_point_cloud_frame(i, np.full((10 + i, 3), float(i), np.float32))
        os._exit(3)  # the process dies: no close(), no atexit, no destructors
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, timeout=60)
    assert done.returncode == 3
    stage = Usd.Stage.Open(str(path))
    points = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/point_cloud"))
    assert points.GetPointsAttr().GetTimeSamples() == [1.0, 2.0, 3.0, 4.0]
    assert stage.GetEndTimeCode() == 4.0
    for i in range(4):
        value = np.asarray(points.GetPointsAttr().Get(Usd.TimeCode(1 + i)))
        assert value.shape == (10 + i, 3) and (value == i).all()


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=".usdc"):
        UsdSceneWriter(tmp_path / "x.abc")
    with pytest.raises(ValidationError, match="fps"):
        UsdSceneWriter(tmp_path / "x.usdc", fps=0)
    writer = UsdSceneWriter(tmp_path / "y.usdc")
    with pytest.raises(ValidationError, match="shape"):
        writer.add_point_cloud_frame(0, np.zeros((4, 2)))
    with pytest.raises(ValidationError, match="NaN"):
        writer.add_point_cloud_frame(0, np.full((4, 3), np.nan))
    with pytest.raises(ValidationError, match="identifier"):
        writer.add_point_cloud_frame(0, np.zeros((4, 3)), name="bad name/with slash")
    with pytest.raises(ValidationError, match="widths"):
        writer.add_point_cloud_frame(0, np.zeros((4, 3)), widths=np.ones(3))
    writer.close()
    with pytest.raises(ValidationError, match="closed"):
        writer.add_point_cloud_frame(1, np.zeros((4, 3)))


def test_a_path_can_be_rewritten_after_close_but_not_written_twice_at_once(tmp_path: Path) -> None:
    path = tmp_path / "rerun.usdc"
    first = UsdSceneWriter(path)
    first.add_point_cloud_frame(0, np.zeros((3, 3)))
    with pytest.raises(ValidationError, match="already being written"):
        UsdSceneWriter(path)
    first.close()
    reader = Usd.Stage.Open(str(path))  # a reader keeping the layer open in this process
    assert len(reader.GetPrimAtPath("/Recast4D/point_cloud").GetAttribute("points").Get(1)) == 3
    with UsdSceneWriter(path, start_frame=10) as second:  # a re-run of the job starts over
        second.add_point_cloud_frame(0, np.ones((5, 3)))
    script = (f"from pxr import Usd; s = Usd.Stage.Open({str(path)!r}); "
              "print(s.GetStartTimeCode(), len(s.GetPrimAtPath('/Recast4D/point_cloud')"
              ".GetAttribute('points').Get(10)), s.GetPrimAtPath('/Recast4D/point_cloud')"
              ".GetAttribute('points').GetTimeSamples())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["10.0", "5", "[10.0]"]
