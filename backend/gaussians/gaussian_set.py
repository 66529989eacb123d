"""A typed set of 3D Gaussians and its initialisation from coloured points.

Parameters are stored *pre-activation*, exactly as 3DGS / gsplat / the Inria PLY layout keep them:

- ``means`` (N, 3): centres in world units (metres), same world frame as the cameras'
  ``world_to_camera`` (OpenCV cameras, see ``protocol.camera``).
- ``log_scales`` (N, 3): natural log of the per-axis standard deviations (metres).
- ``quats`` (N, 4): rotation quaternions, **wxyz** order, not necessarily normalised.
- ``logit_opacities`` (N,): ``sigmoid`` gives opacity in (0, 1).
- ``sh`` (N, K, 3): real spherical-harmonics coefficients per colour channel, K = (degree + 1)^2;
  ``sh[:, 0]`` is the DC term, colour = ``SH_C0 * sh[:, 0] + 0.5`` (before clamping) for degree 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from protocol.errors import ValidationError

SH_C0 = 0.28209479177387814
MAX_SH_DEGREE = 3


def sh_coeff_count(degree: int) -> int:
    """Number of SH coefficients per channel for ``degree`` (0..3): ``(degree + 1) ** 2``."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValidationError(f"SH degree must be 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """DC SH coefficient that reproduces colour ``rgb`` in [0, 1] (inverse of ``SH_C0 * c + 0.5``)."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    """View-independent colour of the DC term, clamped to [0, 1]."""
    return (dc * SH_C0 + 0.5).clamp(0.0, 1.0)


@dataclass
class GaussianSet:
    """N anisotropic 3D Gaussians with pre-activation parameters (see module docstring)."""

    means: torch.Tensor
    log_scales: torch.Tensor
    quats: torch.Tensor
    logit_opacities: torch.Tensor
    sh: torch.Tensor
    sh_degree: int = 0

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        k = sh_coeff_count(self.sh_degree)
        expected = {
            "means": (n, 3),
            "log_scales": (n, 3),
            "quats": (n, 4),
            "logit_opacities": (n,),
            "sh": (n, k, 3),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise ValidationError(f"GaussianSet.{name} must be a torch tensor, got {type(value).__name__}")
            if tuple(value.shape) != shape or n < 0:
                raise ValidationError(
                    f"GaussianSet.{name} must have shape {shape} for N={n}, SH degree {self.sh_degree}; "
                    f"got {tuple(value.shape)}"
                )

    # -- sizes ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def device(self) -> torch.device:
        return self.means.device

    # -- activated accessors -------------------------------------------------------------------
    @property
    def scales(self) -> torch.Tensor:
        """(N, 3) standard deviations along the Gaussian's local axes, metres."""
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> torch.Tensor:
        """(N,) opacity in (0, 1)."""
        return torch.sigmoid(self.logit_opacities)

    @property
    def rotations(self) -> torch.Tensor:
        """(N, 4) unit quaternions, wxyz."""
        return torch.nn.functional.normalize(self.quats, dim=-1)

    @property
    def base_colors(self) -> torch.Tensor:
        """(N, 3) view-independent colour from the DC term, in [0, 1]."""
        return sh_dc_to_rgb(self.sh[:, 0])

    # -- transforms ----------------------------------------------------------------------------
    def _map(self, fn) -> GaussianSet:
        return GaussianSet(
            means=fn(self.means),
            log_scales=fn(self.log_scales),
            quats=fn(self.quats),
            logit_opacities=fn(self.logit_opacities),
            sh=fn(self.sh),
            sh_degree=self.sh_degree,
        )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> GaussianSet:
        """Copy to ``device`` (and ``dtype`` for every tensor when given)."""
        return self._map(lambda t: t.to(device=device, dtype=dtype or t.dtype))

    def detach(self) -> GaussianSet:
        return self._map(lambda t: t.detach())

    def clone(self) -> GaussianSet:
        return self._map(lambda t: t.clone())

    def masked(self, keep: torch.Tensor) -> GaussianSet:
        """Subset selected by a boolean (N,) mask or an index tensor."""
        if keep.dtype == torch.bool and keep.shape != (len(self),):
            raise ValidationError(f"mask must have shape ({len(self)},), got {tuple(keep.shape)}")
        return self._map(lambda t: t[keep])

    def pruned(self, min_opacity: float) -> GaussianSet:
        """Drop Gaussians whose activated opacity is below ``min_opacity``."""
        return self.masked(self.opacities >= min_opacity)

    def with_sh_degree(self, degree: int) -> GaussianSet:
        """Same Gaussians with SH truncated or zero-padded to ``degree``."""
        k = sh_coeff_count(degree)
        if k <= self.sh.shape[1]:
            sh = self.sh[:, :k]
        else:
            pad = self.sh.new_zeros(len(self), k - self.sh.shape[1], 3)
            sh = torch.cat([self.sh, pad], dim=1)
        return GaussianSet(self.means, self.log_scales, self.quats, self.logit_opacities, sh, degree)

    @staticmethod
    def concatenate(sets: Sequence[GaussianSet]) -> GaussianSet:
        """Concatenate sets; SH degrees are raised to the largest one (zero-padded)."""
        if len(sets) == 0:
            raise ValidationError("need at least one GaussianSet to concatenate")
        degree = max(s.sh_degree for s in sets)
        sets = [s.with_sh_degree(degree) for s in sets]
        return GaussianSet(
            means=torch.cat([s.means for s in sets]),
            log_scales=torch.cat([s.log_scales for s in sets]),
            quats=torch.cat([s.quats for s in sets]),
            logit_opacities=torch.cat([s.logit_opacities for s in sets]),
            sh=torch.cat([s.sh for s in sets]),
            sh_degree=degree,
        )

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """Plain dict of CPU tensors (for ``torch.save``) plus ``sh_degree``."""
        state: dict[str, torch.Tensor | int] = {
            f.name: getattr(self, f.name).detach().cpu() for f in fields(self) if f.name != "sh_degree"
        }
        state["sh_degree"] = int(self.sh_degree)
        return state

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | str = "cpu") -> GaussianSet:
        try:
            return cls(
                means=torch.as_tensor(state["means"], device=device),
                log_scales=torch.as_tensor(state["log_scales"], device=device),
                quats=torch.as_tensor(state["quats"], device=device),
                logit_opacities=torch.as_tensor(state["logit_opacities"], device=device),
                sh=torch.as_tensor(state["sh"], device=device),
                sh_degree=int(state["sh_degree"]),
            )
        except KeyError as exc:
            raise ValidationError(f"Gaussian state is missing the field {exc}") from exc

    @classmethod
    def empty(cls, sh_degree: int = 0, device: torch.device | str = "cpu") -> GaussianSet:
        k = sh_coeff_count(sh_degree)
        z = torch.zeros
        return cls(z(0, 3, device=device), z(0, 3, device=device), z(0, 4, device=device),
                   z(0, device=device), z(0, k, 3, device=device), sh_degree)


def _as_float_tensor(name: str, value: np.ndarray | torch.Tensor, shape_tail: tuple[int, ...],
                     device: torch.device | str | None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    t = t.to(device=device, dtype=torch.float32) if device is not None else t.to(torch.float32)
    if t.ndim != 1 + len(shape_tail) or tuple(t.shape[1:]) != shape_tail:
        raise ValidationError(f"{name} must have shape (N{''.join(', ' + str(s) for s in shape_tail)}), "
                              f"got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValidationError(f"{name} contains NaN or infinity")
    return t


def gaussians_from_points(
    points: np.ndarray | torch.Tensor,
    colors: np.ndarray | torch.Tensor,
    radius: np.ndarray | torch.Tensor,
    *,
    opacity: float = 0.9,
    sh_degree: int = 0,
    scale_factor: float = 1.0,
    device: torch.device | str | None = None,
) -> GaussianSet:
    """Isotropic Gaussians on coloured points, one per point.

    - ``points`` (N, 3): world positions, metres.
    - ``colors`` (N, 3): RGB in [0, 1] in the encoding of the images the set is fitted to (the
      pipelines fit sRGB-encoded frames; USD export converts to linear); stored as the SH DC term.
    - ``radius`` (N,): each point's footprint radius in world units; ``backend.geometry`` lifts
      pixels with ``radius = 0.5 * depth / focal`` (half the side of the source pixel at that depth).
      The standard deviation on all three axes is ``scale_factor * radius``: with the default 1.0 a
      Gaussian seen from its source camera has a 0.5 px std-dev (0.74 px after the 0.3 px^2
      dilation), so neighbouring pixels' Gaussians blend without gaps.
    - ``opacity``: initial opacity in (0, 1) for every Gaussian.
    """
    means = _as_float_tensor("points", points, (3,), device)
    device = means.device
    rgb = _as_float_tensor("colors", colors, (3,), device)
    r = _as_float_tensor("radius", radius, (), device)
    n = means.shape[0]
    if rgb.shape[0] != n or r.shape[0] != n:
        raise ValidationError(f"points, colors and radius must have the same length, got {n}, "
                              f"{rgb.shape[0]}, {r.shape[0]}")
    if (r <= 0).any():
        raise ValidationError("every point radius must be positive (footprint in world units)")
    if not scale_factor > 0.0:
        raise ValidationError(f"scale_factor must be positive, got {scale_factor}")
    if not 0.0 < opacity < 1.0:
        raise ValidationError(f"initial opacity must be in (0, 1), got {opacity}")
    k = sh_coeff_count(sh_degree)
    sh = torch.zeros(n, k, 3, device=device)
    sh[:, 0] = rgb_to_sh_dc(rgb.clamp(0.0, 1.0))
    quats = torch.zeros(n, 4, device=device)
    quats[:, 0] = 1.0
    return GaussianSet(
        means=means.clone(),
        log_scales=torch.log(r * scale_factor).unsqueeze(1).repeat(1, 3),
        quats=quats,
        logit_opacities=torch.full((n,), float(np.log(opacity / (1.0 - opacity))), device=device),
        sh=sh,
        sh_degree=sh_degree,
    )
