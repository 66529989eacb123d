"""Composite training masks for the inpainting LoRA (EasyCreator "composite masks").

Polarity: every mask here is a *hole* mask, ``True`` = the model must generate this pixel
(the complement of a visibility mask, where ``True`` = seen). Shapes are ``(F,H,W)`` bool.

- point-cloud mask: the holes of a double-reprojected video, ``~M''``;
- editing mask: random region sequences (moving, turning, breathing ellipses) whose first frame is
  empty, so the untouched first frame guides the edit;
- union: both at once.
Every random choice comes from a caller's ``torch.Generator``: the same seed gives the same masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from protocol.errors import ValidationError

MASK_KINDS: tuple[str, ...] = ("point_cloud", "editing", "union")


@dataclass
class TrainingMask:
    """One sampled training mask: ``kind`` in :data:`MASK_KINDS`, ``hole (F,H,W)`` bool (True = generate)."""

    kind: str
    hole: torch.Tensor

    @property
    def visibility(self) -> torch.Tensor:
        """``(F,H,W)`` bool, True = kept from the input (the model's conditioning pixels)."""
        return ~self.hole


def random_editing_masks(
    num_frames: int,
    height: int,
    width: int,
    generator: torch.Generator,
    *,
    max_regions: int = 3,
    min_size: float = 0.08,
    max_size: float = 0.3,
    max_speed: float = 0.02,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random moving-ellipse region sequences, ``(F,H,W)`` bool hole mask with frame 0 all False.

    Each of 1..``max_regions`` ellipses has semi-axes in ``[min_size, max_size] * min(H, W)`` pixels,
    moves with a constant velocity of up to ``max_speed * min(H, W)`` pixels per frame, turns and
    pulses its size smoothly. Random numbers are drawn on the CPU from ``generator``.
    """
    if num_frames < 1 or height < 1 or width < 1 or max_regions < 1:
        raise ValidationError("editing masks need at least one frame, one pixel and one region")
    if not 0 < min_size <= max_size:
        raise ValidationError(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
    side = float(min(height, width))

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    n = int(torch.randint(1, max_regions + 1, (1,), generator=generator))
    centre0 = uniform(n, 2) * torch.tensor([width, height], dtype=torch.float32)
    velocity = uniform(n, 2, low=-1.0, high=1.0) * max_speed * side
    axes = uniform(n, 2, low=min_size, high=max_size) * side
    angle0 = uniform(n, high=math.pi)
    spin = uniform(n, low=-0.05, high=0.05)
    pulse_amp = uniform(n, high=0.3)
    pulse_freq = uniform(n, low=0.05, high=0.3)
    t = torch.arange(num_frames, dtype=torch.float32)[:, None]  # (F,1)
    centre = centre0[None] + velocity[None] * t[..., None]  # (F,n,2)
    angle = angle0[None] + spin[None] * t  # (F,n)
    scale = 1.0 + pulse_amp[None] * torch.sin(pulse_freq[None] * t)  # (F,n)
    ys = torch.arange(height, dtype=torch.float32, device=device) + 0.5
    xs = torch.arange(width, dtype=torch.float32, device=device) + 0.5
    centre, angle, scale, axes = (x.to(device) for x in (centre, angle, scale, axes))
    dx = xs[None, None, None, :] - centre[..., 0, None, None]  # (F,n,1,W)
    dy = ys[None, None, :, None] - centre[..., 1, None, None]  # (F,n,H,1)
    cos, sin = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
    along = (dx * cos + dy * sin) / (axes[None, :, 0, None, None] * scale[..., None, None])
    across = (-dx * sin + dy * cos) / (axes[None, :, 1, None, None] * scale[..., None, None])
    hole = ((along * along + across * across) <= 1.0).any(dim=1)
    hole[0] = False
    return hole


def sample_training_mask(
    visibility: torch.Tensor,
    generator: torch.Generator,
    *,
    probabilities: tuple[float, float, float] = (0.4, 0.3, 0.3),
    **editing_options,
) -> TrainingMask:
    """Choose point-cloud, editing or union mask for one training instance.

    ``visibility (F,H,W)`` bool is the double-reprojection mask M'' (True = seen); ``probabilities``
    weight the kinds in :data:`MASK_KINDS` order. ``editing_options`` go to :func:`random_editing_masks`.
    """
    if visibility.ndim != 3 or visibility.dtype != torch.bool:
        raise ValidationError(f"visibility must be a (F,H,W) bool tensor, got {tuple(visibility.shape)} "
                              f"{visibility.dtype}")
    weights = torch.tensor(probabilities, dtype=torch.float64)
    if weights.shape != (3,) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
        raise ValidationError(f"probabilities must be three non-negative weights, got {probabilities}")
    kind = MASK_KINDS[int(torch.multinomial(weights, 1, generator=generator))]
    point_cloud_hole = ~visibility
    if kind == "point_cloud":
        return TrainingMask(kind, point_cloud_hole)
    num_frames, height, width = visibility.shape
    editing = random_editing_masks(num_frames, height, width, generator, device=visibility.device,
                                   **editing_options)
    if kind == "editing":
        return TrainingMask(kind, editing)
    return TrainingMask(kind, editing | point_cloud_hole)
