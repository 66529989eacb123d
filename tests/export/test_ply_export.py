"""3DGS PLY (Inria layout) and points PLY: every field round-trips through plyfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData

from backend.export import gaussian_ply_fields, read_gaussian_ply, write_gaussian_ply, write_points_ply
from backend.gaussians import GaussianSet
from protocol.errors import ValidationError


def _random_set(n: int, degree: int, seed: int = 0) -> GaussianSet:
    gen = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return GaussianSet(
        means=torch.randn(n, 3, generator=gen),
        log_scales=torch.randn(n, 3, generator=gen) - 3.0,
        quats=torch.randn(n, 4, generator=gen),  # deliberately not normalised: written as unit quaternions
        logit_opacities=torch.randn(n, generator=gen),
        sh=torch.randn(n, k, 3, generator=gen),
        sh_degree=degree,
    )


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_gaussian_ply_layout_and_round_trip(tmp_path: Path, degree: int) -> None:
    g = _random_set(17, degree)
    path = write_gaussian_ply(tmp_path / "frame_0000.ply", g)
    ply = PlyData.read(str(path))
    vertex = ply["vertex"]
    names = [p.name for p in vertex.properties]
    assert names == gaussian_ply_fields(degree)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert len([n for n in names if n.startswith("f_rest_")]) == 3 * ((degree + 1) ** 2 - 1)
    assert all(p.val_dtype in ("f4", "float32", "float") for p in vertex.properties)
    assert not ply.text and ply.byte_order == "<"
    d = vertex.data
    # pre-activation values, field by field (log scales, logit opacity, SH), unit wxyz quaternions
    unit_quats = torch.nn.functional.normalize(g.quats, dim=-1)
    np.testing.assert_array_equal(np.stack([d["x"], d["y"], d["z"]], 1), g.means.numpy())
    np.testing.assert_array_equal(np.stack([d["nx"], d["ny"], d["nz"]], 1), 0.0)
    np.testing.assert_array_equal(np.stack([d[f"f_dc_{i}"] for i in range(3)], 1), g.sh[:, 0].numpy())
    np.testing.assert_array_equal(d["opacity"], g.logit_opacities.numpy())
    np.testing.assert_array_equal(np.stack([d[f"scale_{i}"] for i in range(3)], 1), g.log_scales.numpy())
    np.testing.assert_allclose(np.stack([d[f"rot_{i}"] for i in range(4)], 1), unit_quats.numpy(), rtol=1e-6, atol=1e-7)
    if degree > 0:
        k1 = (degree + 1) ** 2 - 1
        # channel-major: f_rest_{c * (K-1) + j} is coefficient j+1 of channel c
        for c in range(3):
            for j in range(k1):
                np.testing.assert_array_equal(d[f"f_rest_{c * k1 + j}"], g.sh[:, j + 1, c].numpy())
    back = read_gaussian_ply(path)
    assert back.sh_degree == degree
    for name in ("means", "log_scales", "logit_opacities", "sh"):
        assert torch.equal(getattr(back, name), getattr(g, name)), name
    torch.testing.assert_close(back.quats, unit_quats, rtol=1e-6, atol=1e-7)


def test_gaussian_ply_drops_non_finite_rows_and_rejects_foreign_files(tmp_path: Path) -> None:
    g = _random_set(5, 0)
    g.means[2, 0] = float("nan")
    back = read_gaussian_ply(write_gaussian_ply(tmp_path / "g.ply", g))
    assert len(back) == 4
    points_file = write_points_ply(tmp_path / "p.ply", np.zeros((3, 3)))
    with pytest.raises(ValidationError, match="missing fields"):
        read_gaussian_ply(points_file)
    (tmp_path / "junk.ply").write_bytes(b"not a ply")
    with pytest.raises(ValidationError, match="cannot read"):
        read_gaussian_ply(tmp_path / "junk.ply")


def test_points_ply_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(11, 3)).astype(np.float32)
    colors = rng.uniform(0, 1, (11, 3))
    ply = PlyData.read(str(write_points_ply(tmp_path / "points.ply", pts, colors)))
    d = ply["vertex"].data
    assert [p.name for p in ply["vertex"].properties] == ["x", "y", "z", "red", "green", "blue"]
    np.testing.assert_array_equal(np.stack([d["x"], d["y"], d["z"]], 1), pts)
    np.testing.assert_array_equal(np.stack([d["red"], d["green"], d["blue"]], 1),
                                  np.rint(colors * 255).astype(np.uint8))
    with pytest.raises(ValidationError, match="colors"):
        write_points_ply(tmp_path / "bad.ply", pts, colors[:3])
