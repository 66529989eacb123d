"""Synthetic reference videos for the generate tests and ``bench/generate.py``: known geometry, known motion.

``turning_wheel_scene``: the sliding-square scene (a textured wall at ``wall_depth`` metres, a striped
square sliding left to right at ``box_depth``; :func:`backend.pipelines.reshoot.synthetic.sliding_square_scene`)
plus a *moving background element*: a wheel painted on the wall (a disc of ``wheel_radius`` metres,
centred ``wheel_offset`` metres up-left of the optical axis on the wall) whose spokes turn by
``turn_deg`` degrees per frame. The wheel is background (it does not move in depth), so a static
background cannot reproduce it after frame 0; ``wheel`` is its mask per frame. Camera: OpenCV, static.

``sliding_ball_scene``: a ball (an object with volume and a back side) sliding in front of the wall,
for the foreground-volume test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.pipelines.reshoot.synthetic import SyntheticScene, sliding_square_scene
from protocol.camera import Camera


@dataclass
class WheelScene(SyntheticScene):
    """A :class:`SyntheticScene` whose background has a turning wheel; ``wheel (F,H,W)`` bool."""

    wheel: np.ndarray = None  # type: ignore[assignment]


def turning_wheel_scene(num_frames: int = 9, width: int = 64, height: int = 48, *, wall_depth: float = 4.0,
                        box_depth: float = 2.5, wheel_radius: float = 0.6, wheel_offset: tuple[float, float] = (
                            -0.8, -0.45), spokes: int = 6, turn_deg: float = 15.0) -> WheelScene:
    """The scene of the module docstring (frames uint8, planar depth metres, foreground and wheel masks)."""
    base = sliding_square_scene(num_frames=num_frames, width=width, height=height, wall_depth=wall_depth,
                                box_depth=box_depth)
    camera = base.camera
    v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    wall_x = (u - camera.cx) / camera.fx * wall_depth - wheel_offset[0]
    wall_y = (v - camera.cy) / camera.fy * wall_depth - wheel_offset[1]
    radius = np.hypot(wall_x, wall_y)
    angle = np.arctan2(wall_y, wall_x)
    disc = radius < wheel_radius
    frames = base.frames.copy()
    depth = base.depth.copy()
    foreground = base.foreground.copy()
    wheel = np.zeros_like(foreground)
    for t in range(num_frames):
        turned = angle + np.radians(turn_deg) * t
        spoke = (np.floor(turned / (2 * np.pi / spokes) * 2) % 2).astype(np.float64)
        colour = np.stack([0.95 * spoke + 0.05, 0.85 - 0.6 * spoke, 0.2 + 0.6 * (radius / wheel_radius)], -1)
        visible = disc & ~foreground[t]
        frames[t][visible] = np.clip(colour[visible] * 255 + 0.5, 0, 255).astype(np.uint8)
        wheel[t] = visible
    return WheelScene(frames, depth, foreground, camera, wheel)


def sliding_ball_scene(num_frames: int = 5, width: int = 64, height: int = 48, *, wall_depth: float = 4.0,
                       ball_depth: float = 2.5, ball_radius: float = 0.45, fov_deg: float = 60.0) -> SyntheticScene:
    """A ball with volume (``ball_radius`` metres, centre ``ball_depth`` metres ahead) sliding left to right
    in front of the sliding-square scene's wall; exact planar depth by ray casting (OpenCV camera at the
    origin). Its colour varies with the surface normal, so the front and the back differ."""
    camera = Camera.from_fov(fov_deg, width, height)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], -1)
    wall_rgb = _wall_colours(rays * wall_depth)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    depth = np.empty((num_frames, height, width), np.float32)
    fg = np.empty((num_frames, height, width), bool)
    for t in range(num_frames):
        centre = np.array([-0.5 + 1.0 * t / max(num_frames - 1, 1), 0.0, ball_depth])
        # |s * ray - centre|^2 = r^2 for the ray parameter s (= planar depth, rays have z = 1)
        a = (rays ** 2).sum(-1)
        b = -2.0 * (rays @ centre)
        c = centre @ centre - ball_radius ** 2
        disc = b * b - 4 * a * c
        hit = disc > 0
        s = np.where(hit, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), wall_depth)
        normal = (rays * s[..., None] - centre) / ball_radius
        ball_rgb = 0.5 + 0.45 * normal
        frames[t] = np.clip(np.where(hit[..., None], ball_rgb, wall_rgb) * 255 + 0.5, 0, 255).astype(np.uint8)
        depth[t] = np.where(hit, s, wall_depth)
        fg[t] = hit
    return SyntheticScene(frames, depth, fg, camera)


def _wall_colours(points: np.ndarray) -> np.ndarray:
    checker = ((np.floor(points[..., 0] / 0.25) + np.floor(points[..., 1] / 0.25)) % 2)
    return np.stack([0.25 + 0.5 * checker, 0.35 + 0.3 * (points[..., 1] / points[..., 2] + 0.5),
                     0.6 - 0.3 * checker], -1)
