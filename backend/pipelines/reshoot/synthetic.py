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
