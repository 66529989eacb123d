"""Foreground with volume: the object's unseen sides from orbit views, shared across time, motion on top.

The composed foreground (:mod:`.compose`) is a 2.5D shell per frame: every point was lifted from the
reference camera and faces it. CoCo4D reconstructs a static object first and animates it after
(static-then-deform). Ours, with the engines the project has (the inpaint-lift loop of the outpaint
stage, on views around the object):

1. **static object**: the frame with the most foreground points is the canonical frame ``k``; its
   points (world metres) and their centroid ``c_k`` are the object;
2. **orbit views**: cameras on a circle around the object's centre (``azimuths`` degrees about the reference
   camera's vertical axis, same distance and intrinsics, looking at ``c_k``, OpenCV). In each view:

   - render every point so far (z-buffered splats) and keep the pixels of the object's silhouette
     (the render's mask, morphologically closed and grown by ``grow_px``);
   - a point *faces* a view when its normal direction (towards the camera it was lifted from) is
     within 90 degrees of the direction to that view's camera; silhouette pixels that no facing point
     covers are the **holes** (the unseen side);
   - **fill**: the colours the back-facing points show there (the far side seen through: a symmetric
     prior), refined by the video inpainting engine at ``strength`` (:func:`.refine.refine_video`;
     the classical engine keeps the prior);
   - **depth**: mirrored through the plane through the object's centre facing the view,
     ``z = 2 z_c - z_far`` (``z_far`` the depth of the far side the render shows, ``z_c`` the centre's
     planar depth; the centre is half the object's width behind its front, :func:`object_centre`):
     an object as deep as it is wide;
   - **lift** the holes' pixels into new points that face this view;
3. **motion on top**: frame ``t``'s foreground is its own observed shell plus the static new points
   moved rigidly by ``c_t - c_k`` (``c_t`` the centroid of frame ``t``'s shell). A rigid translation
   is the limit of the paper's rigidity term (neighbouring Gaussians keep their distances exactly);
   the observed shell keeps the reference video's non-rigid motion where the reference sees it.

Frames without foreground points get no volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from backend.geometry import PointFrames, lift_frames, splat_points
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.camera import Camera, stack_cameras
from protocol.errors import ValidationError

from .refine import refine_video

DEFAULT_AZIMUTHS = (180.0, 90.0, -90.0)


@dataclass
class VolumeSettings:
    """The request's ``volume`` options (module docstring)."""

    enabled: bool = True
    azimuths: list = field(default_factory=lambda: list(DEFAULT_AZIMUTHS))
    strength: float = 0.7
    close_px: int = 2  # silhouette closing (fills the gaps between splats)
    grow_px: int = 1  # silhouette dilation (the lift's flying-pixel filter drops the shell's rim pixels)

    def validate(self) -> VolumeSettings:
        if not isinstance(self.azimuths, (list, tuple)) or not all(
                isinstance(a, (int, float)) and not isinstance(a, bool) and -360 <= a <= 360 for a in self.azimuths):
            raise ValidationError(f"volume.azimuths must be a list of degrees in [-360, 360], got {self.azimuths!r}")
        if not 0.0 <= float(self.strength) <= 1.0:
            raise ValidationError(f"volume.strength must be in [0, 1], got {self.strength}")
        if self.close_px < 0 or self.grow_px < 0:
            raise ValidationError("volume.close_px and volume.grow_px must be >= 0")
        return self


@dataclass
class OrbitView:
    azimuth: float
    camera: Camera
    hole_ratio: float  # holes / silhouette pixels before the view's fill
    new_points: int


@dataclass
class ObjectVolume:
    """The static object's added (unseen-side) points at the canonical frame and the per-frame motion."""

    canonical_frame: int
    centroids: np.ndarray  # (F,3) world metres (NaN where a frame has no foreground)
    xyz: torch.Tensor  # (M,3) added points at the canonical frame, world metres
    rgb: torch.Tensor  # (M,3) in [0,1]
    radius: torch.Tensor  # (M,)
    facing: torch.Tensor  # (M,3) unit directions the added points face
    views: list[OrbitView] = field(default_factory=list)

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    def with_volume(self, shell: PointFrames) -> PointFrames:
        """Every frame's shell plus the added points moved by ``c_t - c_k`` (module docstring, step 3)."""
        parts, offsets = [], [0]
        for t in range(shell.num_frames):
            part = shell.frame(t)
            xyz, rgb, radius = part.xyz, part.rgb, part.radius
            if part.num_points and self.num_points and np.isfinite(self.centroids[t]).all():
                move = torch.as_tensor(self.centroids[t] - self.centroids[self.canonical_frame],
                                       dtype=torch.float32, device=xyz.device)
                xyz = torch.cat([xyz, self.xyz + move])
                rgb = torch.cat([rgb, self.rgb])
                radius = torch.cat([radius, self.radius])
            parts.append((xyz, rgb, radius))
            offsets.append(offsets[-1] + xyz.shape[0])
        xyz = torch.cat([p[0] for p in parts])
        counts = torch.tensor([p[0].shape[0] for p in parts])
        frame_index = torch.repeat_interleave(torch.arange(shell.num_frames), counts).to(xyz.device)
        return PointFrames(xyz, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]), frame_index,
                           torch.full((xyz.shape[0],), -1, dtype=torch.int64, device=xyz.device),
                           torch.tensor(offsets), shell.source_height, shell.source_width)


def look_at_camera(reference: Camera, centre: np.ndarray, target: np.ndarray) -> Camera:
    """A camera at ``centre`` (world metres) looking at ``target``, with ``reference``'s intrinsics and its
    image-down direction kept as "down" (OpenCV: x right, y down, z forward)."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(centre, dtype=np.float64)
    forward /= max(np.linalg.norm(forward), 1e-12)
    down = np.linalg.inv(np.asarray(reference.world_to_camera, dtype=np.float64))[:3, 1]
    right = np.cross(down, forward)
    if np.linalg.norm(right) < 1e-9:
        raise ValidationError("an orbit view may not look straight along the reference camera's vertical")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([right, down, forward])
    w2c[:3, 3] = -w2c[:3, :3] @ np.asarray(centre, dtype=np.float64)
    return reference.with_pose(w2c)


def orbit_about(reference: Camera, target: np.ndarray, azimuth_deg: float) -> Camera:
    """``reference``'s centre rotated by ``azimuth_deg`` about the vertical axis through ``target``, looking at it."""
    c2w = np.linalg.inv(np.asarray(reference.world_to_camera, dtype=np.float64))
    axis = -c2w[:3, 1]  # up
    angle = math.radians(azimuth_deg)
    offset = c2w[:3, 3] - np.asarray(target, dtype=np.float64)
    rotated = (offset * math.cos(angle) + np.cross(axis, offset) * math.sin(angle)
               + axis * (axis @ offset) * (1 - math.cos(angle)))  # Rodrigues
    return look_at_camera(reference, np.asarray(target) + rotated, target)


def object_centre(xyz: torch.Tensor, reference: Camera) -> np.ndarray:
    """The object's centre (world metres): the shell's mean in the image plane, half its width behind its front.

    The shell seen from ``reference`` is the object's front; how deep the object goes is unseen. The
    prior is an object as deep as it is wide: centre depth = nearest depth + half the shell's robust
    (5-95 %) width along the camera's x axis (a ball's centre exactly). The orbit pivot and the mirror
    plane go through this point.
    """
    w2c = np.asarray(reference.world_to_camera, dtype=np.float64)
    cam = xyz.detach().cpu().double().numpy() @ w2c[:3, :3].T + w2c[:3, 3]
    low, high = np.quantile(cam[:, 0], [0.05, 0.95])
    half_width = 0.5 * (high - low) / 0.9  # the 5-95 % range of a uniform spread is 90 % of it
    centre = np.array([cam[:, 0].mean(), cam[:, 1].mean(), cam[:, 2].min() + half_width])
    c2w = np.linalg.inv(w2c)
    return c2w[:3, :3] @ centre + c2w[:3, 3]


def _facing(points: torch.Tensor, centre: np.ndarray) -> torch.Tensor:
    direction = torch.as_tensor(centre, dtype=torch.float32, device=points.device) - points
    return direction / direction.norm(dim=1, keepdim=True).clamp(min=1e-12)


def facing_mask(xyz: torch.Tensor, facing: torch.Tensor, camera: Camera) -> torch.Tensor:
    """``(N,)`` bool: the points whose facing direction is within 90 degrees of the way to ``camera``."""
    return (_facing(xyz, camera.center) * facing).sum(dim=1) > 0


def render_facing(xyz: torch.Tensor, rgb: torch.Tensor, radius: torch.Tensor, facing: torch.Tensor,
                  camera: Camera) -> Any:
    """Splat render (:func:`backend.geometry.splat_points`) of only the points facing ``camera``."""
    keep = facing_mask(xyz, facing, camera)
    K, w2c = stack_cameras([camera])
    index = torch.zeros(int(keep.sum()), dtype=torch.int64, device=xyz.device)
    return splat_points(xyz[keep], rgb[keep], radius[keep], index, K, w2c, camera.width, camera.height)


def build_volume(shell: PointFrames, cameras: list[Camera], engine: Any, prompt: str = "",
                 settings: VolumeSettings | None = None, *, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None) -> ObjectVolume:
    """Steps 1-2 of the module docstring on the composed foreground ``shell`` (one frame per camera)."""
    import cv2

    settings = (settings or VolumeSettings()).validate()
    counts = shell.counts().numpy()
    device = shell.device
    centroids = np.full((shell.num_frames, 3), np.nan)
    for t in range(shell.num_frames):
        if counts[t]:
            centroids[t] = shell.frame(t).xyz.mean(dim=0).cpu().numpy()
    empty = torch.zeros(0, 3, device=device)
    if not counts.any():
        return ObjectVolume(0, centroids, empty, empty.clone(), torch.zeros(0, device=device), empty.clone())
    k = int(np.argmax(counts))
    base = shell.frame(k)
    reference = cameras[k]
    xyz, rgb, radius = base.xyz, base.rgb, base.radius
    pivot = object_centre(xyz, reference)
    facing = _facing(xyz, reference.center)
    added: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    views: list[OrbitView] = []
    kernel = np.ones((2 * settings.close_px + 1,) * 2, np.uint8)
    for index, azimuth in enumerate(settings.azimuths):
        check_cancel(cancel)
        camera = orbit_about(reference, pivot, float(azimuth))
        K, w2c = stack_cameras([camera])
        everything = splat_points(xyz, rgb, radius, torch.zeros(xyz.shape[0], dtype=torch.int64, device=device),
                                  K, w2c, camera.width, camera.height)
        seen = render_facing(xyz, rgb, radius, facing, camera)
        silhouette = everything.mask[0].cpu().numpy()
        if settings.close_px:
            silhouette = cv2.morphologyEx(silhouette.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
        if settings.grow_px:
            silhouette = cv2.dilate(silhouette.astype(np.uint8),
                                    np.ones((2 * settings.grow_px + 1,) * 2, np.uint8)) > 0
        holes = silhouette & ~seen.mask[0].cpu().numpy()
        ratio = float(holes.sum() / max(int(silhouette.sum()), 1))
        new = 0
        if holes.any():
            prior = (everything.rgb[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
            prior = np.where(holes[..., None], _fill_gaps(prior, holes, everything.mask[0].cpu().numpy()), prior)
            filled = refine_video(engine, prior[None], holes[None], prompt, strength=settings.strength,
                                  cancel=cancel)[0]
            centre_z = float((np.asarray(camera.world_to_camera)[:3, :3] @ pivot
                              + np.asarray(camera.world_to_camera)[:3, 3])[2])
            far = everything.depth[0]
            far = torch.where(far > 0, far, torch.tensor(centre_z, device=device))
            depth = (2.0 * centre_z - far).clamp(min=1e-3)
            holes_t = torch.from_numpy(holes).to(device)
            lifted = lift_frames(filled[None], depth[None], K, w2c, keep_mask=holes_t[None], edge_threshold=None,
                                 device=device)
            new = lifted.num_points
            if new:
                new_facing = _facing(lifted.xyz, camera.center)
                added.append((lifted.xyz, lifted.rgb, lifted.radius, new_facing))
                xyz, rgb, radius = (torch.cat([xyz, lifted.xyz]), torch.cat([rgb, lifted.rgb]),
                                    torch.cat([radius, lifted.radius]))
                facing = torch.cat([facing, new_facing])
        views.append(OrbitView(float(azimuth), camera, ratio, new))
        if progress is not None:
            progress(index + 1, len(settings.azimuths),
                     f"orbit view {index + 1}/{len(settings.azimuths)} ({azimuth:+g} deg): {ratio:.0%} of the "
                     f"silhouette unseen, {new} points added")
    if not added:
        return ObjectVolume(k, centroids, empty, empty.clone(), torch.zeros(0, device=device), empty.clone(), views)
    return ObjectVolume(k, centroids, *(torch.cat(parts) for parts in zip(*added, strict=True)), views)


def _fill_gaps(prior: np.ndarray, holes: np.ndarray, rendered: np.ndarray) -> np.ndarray:
    """Colours for hole pixels the render left empty (closing gaps): OpenCV inpainting from the rendered ones."""
    import cv2

    missing = holes & ~rendered
    if not missing.any():
        return prior
    return cv2.inpaint(prior, missing.astype(np.uint8), 3, cv2.INPAINT_TELEA)
