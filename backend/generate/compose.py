"""Depth-aware composition: put the foreground into the background's coordinates (CoCo4D Eq. 8-10).

Our reading of the paper's depth shift and scale. The foreground of frame ``t`` was lifted with the
reference depth ``D_ref,t`` (planar z, metres, from the user or a depth network, whose scale and
offset may drift from frame to frame); the background lives in its own, outpainted geometry, whose
depth seen from the reference camera of frame ``t`` is ``D_bg,t`` (a render of the background).
Both are compared on a band ``B_t`` of background pixels just around the foreground mask (within
``band_px`` pixels of it, both depths valid): that is where the object meets its surroundings.

- Eq. 8-9, scale and shift: ``(s_t, delta_t) = argmin sum_{B_t} (s * D_ref,t + delta - D_bg,t)^2``, the
  least-squares affine map of reference depth onto background depth (closed form). When ``D_ref`` barely
  varies over the band (relative spread below ``min_spread``, e.g. a fronto-parallel wall), scale and
  shift cannot be told apart; we then keep the monocular ambiguity a pure scale:
  ``s_t = median_{B_t} D_bg,t / median_{B_t} D_ref,t``, ``delta_t = 0``;
- Eq. 10, placement: every foreground point of frame ``t`` with reference depth ``z`` gets depth
  ``z' = s_t * z + delta_t`` and moves along its camera ray, ``X' = C_t + (z' / z) (X - C_t)``
  (``C_t`` the camera centre), with its footprint radius scaled by ``z' / z``.

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


def _affine_fit(reference: np.ndarray, background: np.ndarray, min_spread: float) -> tuple[float, float]:
    """Least-squares ``background ~ s * reference + delta``; pure median scale when ``reference`` is ~constant."""
    centre = float(np.median(reference))
    if float(np.std(reference)) <= min_spread * centre:
        return float(np.median(background) / centre), 0.0
    design = np.stack([reference, np.ones_like(reference)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, background, rcond=None)
    if not scale > 0:  # an inverted fit is noise, not geometry: fall back to the pure scale
        return float(np.median(background) / centre), 0.0
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
