"""End to end: the reshoot pipeline on a small synthetic scene with the classical engine, given depth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.geometry import fill_depth_holes
from backend.pipelines.reshoot import ReshootRequest, run_reshoot
from backend.pipelines.reshoot.synthetic import sliding_square_scene
from protocol.errors import Cancelled


def _request(scene, **over) -> ReshootRequest:
    params = {
        "fps": 8,
        "cameras": [scene.camera.to_dict()],
        "trajectories": [{"name": "orbit", "preset": "orbit:left:12"}, {"name": "dolly", "preset": "dolly:in:0.3"}],
        "gaussians": {"iterations": 2},
    }
    params.update(over)
    return ReshootRequest.from_params(params, {"frames": scene.frames, "depth": scene.depth})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    scene = sliding_square_scene(num_frames=5, width=48, height=32)
    out = tmp_path_factory.mktemp("reshoot")
    stages, frames_seen = [], []
    result = run_reshoot(_request(scene), out, progress=lambda s, *a: stages.append(s),
                         on_frame=lambda i, xyz, rgb: frames_seen.append((i, xyz.shape[0], rgb.dtype)))
    return scene, out, result, stages, frames_seen


def test_every_output_exists_and_loads(finished):
    from plyfile import PlyData
    from pxr import Usd, UsdGeom

    from backend.media import read_video

    scene, out, result, _, _ = finished
    stage = Usd.Stage.Open(str(out / "scene.usdc"))
    points = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/point_cloud"))
    counts = [len(points.GetPointsAttr().Get(t)) for t in (1, 3, 5)]
    expected = [result.points.frame(i).num_points for i in (0, 2, 4)]
    assert counts == expected and min(counts) > 0
    assert stage.GetEndTimeCode() == 5
    ply = PlyData.read(str(out / "ply" / "gaussians_00002.ply"))
    assert ply["vertex"].count > 0 and "f_dc_0" in ply["vertex"].data.dtype.names
    for name in ("orbit", "dolly"):
        video = read_video(out / name / "video.mp4")
        assert video.num_frames == 5 and video.size == (48 + 0, 32)
        assert len(list((out / name / "frames").glob("*.png"))) == 5
        assert len(list((out / name / "masks").glob("*.png"))) == 5
        cams = json.loads((out / name / "cameras.json").read_text())
        assert len(cams["camera_path"]) == 5
    report = json.loads((out / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]][:3] == ["depth", "lift", "render"]
    assert report["engine"]["inpaint"] == "classical"
    assert report["points"]["fused"] == result.points.num_points


def test_holes_are_filled_and_seen_pixels_kept(finished):
    _, _, result, _, _ = finished
    orbit = result.trajectories[0]
    assert orbit.hole_ratio > 0  # an orbit disoccludes the wall behind the square
    seen = ~orbit.holes
    np.testing.assert_array_equal(orbit.filled[seen], orbit.render[seen])
    # Every pixel is coloured: the fill leaves no black holes behind.
    assert (orbit.filled[orbit.holes].max(axis=-1) > 0).mean() > 0.99


def test_static_accumulation_shrinks_holes_and_its_points_reach_the_result(finished):
    _, _, result, _, _ = finished
    orbit = result.trajectories[0]
    assert orbit.hole_ratio < orbit.hole_ratio_render
    points = result.report["points"]
    assert points["accumulated"] > 0
    assert points["fused"] == points["source"] + points["accumulated"] + points["generated"]


def test_usd_colours_are_linear(finished):
    from pxr import Usd, UsdGeom

    from protocol.color import srgb_to_linear

    _, out, result, _, _ = finished
    stage = Usd.Stage.Open(str(out / "scene.usdc"))
    colours = np.asarray(UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/point_cloud")).GetDisplayColorAttr().Get(1))
    srgb = result.points.frame(0).rgb.numpy()
    np.testing.assert_allclose(colours, srgb_to_linear(np.round(srgb * 255) / 255), atol=1e-6)


def test_progress_and_frames_are_reported_as_produced(finished):
    _, _, _, stages, frames_seen = finished
    assert {"depth", "lift", "render", "fill", "fill_depth", "fuse", "gaussians"} <= set(stages)
    assert [f[0] for f in frames_seen] == list(range(5))
    assert all(n > 0 and dtype == np.uint8 for _, n, dtype in frames_seen)


def test_bullet_time_and_explicit_cameras(tmp_path):
    scene = sliding_square_scene(num_frames=4, width=32, height=24)
    req = _request(scene, trajectories=[{"name": "bullet", "preset": "bullet:1:orbit:right:10"}],
                   gaussians={"enabled": False}, outputs=["usd", "video"], start_frame=101)
    result = run_reshoot(req, tmp_path)
    from pxr import Usd

    stage = Usd.Stage.Open(str(tmp_path / "scene.usdc"))
    assert (stage.GetStartTimeCode(), stage.GetEndTimeCode()) == (101, 104)
    bullet = result.trajectories[0]
    assert bullet.source_frames == [1, 1, 1, 1]
    # static accumulation looks at the source frames around the frozen one (the square has moved
    # off the wall it hid), not at the path's neighbouring cameras, which all show frame 1 again
    assert bullet.hole_ratio < bullet.hole_ratio_render
    assert (tmp_path / "scene.usdc").exists() and not (tmp_path / "ply").exists()


def test_cancel_stops_between_stages_and_leaves_written_files(tmp_path):
    scene = sliding_square_scene(num_frames=3, width=32, height=24)
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        run_reshoot(_request(scene), tmp_path, cancel=cancel)
    assert not (tmp_path / "report.json").exists()


def test_depth_holes_take_the_far_side():
    depth = torch.tensor([[[2.0, 2.0, 0.0, 0.0, 5.0, 5.0]]])
    holes = depth == 0
    filled = fill_depth_holes(depth, holes)
    assert torch.all(filled[holes] == 5.0) and torch.equal(filled[~holes], depth[~holes])


def test_depth_holes_fall_back_to_columns_and_keep_empty_frames_zero():
    depth = torch.zeros(2, 3, 2)
    depth[0, 0, :] = 3.0  # only the top row is known
    holes = depth == 0
    holes[1] = True
    filled = fill_depth_holes(depth, holes)
    assert torch.all(filled[0] == 3.0) and torch.all(filled[1] == 0.0)


def test_merge_by_frame_caps_points_per_frame_and_keeps_order():
    from backend.geometry import PointFrames
    from backend.pipelines.reshoot.pipeline import merge_by_frame

    def part(frames: list[int]) -> PointFrames:
        n = len(frames)
        counts = torch.bincount(torch.tensor(frames), minlength=3)
        return PointFrames(xyz=torch.arange(n * 3, dtype=torch.float32).reshape(n, 3), rgb=torch.zeros(n, 3),
                           radius=torch.ones(n), frame_index=torch.tensor(frames),
                           pixel_index=torch.arange(n), offsets=torch.cat([torch.zeros(1, dtype=torch.int64),
                                                                           torch.cumsum(counts, 0)]),
                           source_height=4, source_width=4)

    a, b = part([0] * 5 + [1] * 2 + [2] * 9), part([1, 0, 0])  # frame 2 only in a
    fused = merge_by_frame([a, b], 3, max_points=4, seed=1)
    assert fused.counts().tolist() == [4, 3, 4]
    assert torch.equal(fused.frame_index, torch.tensor([0] * 4 + [1] * 3 + [2] * 4))
    frame2 = fused.frame(2).pixel_index.tolist()
    assert frame2 == sorted(frame2)  # original order kept inside a frame
    again = merge_by_frame([a, b], 3, max_points=4, seed=1)
    assert torch.equal(again.xyz, fused.xyz)  # seeded
    assert merge_by_frame([a, b], 3, max_points=100).num_points == 19
