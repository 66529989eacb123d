"""Scale and global disparity shift of relative video depth, recovered from known camera motion.

A relative depth network (Depth Anything V2) predicts affine-invariant inverse depth. After
:func:`backend.engines.depth_align.consistent_depth_from_disparity` every frame shares frame 0's
affine ambiguity: ``u_i = 1 / D_i ~= alpha / z_i + beta`` with one unknown scale ``alpha`` and one
unknown *disparity shift* ``beta`` for the whole clip. ``beta != 0`` bends the geometry (a 20 %
shift distorts depth by ~5 %) and no per-frame fit can see it. Camera motion can: with the source
cameras known, the true inverse depth ``v = s (u - b m)`` (``m`` = median of ``u``) is the one for
which points lifted from frame ``i`` land, in frame ``j``, at the depth frame ``j`` has there.

:func:`align_to_camera_motion` pairs frame 0 with up to ``MAX_PAIRS`` later frames that moved away
from it, samples pixels of frame 0, and minimises the mean of ``min(|log(z_reprojected / z_j)|, FAILED_RESIDUAL)`` over ``(s, b)``,
with frame ``j``'s own affine map fitted out for every candidate (per-frame network output has its
own scale and shift). Points that fail (behind the camera, outside frame ``j``) count as the cap,
so candidates stay comparable; occlusions and moving parts have bounded influence. The search
profiles the loss over a grid of shifts, each with its best level (golden section). The result is
accepted only when the minimum is well defined (the loss rises by ``SHARPNESS`` when the scale
halves or doubles); ``b`` stays 0 when the loss does not prefer another value. Every other frame
is then fitted to frame 0's corrected depth warped into its camera.

Conventions: planar z-depth in the cameras' units, OpenCV cameras (``K`` pixels, ``world_to_camera``
4x4), pixel centres at +0.5.
"""

from __future__ import annotations

import numpy as np

from backend.progress import CancelFn, check_cancel

SAMPLES_PER_FRAME = 1000
MAX_PAIRS = 8
PAIR_WINDOW = 12  # frames either side searched for a partner with the widest baseline
FAILED_RESIDUAL = 0.2  # |log depth ratio| cap, also charged to a point that cannot be checked
SHARPNESS = 0.1  # accept a fit only if halving or doubling its scale raises the loss by 10 %


def camera_baseline(world_to_camera: np.ndarray) -> float:
    """Largest distance between any camera centre and the first one (scene units)."""
    w2c = np.asarray(world_to_camera, dtype=np.float64)
    centres = -np.einsum("nji,nj->ni", w2c[:, :3, :3], w2c[:, :3, 3])
    return float(np.linalg.norm(centres - centres[0], axis=1).max())


def _pairs(centres: np.ndarray) -> list[tuple[int, int]]:
    """Up to ``MAX_PAIRS`` (0, j): frame 0 with partners spread over the next ``2 * PAIR_WINDOW`` frames
    that sit away from it (frame 0's scale and shift are measured; every other frame is fitted to it)."""
    n = len(centres)
    candidates = np.arange(1, min(n, 2 * PAIR_WINDOW + 1))
    candidates = candidates[np.linalg.norm(centres[candidates] - centres[0], axis=1) > 0]
    if candidates.size == 0:
        return []
    chosen = candidates[np.unique(np.linspace(0, candidates.size - 1, min(candidates.size, MAX_PAIRS)).round()
                                  .astype(int))]
    return [(0, int(j)) for j in chosen]


class _PairSamples:
    """Sampled pixels of frame i (their rays with unit z and ``u``) and frame j's ``u`` map and camera."""

    def __init__(self, u: np.ndarray, K: np.ndarray, w2c: np.ndarray, i: int, j: int,
                 rng: np.random.Generator) -> None:
        height, width = u.shape[1:]
        rows, cols = np.nonzero(u[i] > 0)
        if rows.size > SAMPLES_PER_FRAME:
            keep = rng.choice(rows.size, SAMPLES_PER_FRAME, replace=False)
            rows, cols = rows[keep], cols[keep]
        Kinv = np.linalg.inv(K[i])
        pixels = np.stack([cols + 0.5, rows + 0.5, np.ones(rows.size)], axis=0)
        self.rays = Kinv @ pixels  # (3, N), unit z
        self.u_i = u[i][rows, cols]
        relative = w2c[j] @ np.linalg.inv(w2c[i])
        self.R, self.t = relative[:3, :3], relative[:3, 3:4]
        self.K_j = K[j]
        self.u_j = u[j]
        self.width, self.height = width, height
        self.count = rows.size

    def profiled_residuals(self, scale: float, shift: float) -> np.ndarray:
        """``min(|log(z_reprojected / z_j)|, FAILED_RESIDUAL)`` per sample for frame i's candidate
        ``v = scale * (u - shift)``, with frame j's own affine map in inverse depth fitted (least squares,
        one trimmed refit) rather than assumed equal: per-frame network output carries its own scale and
        shift. Samples that fail (behind camera j, outside its image, unknown depth) get the cap."""
        out = np.full(self.count, FAILED_RESIDUAL)
        v_i = scale * (self.u_i - shift)
        ok = v_i > 0
        cam_j = self.R @ (self.rays[:, ok] / v_i[ok]) + self.t
        z = cam_j[2]
        front = z > 1e-9
        proj = self.K_j @ cam_j[:, front]
        x, y = proj[0] / proj[2] - 0.5, proj[1] / proj[2] - 0.5
        inside = (x >= 0) & (y >= 0) & (x <= self.width - 1) & (y <= self.height - 1)
        x0 = np.clip(np.floor(x).astype(int), 0, self.width - 2)
        y0 = np.clip(np.floor(y).astype(int), 0, self.height - 2)
        fx, fy = x - x0, y - y0
        corners = np.stack([self.u_j[y0, x0], self.u_j[y0, x0 + 1], self.u_j[y0 + 1, x0], self.u_j[y0 + 1, x0 + 1]])
        good = inside & (corners > 0).all(axis=0)
        if good.sum() < 16:
            return out
        u_j = ((1 - fy) * ((1 - fx) * corners[0] + fx * corners[1]) + fy * ((1 - fx) * corners[2] + fx * corners[3]))
        target = 1.0 / z[front]
        design = np.stack([u_j[good], np.ones(int(good.sum()))], axis=1)
        keep = np.ones(int(good.sum()), bool)
        for _ in range(2):
            solution, *_ = np.linalg.lstsq(design[keep], target[good][keep], rcond=None)
            fitted = design @ solution
            error = np.abs(np.log(np.maximum(fitted, 1e-12) / target[good]))
            keep = error <= max(3.0 * float(np.median(error)), 1e-9)
            if keep.sum() < 16:
                break
        res = np.full(good.shape, FAILED_RESIDUAL)
        res[good] = np.where(fitted > 0, np.minimum(error, FAILED_RESIDUAL), FAILED_RESIDUAL)
        out[np.flatnonzero(ok)[front]] = res
        return out


def _loss(samples: list[_PairSamples], scale: float, shift: float) -> float:
    """Mean capped residual: bounded influence of occlusions and moving parts, every point counted."""
    return float(np.concatenate([s.profiled_residuals(scale, shift) for s in samples]).mean())


def _loss_at(samples: list[_PairSamples], log_level: float, shift: float) -> float:
    """Loss of ``v = exp(log_level) * (u - shift) / (1 - shift)``: the level is the inverse depth at the
    median, so changing the shift does not move the best level (the two are searched independently)."""
    return _loss(samples, float(np.exp(log_level)) / (1.0 - shift), shift)


def _best_level(samples: list[_PairSamples], shift: float, low: float, high: float,
                cancel: CancelFn | None, iterations: int = 12) -> tuple[float, float]:
    """``(loss, log level)`` minimising over ``[low, high]`` by golden-section search."""
    check_cancel(cancel)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _loss_at(samples, c, shift), _loss_at(samples, d, shift)
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _loss_at(samples, c, shift)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _loss_at(samples, d, shift)
    return (fc, c) if fc < fd else (fd, d)


def _global_fit(u_norm: np.ndarray, K: np.ndarray, w2c: np.ndarray, pairs: list[tuple[int, int]],
                baseline: float, seed: int, cancel: CancelFn | None) -> tuple[float, float, float, float]:
    """``(loss, scale, shift, loss at half/double scale)`` of ``v = scale * (u_norm - shift)``.

    The level (inverse depth at the median, log) is first found on a coarse grid at shift 0; then the
    loss is profiled over a grid of shifts, each with its best level (golden section within a factor
    e^1.5 of the coarse one), and the best shift refined on a finer grid around it.
    """
    rng = np.random.default_rng(seed)
    samples = [_PairSamples(u_norm, K, w2c, i, j, rng) for i, j in pairs]
    low = float(np.percentile(u_norm[u_norm > 0], 1.0))
    top = min(0.95, 0.98 * low)
    # levels for scenes 0.001 .. 1000 baselines away
    levels = np.log(1.0 / baseline) + np.arange(-7.0, 7.01, 0.25)
    level0 = levels[int(np.argmin([_loss_at(samples, float(level), 0.0) for level in levels]))]
    shifts = np.linspace(-1.0, top, 25)
    profile = [(*_best_level(samples, float(b), level0 - 1.5, level0 + 1.5, cancel), float(b)) for b in shifts]
    loss, level, shift = min(profile)
    step = shifts[1] - shifts[0]
    fine = np.clip(shift + np.linspace(-step, step, 9), -1.0, top)
    loss, level, shift = min([(*_best_level(samples, float(b), level - 0.5, level + 0.5, cancel), float(b))
                              for b in fine] + [(loss, level, shift)])
    zero_loss, zero_level = _best_level(samples, 0.0, level0 - 1.5, level0 + 1.5, cancel)
    if zero_loss <= loss + 1e-4:  # the shift stays 0 unless the loss clearly prefers another
        loss, level, shift = zero_loss, zero_level, 0.0
    scale = float(np.exp(level)) / (1.0 - shift)
    sharp = min(_loss(samples, scale * 2.0, shift), _loss(samples, scale / 2.0, shift))
    return loss, scale, shift, sharp


def warp_depth(depth_j: np.ndarray, K_j: np.ndarray, w2c_j: np.ndarray, K_i: np.ndarray, w2c_i: np.ndarray
               ) -> np.ndarray:
    """Planar depth of frame j's pixels seen from camera i (nearest pixel, z-buffered; 0 = nothing)."""
    height, width = depth_j.shape
    rows, cols = np.nonzero(depth_j > 0)
    z = depth_j[rows, cols]
    cam_j = (np.linalg.inv(K_j) @ np.stack([cols + 0.5, rows + 0.5, np.ones(rows.size)])) * z
    relative = w2c_i @ np.linalg.inv(w2c_j)
    cam_i = relative[:3, :3] @ cam_j + relative[:3, 3:4]
    front = cam_i[2] > 1e-9
    proj = K_i @ cam_i[:, front]
    x = np.floor(proj[0] / proj[2]).astype(np.int64)
    y = np.floor(proj[1] / proj[2]).astype(np.int64)
    inside = (x >= 0) & (y >= 0) & (x < width) & (y < height)
    out = np.full(height * width, np.inf)
    np.minimum.at(out, y[inside] * width + x[inside], cam_i[2][front][inside])
    return np.where(np.isfinite(out), out, 0.0).reshape(height, width)


def denoised(u: np.ndarray) -> np.ndarray:
    """``u (F,H,W)`` through a 5x5 median filter per frame (0 stays 0): per-pixel network noise would
    otherwise swamp the small loss differences the shift makes (edges are kept, unlike a blur).
    Measured on ``bench/depth.py`` with 1 % per-pixel noise: 6.4 % error unfiltered, 1.1 % filtered;
    unchanged (0.3 %) without noise."""
    import cv2

    filtered = np.stack([cv2.medianBlur(frame.astype(np.float32), 5) for frame in u])
    return np.where(u > 0, filtered, 0.0)


def _fit_frames_to_first(u: np.ndarray, first_fit: tuple[float, float], K: np.ndarray, w2c: np.ndarray,
                         cancel: CancelFn | None) -> np.ndarray:
    """Depth of every frame from its inverse depth ``u`` by a per-frame ``scale * u + shift``: frame 0 by
    ``first_fit``, frame ``i`` robustly fitted to frame 0's corrected depth warped into camera ``i`` (where
    frame 0 sees nothing there: frame ``i - 1``'s, already fitted; with no overlap at all, the previous
    frame's fit). Every frame is fitted to the same geometry, so the result does not pump; smoothing
    these fits again would bias the clip's ends wherever the camera's depth trends (measured: 0.3 % ->
    0.7 % error on ``bench/depth.py``), so the temporal smoothing stays in the frame-to-frame stage."""
    from backend.engines.depth_align import MIN_INVERSE_DEPTH, robust_scale_shift

    def depth_of(index: int, scale: float, shift: float) -> np.ndarray:
        inverse = scale * u[index] + shift
        return np.where((u[index] > 0) & (inverse > MIN_INVERSE_DEPTH), 1.0 / np.maximum(inverse, 1e-12), 0.0)

    num = len(u)
    scales, shifts = np.full(num, first_fit[0]), np.full(num, first_fit[1])
    fitted = [depth_of(0, *first_fit)]
    for i in range(1, num):
        check_cancel(cancel)
        reference = warp_depth(fitted[0], K[0], w2c[0], K[i], w2c[i])
        previous = warp_depth(fitted[i - 1], K[i - 1], w2c[i - 1], K[i], w2c[i])
        reference = np.where(reference > 0, reference, previous)
        both = (reference > 0) & (u[i] > 0)
        if both.sum() >= 64:
            scales[i], shifts[i] = robust_scale_shift(u[i][both], 1.0 / reference[both])
        else:  # nothing to compare with: keep the previous frame's fit
            scales[i], shifts[i] = scales[i - 1], shifts[i - 1]
        fitted.append(depth_of(i, scales[i], shifts[i]))
    return np.stack(fitted)


def align_to_camera_motion(depth: np.ndarray, K: np.ndarray, world_to_camera: np.ndarray, *,
                           seed: int = 0, cancel: CancelFn | None = None) -> tuple[np.ndarray, dict]:
    """Put a consistent-scale relative depth sequence into the cameras' scale with its shift recovered.

    ``depth (F,H,W)`` planar z (0 = unknown) sharing (roughly) one affine inverse-depth ambiguity;
    ``K (F,3,3)``, ``world_to_camera (F,4,4)`` OpenCV. Frame 0's scale and shift come from the camera
    motion (module docstring); every frame is then fitted to frame 0's corrected depth warped into its
    camera, which also removes what the same-pixel frame-to-frame alignment got wrong under camera
    motion (:func:`_fit_frames_to_first`). Returns ``(depth, info)``: the
    corrected depth (float32, 0 where the corrected inverse depth is not positive) and ``{"accepted",
    "scale", "shift", "loss", "reason", "pairs"}`` where ``shift`` is frame 0's disparity shift removed,
    as a fraction of its median inverse depth. When not accepted the input depth is returned unchanged.
    """
    depth = np.asarray(depth, dtype=np.float64)
    K = np.ascontiguousarray(np.broadcast_to(np.asarray(K, dtype=np.float64), (len(depth), 3, 3)))
    w2c = np.ascontiguousarray(np.broadcast_to(np.asarray(world_to_camera, dtype=np.float64), (len(depth), 4, 4)))
    valid = np.isfinite(depth) & (depth > 0)
    info: dict = {"accepted": False, "scale": 1.0, "shift": 0.0, "loss": None, "reason": "", "pairs": []}
    if not valid[0].any():
        info["reason"] = "frame 0 has no valid depth"
        return depth.astype(np.float32), info
    centres = -np.einsum("nji,nj->ni", w2c[:, :3, :3], w2c[:, :3, 3])
    pairs = _pairs(centres)
    info["pairs"] = pairs
    if not pairs:
        info["reason"] = "the camera does not move"
        return depth.astype(np.float32), info
    baseline = max(float(np.linalg.norm(centres[j] - centres[i])) for i, j in pairs)
    u = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0)
    median_u = float(np.median(u[0][u[0] > 0]))
    u_norm = u / median_u  # shift in units of frame 0's median inverse depth
    loss, scale, shift, sharp = _global_fit(denoised(u_norm), K, w2c, pairs, baseline, seed, cancel)
    info.update(loss=loss, scale=scale / median_u, shift=shift)
    if not sharp - loss > SHARPNESS * loss:
        info["reason"] = f"the fit is flat in scale (loss {loss:.3f} vs {sharp:.3f} at half/double scale)"
        return depth.astype(np.float32), info
    info["accepted"] = True
    # frame 0: v = scale * (u / median_u - shift) = (scale / median_u) * u - scale * shift
    aligned = _fit_frames_to_first(u, (scale / median_u, -scale * shift), K, w2c, cancel)
    return aligned.astype(np.float32), info
