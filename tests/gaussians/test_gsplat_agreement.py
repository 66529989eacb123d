"""gsplat (CUDA) and the torch reference rasteriser render the same image (needs a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.gaussians import gaussians_from_points, gsplat_status, rasterize
from backend.gaussians.rasterize_torch import CYCLES_IMAGE, GSPLAT_IMAGE, ImageFormation
from protocol.camera import Camera


@pytest.mark.gpu
@pytest.mark.parametrize("image", [GSPLAT_IMAGE, CYCLES_IMAGE], ids=["classic", "cycles"])
def test_gsplat_matches_the_reference_rasteriser_on_a_random_scene(image: ImageFormation) -> None:
    usable, reason = gsplat_status()
    if not usable:
        pytest.skip(reason)
    rng = np.random.default_rng(0)
    n = 2000
    pts = np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(2, 5, n)], 1)
    g = gaussians_from_points(pts, rng.uniform(0, 1, (n, 3)), rng.uniform(0.01, 0.05, n),
                              opacity=0.7, sh_degree=2)
    g.log_scales += torch.from_numpy(rng.normal(0, 0.3, (n, 3))).float()  # anisotropic
    g.quats = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(n, 4))).float(), dim=1)
    g.sh[:, 1:] = torch.from_numpy(rng.normal(0, 0.1, (n, 8, 3))).float()
    w2c = np.eye(4)
    w2c[:3, 3] = [0.1, -0.05, 0.2]
    cam = Camera.from_fov(60.0, 96, 64, w2c)
    cpu = rasterize(g, cam, background=(0.1, 0.2, 0.3), backend="torch", **image.kwargs())
    gpu = rasterize(g.to("cuda"), cam, background=(0.1, 0.2, 0.3), backend="gsplat", **image.kwargs())
    assert (gpu.rgb.cpu() - cpu.rgb).abs().mean().item() < 2e-3
    assert (gpu.alpha.cpu() - cpu.alpha).abs().mean().item() < 2e-3
    hit = (cpu.alpha > 0.5) & (gpu.alpha.cpu() > 0.5)
    assert ((gpu.depth.cpu() - cpu.depth).abs()[hit] / cpu.depth[hit]).mean().item() < 1e-2
