"""The pure-torch reference rasteriser against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.gaussians import SH_C0, GaussianSet, gaussians_from_points, rasterize
from backend.gaussians.rasterize_torch import EPS2D, rasterize_torch
from backend.gaussians.sh import C1
from protocol.camera import Camera
from protocol.errors import ValidationError

FOCAL = 50.0


def _camera(width: int = 32, height: int = 32, w2c: np.ndarray | None = None) -> Camera:
    K = np.array([[FOCAL, 0.0, width / 2.0], [0.0, FOCAL, height / 2.0], [0.0, 0.0, 1.0]])
    return Camera(K, np.eye(4) if w2c is None else w2c, width, height)


def _one(point, color, sigma=0.05, opacity=0.9, sh_degree=0) -> GaussianSet:
    return gaussians_from_points(np.array([point]), np.array([color]), np.array([sigma]),
                                 opacity=opacity, sh_degree=sh_degree)


def test_single_gaussian_centre_pixel_colour_alpha_and_depth() -> None:
    # centred on pixel (row 10, col 20): u = 20.5, v = 10.5 at depth 2
    z = 2.0
    cam = _camera()
    x, y = (20.5 - 16.0) * z / FOCAL, (10.5 - 16.0) * z / FOCAL
    g = _one([x, y, z], [0.2, 0.6, 1.0], sigma=0.05, opacity=0.8)
    out = rasterize(g, cam, backend="torch")
    assert out.rgb.shape == (32, 32, 3) and out.alpha.shape == (32, 32)
    np.testing.assert_allclose(out.alpha[10, 20].item(), 0.8, rtol=1e-5)
    np.testing.assert_allclose(out.rgb[10, 20].numpy(), 0.8 * np.array([0.2, 0.6, 1.0]), rtol=1e-5)
    np.testing.assert_allclose(out.depth[10, 20].item(), z, rtol=1e-5)
    assert torch.argmax(out.alpha).item() == 10 * 32 + 20

    # one pixel to the right: EWA variance (f sigma / z)^2 + 0.3 px^2 (x/z small: J is ~diagonal)
    var = (FOCAL * 0.05 / z) ** 2 + EPS2D
    expected = 0.8 * math.exp(-0.5 / var)
    np.testing.assert_allclose(out.alpha[10, 21].item(), expected, rtol=2e-3)
    assert out.alpha[0, 0].item() == 0.0


def test_background_and_front_to_back_occlusion() -> None:
    # both centred on the centre of pixel (16, 16): u = v = 16.5
    front = _one([0.5 * 2.0 / FOCAL, 0.5 * 2.0 / FOCAL, 2.0], [1.0, 0.0, 0.0], sigma=0.2, opacity=0.9)
    back = _one([0.5 * 4.0 / FOCAL, 0.5 * 4.0 / FOCAL, 4.0], [0.0, 0.0, 1.0], sigma=0.4, opacity=0.8)
    cam = _camera()
    # order in the set must not matter: the rasteriser sorts by depth
    out = rasterize(GaussianSet.concatenate([back, front]), cam, background=(0.0, 1.0, 0.0), backend="torch")
    centre = out.rgb[16, 16].numpy()
    a_front, a_back = 0.9, 0.8
    np.testing.assert_allclose(centre, [a_front, (1 - a_front) * (1 - a_back), (1 - a_front) * a_back],
                               atol=1e-4)
    np.testing.assert_allclose(out.alpha[16, 16].item(), 1 - (1 - a_front) * (1 - a_back), atol=1e-5)
    # corners: almost pure background
    assert out.rgb[0, 0, 1].item() > 0.99


def test_early_termination_skips_gaussians_once_transmittance_is_spent() -> None:
    # two opaque layers (alpha 0.999 each) leave T = 1e-6 < 1e-4: the second one is skipped
    # exactly as in the CUDA kernels, a third one behind as well
    layers = [_one([0.5 * z / FOCAL, 0.5 * z / FOCAL, z], c, sigma=0.5, opacity=0.9999)
              for z, c in ((2.0, [1.0, 0.0, 0.0]), (3.0, [0.0, 1.0, 0.0]), (4.0, [0.0, 0.0, 1.0]))]
    out = rasterize(GaussianSet.concatenate(layers), _camera(), backend="torch")
    np.testing.assert_allclose(out.rgb[16, 16].numpy(), [0.999, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out.alpha[16, 16].item(), 0.999, atol=1e-6)


def test_projection_follows_the_camera_pose() -> None:
    z = 3.0
    g = _one([0.0, 0.5 * z / FOCAL, z], [1.0, 1.0, 1.0], sigma=0.02)  # v = 16.5: row 16
    out = rasterize(g, _camera(), backend="torch")
    assert divmod(int(torch.argmax(out.alpha)), 32) in ((16, 15), (16, 16))  # u = 16.0: on the border
    w2c = np.eye(4)
    w2c[0, 3] = 5.5 * z / FOCAL  # camera moved left -> point appears 5.5 px right: u = 21.5, column 21
    out = rasterize(g, _camera(w2c=w2c), backend="torch")
    assert divmod(int(torch.argmax(out.alpha)), 32) == (16, 21)
    np.testing.assert_allclose(out.alpha[16, 21].item(), 0.9, rtol=1e-5)
    # behind the camera: nothing
    w2c[2, 3] = -5.0
    assert rasterize(g, _camera(w2c=w2c), backend="torch").alpha.sum().item() == 0.0


def test_sh_degree_one_is_view_dependent() -> None:
    g = _one([0.0, 0.0, 2.0], [0.5, 0.5, 0.5], sigma=0.05, opacity=0.99, sh_degree=1)
    g.sh[0, 2] = torch.tensor([0.3, 0.0, -0.3])  # coefficient of +C1 * z
    out = rasterize(g, _camera(), backend="torch")
    # view direction (0, 0, 1): colour = 0.5 + C1 * z * coeff (DC gives 0.5)
    expected = 0.5 + C1 * np.array([0.3, 0.0, -0.3])
    np.testing.assert_allclose(out.rgb[16, 16].numpy() / out.alpha[16, 16].item(), expected, rtol=1e-3)
    assert SH_C0 * g.sh[0, 0, 0].item() == pytest.approx(0.0, abs=1e-6)


def test_tiling_and_chunking_do_not_change_the_image_and_gradients_flow() -> None:
    rng = np.random.default_rng(1)
    n = 200
    pts = np.stack([rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n), rng.uniform(2, 3, n)], 1)
    g = gaussians_from_points(pts, rng.uniform(0, 1, (n, 3)), rng.uniform(0.02, 0.06, n), opacity=0.7)
    cam = _camera(40, 24)
    K, w2c = torch.tensor(cam.K, dtype=torch.float32), torch.tensor(cam.world_to_camera, dtype=torch.float32)
    a = rasterize_torch(g, K, w2c, 40, 24, tile_size=16, chunk=256)
    b = rasterize_torch(g, K, w2c, 40, 24, tile_size=8, chunk=7)
    torch.testing.assert_close(a.rgb, b.rgb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.alpha, b.alpha, atol=1e-5, rtol=1e-5)

    grads = []
    for checkpoint_tiles in (False, True):  # recomputing tiles in backward gives the same gradients
        means = g.means.clone().requires_grad_(True)
        sh = g.sh.clone().requires_grad_(True)
        g2 = GaussianSet(means, g.log_scales, g.quats, g.logit_opacities, sh, 0)
        out = rasterize_torch(g2, K, w2c, 40, 24, checkpoint_tiles=checkpoint_tiles)
        (out.rgb.sum() + out.depth.mean()).backward()
        assert torch.isfinite(means.grad).all() and means.grad.abs().sum() > 0
        assert sh.grad.abs().sum() > 0
        grads.append((means.grad, sh.grad))
    torch.testing.assert_close(grads[0], grads[1])


def test_rasterize_rejects_bad_arguments() -> None:
    g = _one([0.0, 0.0, 2.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValidationError, match="needs a Camera"):
        rasterize(g)
    with pytest.raises(ValidationError, match="backend"):
        rasterize(g, _camera(), backend="opengl")
    with pytest.raises(ValidationError, match="CUDA"):
        rasterize(g, _camera(), backend="gsplat")
