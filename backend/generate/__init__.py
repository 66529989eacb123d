"""CoCo4D stages (text/image -> 4D scene): reference-video engines, foreground/background split,
progressive background outpainting, depth-aware composition and the animated foreground.

The ``generate`` job kind (:mod:`backend.pipelines.generate`) runs them in order; each stage is a
plain function over typed data so tests and benchmarks call them directly.
"""

from .animate import (
    AnimatedBackground,
    AnimationSettings,
    SupervisingVideo,
    animate_background,
    supervising_videos,
)
from .compose import DepthPlacement, contact_band, fit_depth_placement, place_foreground
from .foreground import (
    background_depth_in_reference,
    compose_foreground,
    fit_foreground,
    lift_foreground,
)
from .motion_split import MotionSplit, SplitSettings, robust_motion_split
from .outpaint import (
    BackgroundScene,
    OutpaintSettings,
    RingView,
    hole_ratio,
    progressive_outpaint,
    scaled_view,
)
from .refine import refine_video
from .rings import DEFAULT_RINGS, orbit_camera, parse_rings, ring_cameras
from .split import BackgroundVideo, background_video, clean_mask, validate_masks

__all__ = [
    "AnimatedBackground", "AnimationSettings", "SupervisingVideo", "animate_background", "supervising_videos",
    "DEFAULT_RINGS", "BackgroundScene", "BackgroundVideo", "DepthPlacement", "OutpaintSettings", "RingView",
    "background_depth_in_reference", "background_video", "clean_mask", "compose_foreground", "contact_band",
    "fit_depth_placement", "fit_foreground", "hole_ratio", "lift_foreground", "MotionSplit", "SplitSettings", "robust_motion_split",
    "orbit_camera", "parse_rings", "place_foreground", "progressive_outpaint", "refine_video", "ring_cameras",
    "scaled_view", "validate_masks",
]
