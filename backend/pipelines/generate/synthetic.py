"""Synthetic reference videos for the generate tests and ``bench/generate.py``: known geometry, known motion.

``turning_wheel_scene``: the sliding-square scene (a textured wall at ``wall_depth`` metres, a striped
square sliding left to right at ``box_depth``; :func:`backend.pipelines.reshoot.synthetic.sliding_square_scene`)
plus a *moving background element*: a wheel painted on the wall (a disc of ``wheel_radius`` metres,
centred ``wheel_offset`` metres up-left of the optical axis on the wall) whose spokes turn by
``turn_deg`` degrees per frame. The wheel is background (it does not move in depth), so a static
background cannot reproduce it after frame 0; ``wheel`` is its mask per frame. Camera: OpenCV, static.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.pipelines.reshoot.synthetic import SyntheticScene, sliding_square_scene


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
