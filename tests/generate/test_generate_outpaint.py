"""Progressive outpainting: each loop adds Gaussians covering the ring views it asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.engines import get_inpaint_engine
from backend.generate import (
    OutpaintSettings,
    background_video,
    hole_ratio,
    progressive_outpaint,
    refine_video,
)
from backend.pipelines.reshoot.synthetic import sliding_square_scene


@pytest.fixture(scope="module")
def outpainted():
    scene = sliding_square_scene(num_frames=4, width=32, height=24)
    cams = [scene.camera] * 4
    engine = get_inpaint_engine("classical")
    background = background_video(engine, scene.frames, torch.from_numpy(scene.depth), scene.foreground)
    settings = OutpaintSettings(rings=[[(0.0, 30.0), (0.0, -30.0)], [(15.0, 30.0)]], fit_iterations=1,
                                fit_scale=0.5, views_per_step=1)
    messages: list[str] = []
    result = progressive_outpaint(background, cams, engine, settings=settings,
                                  progress=lambda step, total, message: messages.append(message))
    return scene, background, result, messages


def test_each_loop_shrinks_the_holes_of_its_views(outpainted) -> None:
    _, background, result, messages = outpainted
    assert [(v.loop, v.elevation, v.azimuth) for v in result.views] == [(0, 0.0, 30.0), (0, 0.0, -30.0),
                                                                         (1, 15.0, 30.0)]
    for view in result.views:
        assert view.hole_ratio_before_loop > 0.05  # a 30 degree orbit leaves real holes
        assert view.hole_ratio_after_loop < 0.5 * view.hole_ratio_before_loop
        assert view.new_points > 0
        assert view.pseudo_video.shape == (4, 24, 32, 3)
        np.testing.assert_array_equal(view.filled[~view.holes], view.render[~view.holes])
    first_frame_points = int((background.depth[0] > 0).sum())
    assert result.num_points == first_frame_points + sum(v.new_points for v in result.views)
    assert len(result.gaussians) > first_frame_points - 50  # pruning may drop a few, the loop adds many
    assert len(result.fit_psnr) == 1 + len(result.views)  # reference view + every ring view so far
    for label in ("ring 1/2, view 1/2 (+0, +30)", "ring 1/2, view 2/2 (+0, -30)", "ring 2/2, view 1/1 (+15, +30)"):
        assert sum(m.startswith(label) for m in messages) == 2, label  # before (to fill) and after (filled)
    assert any(m.startswith("ring 2/2 done") for m in messages)


def test_loop_two_views_were_partly_covered_by_loop_one(outpainted) -> None:
    """Loop 1's fills already cover part of the diagonal view (the point of going ring by ring)."""
    _, background, result, _ = outpainted
    first = background.depth[0] > 0
    base = hole_ratio(result.xyz[: int(first.sum())], result.rgb[: int(first.sum())],
                      result.radius[: int(first.sum())], result.views[2].camera)
    assert result.views[2].hole_ratio_before_loop < base


def test_classical_refinement_keeps_the_pasted_propagation() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    holes = np.zeros((3, 16, 16), bool)
    holes[:, 4:9, 4:9] = True
    out = refine_video(get_inpaint_engine("classical"), frames, holes, strength=0.7)
    np.testing.assert_array_equal(out, frames)
    with pytest.raises(Exception, match="strength"):
        refine_video(get_inpaint_engine("classical"), frames, holes, strength=1.5)
