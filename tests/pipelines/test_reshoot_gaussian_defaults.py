"""Reshoot defaults on a CPU (issue 13): the Gaussians are fitted, starting from surface-aligned discs."""

from __future__ import annotations

import torch

from backend.export import read_gaussian_ply
from backend.export.stream import gaussian_ply_path
from backend.gaussians.gaussian_set import MIN_SCALE_RATIO
from backend.pipelines.reshoot import ReshootRequest, run_reshoot
from backend.pipelines.reshoot.request import CPU_FIT_ITERATIONS
from backend.pipelines.reshoot.synthetic import sliding_square_scene


def test_default_cpu_job_fits_disc_gaussians_on_every_view(tmp_path) -> None:
    scene = sliding_square_scene(num_frames=2, width=24, height=16)
    request = ReshootRequest.from_params(
        {"fps": 8, "cameras": [scene.camera.to_dict()], "outputs": ["ply"],
         "trajectories": [{"name": "orbit", "preset": "orbit:left:10"}]},
        {"frames": scene.frames, "depth": scene.depth})
    report = run_reshoot(request, tmp_path, device="cpu").report
    assert report["gaussians"]["iterations"] == CPU_FIT_ITERATIONS > 0
    frames = report["gaussians"]["frames"]
    assert [len(f["psnr_per_view"]) for f in frames] == [2, 2]  # source + the filled orbit view
    g = read_gaussian_ply(gaussian_ply_path(tmp_path / "ply", 0))
    scales = torch.exp(g.log_scales).sort(dim=1).values
    # discs, thin along the normal down to the floor Cycles needs, never thinner
    ratio = scales[:, 0] / scales[:, 2]
    assert float(ratio.min()) >= MIN_SCALE_RATIO * (1 - 1e-4)
    assert float((ratio < MIN_SCALE_RATIO + 0.1).float().mean()) > 0.9, ratio
