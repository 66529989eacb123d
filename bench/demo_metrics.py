"""Image quality figures for the demo: PSNR and SSIM on a pixel subset, the side-by-side picture.

All images are ``(H, W, 3)`` uint8 sRGB (or ``(F, H, W, 3)`` stacks), row 0 = top. Masks are
boolean ``(H, W)`` / ``(F, H, W)``, True = the pixel counts. Figures are pooled over every masked
pixel of every frame: PSNR from the mean squared error over those pixels (peak 255); SSIM
(Wang et al. 2004, Gaussian window sigma 1.5, K1 = 0.01, K2 = 0.03, per colour channel) computed on
the full frames and averaged over the masked pixels, so a pixel's score still looks at its
neighbourhood. A subset with no pixels gives ``None`` (shown as "n/a").
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from protocol.color import linear_to_srgb, srgb_to_linear

SSIM_SIGMA = 1.5
_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2


def over_black(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha sRGB RGBA uint8 frames (Blender's PNGs) composited over black in linear light,
    as Cycles and Blender's compositor do, uint8 sRGB RGB. Multiplying the sRGB values by alpha
    instead darkens every partly covered pixel (1.7 dB lower on a native-splat demo frame than the
    film's own premultiplied colour, which this matches to 49 dB)."""
    linear = srgb_to_linear(rgba[..., :3].astype(np.float32) / 255.0) * (rgba[..., 3:] / 255.0)
    return (linear_to_srgb(linear) * 255.0 + 0.5).astype(np.uint8)


def _as_stack(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    return images[None] if images.ndim == 3 else images


def _as_mask_stack(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones(shape[:3], bool)
    mask = np.asarray(mask, bool)
    mask = mask[None] if mask.ndim == 2 else mask
    if mask.shape != shape[:3]:
        raise ValueError(f"mask shape {mask.shape} does not match images {shape[:3]}")
    return mask


def masked_psnr(image: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """PSNR in dB of ``image`` against ``reference`` over the masked pixels (all pixels if no mask)."""
    image, reference = _as_stack(image).astype(np.float64), _as_stack(reference).astype(np.float64)
    if image.shape != reference.shape:
        raise ValueError(f"image {image.shape} and reference {reference.shape} differ in shape")
    mask = _as_mask_stack(mask, image.shape)
    if not mask.any():
        return None
    mse = float(((image - reference) ** 2)[mask].mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim_map(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM ``(H, W)`` of two ``(H, W, 3)`` images, averaged over the colour channels."""
    a, b = image.astype(np.float64), reference.astype(np.float64)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (0, 0), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2))
    return ssim.mean(axis=-1)


def masked_ssim(image: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Mean SSIM over the masked pixels of every frame (see the module docstring)."""
    image, reference = _as_stack(image), _as_stack(reference)
    if image.shape != reference.shape:
        raise ValueError(f"image {image.shape} and reference {reference.shape} differ in shape")
    mask = _as_mask_stack(mask, image.shape)
    if not mask.any():
        return None
    values = [ssim_map(a, b)[m] for a, b, m in zip(image, reference, mask)]
    return float(np.concatenate(values).mean())


def quality(image: np.ndarray, reference: np.ndarray, seen: np.ndarray) -> dict[str, float | None]:
    """PSNR/SSIM on all, seen (``seen`` True) and filled (``seen`` False) pixels, plus the fractions."""
    seen = np.asarray(seen, bool)
    out: dict[str, float | None] = {}
    for name, mask in (("all", None), ("seen", seen), ("filled", ~seen)):
        psnr = masked_psnr(image, reference, mask)
        ssim = masked_ssim(image, reference, mask)
        out[f"psnr_{name}"] = None if psnr is None else round(psnr, 3)
        out[f"ssim_{name}"] = None if ssim is None else round(ssim, 4)
    out["filled_fraction"] = round(float((~seen).mean()), 5)
    return out


def side_by_side(panels: list[tuple[str, np.ndarray]], scale: int = 3, gap: int = 4) -> np.ndarray:
    """Panels ``[(label, (H, W, 3) uint8), ...]`` next to each other, enlarged ``scale`` times
    (nearest neighbour, so pixels stay visible), each labelled in its top-left corner."""
    tiles = []
    for label, image in panels:
        tile = np.ascontiguousarray(np.repeat(np.repeat(image, scale, axis=0), scale, axis=1))
        font_scale = max(0.35, 0.0025 * tile.shape[1])
        origin = (6, int(22 * font_scale / 0.5))
        cv2.putText(tile, label, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, label, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    height = tiles[0].shape[0]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for tile in tiles:
        row += [tile, spacer]
    return np.concatenate(row[:-1], axis=1)
