"""Point-cloud geometry core (torch, CPU and CUDA, batched over frames).

Lift frames with depth to world points, render them into new cameras with a footprint-aware
z-buffer, build EasyCreator training pairs (double reprojection, composite masks), pick context
frames for temporal packing, and fill holes from static content of other frames.
Conventions: OpenCV cameras (x right, y down, z forward), pixel centres at +0.5, metres, colours in
[0, 1]; see :mod:`backend.geometry.cameras`.
"""

from .accumulate import AccumulationResult, accumulate_static, static_point_mask
from .cameras import (
    as_camera_tensors,
    cameras_to_tensors,
    depth_to_planar,
    pixel_ray_norms,
    planar_to_depth,
    project_points,
    rigid_inverse,
)
from .holes import fill_depth_holes
from .lift import flying_pixel_mask, frames_to_float, lift_frames
from .masks import MASK_KINDS, TrainingMask, random_editing_masks, sample_training_mask
from .overlap import TrajectoryOverlap, select_context_frames, trajectory_overlap
from .points import PointFrames, concatenate_frames
from .render import RenderResult, render_points, splat_points
from .reproject import DoubleReprojection, double_reprojection
from .video import reproject_video

__all__ = [
    "MASK_KINDS", "AccumulationResult", "DoubleReprojection", "PointFrames", "RenderResult",
    "TrainingMask", "TrajectoryOverlap", "accumulate_static", "as_camera_tensors", "cameras_to_tensors",
    "concatenate_frames", "fill_depth_holes", "depth_to_planar", "double_reprojection", "flying_pixel_mask",
    "frames_to_float", "lift_frames", "pixel_ray_norms", "planar_to_depth", "project_points",
    "random_editing_masks", "render_points", "reproject_video", "rigid_inverse", "sample_training_mask",
    "select_context_frames", "splat_points", "static_point_mask", "trajectory_overlap",
]
