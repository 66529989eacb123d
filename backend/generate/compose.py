"""Depth-aware composition: put the foreground into the background's coordinates (CoCo4D Eq. 8-10).

Our reading of the paper's depth shift and scale. The foreground of frame ``t`` was lifted with the
reference depth ``D_ref,t`` (planar z, metres, from the user or a depth network, whose scale and
offset may drift from frame to frame); the background lives in its own, outpainted geometry, whose
depth seen from the reference camera of frame ``t`` is ``D_bg,t`` (a render of the background).
Both are compared on a band ``B_t`` of background pixels just around the foreground mask (within
``band_px`` pixels of it, both depths valid): that is where the object meets its surroundings.

- Eq. 8-9, scale and shift: the affine map ``D_bg ~ s_t * D_ref + delta_t`` on the band, fitted as
  ``D_ref ~ a * D_bg + c`` by least squares (closed form) and inverted (``s = 1/a, delta = -c/a``):
  the reference depth is the noisy one, and regressing on it would shrink the slope. When ``D_ref`` barely
  varies over the band (relative spread below ``min_spread``, e.g. a fronto-parallel wall) or its
  variation does not explain the background's (squared correlation below ``MIN_FIT_R2``: noise),
  scale and shift cannot be told apart; we then keep the monocular ambiguity a pure scale:
  ``s_t = median_{B_t} D_bg,t / median_{B_t} D_ref,t``, ``delta_t = 0``;
- Eq. 10, placement: every foreground point of frame ``t`` with reference depth ``z`` gets depth
  ``z' = s_t * z + delta_t`` and moves along its camera ray, ``X' = C_t + (z' / z) (X - C_t)``
  (``C_t`` the camera centre), with its footprint radius scaled by ``z' / z``.

``compose.method = "ranges"`` uses the paper's formulas instead (:func:`fit_range_placement`: one
scale and shift from the depth *ranges* of the first frame). The band fit is the default: it is
per frame (a depth network's drifting scale is followed) and local (the contact band, not the
frame's extremes); ``docs/generate.md`` has the figures.

Moving along the ray keeps every point on its pixel, so the foreground's screen-space trajectory
is exactly the reference video's, while its depth agrees with the background around it. With
consistent depth (the background lifted from the same ``D_ref``) the fit gives ``s = 1, delta = 0``
and composition changes nothing. Frames whose band is empty (no background next to the object)
use the median ``(s, delta)`` of the other frames, or ``(1, 0)`` if none has a band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.geometry import PointFrames
from protocol.camera import Camera
from protocol.errors import ValidationError

#: The band's reference and background depths must explain each other this well (squared correlation)
#: for the affine fit; below it their spread is noise (e.g. 3 % per-pixel depth noise on a flat wall).
MIN_FIT_R2 = 0.5


@dataclass
class DepthPlacement:
    """Per-frame depth scale ``s_t`` and shift ``delta_t`` (metres) and the band size they came from."""

    scale: np.ndarray  # (F,)
    shift: np.ndarray  # (F,)
    band_pixels: np.ndarray  # (F,) int


def contact_band(mask: np.ndarray, band_px: int) -> np.ndarray:
    """``(H,W)`` bool: background pixels within ``band_px`` pixels (square) of the foreground ``mask``."""
    import cv2

    kernel = np.ones((2 * band_px + 1,) * 2, np.uint8)
    return (cv2.dilate(mask.astype(np.uint8), kernel) > 0) & ~mask


def fit_depth_placement(reference_depth: np.ndarray | torch.Tensor, background_depth: np.ndarray | torch.Tensor,
                        foreground: np.ndarray, *, band_px: int = 4, min_spread: float = 0.02) -> DepthPlacement:
    """Eq. 8-9 per frame: ``reference_depth`` and ``background_depth`` ``(F,H,W)`` planar z (0 = unknown),
    ``foreground (F,H,W)`` bool."""
    ref = _numpy(reference_depth)
    bg = _numpy(background_depth)
    fg = np.asarray(foreground, dtype=bool)
    if ref.shape != bg.shape or ref.shape != fg.shape or ref.ndim != 3:
        raise ValidationError(f"depths and masks must all be (F,H,W), got {ref.shape}, {bg.shape}, {fg.shape}")
    num_frames = ref.shape[0]
    scale = np.full(num_frames, np.nan)
    shift = np.full(num_frames, np.nan)
    counts = np.zeros(num_frames, dtype=np.int64)
    for t in range(num_frames):
        if not fg[t].any():
            continue
        band = contact_band(fg[t], band_px) & (ref[t] > 0) & (bg[t] > 0) & np.isfinite(ref[t]) & np.isfinite(bg[t])
        counts[t] = int(band.sum())
        if counts[t] == 0:
            continue
        scale[t], shift[t] = _affine_fit(ref[t][band], bg[t][band], min_spread)
    known = np.isfinite(scale)
    fallback = (float(np.median(scale[known])), float(np.median(shift[known]))) if known.any() else (1.0, 0.0)
    scale[~known], shift[~known] = fallback
    return DepthPlacement(scale, shift, counts)


def fit_range_placement(reference_depth: np.ndarray | torch.Tensor, background_depth: np.ndarray | torch.Tensor,
                        foreground: np.ndarray, *, reference_frame: int = 0) -> DepthPlacement:
    """CoCo4D's Eq. 8-9 literally, from the depth *ranges* of one frame (the paper's first frame).

    ``Delta = (max D_b - min D_b) / (max D_ref - min D_ref)`` over the background pixels (``~m``) of
    ``reference_frame`` (Eq. 9) and ``d = (z - min D_ref) * Delta + min D_b`` (Eq. 8, applied to every
    foreground depth ``z``, not only the mask's mean: the object keeps its relief), i.e. scale ``Delta``
    and shift ``min D_b - Delta * min D_ref`` for every frame. Our reading: both minima over the same
    background pixels (Eq. 8 as printed takes ``min D_ref`` over the whole frame, object included,
    which puts the object at the background's nearest depth even when both depths agree).
    Same inputs as :func:`fit_depth_placement`.
    """
    ref = _numpy(reference_depth)
    bg = _numpy(background_depth)
    fg = np.asarray(foreground, dtype=bool)
    if ref.shape != bg.shape or ref.shape != fg.shape or ref.ndim != 3:
        raise ValidationError(f"depths and masks must all be (F,H,W), got {ref.shape}, {bg.shape}, {fg.shape}")
    num_frames = ref.shape[0]
    if not 0 <= reference_frame < num_frames:
        raise ValidationError(f"reference_frame must be in [0, {num_frames}), got {reference_frame}")
    r, b, m = ref[reference_frame], bg[reference_frame], fg[reference_frame]
    around = ~m & (r > 0) & (b > 0) & np.isfinite(r) & np.isfinite(b)
    if not around.any():
        return DepthPlacement(np.ones(num_frames), np.zeros(num_frames), np.zeros(num_frames, dtype=np.int64))
    ref_range = float(r[around].max() - r[around].min())
    delta = float(b[around].max() - b[around].min()) / ref_range if ref_range > 0 else 1.0
    if not delta > 0:
        delta = 1.0
    shift = float(b[around].min()) - delta * float(r[around].min())
    count = int(around.sum())
    return DepthPlacement(np.full(num_frames, delta), np.full(num_frames, shift), np.full(num_frames, count))


def scaled_trajectory(shifts: np.ndarray, epsilon: float) -> np.ndarray:
    """Eq. 10: ``tau_hat^1 = tau^1``, ``tau_hat^t = epsilon * (tau^t - tau^(t-1)) + tau_hat^(t-1)``.

    ``shifts (F, 2)``: the object's screen-space position per frame (pixels). ``epsilon``: the width
    ratio of the composed object's bounding box to the reference mask's. Our placement moves points
    along their camera rays, which keeps every point on its pixel: ``epsilon = 1`` by construction
    and the trajectory is the reference video's (:func:`screen_scale` measures it).
    """
    shifts = np.asarray(shifts, dtype=np.float64)
    out = shifts.copy()
    for t in range(1, len(shifts)):
        out[t] = epsilon * (shifts[t] - shifts[t - 1]) + out[t - 1]
    return out


def screen_scale(rendered: np.ndarray, reference: np.ndarray) -> float:
    """Eq. 10's ``epsilon``: bounding-box width of ``rendered (H,W)`` bool over that of ``reference (H,W)``."""
    def width(mask: np.ndarray) -> int:
        columns = np.nonzero(np.asarray(mask, dtype=bool).any(axis=0))[0]
        return int(columns[-1] - columns[0] + 1) if columns.size else 0

    base = width(reference)
    return width(rendered) / base if base else 1.0


def _affine_fit(reference: np.ndarray, background: np.ndarray, min_spread: float) -> tuple[float, float]:
    """Least-squares ``background ~ s * reference + delta``; pure median scale when ``reference`` is ~constant."""
    centre = float(np.median(reference))
    if float(np.std(reference)) <= min_spread * centre:
        return float(np.median(background) / centre), 0.0
    flat = float(np.std(background)) <= 1e-9 * max(abs(float(np.mean(background))), 1.0)
    if flat or not float(np.corrcoef(reference, background)[0, 1]) ** 2 >= MIN_FIT_R2:
        # the reference's spread is noise, not relief: an affine fit would flatten the object onto the
        # band's mean depth
        return float(np.median(background) / centre), 0.0
    # regress the noisy side on the clean one (reference ~ a * background + c, the background being a
    # render of the fitted scene) and invert: regressing the clean side on the noisy one would shrink
    # the slope by the noise (regression dilution) and misplace the object
    design = np.stack([background, np.ones_like(background)], axis=1)
    (slope, offset), *_ = np.linalg.lstsq(design, reference, rcond=None)
    if not slope > 0:  # an inverted fit is noise, not geometry: fall back to the pure scale
        return float(np.median(background) / centre), 0.0
    scale, shift = 1.0 / slope, -offset / slope
    return float(scale), float(shift)


def place_foreground(points: PointFrames, cameras: list[Camera], placement: DepthPlacement) -> PointFrames:
    """Eq. 10: move each frame's foreground points along their rays to depth ``s_t z + delta_t``.

    ``points`` frame ``t`` was lifted from camera ``cameras[t]`` (OpenCV, planar z). Points whose new
    depth would not be positive keep their place (a degenerate fit must not flip them behind the camera).
    """
    if len(cameras) != points.num_frames or len(placement.scale) != points.num_frames:
        raise ValidationError("need one camera and one (scale, shift) per foreground frame")
    device = points.device
    w2c = torch.as_tensor(np.stack([c.world_to_camera for c in cameras]), dtype=torch.float32, device=device)
    centres = torch.as_tensor(np.stack([c.center for c in cameras]), dtype=torch.float32, device=device)
    frame = points.frame_index
    cam_xyz = torch.einsum("nij,nj->ni", w2c[frame, :3, :3], points.xyz) + w2c[frame, :3, 3]
    z = cam_xyz[:, 2]
    scale = torch.as_tensor(placement.scale, dtype=torch.float32, device=device)[frame]
    shift = torch.as_tensor(placement.shift, dtype=torch.float32, device=device)[frame]
    new_z = scale * z + shift
    ratio = torch.where((z > 0) & (new_z > 0), new_z / z.clamp(min=1e-12), torch.ones_like(z))
    xyz = centres[frame] + ratio[:, None] * (points.xyz - centres[frame])
    return PointFrames(xyz, points.rgb, points.radius * ratio, points.frame_index, points.pixel_index,
                       points.offsets.clone(), points.source_height, points.source_width)


def _numpy(value: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.float64)
    return np.asarray(value, dtype=np.float64)
