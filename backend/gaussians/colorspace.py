"""sRGB <-> linear light on torch tensors, differentiable (the numpy versions are in ``protocol.color``).

Used by the rasterisers' ``linear_light`` mode: 3DGS colours are sRGB-encoded, and Blender's Cycles
converts them to scene-linear and composites the splats in linear light before the view transform
("Standard") encodes the pixel to sRGB again.
"""

from __future__ import annotations

import torch

_SRGB_KNEE = 0.04045
_LINEAR_KNEE = 0.0031308


def srgb_to_linear(values: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values (clamped to [0, 1]) -> linear light (IEC 61966-2-1); gradients finite everywhere."""
    v = values.clamp(0.0, 1.0)
    curve = ((v.clamp_min(_SRGB_KNEE) + 0.055) / 1.055) ** 2.4
    return torch.where(v <= _SRGB_KNEE, v / 12.92, curve)


def linear_to_srgb(values: torch.Tensor) -> torch.Tensor:
    """Linear light (clamped to [0, 1]) -> sRGB-encoded values; inverse of :func:`srgb_to_linear`."""
    v = values.clamp(0.0, 1.0)
    curve = 1.055 * v.clamp_min(_LINEAR_KNEE) ** (1.0 / 2.4) - 0.055
    return torch.where(v <= _LINEAR_KNEE, v * 12.92, curve)
