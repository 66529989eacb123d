"""Footprint-aware z-buffered point splatting (EasyCreator step 2: render the cloud along a new path).

Conventions: OpenCV cameras, pixel ``(x, y)`` has its centre at ``(x + 0.5, y + 0.5)``; output depth
is planar camera z in metres (``0`` where nothing was seen); colours float32 RGB in [0, 1].

Each point stands for the surface patch its source pixel saw (see :mod:`backend.geometry.lift`):
the parallelogram spanned by its world tangents, or a square of world half-width ``radius``. In a
target camera it covers every pixel whose centre lies within the half-widths ``rx``, ``ry`` of its
projection (bounding box of the projected patch, or ``radius * f / z``, times ``footprint_scale``;
at least the pixel it lands in, at most ``max_splat_radius`` pixels either side). On a continuous surface neighbouring
footprints tile the image, so zooming in leaves no cracks; across a disocclusion there are no points,
so true holes stay holes.

Visibility is a z-buffer resolved with vectorised scatters (no Python loop over points):
1. ``scatter_reduce(amin)`` of point depth per pixel gives the nearest surface depth ``z_min``;
2. among the splats on that surface (point depth minus twice its world radius within
   ``surface_tolerance * z_min`` of it: neighbours on one surface differ in depth by at most their
   spacing, even at grazing angles), the one whose centre is closest to the pixel centre wins: a second ``amin`` over int64 keys packing the squared
   pixel distance (high 32 bits) and the point index (low 32 bits), so ties resolve deterministically.
With ``surface_tolerance=0`` a single pass packs the float32 depth bits and the index instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from protocol.errors import ValidationError

from .cameras import DepthKind, as_camera_tensors, check_depth_kind, planar_to_depth
from .points import PointFrames

DEFAULT_MAX_SPLAT_RADIUS = 4
# Footprints are the *linearised* projection of each pixel's patch; on slanted surfaces the true
# spacing of neighbours in the target can exceed it by ~1%, so footprints overlap by 5% by default.
DEFAULT_FOOTPRINT_SCALE = 1.05
DEFAULT_SURFACE_TOLERANCE = 0.01
_COVER_EPS = 1e-3  # pixels: footprints that exactly touch a pixel centre cover it
_CHUNK_POINTS = 1 << 22
_NO_HIT = torch.iinfo(torch.int64).max
_DIST_SCALE = 1024.0  # squared-pixel-distance quantisation for the tie-break key


@dataclass
class RenderResult:
    """A batch of rendered views. ``point_index`` indexes the rendered point arrays (-1 = unseen)."""

    rgb: torch.Tensor  # (C,H,W,3) float32 in [0,1], background 0
    depth: torch.Tensor  # (C,H,W) float32 metres (planar z unless asked otherwise), 0 = unseen
    mask: torch.Tensor  # (C,H,W) bool, True = seen (visibility mask)
    point_index: torch.Tensor  # (C,H,W) int64, winning point, -1 = unseen

    def to(self, device: torch.device | str) -> RenderResult:
        return RenderResult(self.rgb.to(device), self.depth.to(device), self.mask.to(device),
                            self.point_index.to(device))


@dataclass
class _Splats:
    """(pixel, point) pairs of one chunk; pairs that cover nothing point at the trash pixel."""

    pixel: torch.Tensor  # (S,) int64 flat index into (C*H*W + 1), last = trash
    depth: torch.Tensor  # (S,) float32 camera z of the point
    near_depth: torch.Tensor  # (S,) float32 z minus the point's world footprint (2 * radius)
    point: torch.Tensor  # (S,) int64 global point index
    dist2: torch.Tensor | None  # (S,) float32 squared pixel distance to the point centre


def _project(xyz: torch.Tensor, cam_idx: torch.Tensor, P: torch.Tensor, counts: list[int] | None,
             translate: bool = True) -> torch.Tensor:
    """``K [R|t] X`` (or ``K R X`` without ``translate``) per point, ``(n,3)``.

    ``counts`` (points per camera, points sorted by camera) selects one matmul per camera.
    """
    offset = P[:, :, 3] if translate else torch.zeros_like(P[:, :, 3])
    if counts is not None:
        hom = torch.empty(xyz.shape[0], 3, dtype=xyz.dtype, device=xyz.device)
        start = 0
        for cam, count in enumerate(counts):
            if count:
                torch.addmm(offset[cam], xyz[start:start + count], P[cam, :, :3].T,
                            out=hom[start:start + count])
                start += count
        return hom
    Pp = P[cam_idx]
    return torch.einsum("nij,nj->ni", Pp[:, :, :3], xyz) + offset[cam_idx]


def _footprint_halfwidths(
    u: torch.Tensor, v: torch.Tensor, z: torch.Tensor, tangents: tuple[torch.Tensor, ...],
    cam_idx: torch.Tensor, P: torch.Tensor, counts: list[int] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel half-widths along x and y of the projected patch spanned by the two world tangents.

    The derivative of ``u = h0 / h2`` along a world direction ``t`` is ``((P t)_0 - u (P t)_2) / z``;
    the half-widths are the bounding box of the projected parallelogram.
    """
    rx = torch.zeros_like(u)
    ry = torch.zeros_like(v)
    for tangent in tangents:
        ht = _project(tangent, cam_idx, P, counts, translate=False)
        rx = rx + ((ht[:, 0] - u * ht[:, 2]) / z).abs()
        ry = ry + ((ht[:, 1] - v * ht[:, 2]) / z).abs()
    return rx, ry


def _expand_splats(
    xyz: torch.Tensor, radius: torch.Tensor, tangents: tuple[torch.Tensor, ...], cam_idx: torch.Tensor,
    first_point: int, P: torch.Tensor, focal: torch.Tensor, height: int, width: int,
    footprint_scale: float, max_splat_radius: int, near: float, need_dist: bool,
) -> tuple[list[_Splats], torch.Tensor]:
    """Project one chunk of points and list every (pixel, point) pair its footprint covers.

    Also returns the chunk's camera-space z ``(n,)``.
    """
    counts = None
    if xyz.shape[0] > 1 and bool((cam_idx[1:] >= cam_idx[:-1]).all()):
        counts = torch.bincount(cam_idx, minlength=P.shape[0]).tolist()
    hom = _project(xyz, cam_idx, P, counts)
    z = hom[:, 2]
    front = z > near
    z_safe = torch.where(front, z, torch.ones_like(z))
    u = hom[:, 0] / z_safe
    v = hom[:, 1] / z_safe
    if tangents:
        rx, ry = _footprint_halfwidths(u, v, z_safe, tangents, cam_idx, P, counts)
    else:
        scale = radius / z_safe
        rx, ry = scale * focal[cam_idx, 0], scale * focal[cam_idx, 1]
    rx = (rx * footprint_scale).clamp(max=float(max_splat_radius))
    ry = (ry * footprint_scale).clamp(max=float(max_splat_radius))
    # pixel x is covered when |x + 0.5 - u| <= rx; always at least the pixel u falls in
    x0 = torch.ceil(u - rx - (0.5 + _COVER_EPS))
    x1 = torch.floor(u + rx - (0.5 - _COVER_EPS))
    y0 = torch.ceil(v - ry - (0.5 + _COVER_EPS))
    y1 = torch.floor(v + ry - (0.5 - _COVER_EPS))
    ux, vy = torch.floor(u), torch.floor(v)
    x0, x1 = torch.minimum(x0, ux).clamp(min=0), torch.maximum(x1, ux).clamp(max=width - 1)
    y0, y1 = torch.minimum(y0, vy).clamp(min=0), torch.maximum(y1, vy).clamp(max=height - 1)
    keep = front & (x0 <= x1) & (y0 <= y1) & torch.isfinite(u) & torch.isfinite(v)
    x0, y0 = x0.to(torch.int64), y0.to(torch.int64)
    nx = torch.where(keep, x1.to(torch.int64) - x0 + 1, 0)
    ny = torch.where(keep, y1.to(torch.int64) - y0 + 1, 0)
    trash = P.shape[0] * height * width
    base = torch.where(keep, cam_idx * (height * width) + y0 * width + x0, trash)
    point = torch.arange(first_point, first_point + xyz.shape[0], device=xyz.device)
    # every point covers its top-left pixel; the few that cover more list the rest separately
    near_z = z - 2.0 * radius
    dist2 = None
    if need_dist:
        ddx = x0.to(torch.float32) + 0.5 - u
        ddy = y0.to(torch.float32) + 0.5 - v
        dist2 = ddx * ddx + ddy * ddy
    parts = [_Splats(base, z, near_z, point, dist2)]
    covered = nx * ny
    multi = torch.nonzero(covered > 1).squeeze(1)
    if multi.numel():
        extra = covered[multi] - 1
        pos = torch.repeat_interleave(torch.arange(multi.numel(), device=xyz.device), extra)
        local = torch.arange(pos.numel(), device=xyz.device) - (torch.cumsum(extra, 0) - extra)[pos] + 1
        rows = multi[pos]
        nxp = nx[rows]
        dx, dy = local % nxp, local // nxp
        dist2 = None
        if need_dist:
            ddx = (x0[rows] + dx).to(torch.float32) + 0.5 - u[rows]
            ddy = (y0[rows] + dy).to(torch.float32) + 0.5 - v[rows]
            dist2 = ddx * ddx + ddy * ddy
        parts.append(_Splats(base[rows] + dy * width + dx, z[rows], near_z[rows], rows + first_point, dist2))
    return parts, z


def _batch_size(matrices: torch.Tensor | np.ndarray, side: int) -> int:
    shape = tuple(matrices.shape)
    return shape[0] if len(shape) == 3 and shape[1:] == (side, side) else 1


def splat_points(
    xyz: torch.Tensor,
    rgb: torch.Tensor,
    radius: torch.Tensor,
    camera_index: torch.Tensor,
    K: torch.Tensor | np.ndarray,
    world_to_camera: torch.Tensor | np.ndarray,
    width: int,
    height: int,
    *,
    footprint_scale: float = DEFAULT_FOOTPRINT_SCALE,
    max_splat_radius: int = DEFAULT_MAX_SPLAT_RADIUS,
    surface_tolerance: float = DEFAULT_SURFACE_TOLERANCE,
    near: float = 1e-4,
    depth_kind: DepthKind = "z",
    tangents: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> RenderResult:
    """Render points ``xyz (N,3)`` (world metres) with colours ``rgb (N,3)`` and world ``radius (N,)``
    into cameras ``K (C,3,3)``, ``world_to_camera (C,4,4)``; point ``n`` is drawn only into camera
    ``camera_index[n]``. Returns a :class:`RenderResult` of ``C`` views of ``height x width`` pixels.
    With ``tangents`` (two ``(N,3)`` world half-steps, see :class:`PointFrames`) a point covers the
    bounding box of its projected patch; without, a square of half-width ``radius * f / z`` pixels.
    Points sorted by ``camera_index`` (as in :class:`PointFrames`) take the fastest path.
    """
    check_depth_kind(depth_kind)
    if width <= 0 or height <= 0:
        raise ValidationError(f"render size must be positive, got {width}x{height}")
    if footprint_scale <= 0 or max_splat_radius < 0 or surface_tolerance < 0:
        raise ValidationError("footprint_scale must be > 0, max_splat_radius and surface_tolerance >= 0")
    device = xyz.device
    num_cams = max(_batch_size(K, 3), _batch_size(world_to_camera, 4))
    K_t, w2c = as_camera_tensors(K, world_to_camera, num_cams, device)
    n = xyz.shape[0]
    if n >= 1 << 31:
        raise ValidationError(f"too many points for one render call ({n}); render fewer frames at once")
    P = K_t @ w2c[:, :3, :]
    focal = torch.stack([K_t[:, 0, 0], K_t[:, 1, 1]], dim=1)
    num_pixels = num_cams * height * width
    two_pass = surface_tolerance > 0
    cam_idx_all = camera_index.to(device=device, dtype=torch.int64)
    if n and (int(cam_idx_all.min()) < 0 or int(cam_idx_all.max()) >= num_cams):
        raise ValidationError(f"camera_index must lie in [0, {num_cams})")
    point_z = torch.empty(n, device=device)

    def chunks():
        for a in range(0, n, _CHUNK_POINTS):
            b = min(n, a + _CHUNK_POINTS)
            chunk_tangents = tuple(t[a:b] for t in tangents) if tangents is not None else ()
            parts, z = _expand_splats(xyz[a:b], radius[a:b], chunk_tangents, cam_idx_all[a:b], a, P, focal,
                                      height, width, footprint_scale, max_splat_radius, near, two_pass)
            point_z[a:b] = z
            yield from parts

    keys = torch.full((num_pixels + 1,), _NO_HIT, dtype=torch.int64, device=device)
    if two_pass:
        zmin = torch.full((num_pixels + 1,), float("inf"), device=device)
        cached = list(chunks()) if n <= _CHUNK_POINTS else None
        for sp in cached if cached is not None else chunks():
            zmin.scatter_reduce_(0, sp.pixel, sp.depth, reduce="amin")
        for sp in cached if cached is not None else chunks():
            same_surface = sp.near_depth <= zmin[sp.pixel] * (1.0 + surface_tolerance)
            key = ((sp.dist2 * _DIST_SCALE).to(torch.int64) << 32) | sp.point
            keys.scatter_reduce_(0, sp.pixel, torch.where(same_surface, key, _NO_HIT), reduce="amin")
    else:
        for sp in chunks():
            depth_bits = sp.depth.contiguous().view(torch.int32).to(torch.int64)
            keys.scatter_reduce_(0, sp.pixel, (depth_bits << 32) | sp.point, reduce="amin")

    keys = keys[:num_pixels]
    seen = keys != _NO_HIT
    shape = (num_cams, height, width)
    if n == 0:
        return RenderResult(torch.zeros(*shape, 3, device=device), torch.zeros(shape, device=device),
                            seen.reshape(shape), torch.full(shape, -1, dtype=torch.int64, device=device))
    winner = torch.where(seen, keys & 0xFFFFFFFF, -1)
    safe = winner.clamp(min=0)
    out_rgb = torch.where(seen[:, None], rgb[safe].to(torch.float32), 0.0)
    out_depth = torch.where(seen, point_z[safe], 0.0)
    depth_img = out_depth.reshape(shape)
    if depth_kind == "ray":
        depth_img = planar_to_depth(depth_img, K_t, "ray")
    return RenderResult(out_rgb.reshape(*shape, 3), depth_img, seen.reshape(shape), winner.reshape(shape))


def render_points(
    points: PointFrames,
    K: torch.Tensor | np.ndarray,
    world_to_camera: torch.Tensor | np.ndarray,
    width: int,
    height: int,
    **options,
) -> RenderResult:
    """Render frame ``i`` of ``points`` into camera ``i`` (``K (F,3,3)|(3,3)``, ``world_to_camera
    (F,4,4)|(4,4)``, OpenCV, pixels) -> ``F`` views of ``height x width``. ``options`` go to
    :func:`splat_points` (``footprint_scale``, ``max_splat_radius``, ``surface_tolerance``,
    ``near``, ``depth_kind``). ``point_index`` refers to rows of ``points``.
    """
    K_t, w2c = as_camera_tensors(K, world_to_camera, points.num_frames, points.device)
    tangents = None if points.tangent_u is None else (points.tangent_u, points.tangent_v)
    return splat_points(points.xyz, points.rgb, points.radius, points.frame_index, K_t, w2c,
                        width, height, tangents=tangents, **options)
