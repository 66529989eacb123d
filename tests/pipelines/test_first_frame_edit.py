"""First-frame editing seen from each target camera: the reprojected edit mask against the analytic
projection of the edited region (IoU >= 0.9 for orbit, dolly and bullet-time paths), frame 0 of each
target showing the edit from that camera, and bad edit inputs as typed errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.pipelines.reshoot.edit import inpaint_depth_from_rim, lift_edit, target_edit
from backend.pipelines.reshoot.request import ReshootRequest
from protocol.camera import Camera, stack_cameras
from protocol.errors import ValidationError
from protocol.paths import build_path

WIDTH, HEIGHT, FRAMES = 128, 96, 5
PLANE = np.array([0.4, -0.2, 4.0])  # world plane z = 4 + 0.4 x - 0.2 y (OpenCV world: y down)
EDIT_BOX = ((-0.5, 0.7), (-0.55, 0.35))  # x and y range of the edited patch on the plane, metres


def _raycast(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World points ``(H,W,3)`` where each pixel-centre ray of ``cam`` hits the plane, and planar z."""
    v, u = np.mgrid[0:cam.height, 0:cam.width] + 0.5
    rays = np.linalg.inv(cam.K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    c2w = cam.camera_to_world
    d, o = c2w[:3, :3] @ rays, c2w[:3, 3:4]
    a, b, c = PLANE
    t = (c + a * o[0] + b * o[1] - o[2]) / (d[2] - a * d[0] - b * d[1])  # o_z + t d_z = c + a x + b y
    points = (o + t * d).T.reshape(cam.height, cam.width, 3)
    return points, t.reshape(cam.height, cam.width)  # rays have unit camera z: t is planar depth


def _in_edit_box(points: np.ndarray) -> np.ndarray:
    (x0, x1), (y0, y1) = EDIT_BOX
    return (points[..., 0] > x0) & (points[..., 0] < x1) & (points[..., 1] > y0) & (points[..., 1] < y1)


def _scene():
    cam = Camera.from_fov(60.0, WIDTH, HEIGHT)
    points, depth = _raycast(cam)
    checker = ((np.floor(points[..., 0] / 0.3) + np.floor(points[..., 1] / 0.3)) % 2)[..., None]
    frame = np.clip(np.concatenate([60 + 120 * checker, 90 + 0 * checker, 200 - 120 * checker], -1), 0, 255)
    frames = np.repeat(frame[None].astype(np.uint8), FRAMES, axis=0)
    mask = _in_edit_box(points)
    edit_frame = frames[0].copy()
    edit_frame[mask] = (230, 40, 30)  # the edit: a red patch
    return cam, frames, np.repeat(depth[None].astype(np.float32), FRAMES, axis=0), edit_frame, \
        np.repeat(mask[None], FRAMES, axis=0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("spec", ["orbit:left:25", "dolly:in:0.4", "bullet:2:orbit:right:25"])
def test_edit_mask_follows_each_target_camera(spec: str) -> None:
    cam, frames, depth, edit_frame, edit_masks = _scene()
    cams = [cam] * FRAMES
    K, w2c = stack_cameras(cams)
    depth_t = torch.from_numpy(depth)
    lifted = lift_edit(frames, depth_t, K, w2c, edit_frame, edit_masks)
    assert lifted.depth_method == "inpainted" and lifted.changed_pixels == int(edit_masks[0].sum())
    path = build_path(spec, cams, 4.0)
    K_t, w2c_t = stack_cameras(path.cameras)
    tm = np.asarray(path.source_frames)
    holes = np.zeros((len(tm), HEIGHT, WIDTH), bool)
    render = np.zeros((len(tm), HEIGHT, WIDTH, 3), np.uint8)
    edit = target_edit(lifted, K_t, w2c_t, tm, render, holes)
    ious = []
    for t, target in enumerate(path.cameras):
        analytic = _in_edit_box(_raycast(target)[0])
        assert analytic.sum() > 500  # a sizeable region in view
        ious.append(_iou(edit.region[t], analytic))
    assert min(ious) >= 0.9, ious
    # the source-view mask is the wrong answer once the camera moved: the test would catch a paste
    moved = _in_edit_box(_raycast(path.cameras[-1])[0])
    assert _iou(edit_masks[0], moved) < 0.9
    # frame 0 of the target is the edited frame seen from target camera 0: red exactly on its mask
    red = (edit.first_frame[..., 0] > 200) & (edit.first_frame[..., 1] < 80)
    assert _iou(red, _in_edit_box(_raycast(path.cameras[0])[0])) >= 0.9


def test_rim_inpainting_is_exact_on_a_plane_and_robust_to_an_occluder() -> None:
    cam, _, depth, _, masks = _scene()
    region = masks[0]
    holed = np.where(region, 0.0, depth[0]).astype(np.float32)
    np.testing.assert_allclose(inpaint_depth_from_rim(holed, region)[region], depth[0][region], rtol=1e-4)
    rows, cols = np.nonzero(region)
    holed[rows.min() - 3: rows.min(), cols.min(): cols.min() + 10] = 1.0  # a near object touching the rim
    filled = inpaint_depth_from_rim(holed, region)
    np.testing.assert_allclose(filled[region], depth[0][region], rtol=2e-3)


def test_edit_depth_uses_the_depth_engine_when_there_is_one() -> None:
    cam, frames, depth, edit_frame, edit_masks = _scene()

    class BumpEngine:  # "estimates" the edited frame: a 0.5 m bump where the edit is, aligned outside
        def predict(self, frames, *, reference, reference_mask, **kwargs):
            assert not reference_mask[0][edit_masks[0]].any()  # aligned only outside the changed region
            return np.where(edit_masks[:1], reference - 0.5, reference)

    K, w2c = stack_cameras([cam] * FRAMES)
    lifted = lift_edit(frames, torch.from_numpy(depth), K, w2c, edit_frame, edit_masks,
                       depth_engine=BumpEngine(), engine_name="bump")
    assert lifted.depth_method == "engine:bump"
    frame0 = lifted.points.frame(0)
    edit_rows = lifted.is_edit[: frame0.num_points]
    z = frame0.xyz[:, 2] - (0.4 * frame0.xyz[:, 0] - 0.2 * frame0.xyz[:, 1])  # plane z at the same x, y is ~4
    assert float(z[edit_rows].mean()) < float(z[~edit_rows].mean()) - 0.2  # the edit sits in front


def test_bad_edit_inputs_are_typed_errors() -> None:
    cam, frames, depth, edit_frame, edit_masks = _scene()
    params = {"cameras": [cam.to_dict()], "trajectories": [{"name": "a", "preset": "orbit:left:10"}]}
    inputs = {"frames": frames, "depth": depth, "edit_frame": edit_frame, "edit_masks": edit_masks}
    assert ReshootRequest.from_params(params, inputs).edit_masks.shape == (FRAMES, HEIGHT, WIDTH)
    with pytest.raises(ValidationError, match=r"edit_masks must have shape \(5, 96, 128\)"):
        ReshootRequest.from_params(params, {**inputs, "edit_masks": edit_masks[:, :48]})
    with pytest.raises(ValidationError, match="edit_frame must be 128x96"):
        ReshootRequest.from_params(params, {**inputs, "edit_frame": edit_frame[:48]})
    with pytest.raises(ValidationError, match="edit_frame and edit_masks go together"):
        ReshootRequest.from_params(params, {k: v for k, v in inputs.items() if k != "edit_masks"})


def test_reshoot_puts_the_edit_into_each_target_view(tmp_path) -> None:
    from backend.pipelines.reshoot.pipeline import run_reshoot

    cam, frames, depth, edit_frame, edit_masks = _scene()
    params = {"cameras": [cam.to_dict()], "fps": 8.0, "outputs": ["video"], "gaussians": {"enabled": False},
              "trajectories": [{"name": "orbit", "preset": "orbit:left:25:direct"}]}
    request = ReshootRequest.from_params(params, {"frames": frames, "depth": depth, "edit_frame": edit_frame,
                                                  "edit_masks": edit_masks})
    result = run_reshoot(request, tmp_path, device="cpu")
    assert result.report["edit"] == {"changed_pixels": int(edit_masks[0].sum()), "depth": "inpainted"}
    traj = result.trajectories[0]
    analytic = _in_edit_box(_raycast(traj.cameras[0])[0])
    red = (traj.filled[0, ..., 0] > 200) & (traj.filled[0, ..., 1] < 80)
    assert _iou(red, analytic) >= 0.9  # frame 0 is the edit as the orbit's camera sees it
    assert _iou(red, edit_masks[0]) < 0.8  # not the source view pasted in
