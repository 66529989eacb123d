"""Cross-checks on CPU against gsplat's own pure-PyTorch reference functions (gsplat/cuda/_torch_impl.py):
SH evaluation for degrees 0..3 and EWA projection (means, conics, depths)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.gaussians import GaussianSet
from backend.gaussians.rasterize_torch import project_gaussians, quat_to_rotmat
from backend.gaussians.sh import eval_sh
from protocol.camera import Camera

torch_impl = pytest.importorskip("gsplat.cuda._torch_impl")


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(degree: int) -> None:
    gen = torch.Generator().manual_seed(degree)
    dirs = torch.nn.functional.normalize(torch.randn(64, 3, generator=gen), dim=-1)
    coeffs = torch.randn(64, (degree + 1) ** 2, 3, generator=gen)
    expected = torch_impl._spherical_harmonics(degree, dirs, coeffs)
    torch.testing.assert_close(eval_sh(degree, coeffs, dirs), expected, atol=1e-5, rtol=1e-5)


def test_projection_matches_gsplat() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 300
    means = torch.stack([torch.rand(n, generator=gen) * 4 - 2, torch.rand(n, generator=gen) * 3 - 1.5,
                         torch.rand(n, generator=gen) * 4 + 1.0], dim=1)
    g = GaussianSet(means, torch.randn(n, 3, generator=gen) * 0.5 - 3.0, torch.randn(n, 4, generator=gen),
                    torch.full((n,), 3.0), torch.zeros(n, 1, 3), 0)
    w2c = np.eye(4)
    w2c[:3, 3] = [0.2, -0.1, 0.3]
    cam = Camera.from_fov(55.0, 80, 60, w2c)
    K = torch.tensor(cam.K, dtype=torch.float32)
    viewmat = torch.tensor(cam.world_to_camera, dtype=torch.float32)

    ours = project_gaussians(g, K, viewmat, cam.width, cam.height)
    covars, _ = torch_impl._quat_scale_to_covar_preci(g.quats, g.scales, compute_preci=False)
    _radii, means2d, depths, conics, _ = torch_impl._fully_fused_projection(
        g.means, covars, viewmat[None], K[None], cam.width, cam.height, eps2d=0.3)
    # match our (culled, depth-sorted) Gaussians to gsplat's by depth
    order = torch.argsort(depths[0])
    ref_depth = depths[0][order]
    ref_means2d, ref_conics = means2d[0][order], conics[0][order]
    pick = torch.searchsorted(ref_depth, ours.depths)
    assert 0 < len(ours.depths) < n  # some are culled off-screen
    torch.testing.assert_close(ref_depth[pick], ours.depths)
    torch.testing.assert_close(ref_means2d[pick], ours.means2d, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(ref_conics[pick], ours.conics, atol=1e-4, rtol=1e-3)


def test_rotation_matrix_matches_gsplat() -> None:
    quats = torch.randn(50, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(quat_to_rotmat(quats), torch_impl._quat_to_rotmat(quats), atol=1e-6, rtol=1e-5)
