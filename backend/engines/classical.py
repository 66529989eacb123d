"""The ``classical`` fill engine: ghost-free temporal propagation, then a smooth depth-aware fill.

Runs on the CPU with no weights; the embedded default.

1. **Temporal propagation from static pixels.** A hole pixel ``(f, y, x)`` takes the value of the
   same pixel ``(y, x)`` in the nearest frame in time (up to ``max_gap`` frames away; both
   neighbours averaged on a tie) where that pixel was seen *and stable*: it
   kept its colour (within ``stable_tolerance`` 8-bit levels per channel) on the far side for at
   least as many frames as it is away from ``f``, plus :data:`STABLE_MARGIN`.
   A moving object, or a moving camera over texture, changes a pixel's colour from frame to frame,
   so such pixels are not copied (no ghosts of a passing ball, no smeared texture when the target
   camera moves); a static camera over static background copies exactly.
2. **Smooth fill from the background side.** The rest is filled per frame by normalized
   convolution: a Gaussian-weighted mean of the seen pixels around each hole pixel, at the smallest
   scale (``radius_px``, doubling) where enough seen pixels fall inside the window. A low-frequency
   fill, because the true content of an unseen region is unknown and a smooth estimate of its local
   colour has a lower expected error than extended streaks (what Telea/Navier-Stokes inpainting
   draw into large holes) or a synthesized texture that does not line up with the truth.
   With the render's ``depth`` (planar z, metres; what the reshoot pipeline passes) the mean is
   *depth-aware*: each hole pixel gets a far-side depth (a soft maximum of the seen depths around
   it, since disoccluded pixels show what lies behind the foreground edge), and only seen pixels of
   about that depth contribute (log-depth layers with linear weights). So the gap beside a pillar
   is filled with the wall behind it, not with the pillar.
3. **Temporal smoothing.** The smoothly filled pixels are averaged over a Gaussian window in time
   (``smooth_sigma`` frames) over the frames where the same pixel was also filled, so the fill does
   not flicker.

Seen pixels are returned exactly as given. ``context`` (frames of other trajectories) is accepted
and not used: those frames are not aligned to this camera, so pixel-wise propagation cannot use them.
Measured by ``bench/fill.py`` (classical vs a flat mean-colour fill on Blender scenes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from backend.engines.inpaint_types import (
    FirstFrameEdit,
    InpaintContext,
    apply_first_frame_edit,
    validate_fill_inputs,
)
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.errors import ValidationError

#: Frames of stability a donor pixel needs beyond its distance in time (a passing object's pixels fail it).
STABLE_MARGIN = 2
#: Share of changed pixels above which two frames count as filmed by a moving camera.
MAX_CHANGED_SHARE = 0.25
#: The smallest smoothing scale when ``radius_px`` is not given: this share of the larger frame side.
DEFAULT_RADIUS_FRACTION = 0.02
#: Share of a Gaussian window that must be seen before that scale's mean is used (else double it).
MIN_SUPPORT = 0.02
#: Log-depth layers of the depth-aware fill and the sharpness of the far-side soft maximum.
DEPTH_LAYERS = 6
FAR_SIDE_POWER = 8.0
MIN_FAR_SIDE_SIGMA = 1.5  # pixels
#: Blurs wider than this (sigma, pixels) run at a reduced size.
DIRECT_BLUR_SIGMA = 3.0
#: Frames whose larger side exceeds this are smooth-filled at a reduced size (the fill is low-frequency).
MAX_WORK_SIDE = 512


def nearest_seen_indices(holes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every (f, y, x): index of the latest frame <= f and earliest frame >= f where the pixel is seen.

    ``holes``: (F, H, W) bool. Returns two (F, H, W) int32 arrays, -1 where no such frame exists.
    """
    num_frames = holes.shape[0]
    previous = np.full(holes.shape, -1, dtype=np.int32)
    following = np.full(holes.shape, -1, dtype=np.int32)
    last = np.full(holes.shape[1:], -1, dtype=np.int32)
    for index in range(num_frames):
        last = np.where(holes[index], last, index)
        previous[index] = last
    last = np.full(holes.shape[1:], -1, dtype=np.int32)
    for index in range(num_frames - 1, -1, -1):
        last = np.where(holes[index], last, index)
        following[index] = last
    return previous, following


def stable_pixels(frames: np.ndarray, holes: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Seen pixels whose colour holds into the previous / the next frame.

    Returns (stable_backward, stable_forward), (F, H, W) bool: ``stable_backward[f]`` is True where
    the pixel is seen in frames f and f - 1 and no channel differs by more than ``tolerance``
    (8-bit levels); ``stable_forward[f]`` the same with frame f + 1. A frame pair in which more
    than :data:`MAX_CHANGED_SHARE` of the pixels seen in both changed (a moving camera) has no
    stable pixels.
    """
    values = frames.astype(np.int16)
    both_seen = ~holes[1:] & ~holes[:-1]
    agree = (np.abs(np.diff(values, axis=0)).max(axis=-1) <= tolerance) & both_seen
    # A moving camera changes most pixels between frames: no pixel of such a frame pair counts as
    # stable (the same pixel shows another scene point, however uniform the region looks).
    changed_share = 1.0 - agree.sum(axis=(1, 2)) / np.maximum(both_seen.sum(axis=(1, 2)), 1)
    agree &= (changed_share <= MAX_CHANGED_SHARE)[:, None, None]
    backward = np.zeros(holes.shape, bool)
    forward = np.zeros(holes.shape, bool)
    backward[1:] = agree
    forward[:-1] = agree
    return backward, forward


def stable_run_lengths(frames: np.ndarray, holes: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """How many frames each seen pixel has kept its colour, looking back and looking forward.

    ``run_back[f]`` (F, H, W) int32 = the number of consecutive frames f - 1, f - 2, ... in which
    the pixel is seen with a colour within ``tolerance`` of the next one (see :func:`stable_pixels`);
    ``run_forward[f]`` the same towards f + 1, f + 2, ...
    """
    backward, forward = stable_pixels(frames, holes, tolerance)
    num_frames = holes.shape[0]
    run_back = np.zeros(holes.shape, np.int32)
    run_forward = np.zeros(holes.shape, np.int32)
    for index in range(1, num_frames):
        run_back[index] = np.where(backward[index], run_back[index - 1] + 1, 0)
    for index in range(num_frames - 2, -1, -1):
        run_forward[index] = np.where(forward[index], run_forward[index + 1] + 1, 0)
    return run_back, run_forward


def propagate_temporally(frames: np.ndarray, holes: np.ndarray, max_gap: int,
                         stable_tolerance: float | None = None,
                         trusted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fill hole pixels from the same pixel in the nearest frame (in time) where it was seen.

    With ``stable_tolerance`` a donor frame ``g`` at distance ``|f - g|`` is used only if the pixel
    kept its colour for at least ``|f - g| + STABLE_MARGIN`` frames on the far side of ``g``
    (:func:`stable_run_lengths`): evidence that it shows static background to a camera that does
    not move it across the pixel. ``trusted`` (F, H, W) bool marks donors used without that check
    (the edited first frame). Returns (filled frames as float32 (F, H, W, 3), still-missing (F, H, W) bool).
    """
    filled = frames.astype(np.float32)
    missing = holes.copy()
    if max_gap < 1 or not holes.any():
        return filled, missing
    previous, following = nearest_seen_indices(holes)
    f, y, x = np.nonzero(holes)  # work on the hole pixels only
    previous, following = previous[f, y, x], following[f, y, x]
    unusable = np.iinfo(np.int32).max
    gap_previous = np.where(previous >= 0, f - previous, unusable)
    gap_following = np.where(following >= 0, following - f, unusable)
    if stable_tolerance is not None:
        run_back, run_forward = stable_run_lengths(frames, holes, stable_tolerance)
        if trusted is not None:
            long_run = np.int32(holes.shape[0] + STABLE_MARGIN)
            run_back = np.where(trusted, long_run, run_back)
            run_forward = np.where(trusted, long_run, run_forward)
        donor_back = run_back[np.clip(previous, 0, None), y, x].astype(np.int64)
        donor_forward = run_forward[np.clip(following, 0, None), y, x].astype(np.int64)
        gap_previous = np.where(donor_back >= gap_previous.astype(np.int64) + STABLE_MARGIN, gap_previous, unusable)
        gap_following = np.where(donor_forward >= gap_following.astype(np.int64) + STABLE_MARGIN,
                                 gap_following, unusable)
    use_previous = (gap_previous <= max_gap) & (gap_previous <= gap_following)
    use_following = (gap_following <= max_gap) & (gap_following <= gap_previous)
    from_previous = filled[np.clip(previous, 0, None), y, x]
    from_following = filled[np.clip(following, 0, None), y, x]
    value = np.where(use_previous[:, None], from_previous, from_following)
    value = np.where((use_previous & use_following)[:, None], 0.5 * (from_previous + from_following), value)
    used = use_previous | use_following
    filled[f[used], y[used], x[used]] = value[used]
    missing[f[used], y[used], x[used]] = False
    return filled, missing


def smooth_in_time(values: np.ndarray, where: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian average over time of ``values`` (F, H, W, C) at pixels marked in ``where`` (F, H, W).

    Each marked pixel becomes the weighted mean over neighbouring frames where the same pixel is
    also marked; unmarked pixels are unchanged.
    """
    if sigma_frames <= 0 or values.shape[0] < 2 or not where.any():
        return values
    radius = max(1, int(np.ceil(2.0 * sigma_frames)))
    f, y, x = np.nonzero(where)  # work on the marked pixels only
    total = np.zeros((f.size, values.shape[-1]), dtype=np.float32)
    weight_sum = np.zeros((f.size, 1), dtype=np.float32)
    num_frames = values.shape[0]
    for offset in range(-radius, radius + 1):
        other = f + offset
        inside = (other >= 0) & (other < num_frames)
        other = np.clip(other, 0, num_frames - 1)
        use = inside & where[other, y, x]
        weight = float(np.exp(-0.5 * (offset / sigma_frames) ** 2))
        total[use] += weight * values[other[use], y[use], x[use]]
        weight_sum[use] += weight
    out = values.copy()
    out[f, y, x] = total / np.maximum(weight_sum, 1e-12)
    return out


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur (sigma in pixels) with zeros outside the frame, so normalized convolution stays
    unbiased at the borders. Wide blurs run on a copy shrunk by a power of two (area average) so
    the kernel stays about :data:`DIRECT_BLUR_SIGMA` pixels, then are scaled back (bilinear)."""
    import cv2

    factor = 1
    while sigma_px / (2 * factor) >= DIRECT_BLUR_SIGMA and min(image.shape[:2]) >= 8 * factor:
        factor *= 2
    if factor == 1:
        return cv2.GaussianBlur(image, (0, 0), sigma_px, borderType=cv2.BORDER_CONSTANT)
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, round(width / factor)), max(1, round(height / factor))),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma_px / factor, borderType=cv2.BORDER_CONSTANT)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def normalized_convolution(values: np.ndarray, weights: np.ndarray, targets: np.ndarray, sigma_px: float,
                           min_support: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Gaussian mean of ``values`` (H, W, C) with ``weights`` (H, W) at the ``targets`` (H, W) pixels.

    Starts at ``sigma_px`` and doubles the scale for the targets whose window holds less than
    ``min_support`` weight, up to the frame size. Returns (means (H, W, C) float32, valid
    (H, W) bool: True where a scale had the support).
    """
    height, width = weights.shape
    means = np.zeros(values.shape, np.float32)
    valid = np.zeros(weights.shape, bool)
    remaining = targets.copy()
    weighted = values * weights[..., None]
    sigma = max(0.5, float(sigma_px))
    while remaining.any():
        total = _blur(weighted, sigma).reshape(values.shape)
        support = _blur(weights, sigma)
        ok = remaining & (support > min_support)
        means[ok] = total[ok] / support[ok][:, None]
        valid |= ok
        remaining &= ~ok
        if sigma > max(height, width):
            break
        sigma *= 2.0
    return means, valid


def far_side_log_depth(log_depth: np.ndarray, weights: np.ndarray, targets: np.ndarray, sigma_px: float) -> np.ndarray:
    """A soft maximum of the seen log-depths around each target pixel: the background behind a depth edge.

    The window is ``sigma_px`` (at least :data:`MIN_FAR_SIDE_SIGMA`): local, because reaching
    farther (tried: 2 and 4 times) pulls distant background into holes at the frame border and
    scored worse on the Blender scenes.

    ``log_depth`` (H, W) natural log of planar depth (metres), ``weights`` (H, W) seen share.
    Returns (H, W) float32, meaningful at the targets.
    """
    top = float(log_depth[weights > 0].max())
    far_weights = weights * np.exp(FAR_SIDE_POWER * (log_depth - top)).astype(np.float32)
    estimate, valid = normalized_convolution(log_depth[..., None], far_weights, targets,
                                             max(MIN_FAR_SIDE_SIGMA, sigma_px), 1e-12)
    return np.where(valid, estimate[..., 0], top).astype(np.float32)


def depth_aware_mean(colour: np.ndarray, weights: np.ndarray, log_depth: np.ndarray, targets: np.ndarray,
                     sigma_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalized convolution restricted to seen pixels at about each target's far-side depth.

    The seen log-depths are cut into :data:`DEPTH_LAYERS` layers with linear (hat) weights; a
    target at far-side log-depth ``z`` mixes the layers' Gaussian means with the hats' weights at
    ``z``. Returns (means (H, W, 3) float32, valid (H, W) bool) like :func:`normalized_convolution`.
    """
    height, width = weights.shape
    seen_log = log_depth[weights > 0]
    target_log = far_side_log_depth(log_depth, weights, targets, sigma_px)
    low, high = float(seen_log.min()), float(seen_log.max())
    centres = np.linspace(low, high, DEPTH_LAYERS) if high > low else np.array([low])
    spacing = float(centres[1] - centres[0]) if len(centres) > 1 else 1.0
    rows, cols = np.nonzero(targets)
    # per layer: colour x weight and weight as one 4-channel image, and each target's share of it
    layers = []
    for centre in centres:
        layer_weights = np.clip(1.0 - np.abs(log_depth - centre) / spacing, 0, 1).astype(np.float32) * weights
        share = np.clip(1.0 - np.abs(target_log[rows, cols] - centre) / spacing, 0, 1).astype(np.float32)
        if layer_weights.any() and share.any():
            layers.append((np.concatenate([colour * layer_weights[..., None], layer_weights[..., None]], axis=-1),
                           share))
    means = np.zeros(colour.shape, np.float32)
    valid = np.zeros(weights.shape, bool)
    remaining = np.ones(rows.shape, bool)  # over the targets
    sigma = max(0.5, float(sigma_px))
    while remaining.any() and layers:
        accumulated = np.zeros((rows.size, 4), np.float32)
        for weighted, share in layers:
            accumulated += share[:, None] * _blur(weighted, sigma)[rows, cols]
        ok = remaining & (accumulated[:, 3] > MIN_SUPPORT)
        means[rows[ok], cols[ok]] = accumulated[ok, :3] / accumulated[ok, 3:]
        valid[rows[ok], cols[ok]] = True
        remaining &= ~ok
        if sigma > 0.5 * max(height, width):  # beyond this the plain mean does as well
            break
        sigma *= 2.0
    return means, valid


def smooth_fill_frame(frame: np.ndarray, missing: np.ndarray, depth: np.ndarray | None = None,
                      radius_px: float | None = None) -> np.ndarray:
    """Fill the ``missing`` (H, W) pixels of ``frame`` (H, W, 3) with a smooth (depth-aware) local mean.

    ``depth``: (H, W) planar depth in metres of the frame's seen pixels (<= 0 or non-finite =
    unknown), or None for the plain mean. ``radius_px``: smallest Gaussian sigma in pixels (default
    :data:`DEFAULT_RADIUS_FRACTION` of the larger side). Frames larger than :data:`MAX_WORK_SIDE`
    are filled at a reduced size and the fill is scaled back up. Returns (H, W, 3) float32; seen
    pixels unchanged.
    """
    import cv2

    out = frame.astype(np.float32)
    if not missing.any():
        return out
    if missing.all():
        out[:] = 128.0
        return out
    height, width = missing.shape
    radius = DEFAULT_RADIUS_FRACTION * max(height, width) if radius_px is None else float(radius_px)
    scale = min(1.0, MAX_WORK_SIDE / max(height, width))
    seen = (~missing).astype(np.float32)
    known_depth = None if depth is None else (~missing) & np.isfinite(depth) & (depth > 0)
    log_depth = None if known_depth is None else np.log(np.where(known_depth, depth, 1.0)).astype(np.float32)
    if scale < 1.0:
        size = (max(2, round(width * scale)), max(2, round(height * scale)))

        def shrink(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

        weights = shrink(seen)
        colour = shrink(out * seen[..., None]) / np.maximum(weights, 1e-6)[..., None]
        if known_depth is not None:
            depth_weights = shrink(known_depth.astype(np.float32))
            log_depth = shrink(log_depth * known_depth) / np.maximum(depth_weights, 1e-6)
            known_depth = depth_weights > 0
        targets = weights < 1.0
        radius *= scale
    else:
        weights, colour, targets = seen, out, missing
    if known_depth is not None and known_depth.sum() >= 4:
        means, valid = depth_aware_mean(colour, np.where(known_depth, weights, 0.0).astype(np.float32),
                                        log_depth, targets, radius)
        rest = targets & ~valid
        if rest.any():
            plain, _ = normalized_convolution(colour, weights, rest, radius, 1e-9)
            means[rest] = plain[rest]
    else:
        means, _ = normalized_convolution(colour, weights, targets, radius, MIN_SUPPORT)
    if scale < 1.0:
        means = cv2.resize(means, (width, height), interpolation=cv2.INTER_LINEAR)
    out[missing] = means[missing]
    return out


class ClassicalFill:
    """Ghost-free temporal propagation + smooth depth-aware fill + temporal smoothing (module docstring).

    ``max_gap``: frames to look back/forward for a stable seen pixel (0 = no propagation);
    ``radius_px``: smallest smoothing sigma in pixels (None = 2 % of the larger frame side);
    ``smooth_sigma``: temporal Gaussian sigma (frames) for the smoothly filled pixels (0 = off);
    ``stable_tolerance``: largest change (8-bit levels) between two frames for a pixel to count as static.
    """

    #: The reshoot pipeline passes the render's planar depth as ``depth=`` to engines that set this.
    uses_render_depth = True
    #: ``fill(..., holes_cover_motion=True)`` is understood (see :meth:`fill`).
    accepts_holes_cover_motion = True

    def __init__(self, models_dir: Path | None = None, *, max_gap: int = 12, radius_px: float | None = None,
                 smooth_sigma: float = 2.0, stable_tolerance: float = 6.0, **unused: Any) -> None:
        if unused:
            raise ValidationError(f"unknown options for the classical fill engine: {', '.join(sorted(unused))}")
        if max_gap < 0 or (radius_px is not None and radius_px <= 0) or smooth_sigma < 0 or stable_tolerance < 0:
            raise ValidationError("classical fill needs max_gap >= 0, radius_px > 0 (or unset), smooth_sigma >= 0 "
                                  "and stable_tolerance >= 0")
        self.max_gap = int(max_gap)
        self.radius_px = None if radius_px is None else float(radius_px)
        self.smooth_sigma = float(smooth_sigma)
        self.stable_tolerance = float(stable_tolerance)
        self.name = "classical"

    def fill(self, frames: np.ndarray, holes: np.ndarray, prompt: str = "", *,
             context: InpaintContext | None = None, edit: FirstFrameEdit | None = None,
             depth: np.ndarray | None = None, holes_cover_motion: bool = False,
             progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> np.ndarray:
        """Fill ``holes`` (True = fill) in ``frames`` (F, H, W, 3) uint8; the prompt and context are unused.

        ``depth``: optional (F, H, W) planar depth of the frames in metres (holes: any value), used
        to fill disocclusions from the background side. ``holes_cover_motion``: the holes cover
        everything that moves (a foreground mask over a static-camera video, as ``recast4d
        generate`` removes its foreground), so every seen pixel is a clean donor and propagation
        needs no stability evidence.
        """
        frames, holes = validate_fill_inputs(frames, holes)
        if depth is not None:
            depth = np.asarray(depth, dtype=np.float32)
            if depth.shape != holes.shape:
                raise ValidationError(f"depth for the classical fill must be (F, H, W) = {holes.shape}, "
                                      f"got {depth.shape}")
        frames, holes = apply_first_frame_edit(frames, holes, edit)
        num_frames = frames.shape[0]
        check_cancel(cancel)
        trusted = None
        if edit is not None:  # the edited frame 0 is meant to propagate into the later frames' edit regions
            trusted = np.zeros(holes.shape, bool)
            trusted[0] = np.asarray(edit.region, dtype=bool)[1:].any(axis=0)
        filled, missing = propagate_temporally(frames, holes, self.max_gap,
                                               None if holes_cover_motion else self.stable_tolerance, trusted)
        spatial = filled.copy()
        for index in range(num_frames):
            check_cancel(cancel)
            if missing[index].any():
                known = np.where(holes[index], 0.0, depth[index]) if depth is not None else None
                spatial[index] = smooth_fill_frame(filled[index], missing[index], known, self.radius_px)
            if progress is not None:
                progress(index + 1, num_frames, "classical fill")
        smoothed = smooth_in_time(spatial, missing, self.smooth_sigma)
        out = np.clip(np.rint(smoothed), 0, 255).astype(np.uint8)
        out[~holes] = frames[~holes]
        return out
