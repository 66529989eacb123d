"""The rasterisers' image-formation options: mass-keeping (antialiased) dilation, linear-light
compositing, and the torch colour conversions they use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.gaussians import colorspace, gaussians_from_points, rasterize
from backend.gaussians.rasterize_torch import CYCLES_IMAGE, ImageFormation
from protocol import color
from protocol.camera import Camera

CAMERA = Camera.from_fov(40.0, 48, 48)


def _lone_splat(std_px: float, rgb=(0.8, 0.4, 0.1), opacity: float = 0.6):
    """One isotropic Gaussian 3 m in front of CAMERA, ``std_px`` pixels wide."""
    depth = 3.0
    std_m = std_px * depth / CAMERA.K[0, 0]
    centre = CAMERA.center + depth * CAMERA.world_to_camera[2, :3]
    return gaussians_from_points(centre[None], np.array([rgb]), np.array([std_m]), opacity=opacity)


@pytest.mark.parametrize("backend", ["fast", "torch"])
def test_antialiased_dilation_keeps_a_splats_footprint(backend: str) -> None:
    """A pixel filter spreads a splat without adding coverage: integrated alpha stays put when the
    dilation grows (within 1 %), while the classic dilation adds coverage (x (1 + eps / std^2))."""
    g = _lone_splat(1.5)
    area = {(eps, aa): float(rasterize(g, CAMERA, backend=backend, eps2d=eps, antialiased=aa).alpha.sum())
            for eps in (1e-4, 0.5) for aa in (False, True)}
    assert area[(0.5, True)] == pytest.approx(area[(1e-4, True)], rel=0.01)
    assert area[(0.5, False)] > 1.15 * area[(1e-4, False)]
    # a splat seen edge-on (no area on screen) vanishes instead of becoming a dilated dot
    flat = g.clone()
    flat.log_scales = flat.log_scales + torch.tensor([[0.0, 0.0, -20.0]])
    view_axis = torch.tensor(CAMERA.world_to_camera[2, :3], dtype=torch.float32)
    assert abs(float(view_axis[2])) > 0.99  # the camera looks along world z: the flat axis faces it
    edge_on = flat.clone()
    edge_on.log_scales = flat.log_scales[:, [2, 1, 0]]  # flat along x: a line seen from the camera
    classic = float(rasterize(edge_on, CAMERA, backend=backend, eps2d=0.3).alpha.sum())
    filtered = float(rasterize(edge_on, CAMERA, backend=backend, eps2d=0.3, antialiased=True).alpha.sum())
    assert filtered < 0.35 * classic


def test_linear_light_composites_as_cycles_does() -> None:
    """A lone semi-transparent splat over a background: the pixel under its centre is the linear-
    light mix of its colour and the background, encoded to sRGB."""
    rgb, opacity, background = np.array([0.8, 0.4, 0.1]), 0.6, np.array([0.1, 0.5, 0.9])
    g = _lone_splat(4.0, rgb, opacity)
    centre = (CAMERA.height // 2, CAMERA.width // 2)
    srgb_mix = rasterize(g, CAMERA, background=tuple(background)).rgb[centre].numpy()
    out = rasterize(g, CAMERA, background=tuple(background), linear_light=True)
    alpha = float(out.alpha[centre])
    assert alpha > 0.55
    expected = color.linear_to_srgb(alpha * color.srgb_to_linear(rgb) + (1 - alpha) * color.srgb_to_linear(background))
    np.testing.assert_allclose(out.rgb[centre].numpy(), expected, atol=2e-3)
    assert np.abs(srgb_mix - expected).max() > 0.03  # the two compositings differ visibly here


def test_torch_colour_conversions_match_protocol_and_have_finite_gradients() -> None:
    v = torch.linspace(0.0, 1.0, 257, requires_grad=True)
    lin = colorspace.srgb_to_linear(v)
    np.testing.assert_allclose(lin.detach().numpy(), color.srgb_to_linear(v.detach().numpy()), atol=1e-6)
    back = colorspace.linear_to_srgb(lin)
    np.testing.assert_allclose(back.detach().numpy(), v.detach().numpy(), atol=1e-5)
    back.sum().backward()
    assert torch.isfinite(v.grad).all()


def test_the_cycles_image_formation_is_the_fits_default() -> None:
    from backend.gaussians import FitConfig

    assert FitConfig().image == CYCLES_IMAGE
    assert CYCLES_IMAGE.antialiased and CYCLES_IMAGE.linear_light and 0.1 < CYCLES_IMAGE.eps2d < 0.4
    assert ImageFormation().kwargs() == {"eps2d": 0.3, "antialiased": False, "linear_light": False}
