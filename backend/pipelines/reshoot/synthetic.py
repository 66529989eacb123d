"""A small analytic dynamic scene with exact depth, for tests and benchmarks (no Blender needed).

A textured back wall at ``wall_depth`` metres and a striped square (0.6 m wide, at ``box_depth``)
that slides left to right over the frames, seen by a static camera at the origin looking down +z
(OpenCV). Colours and depth are computed per pixel by ray casting, so they are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocol.camera import Camera


@dataclass
class SyntheticScene:
    frames: np.ndarray  # (F,H,W,3) uint8
    depth: np.ndarray  # (F,H,W) float32 planar z, metres
    foreground: np.ndarray  # (F,H,W) bool, the moving square
    camera: Camera


def sliding_square_scene(num_frames: int = 8, width: int = 64, height: int = 48, *, fov_deg: float = 60.0,
                         wall_depth: float = 4.0, box_depth: float = 2.0) -> SyntheticScene:
    camera = Camera.from_fov(fov_deg, width, height)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    x_dir = (u - camera.cx) / camera.fx  # ray direction per unit z
    y_dir = (v - camera.cy) / camera.fy
    wall_x, wall_y = x_dir * wall_depth, y_dir * wall_depth
    checker = ((np.floor(wall_x / 0.25) + np.floor(wall_y / 0.25)) % 2).astype(np.float64)
    wall = np.stack([0.25 + 0.5 * checker, 0.35 + 0.3 * (wall_y / wall_depth + 0.5), 0.6 - 0.3 * checker], -1)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    depth = np.empty((num_frames, height, width), np.float32)
    fg = np.empty((num_frames, height, width), bool)
    box_x, box_y = x_dir * box_depth, y_dir * box_depth
    for i in range(num_frames):
        centre = -0.5 + 1.0 * i / max(num_frames - 1, 1)
        hit = (np.abs(box_x - centre) < 0.3) & (np.abs(box_y) < 0.3)
        stripes = (np.floor((box_x - centre) / 0.1) % 2)[..., None]
        box = np.concatenate([0.9 - 0.3 * stripes, 0.2 + 0.2 * stripes, 0.15 + 0 * stripes], -1)
        colour = np.where(hit[..., None], box, wall)
        frames[i] = np.clip(colour * 255 + 0.5, 0, 255).astype(np.uint8)
        depth[i] = np.where(hit, box_depth, wall_depth)
        fg[i] = hit
    return SyntheticScene(frames, depth, fg, camera)


def moving_camera_cameras(num_frames: int = 9, width: int = 64, height: int = 48) -> list[Camera]:
    """OpenCV cameras (f = 45 px at 64 px width, scaled with ``width``) sliding 1.2 m sideways and 0.4 m
    forward over the clip while aiming at a point 5 m ahead (metres)."""
    from protocol.camera import look_at

    focal = 45.0 * width / 64.0
    K = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    steps = max(num_frames - 1, 1)
    return [Camera(K, look_at(np.array([-0.6 + 1.2 * i / steps, -0.2, 0.4 * i / steps]), np.array([0.2, 0.3, 5.0])),
                   width, height) for i in range(num_frames)]


def floor_wall_sphere_depth(cameras: list[Camera]) -> np.ndarray:
    """Exact planar z ``(F,H,W)`` float32 (metres) of a floor (y = 1), a back wall (z = 8) and a sphere
    (centre (0.4, 0.1, 4), radius 0.9), OpenCV world (y down), by ray casting each pixel centre."""
    out = []
    for cam in cameras:
        v, u = np.mgrid[0:cam.height, 0:cam.width] + 0.5
        rays = np.linalg.inv(cam.K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
        d, o = cam.camera_to_world[:3, :3] @ rays, cam.camera_to_world[:3, 3:4]
        t = np.full(u.size, np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            for hit in ((1.0 - o[1]) / d[1], (8.0 - o[2]) / d[2]):
                t = np.where(hit > 0, np.minimum(t, hit), t)
        oc = o - np.array([[0.4], [0.1], [4.0]])
        a, b, c = (d * d).sum(0), 2 * (d * oc).sum(0), (oc * oc).sum() - 0.81
        disc = b * b - 4 * a * c
        sphere = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        t = np.where((disc > 0) & (sphere > 0), np.minimum(t, sphere), t)
        out.append(t.reshape(cam.height, cam.width))  # rays have unit camera z: t is planar depth
    return np.stack(out).astype(np.float32)


def shifted_disparity(depth: np.ndarray, scales: np.ndarray, shift_fraction: float = 0.2) -> np.ndarray:
    """What a relative depth network predicts for ``depth (F,H,W)``: inverse depth plus a global shift of
    ``shift_fraction`` x frame 0's median inverse depth, divided by a per-frame ``scales (F,)`` drift."""
    inverse = 1.0 / depth
    return ((inverse + shift_fraction * np.median(inverse[0])) / np.asarray(scales)[:, None, None]).astype(np.float32)


def scale_invariant_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Mean relative depth error after the best single scale (median ratio): the geometric distortion."""
    scale = np.median(truth / estimate)
    return float(np.mean(np.abs(estimate * scale - truth) / truth))
