"""Foreground with volume: a ball seen only from the front gets a back side (goal: >= 90 % of its
silhouette from 180 degrees covered by a surface facing that view, on the near half of the ball)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.engines import get_inpaint_engine
from backend.generate import lift_foreground
from backend.generate.volume import VolumeSettings, build_volume, render_facing
from backend.pipelines.generate import GenerateRequest
from backend.pipelines.generate.synthetic import sliding_ball_scene
from protocol.errors import ValidationError

FRAMES, WIDTH, HEIGHT, RADIUS = 5, 64, 48, 0.45


def _true_ball(camera, centre: np.ndarray) -> tuple[np.ndarray, float]:
    """The ball's silhouette seen by ``camera`` (ray casting) and the planar depth of its centre."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64) + 0.5
    c2w = np.linalg.inv(camera.world_to_camera)
    rays = (np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(camera.K).T) @ c2w[:3, :3].T
    offset = c2w[:3, 3] - centre
    b = 2 * rays @ offset
    disc = b * b - 4 * (rays ** 2).sum(-1) * (offset @ offset - RADIUS ** 2)
    centre_z = float((camera.world_to_camera[:3, :3] @ centre + camera.world_to_camera[:3, 3])[2])
    return disc > 0, centre_z


def _coverage(points, facing, camera, centre) -> float:
    render = render_facing(points.xyz, points.rgb, points.radius, facing, camera)
    silhouette, centre_z = _true_ball(camera, centre)
    near_half = render.mask[0].numpy() & (render.depth[0].numpy() < centre_z + 0.25 * RADIUS)
    return float((silhouette & near_half).sum() / silhouette.sum())


def test_the_back_of_the_ball_is_covered_from_180_degrees() -> None:
    scene = sliding_ball_scene(num_frames=FRAMES, width=WIDTH, height=HEIGHT, ball_radius=RADIUS)
    cameras = [scene.camera] * FRAMES
    shell = lift_foreground(scene.frames, torch.from_numpy(scene.depth), scene.foreground, cameras)
    volume = build_volume(shell, cameras, get_inpaint_engine("classical"))
    assert [v.azimuth for v in volume.views] == [180.0, 90.0, -90.0]
    assert volume.views[0].hole_ratio == 1.0  # from behind, nothing of the shell faces the camera
    full = volume.with_volume(shell)
    back = volume.views[0].camera
    for t in range(FRAMES):
        centre = np.array([-0.5 + t / (FRAMES - 1), 0.0, 2.5])
        move = volume.centroids[t] - volume.centroids[volume.canonical_frame]  # the view follows the object
        w2c = back.world_to_camera.copy()
        w2c[:3, 3] -= w2c[:3, :3] @ move
        camera = back.with_pose(w2c)
        front = shell.frame(t)
        front_facing = (torch.as_tensor(scene.camera.center, dtype=torch.float32) - front.xyz)
        front_facing = front_facing / front_facing.norm(dim=1, keepdim=True)
        assert _coverage(front, front_facing, camera, centre) == 0.0  # the 2.5D shell: no back side
        assert _coverage(full.frame(t), torch.cat([front_facing, volume.facing]), camera, centre) >= 0.9, t
        assert full.frame(t).num_points == front.num_points + volume.num_points  # static object, moved


def test_volume_options_are_checked() -> None:
    scene = sliding_ball_scene(num_frames=2, width=16, height=16)
    inputs = {"frames": scene.frames, "depth": scene.depth}
    assert GenerateRequest.from_params({"volume": {"azimuths": [180]}}, inputs).volume.azimuths == [180]
    for bad, match in (({"azimuths": "back"}, "volume.azimuths"), ({"strength": 3.0}, "volume.strength"),
                       ({"sides": 2}, "unknown volume")):
        with pytest.raises(ValidationError, match=match):
            GenerateRequest.from_params({"volume": bad}, inputs)
    assert VolumeSettings().validate().enabled
