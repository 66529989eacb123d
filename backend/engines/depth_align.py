"""Depth alignment: robust scale/shift fits that put estimated depth into a scene's scale.

Monocular depth networks (Depth Anything V2 "relative") predict *affine-invariant inverse depth*
(disparity): ``true_inverse_depth ~= scale * prediction + shift`` with unknown scale and shift per
frame. Depth here is z-depth along the camera's +z axis (OpenCV convention), in scene units.

- :func:`align_depth` fits ``scale, shift`` against a reference depth where pixels are known
  (e.g. the rendered depth of seen pixels of a generated frame) and returns aligned depth.
  ``space="inverse"`` (default, for disparity-like predictions) fits
  ``scale * pred + shift ~= 1 / reference``; ``space="depth"`` fits ``scale * pred + shift ~= reference``.
- :func:`consistent_depth_from_disparity` turns a sequence of relative predictions into depth with
  one consistent scale across frames, without any reference.

Fits are robust: an L1-style initial estimate (medians) is refined by least squares on inliers
(residual < ``outlier_sigma`` x 1.4826 x MAD), repeated a few times.

Flat scenes: when more than half of the pixels share one value (a wall filling the view) the MAD is
0. Spreads then fall back to the mean absolute deviation (:func:`robust_spread`); a fit whose inliers
all share one prediction cannot tell scale from shift and is solved as a pure scale (shift 0).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from protocol.errors import ValidationError

MIN_INVERSE_DEPTH = 1e-6


def robust_spread(values: np.ndarray) -> float:
    """Median absolute deviation, or the mean absolute deviation when the MAD is 0 (over half the
    values equal); 0 only for constant values."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return 0.0
    deviation = np.abs(values - np.median(values))
    mad = float(np.median(deviation))
    return mad if mad > 0 else float(deviation.mean())


def _pure_scale(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``y ~= scale * x`` (shift 0) by least squares: what a fit on one predicted value can determine."""
    denominator = float(np.dot(x, x))
    return (float(np.dot(x, y) / denominator) if denominator > 0 else 1.0), 0.0


def robust_scale_shift(x: np.ndarray, y: np.ndarray, *, outlier_sigma: float = 2.5,
                       iterations: int = 4) -> tuple[float, float]:
    """Robust fit of ``y ~= scale * x + shift`` over 1-D samples; (scale, shift).

    Constant ``x`` (a flat scene) gives the pure-scale fit ``y ~= scale * x``.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValidationError("depth alignment needs at least 2 valid pixels")
    x_med, y_med = np.median(x), np.median(y)
    x_spread, y_spread = robust_spread(x), robust_spread(y)
    if x_spread <= 0:
        return _pure_scale(x, y)
    scale = y_spread / x_spread
    shift = y_med - scale * x_med
    inliers = np.ones(x.shape, dtype=bool)
    for _ in range(iterations):
        residual = y - (scale * x + shift)
        mad = np.median(np.abs(residual - np.median(residual)))
        threshold = outlier_sigma * 1.4826 * mad
        inliers = np.abs(residual) <= max(threshold, 1e-12 * max(1.0, abs(y_med)))
        if inliers.sum() < 2:
            break
        if np.ptp(x[inliers]) <= 1e-12 * max(1.0, abs(x_med)):  # inliers on one value: scale only
            return _pure_scale(x[inliers], y[inliers])
        design = np.stack([x[inliers], np.ones(int(inliers.sum()))], axis=1)
        solution, *_ = np.linalg.lstsq(design, y[inliers], rcond=None)
        scale, shift = float(solution[0]), float(solution[1])
    return float(scale), float(shift)


def align_depth(pred: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, *,
                space: Literal["inverse", "depth"] = "inverse",
                outlier_sigma: float = 2.5) -> tuple[np.ndarray, float, float]:
    """Align estimated ``pred`` to ``reference`` depth where ``mask`` is True; (aligned depth, scale, shift).

    ``pred``: (..., H, W) relative prediction (inverse depth for ``space="inverse"``, depth for
    ``space="depth"``); ``reference``: same shape, z-depth in scene units (<= 0 or non-finite = unknown);
    ``mask``: same shape bool, the pixels to fit on (default: all with a valid reference). One
    (scale, shift) is fitted over all given pixels. In inverse space the fit is
    ``scale * pred + shift ~= 1 / reference`` and the result ``1 / (scale * pred + shift)``; in depth
    space ``scale * pred + shift ~= reference``. Returned depth is float32, clipped to be positive.
    """
    pred = np.asarray(pred, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if pred.shape != reference.shape:
        raise ValidationError(f"prediction {pred.shape} and reference depth {reference.shape} differ in shape")
    valid = np.isfinite(pred) & np.isfinite(reference) & (reference > 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != pred.shape:
            raise ValidationError(f"alignment mask {mask.shape} must match the prediction {pred.shape}")
        valid &= mask
    if valid.sum() < 2:
        raise ValidationError("depth alignment needs at least 2 pixels with a known reference depth")
    if space == "inverse":
        scale, shift = robust_scale_shift(pred[valid], 1.0 / reference[valid], outlier_sigma=outlier_sigma)
        inverse = np.maximum(scale * pred + shift, MIN_INVERSE_DEPTH)
        aligned = 1.0 / inverse
    elif space == "depth":
        scale, shift = robust_scale_shift(pred[valid], reference[valid], outlier_sigma=outlier_sigma)
        aligned = np.maximum(scale * pred + shift, MIN_INVERSE_DEPTH)
    else:
        raise ValidationError(f"alignment space must be 'inverse' or 'depth', got {space!r}")
    aligned = np.where(np.isfinite(pred), aligned, np.nan)
    return aligned.astype(np.float32), scale, shift


def smooth_parameters(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing of a per-frame parameter series (edges renormalised)."""
    values = np.asarray(values, dtype=np.float64)
    if sigma_frames <= 0 or values.size < 2:
        return values
    frame = np.arange(values.size, dtype=np.float64)
    weights = np.exp(-0.5 * ((frame[:, None] - frame[None, :]) / sigma_frames) ** 2)
    return (weights @ values) / weights.sum(axis=1)


def smooth_affine_alignment(disparity: np.ndarray, scales: np.ndarray, shifts: np.ndarray,
                            sigma_frames: float, valid: np.ndarray | None = None) -> np.ndarray:
    """Apply per-frame fits ``scale_i * disparity_i + shift_i`` after smoothing them over time.

    The raw (scale, shift) series jumps whenever the network's own affine ambiguity jumps, so it is
    not smoothed directly. Each frame's disparity is first normalised by its own median and MAD;
    in those units the fit becomes ``a_i * normalised_i + b_i`` where ``b_i`` is the frame's median
    aligned inverse depth and ``a_i`` its spread: scene quantities that change smoothly in a video.
    ``a`` and ``b`` are smoothed with a Gaussian of ``sigma_frames`` frames. Returns aligned
    inverse depth (F, H, W) float64.
    """
    disparity = np.asarray(disparity, dtype=np.float64)
    ok = np.isfinite(disparity) if valid is None else (np.asarray(valid, bool) & np.isfinite(disparity))
    medians = np.empty(disparity.shape[0])
    spreads = np.empty(disparity.shape[0])
    frames = [disparity[index][ok[index]] for index in range(disparity.shape[0])]
    # one spread measure for the whole clip, so a_i means the same thing in every frame: the MAD, or
    # the mean absolute deviation when some frame's MAD is 0 (flat scene); constant frames use 1
    mad_zero = any(v.size and np.median(np.abs(v - np.median(v))) <= 0 for v in frames)
    for index, values in enumerate(frames):
        medians[index] = np.median(values) if values.size else 0.0
        deviation = np.abs(values - medians[index])
        spread = (float(deviation.mean()) if mad_zero else float(np.median(deviation))) if values.size else 0.0
        spreads[index] = spread if spread > 0 else 1.0
    spread_raw = np.asarray(scales, dtype=np.float64) * spreads
    constant = np.array([v.size == 0 or np.ptp(v) <= 0 for v in frames])
    if constant.any() and not constant.all():  # a constant frame has no spread: borrow the nearest one's
        varied = np.flatnonzero(~constant)
        nearest = varied[np.abs(np.arange(len(frames))[:, None] - varied[None, :]).argmin(axis=1)]
        spread_raw = spread_raw[nearest]
    spread_coeff = smooth_parameters(spread_raw, sigma_frames)
    median_coeff = smooth_parameters(np.asarray(scales) * medians + np.asarray(shifts), sigma_frames)
    normalised = (disparity - medians[:, None, None]) / spreads[:, None, None]
    return spread_coeff[:, None, None] * normalised + median_coeff[:, None, None]


def consistent_depth_from_disparity(disparity: np.ndarray, *, median_depth: float = 1.0,
                                    smooth_sigma: float = 1.0, outlier_sigma: float = 2.5,
                                    valid: np.ndarray | None = None) -> np.ndarray:
    """Relative inverse depth (F, H, W) -> z-depth (F, H, W) float32 with one scale across frames.

    Frame 0 sets the scale: its disparity is scaled so its median depth is ``median_depth`` (scene
    units; a relative prediction carries no metric scale, so pass a better value when known).
    Each later frame gets a robust scale/shift fit of its disparity against the previous aligned
    frame's disparity (the scene changes little between frames; moving parts are rejected as
    outliers). The fits are then smoothed over ``smooth_sigma`` frames
    (:func:`smooth_affine_alignment`) so depth does not pump, and depth = 1 / aligned disparity.
    """
    disparity = np.asarray(disparity, dtype=np.float64)
    if disparity.ndim != 3:
        raise ValidationError(f"disparity must be (F, H, W), got {disparity.shape}")
    if median_depth <= 0:
        raise ValidationError("median_depth must be positive")
    ok = np.isfinite(disparity) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(disparity))
    first = disparity[0][ok[0]]
    first_median = float(np.median(first)) if first.size else 0.0
    if first_median <= 0:
        raise ValidationError("the first frame's predicted disparity is not positive: cannot set a scale")
    scales = np.empty(disparity.shape[0])
    shifts = np.empty(disparity.shape[0])
    scales[0], shifts[0] = 1.0 / (median_depth * first_median), 0.0
    previous = scales[0] * disparity[0] + shifts[0]
    for index in range(1, disparity.shape[0]):
        both = ok[index] & ok[index - 1]
        if both.sum() < 2:
            scales[index], shifts[index] = scales[index - 1], shifts[index - 1]
        else:
            scales[index], shifts[index] = robust_scale_shift(disparity[index][both], previous[both],
                                                              outlier_sigma=outlier_sigma)
        previous = scales[index] * disparity[index] + shifts[index]
    aligned = smooth_affine_alignment(disparity, scales, shifts, smooth_sigma, ok)
    depth = 1.0 / np.maximum(aligned, MIN_INVERSE_DEPTH)
    return np.where(ok, depth, np.nan).astype(np.float32)
