"""The closed-form colour solve: it recovers known colours, respects pixel weights, refuses SH > 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.gaussians import FitConfig, FitView, fit_frame, gaussians_from_points, psnr, rasterize
from backend.gaussians.color_solve import solve_colors
from backend.gaussians.rasterize_torch import CYCLES_IMAGE, GSPLAT_IMAGE
from protocol.camera import Camera
from protocol.errors import ValidationError

BACKGROUND = (0.2, 0.3, 0.4)


def _cameras(size: tuple[int, int] = (48, 32)) -> list[Camera]:
    cameras = []
    for x in (-0.2, 0.0, 0.2):
        w2c = np.eye(4)
        w2c[0, 3] = -x
        cameras.append(Camera.from_fov(45.0, size[0], size[1], w2c))
    return cameras


def _scene(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    pts = np.stack([rng.uniform(-1.0, 1.0, n), rng.uniform(-0.7, 0.7, n), rng.uniform(2.8, 3.2, n)], 1)
    colors = rng.uniform(0.0, 1.0, (n, 3))
    return pts, colors


def _render(g, cam, image):
    return rasterize(g, cam, background=BACKGROUND, **image.kwargs()).rgb


@pytest.mark.parametrize("image", [CYCLES_IMAGE, GSPLAT_IMAGE], ids=["linear-light", "srgb"])
def test_solve_recovers_the_colours_of_visible_gaussians(image) -> None:
    pts, colors = _scene()
    truth = gaussians_from_points(pts, colors, np.full(len(pts), 0.05), opacity=0.9)
    cameras = _cameras()
    views = [(_render(truth, cam, image), cam, None) for cam in cameras]
    grey = gaussians_from_points(pts, np.full_like(colors, 0.5), np.full(len(pts), 0.05), opacity=0.9)
    before = [psnr(_render(grey, cam, image), img) for img, cam, _ in views]
    # a sparse, well-posed set: a whisper of ridge lets the solve reach the exact colours
    solved = solve_colors(grey, views, image=image, background=BACKGROUND, iterations=60, ridge=1e-3)
    after = [psnr(_render(solved, cam, image), img) for img, cam, _ in views]
    assert max(before) < 20.0
    assert min(after) > 40.0, after
    # geometry untouched; Gaussians that carry much of some pixel get their true colour back
    assert torch.equal(solved.means, grey.means) and torch.equal(solved.logit_opacities, grey.logit_opacities)
    front = torch.as_tensor(pts[:, 2] < 2.9)
    err = (solved.base_colors - torch.as_tensor(colors, dtype=torch.float32)).abs().mean(1)
    assert float(err[front].median()) < 0.02


def test_zero_weight_pixels_do_not_pull_the_colours() -> None:
    pts, colors = _scene(seed=1)
    truth = gaussians_from_points(pts, colors, np.full(len(pts), 0.05), opacity=0.9)
    cam = _cameras()[1]
    target = _render(truth, cam, CYCLES_IMAGE).clone()
    target[:, : cam.width // 2] = 1.0  # a wrong (white) left half, weighted out
    weight = torch.ones(cam.height, cam.width)
    weight[:, : cam.width // 2] = 0.0
    grey = gaussians_from_points(pts, np.full_like(colors, 0.5), np.full(len(pts), 0.05), opacity=0.9)
    solved = solve_colors(grey, [(target, cam, weight)], background=BACKGROUND, iterations=60, ridge=1e-3)
    render = _render(solved, cam, CYCLES_IMAGE)
    right = slice(cam.width // 2 + 4, None)  # away from Gaussians straddling the seam
    assert psnr(render[:, right], target[:, right]) > 35.0
    # the left half keeps the grey start (ridge), it is not pulled to white
    assert float(render[4:-4, 4: cam.width // 2 - 4].mean()) < 0.7


def test_fit_frame_solves_colours_after_its_steps_and_beats_adam_alone() -> None:
    pts, colors = _scene(seed=2)
    truth = gaussians_from_points(pts, colors, np.full(len(pts), 0.05), opacity=0.9)
    cameras = _cameras()
    views = [FitView(_render(truth, cam, CYCLES_IMAGE), cam) for cam in cameras]
    grey = gaussians_from_points(pts, np.full_like(colors, 0.5), np.full(len(pts), 0.05), opacity=0.9)
    adam = fit_frame(grey, views, FitConfig(iterations=3, color_solve_iterations=0, background=BACKGROUND))
    solved = fit_frame(grey, views, FitConfig(iterations=3, background=BACKGROUND))
    assert min(solved.psnr_per_view) > max(adam.psnr_per_view) + 10.0, (solved.psnr_per_view, adam.psnr_per_view)
    # iterations=0 is an evaluation: nothing changes, colours included
    evaluated = fit_frame(grey, views, FitConfig(iterations=0, background=BACKGROUND))
    assert torch.equal(evaluated.gaussians.sh, grey.sh)


def test_bad_settings_and_higher_sh_degrees_are_refused() -> None:
    pts, colors = _scene(n=50)
    g = gaussians_from_points(pts, colors, np.full(len(pts), 0.05))
    cam = _cameras()[0]
    view = (torch.zeros(cam.height, cam.width, 3), cam, None)
    with pytest.raises(ValidationError, match="SH degree 0"):
        solve_colors(g.with_sh_degree(1), [view])
    with pytest.raises(ValidationError, match="iterations"):
        solve_colors(g, [view], iterations=-1)
    with pytest.raises(ValidationError, match="ridge"):
        solve_colors(g, [view], ridge=0.0)
    with pytest.raises(ValidationError, match="color_solve_iterations"):
        fit_frame(g, [view], FitConfig(iterations=1, color_solve_iterations=-2))
    with pytest.raises(ValidationError, match="color_solve_ridge"):
        fit_frame(g, [view], FitConfig(iterations=1, color_solve_ridge=0.0))
    # a degree-1 set is still fitted (by Adam alone)
    result = fit_frame(g.with_sh_degree(1), [view], FitConfig(iterations=1))
    assert result.gaussians.sh_degree == 1
