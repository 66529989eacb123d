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
#: surface-aligned initialisation (:func:`gaussians_from_surface`): std-dev per half pixel step,
#: normal std-dev relative to the tangential one, initial opacity. Chosen on the room scene's
#: held-out cameras (docs/gaussians.md): scale 0.7 scored higher in the backend with 3DGS's 0.3 px^2
#: dilation but left gaps in Blender 5.3's Cycles (24.5 dB); 1.0 gives 30.4 dB in both.
SURFACE_SCALE_FACTOR = 1.0
SURFACE_THICKNESS = 0.1
SURFACE_OPACITY = 0.9
#: smallest std-dev of every Gaussian as a fraction of its largest, enforced at initialisation and
#: after every fitting step (:func:`floor_scale_ratio`). Blender 5.3's Cycles under-covers thin
#: discs (mean alpha 0.90 against 0.956 for the reference rasteriser on a demo frame with the
#: median ratio at 0.05); the floor keeps the fit to shapes Cycles renders as the backend does.
#: Chosen by the demo's native Cycles score, seen pixels: 20.45 dB / SSIM 0.615 without a floor,
#: 21.42 / 0.656 at 0.3, 21.71 / 0.702 at 0.6 (docs/gaussians.md, "Thickness floor").
MIN_SCALE_RATIO = 0.6


def floor_scale_ratio(log_scales: torch.Tensor, min_ratio: float = MIN_SCALE_RATIO) -> torch.Tensor:
    """``log_scales`` (N, 3) (natural log of the std-devs, metres) with every axis raised to at least
    ``min_ratio`` times the Gaussian's largest std-dev (0 = no floor, 1 = isotropic). Not in place."""
    if not 0.0 <= min_ratio <= 1.0:
        raise ValidationError(f"min_scale_ratio must be in [0, 1], got {min_ratio}")
    if min_ratio == 0.0 or log_scales.shape[0] == 0:
        return log_scales
    floor = log_scales.max(dim=-1, keepdim=True).values + float(np.log(min_ratio))
    return torch.maximum(log_scales, floor)


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


def rotation_to_quat(rotation: torch.Tensor) -> torch.Tensor:
    """(N, 4) unit wxyz quaternions of (N, 3, 3) rotation matrices (Shepperd's method, stable for all
    angles; the inverse of ``rasterize_torch.quat_to_rotmat``)."""
    m = rotation
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    candidates = torch.stack([
        torch.stack([1 + trace, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
        torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                     m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1),
        torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0],
                     1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], -1),
        torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                     1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
    ], dim=1)  # (N, 4 candidates, 4): each is 4 q_k q (k = w, x, y, z); use the one with largest q_k
    diagonal = torch.stack([1 + trace, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                            1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    best = diagonal.argmax(dim=1)
    quat = candidates[torch.arange(m.shape[0], device=m.device), best]
    quat = torch.nn.functional.normalize(quat, dim=-1)
    return torch.where(quat[:, :1] < 0, -quat, quat)  # w >= 0


def gaussians_from_surface(
    points: np.ndarray | torch.Tensor,
    colors: np.ndarray | torch.Tensor,
    tangent_u: np.ndarray | torch.Tensor,
    tangent_v: np.ndarray | torch.Tensor,
    *,
    opacity: float = SURFACE_OPACITY,
    scale_factor: float = SURFACE_SCALE_FACTOR,
    thickness: float = SURFACE_THICKNESS,
    min_scale_ratio: float = MIN_SCALE_RATIO,
    sh_degree: int = 0,
    device: torch.device | str | None = None,
) -> GaussianSet:
    """Flat, surface-aligned Gaussians on lifted pixels: one disc per point in its local tangent plane.

    - ``points`` (N, 3): world positions, metres; ``colors`` (N, 3) RGB in [0, 1] (as
      :func:`gaussians_from_points`).
    - ``tangent_u`` / ``tangent_v`` (N, 3): world vectors, metres, half the step to the neighbouring
      source pixel along image x / y on the same surface (``backend.geometry.lift_frames``): the
      parallelogram ``p + a t_u + b t_v``, ``|a|, |b| <= 1``, is the patch of surface the pixel saw,
      foreshortened as the depth gradient says (a fronto-parallel pixel has ``|t| = 0.5 z / f``).
    - The tangential covariance is ``scale_factor^2 (t_u t_u^T + t_v t_v^T)`` (a Gaussian of std-dev
      ``scale_factor * |t|`` along each tangent; its principal axes and std-devs come from the 2x2
      eigen-decomposition in the tangent plane); along the normal ``t_u x t_v`` the std-dev is
      ``thickness`` times the smaller tangential one, so seen from another angle the disc projects to
      the foreshortened patch instead of a blurred sphere.
    - ``min_scale_ratio``: every std-dev is then raised to at least this fraction of the largest
      (:func:`floor_scale_ratio`; 0 keeps the thin discs as they are).
    - ``opacity``: initial opacity in (0, 1) for every Gaussian.
    """
    means = _as_float_tensor("points", points, (3,), device)
    device = means.device
    rgb = _as_float_tensor("colors", colors, (3,), device)
    t_u = _as_float_tensor("tangent_u", tangent_u, (3,), device)
    t_v = _as_float_tensor("tangent_v", tangent_v, (3,), device)
    n = means.shape[0]
    if not (rgb.shape[0] == t_u.shape[0] == t_v.shape[0] == n):
        raise ValidationError(f"points, colors, tangent_u and tangent_v must have the same length, got {n}, "
                              f"{rgb.shape[0]}, {t_u.shape[0]}, {t_v.shape[0]}")
    if not scale_factor > 0.0 or not thickness > 0.0:
        raise ValidationError(f"scale_factor and thickness must be positive, got {scale_factor}, {thickness}")
    if not 0.0 < opacity < 1.0:
        raise ValidationError(f"initial opacity must be in (0, 1), got {opacity}")
    len_u = t_u.norm(dim=-1)
    if (len_u <= 0).any() or (t_v.norm(dim=-1) <= 0).any():
        raise ValidationError("every tangent must be non-zero (half a pixel step in world units)")
    e1 = t_u / len_u[:, None]
    along = (t_v * e1).sum(-1)
    v_perp = t_v - along[:, None] * e1
    len_perp = v_perp.norm(dim=-1)
    # parallel tangents (no area): fall back to the fronto-parallel square of the longer tangent
    flat = len_perp <= 1e-6 * torch.maximum(len_u, t_v.norm(dim=-1))
    e2_fallback = torch.nn.functional.normalize(torch.cross(e1, _least_aligned_axis(e1), dim=-1), dim=-1)
    e2 = torch.where(flat[:, None], e2_fallback, v_perp / len_perp.clamp_min(1e-30)[:, None])
    len_perp = torch.where(flat, torch.maximum(len_u, t_v.norm(dim=-1)), len_perp)
    # 2x2 covariance in the (e1, e2) basis: A A^T with A = [[|t_u|, t_v.e1], [0, |t_v_perp|]]
    m00 = len_u * len_u + along * along
    m01 = along * len_perp
    m11 = len_perp * len_perp
    theta = 0.5 * torch.atan2(2.0 * m01, m00 - m11)
    half_sum, half_diff = 0.5 * (m00 + m11), torch.sqrt((0.5 * (m00 - m11)) ** 2 + m01 * m01)
    sigma_1 = scale_factor * torch.sqrt(half_sum + half_diff)
    sigma_2 = scale_factor * torch.sqrt((half_sum - half_diff).clamp_min(0.0)).clamp_min(1e-3 * sigma_1)
    cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    axis_1 = cos * e1 + sin * e2
    axis_2 = -sin * e1 + cos * e2
    normal = torch.cross(axis_1, axis_2, dim=-1)
    rotation = torch.stack([axis_1, axis_2, normal], dim=-1)  # columns: local x, y, z in world
    log_scales = floor_scale_ratio(torch.log(torch.stack([sigma_1, sigma_2, thickness * sigma_2], dim=-1)),
                                   min_scale_ratio)
    k = sh_coeff_count(sh_degree)
    sh = torch.zeros(n, k, 3, device=device)
    sh[:, 0] = rgb_to_sh_dc(rgb.clamp(0.0, 1.0))
    return GaussianSet(
        means=means.clone(),
        log_scales=log_scales,
        quats=rotation_to_quat(rotation),
        logit_opacities=torch.full((n,), float(np.log(opacity / (1.0 - opacity))), device=device),
        sh=sh,
        sh_degree=sh_degree,
    )


def _least_aligned_axis(directions: torch.Tensor) -> torch.Tensor:
    """(N, 3) world axis least aligned with each unit direction (a safe cross-product partner)."""
    eye = torch.eye(3, device=directions.device, dtype=directions.dtype)
    return eye[directions.abs().argmin(dim=-1)]


def initial_gaussians(
    points: np.ndarray | torch.Tensor,
    colors: np.ndarray | torch.Tensor,
    radius: np.ndarray | torch.Tensor,
    tangent_u: np.ndarray | torch.Tensor | None = None,
    tangent_v: np.ndarray | torch.Tensor | None = None,
    *,
    sh_degree: int = 0,
    device: torch.device | str | None = None,
) -> GaussianSet:
    """The pipelines' starting Gaussians for lifted points: surface-aligned discs
    (:func:`gaussians_from_surface`) where the points carry their pixel tangents, else isotropic
    ones of std-dev ``radius`` (:func:`gaussians_from_points`). Units as in those functions."""
    if tangent_u is not None and tangent_v is not None:
        return gaussians_from_surface(points, colors, tangent_u, tangent_v, sh_degree=sh_degree, device=device)
    return gaussians_from_points(points, colors, radius, opacity=SURFACE_OPACITY, sh_degree=sh_degree,
                                 device=device)
