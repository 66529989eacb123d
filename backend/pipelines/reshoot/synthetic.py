"""Small analytic scenes with exact depth, for tests and benchmarks (no Blender needed).

- :func:`sliding_square_scene`: a textured back wall at ``wall_depth`` metres and a striped square
  (0.6 m wide, at ``box_depth``) that slides left to right over the frames, seen by a static camera
  at the origin looking down +z (OpenCV). Colours and depth are computed per pixel by ray casting.
- :func:`room_scene_view`: a static textured room (ground, back wall, a box) ray-cast from *any*
  camera, anti-aliased like a renderer, so a novel view has an exact ground truth;
  :func:`room_fit_case` builds what the Gaussian stage gets for one frame, plus held-out cameras.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.geometry.points import PointFrames
from protocol.camera import Camera, look_at


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


#: the room of :func:`room_scene_view` (OpenCV-style world: x right, y down, z forward from the
#: origin): ground plane ``y = ROOM_GROUND_Y``, back wall ``z = ROOM_WALL_Z``, a box on the ground
ROOM_GROUND_Y = 1.0
ROOM_WALL_Z = 7.0
ROOM_BOX_MIN = np.array([-0.6, 0.0, 3.0])
ROOM_BOX_MAX = np.array([0.4, ROOM_GROUND_Y, 4.0])
ROOM_PIVOT = np.array([0.0, 0.5, 3.5])  # centre of the box: what views of the room orbit around
_LIGHT = np.array([0.4, -0.8, -0.45]) / np.linalg.norm([0.4, -0.8, -0.45])


def _room_albedo(hit: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """RGB albedo in [0, 1] at world points ``hit (..., 3)`` on ``surface`` (0 ground, 1 wall, 2 box)."""
    x, y, z = hit[..., 0], hit[..., 1], hit[..., 2]
    ground_checker = (np.floor(x / 0.4) + np.floor(z / 0.4)) % 2
    ground = np.stack([0.2 + 0.6 * ground_checker, 0.45 + 0.1 * np.sin(3 * z), 0.7 - 0.5 * ground_checker], -1)
    wall_bands = 0.5 + 0.5 * np.sin(2 * np.pi * x / 0.6) * np.sin(2 * np.pi * y / 0.45)
    wall = np.stack([0.85 - 0.4 * wall_bands, 0.3 + 0.5 * wall_bands, 0.25 + 0.2 * (y > 0)], -1)
    stripes = (np.floor((x + y + z) / 0.12) % 2)
    box = np.stack([0.95 - 0.7 * stripes, 0.25 + 0.5 * stripes, 0.1 + 0.2 * stripes], -1)
    return np.where((surface == 0)[..., None], ground, np.where((surface == 1)[..., None], wall, box))


def _room_hits(origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit distance ``t`` (along ``dirs``), surface id and unit normal for rays ``(..., 3)``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(dirs[..., 1] > 1e-9, (ROOM_GROUND_Y - origin[1]) / dirs[..., 1], np.inf)
        t_wall = np.where(dirs[..., 2] > 1e-9, (ROOM_WALL_Z - origin[2]) / dirs[..., 2], np.inf)
        lo = (ROOM_BOX_MIN - origin) / dirs
        hi = (ROOM_BOX_MAX - origin) / dirs
    t_near = np.nanmax(np.minimum(lo, hi), axis=-1)
    t_far = np.nanmin(np.maximum(lo, hi), axis=-1)
    t_box = np.where((t_far >= t_near) & (t_near > 0), t_near, np.inf)
    stack = np.stack([t_ground, t_wall, t_box], -1)
    surface = stack.argmin(-1)
    t = stack.min(-1)
    hit = origin + t[..., None] * dirs
    normal = np.zeros_like(dirs)
    normal[surface == 0] = (0.0, -1.0, 0.0)
    normal[surface == 1] = (0.0, 0.0, -1.0)
    on_box = surface == 2
    if on_box.any():
        p = hit[on_box]
        centre, half = 0.5 * (ROOM_BOX_MIN + ROOM_BOX_MAX), 0.5 * (ROOM_BOX_MAX - ROOM_BOX_MIN)
        rel = (p - centre) / half
        axis = np.abs(rel).argmax(-1)
        n = np.zeros_like(p)
        n[np.arange(len(p)), axis] = np.sign(rel[np.arange(len(p)), axis])
        normal[on_box] = n
    return t, surface, normal


def room_scene_view(camera: Camera, supersample: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the textured room (ground, back wall, striped box; Lambert shading from one light plus
    ambient) from ``camera`` (OpenCV, any pose): ``(rgb (H,W,3) float32 in [0,1], depth (H,W) float32
    planar z metres)``. Colour is the mean of ``supersample^2`` rays per pixel (anti-aliased, like a
    renderer's pixel filter); depth is the planar z of the pixel-centre ray. Every pixel hits something
    when the camera looks at the box from inside the room."""
    c2w = camera.camera_to_world
    origin = c2w[:3, 3]
    offsets = (np.arange(supersample) + 0.5) / supersample
    rows = np.arange(camera.height)[:, None, None, None] + offsets[None, None, :, None]
    cols = np.arange(camera.width)[None, :, None, None] + offsets[None, None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    x_cam = (cols - camera.cx) / camera.fx
    y_cam = (rows - camera.cy) / camera.fy
    dirs = np.stack([x_cam, y_cam, np.ones_like(x_cam)], -1) @ c2w[:3, :3].T
    t, surface, normal = _room_hits(origin, dirs)
    hit = origin + t[..., None] * dirs
    shade = 0.45 + 0.55 * np.clip(normal @ -_LIGHT, 0.0, 1.0)
    rgb = (_room_albedo(hit, surface) * shade[..., None]).mean(axis=(2, 3))
    centre_dirs = np.stack([(np.arange(camera.width)[None, :] + 0.5 - camera.cx) / camera.fx
                            + 0 * np.arange(camera.height)[:, None],
                            (np.arange(camera.height)[:, None] + 0.5 - camera.cy) / camera.fy
                            + 0 * np.arange(camera.width)[None, :],
                            np.ones((camera.height, camera.width))], -1)
    t_centre, _, _ = _room_hits(origin, centre_dirs @ c2w[:3, :3].T)
    depth = t_centre  # the ray direction has unit camera z, so distance along it is planar z
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), depth.astype(np.float32)


def room_orbit_camera(yaw_deg: float, width: int, height: int, elevation_deg: float = 0.0,
                      fov_deg: float = 60.0) -> Camera:
    """A camera looking at :data:`ROOM_PIVOT` from the origin's distance, turned ``yaw_deg`` about the
    vertical (y) axis and ``elevation_deg`` about x around the pivot (0, 0 = the source camera)."""
    yaw, pitch = np.radians(yaw_deg), np.radians(elevation_deg)
    turn_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    turn_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    eye = ROOM_PIVOT + turn_y @ turn_x @ -ROOM_PIVOT
    return Camera.from_fov(fov_deg, width, height, look_at(eye, ROOM_PIVOT))


@dataclass
class RoomFitCase:
    """What one frame of a reshoot job hands the Gaussian stage, on the room, with exact ground truth.

    ``points``: one frame of lifted points (the source view, plus the pixels of the target view the
    source did not see, as the pipeline lifts filled holes), with pixel tangents. ``views``: the
    source and target images (float32 [0, 1]) with their cameras, i.e. a perfect fill. ``held_out``:
    cameras never fitted, their true images and the pixels the lifted points cover there (what a
    render of the result can show: score quality on those)."""

    points: PointFrames
    views: list[tuple[np.ndarray, Camera]]
    held_out: list[Camera]
    truths: list[np.ndarray]
    seen: list[np.ndarray]


def room_fit_case(width: int = 160, height: int = 120, target_deg: float = 15.0,
                  held_out: tuple[tuple[float, float], ...] = ((7.5, 0.0), (-10.0, 0.0), (5.0, -8.0))) -> RoomFitCase:
    """Build a :class:`RoomFitCase`: source at yaw 0, target at ``target_deg``, ``held_out`` as
    (yaw, elevation) degrees (defaults: between the views, beyond the source, and from above)."""
    import torch

    from backend.geometry import concatenate_frames, lift_frames, render_points

    def lift(cam: Camera, keep: np.ndarray | None = None) -> tuple[np.ndarray, PointFrames]:
        rgb, depth = room_scene_view(cam)
        mask = None if keep is None else torch.from_numpy(keep)[None]
        return rgb, lift_frames(torch.from_numpy(rgb)[None], torch.from_numpy(depth)[None], cam.K,
                                cam.world_to_camera, keep_mask=mask)

    source, target = room_orbit_camera(0.0, width, height), room_orbit_camera(target_deg, width, height)
    rgb_s, points_s = lift(source)
    unseen = ~render_points(points_s, target.K, target.world_to_camera, width, height).mask[0].numpy()
    rgb_t, points_t = lift(target, unseen)
    merged = concatenate_frames([points_s, points_t])
    points = PointFrames(merged.xyz, merged.rgb, merged.radius, torch.zeros_like(merged.frame_index),
                         merged.pixel_index, torch.tensor([0, merged.num_points]), height, width,
                         merged.tangent_u, merged.tangent_v)
    cameras = [room_orbit_camera(yaw, width, height, elevation) for yaw, elevation in held_out]
    seen = [render_points(points, c.K, c.world_to_camera, width, height).mask[0].numpy() for c in cameras]
    return RoomFitCase(points, [(rgb_s, source), (rgb_t, target)], cameras,
                       [room_scene_view(c)[0] for c in cameras], seen)
