"""Automatic foreground from motion that holds up under depth noise and per-frame scale drift.

A pixel of frame ``s`` is foreground (moving) when some other frame ``t`` within ``window`` frames
sees *through* its lifted point: the point, projected into camera ``t``, lands in front of the
surface frame ``t`` sees there. With real depth (a network's estimate, a sensor) two things break a
fixed relative margin such as 0.02:

- **scale drift**: monocular depth comes with a per-frame scale (and the pixel-wise see-through test
  then flags every static pixel of the nearer-scaled frames);
- **noise**: with 3 % per-pixel noise the depth of one static surface seen in two frames differs by
  more than 2 % at most pixels.

So the test runs on the log depth ratio ``rho = log z_proj - log D_t(x_proj)`` of each frame pair
``(s, t)`` (``z_proj`` the planar depth of frame ``s``'s point in camera ``t``), and per pair:

- the pair's scale is ``m_st = median(rho)`` over every pixel that lands on a known depth (most of
  the picture is the static background: its points agree up to the two frames' scales);
- the pair's noise is ``sigma_st = 1.4826 * median(|rho - m_st|)`` (robust standard deviation; for
  independent per-pixel noise of relative size ``n`` in each frame, ``sigma_st ~ sqrt(2) n``);
- a point is seen through when ``rho - m_st < -tol_st`` with ``tol_st = max(min_tolerance,
  noise_sigmas * sigma_st)`` (adaptive, the default) or the request's fixed ``tolerance``.

The tolerance is in log units (~ a relative depth margin). A point seen through by any frame of the
window is moving; the mask is then cleaned (:func:`.split.clean_mask`: isolated specks go, the
object's rim joins). Depth is planar z in metres, cameras OpenCV (``K`` pixels, world-to-camera).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from backend.geometry.cameras import as_camera_tensors
from protocol.errors import ValidationError

from .split import clean_mask

MAD_TO_SIGMA = 1.4826
SPLIT_ENGINES = ("motion", "sam2")


@dataclass
class SplitSettings:
    """The request's ``split`` options. ``engine``: ``"motion"`` (module docstring; ``tolerance = None``
    adapts to the depth's noise) or ``"sam2"`` (SAM2 tracks the object prompted by ``box``
    ``[x0, y0, x1, y1]`` pixels on ``prompt_frame``, else by the user's mask or, without one, by the
    motion split's mask of ``prompt_frame``; ``prompt_frame = None``: the frame whose mask is largest)."""

    engine: str = "motion"
    box: list | None = None
    prompt_frame: int | None = None
    tolerance: float | None = None  # fixed see-through margin (log units ~ relative), None = adaptive
    noise_sigmas: float = 4.0  # adaptive margin = noise_sigmas * the pair's robust noise
    min_tolerance: float = 0.02  # the adaptive margin never goes below this (exact depth)
    window: int = 8  # frames on each side a point is tested against
    open_px: int = 1
    dilate_px: int = 2

    def validate(self) -> SplitSettings:
        """Raises :class:`ValidationError` naming the bad ``split.*`` field."""
        if self.engine not in SPLIT_ENGINES:
            raise ValidationError(f"split.engine must be one of {', '.join(SPLIT_ENGINES)}, got {self.engine!r}")
        if self.box is not None and (len(self.box) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.box)):
            raise ValidationError(f"split.box must be [x0, y0, x1, y1] in pixels, got {self.box!r}")
        if self.box is not None and self.engine != "sam2":
            raise ValidationError("split.box prompts the sam2 engine: set split.engine = 'sam2'")
        if self.prompt_frame is not None and (isinstance(self.prompt_frame, bool) or self.prompt_frame < 0):
            raise ValidationError(f"split.prompt_frame must be a frame index >= 0, got {self.prompt_frame!r}")
        for name in ("tolerance", "noise_sigmas", "min_tolerance"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValidationError(f"split.{name} must be a number, got {value!r}")
        if self.tolerance is not None and not 0.0 < self.tolerance < 1.0:
            raise ValidationError(f"split.tolerance must be in (0, 1) or null (adaptive), got {self.tolerance}")
        if not self.noise_sigmas > 0:
            raise ValidationError(f"split.noise_sigmas must be positive, got {self.noise_sigmas}")
        if not 0.0 <= self.min_tolerance < 1.0:
            raise ValidationError(f"split.min_tolerance must be in [0, 1), got {self.min_tolerance}")
        if self.window < 1:
            raise ValidationError(f"split.window must be >= 1, got {self.window}")
        if self.open_px < 0 or self.dilate_px < 0:
            raise ValidationError("split.open_px and split.dilate_px must be >= 0")
        return self


@dataclass
class MotionSplit:
    """The masks and what the split measured: per frame pair, the noise (log units) and margin used."""

    masks: np.ndarray  # (F,H,W) bool, True = foreground
    pair_noise: list[float] = field(default_factory=list)
    pair_tolerance: list[float] = field(default_factory=list)

    @property
    def depth_noise(self) -> float:
        """Median per-frame relative depth noise the split saw (pair noise / sqrt 2); 0 for one frame."""
        return float(np.median(self.pair_noise) / np.sqrt(2.0)) if self.pair_noise else 0.0


def robust_motion_split(depth: torch.Tensor | np.ndarray, K: np.ndarray, world_to_camera: np.ndarray,
                        settings: SplitSettings | None = None) -> MotionSplit:
    """Foreground masks ``(F,H,W)`` from the see-through test of the module docstring.

    ``depth (F,H,W)`` planar z in metres (0 or non-finite = unknown); ``K (F,3,3)`` or ``(3,3)``
    pixels; ``world_to_camera (F,4,4)`` or ``(4,4)`` OpenCV. A single frame has no motion: all False.
    """
    settings = (settings or SplitSettings()).validate()
    z = torch.as_tensor(np.asarray(depth) if not isinstance(depth, torch.Tensor) else depth, dtype=torch.float32)
    if z.ndim != 3:
        raise ValidationError(f"depth must be (F,H,W), got {tuple(z.shape)}")
    z = torch.where(torch.isfinite(z) & (z > 0), z, torch.zeros_like(z))
    num_frames, height, width = z.shape
    if num_frames < 2:
        return MotionSplit(np.zeros((num_frames, height, width), dtype=bool))
    K_t, w2c = as_camera_tensors(K, world_to_camera, num_frames, z.device)
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=z.device) + 0.5,
                          torch.arange(width, dtype=torch.float32, device=z.device) + 0.5, indexing="ij")
    pixels = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(height * width, device=z.device)], 1)
    log_z = torch.log(z.clamp(min=1e-12))
    dynamic = torch.zeros(num_frames, height * width, dtype=torch.bool, device=z.device)
    noise: list[float] = []
    tolerance: list[float] = []
    for s in range(num_frames):
        known = z[s].reshape(-1) > 0
        if not bool(known.any()):
            continue
        rays = pixels @ torch.linalg.inv(K_t[s]).T  # camera s, planar z = 1
        cam_s = rays * z[s].reshape(-1, 1)
        c2w = torch.linalg.inv(w2c[s])
        world = cam_s @ c2w[:3, :3].T + c2w[:3, 3]
        for t in range(max(0, s - settings.window), min(num_frames, s + settings.window + 1)):
            if t == s:
                continue
            cam_t = world @ w2c[t, :3, :3].T + w2c[t, :3, 3]
            hom = cam_t @ K_t[t].T
            z_proj = hom[:, 2]
            ahead = known & (z_proj > 1e-6)
            safe = torch.where(ahead, z_proj, torch.ones_like(z_proj))
            x = torch.floor(hom[:, 0] / safe).to(torch.int64)
            y = torch.floor(hom[:, 1] / safe).to(torch.int64)
            on_image = ahead & (x >= 0) & (x < width) & (y >= 0) & (y < height)
            seen = z[t][y.clamp(0, height - 1), x.clamp(0, width - 1)]
            valid = on_image & (seen > 0)
            if int(valid.sum()) < 16:
                continue
            rho = torch.log(safe[valid]) - log_z[t][y[valid], x[valid]]
            centre = rho.median()
            sigma = float(MAD_TO_SIGMA * (rho - centre).abs().median())
            margin = settings.tolerance if settings.tolerance is not None else max(settings.min_tolerance,
                                                                                    settings.noise_sigmas * sigma)
            noise.append(sigma)
            tolerance.append(float(margin))
            through = torch.zeros_like(valid)
            through[valid] = (rho - centre) < -margin
            dynamic[s] |= through
    masks = clean_mask(dynamic.reshape(num_frames, height, width).cpu().numpy(), settings.open_px,
                       settings.dilate_px)
    return MotionSplit(masks, noise, tolerance)
