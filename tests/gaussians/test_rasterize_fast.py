"""The fast sparse-pair rasteriser against the dense tile reference: same images, same gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.gaussians import GaussianSet, gaussians_from_points, rasterize
from backend.gaussians.rasterize_pairs import rasterize_pairs
from backend.gaussians.rasterize_torch import CYCLES_IMAGE, GSPLAT_IMAGE, ImageFormation, rasterize_torch
from protocol.camera import Camera

PARAMS = ("means", "log_scales", "quats", "logit_opacities", "sh")


def _scene(n: int = 400, sh_degree: int = 1, seed: int = 0) -> tuple[GaussianSet, torch.Tensor, torch.Tensor]:
    """Anisotropic, rotated, overlapping Gaussians; some off screen, some behind the near plane."""
    rng = np.random.default_rng(seed)
    pts = np.stack([rng.uniform(-1.6, 1.6, n), rng.uniform(-1.0, 1.0, n), rng.uniform(-0.5, 4.0, n)], 1)
    g = gaussians_from_points(pts, rng.uniform(0, 1, (n, 3)), rng.uniform(0.01, 0.08, n), opacity=0.8,
                              sh_degree=sh_degree)
    g.log_scales = g.log_scales + torch.from_numpy(rng.normal(0, 0.6, (n, 3))).float()
    g.quats = torch.from_numpy(rng.normal(size=(n, 4))).float()
    g.logit_opacities = torch.from_numpy(rng.normal(1.0, 2.0, n)).float()  # includes ~transparent ones
    g.sh = g.sh + torch.from_numpy(rng.normal(0, 0.2, tuple(g.sh.shape))).float()
    cam = Camera.from_fov(70.0, 40, 24)
    return g, torch.tensor(cam.K, dtype=torch.float32), torch.tensor(cam.world_to_camera, dtype=torch.float32)


def _render_with_grads(fn, g: GaussianSet, K, w2c, image: ImageFormation):
    g = g.clone()
    for name in PARAMS:
        getattr(g, name).requires_grad_(True)
    out = fn(g, K, w2c, 40, 24, background=torch.tensor([0.2, 0.3, 0.4]), **image.kwargs())
    weights = torch.linspace(0.5, 1.5, 3)
    (out.rgb * weights).sum().add(0.3 * out.alpha.sum()).add(0.05 * out.depth.sum()).backward()
    return out, {name: getattr(g, name).grad for name in PARAMS}


@pytest.mark.parametrize("image", [GSPLAT_IMAGE, ImageFormation(eps2d=1.0 / 12.0), CYCLES_IMAGE],
                         ids=["gsplat", "small-dilation", "cycles"])
def test_fast_rasteriser_matches_the_reference_images_and_gradients(image: ImageFormation) -> None:
    g, K, w2c = _scene()
    ref, ref_grads = _render_with_grads(rasterize_torch, g, K, w2c, image)
    fast, fast_grads = _render_with_grads(rasterize_pairs, g, K, w2c, image)
    alpha = ref.alpha.detach()
    assert float(alpha.max()) > 0.9 and float(alpha.min()) < 0.1  # covered and empty pixels
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), atol=2e-5, rtol=1e-4)
    for name in PARAMS:
        scale = float(ref_grads[name].abs().max())
        assert scale > 0
        torch.testing.assert_close(fast_grads[name], ref_grads[name], atol=1e-4 * scale, rtol=1e-3)


def test_many_layers_terminate_early_like_the_reference() -> None:
    # 12 opaque layers on one pixel: transmittance runs below 1e-4 after a few, the rest are skipped
    n = 12
    pts = np.stack([np.zeros(n), np.zeros(n), 2.0 + 0.1 * np.arange(n)], 1)
    g = gaussians_from_points(pts, np.random.default_rng(1).uniform(0, 1, (n, 3)), np.full(n, 0.05),
                              opacity=0.97)
    cam = Camera.from_fov(60.0, 16, 16)
    ref = rasterize(g, cam, backend="torch")
    fast = rasterize(g, cam, backend="fast")
    torch.testing.assert_close(fast.rgb, ref.rgb, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fast.depth, ref.depth, atol=1e-5, rtol=1e-5)


def test_nothing_in_view_gives_an_empty_image() -> None:
    g = gaussians_from_points(np.array([[0.0, 0.0, -2.0], [50.0, 0.0, 2.0]]), np.full((2, 3), 0.5),
                              np.full(2, 0.05))
    out = rasterize(g, Camera.from_fov(60.0, 16, 12), backend="fast", background=(0.0, 1.0, 0.0))
    assert float(out.alpha.abs().max()) == 0.0 and float(out.depth.abs().max()) == 0.0
    assert torch.equal(out.rgb, torch.tensor([0.0, 1.0, 0.0]).expand(12, 16, 3))


def test_cpu_auto_uses_the_fast_rasteriser() -> None:
    g, K, w2c = _scene(n=60, sh_degree=0, seed=3)
    auto = rasterize(g, K=K, world_to_camera=w2c, width=40, height=24)
    fast = rasterize_pairs(g, K, w2c, 40, 24)
    assert torch.equal(auto.rgb, fast.rgb)
