"""Fit one frame's Gaussians to several views at once (source frame + generated views).

Loss per view: ``(1 - lambda) * L1 + lambda * (1 - SSIM)`` with lambda = 0.2 (3DGS), optionally
weighted per pixel (e.g. 0 where a generated view is unreliable). Adam with per-parameter learning
rates (see :class:`FitConfig`; the means' rate is multiplied by the scene scale). Every
``prune_interval`` steps Gaussians with opacity below ``prune_opacity`` are removed together with
their Adam state. After every step each Gaussian's std-devs are projected back to at least
``min_scale_ratio`` times its largest (:func:`floor_scale_ratio`; also applied to the input set).
No densification: the lifted point cloud already gives one Gaussian per pixel.

After the Adam steps the colours are solved in closed form for the fitted geometry
(:mod:`.color_solve`, ``color_solve_iterations`` conjugate-gradient steps, SH degree 0 only): a few
CPU steps move the geometry but leave the colours near the blurred point colours they started from.
``iterations = 0`` changes nothing (an evaluation of the given set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.camera import Camera
from protocol.errors import ValidationError

from .color_solve import DEFAULT_ITERATIONS, DEFAULT_RIDGE, solve_colors
from .gaussian_set import MIN_SCALE_RATIO, GaussianSet, floor_scale_ratio
from .losses import photometric_loss, psnr
from .rasterize import Backend, rasterize
from .rasterize_torch import CYCLES_IMAGE, ImageFormation

PARAM_NAMES = ("means", "log_scales", "quats", "logit_opacities", "sh_dc", "sh_rest")


@dataclass
class FitView:
    """One supervising view: ``image`` (H, W, 3) float in [0, 1], its camera, optional (H, W) weight."""

    image: torch.Tensor | np.ndarray
    camera: Camera
    weight: torch.Tensor | np.ndarray | None = None


@dataclass
class FitConfig:
    """Optimiser settings. Learning rates are per step (Adam); ``lr_means`` is scaled by the scene
    scale (median distance of the Gaussians from the mean camera centre, metres) unless
    ``means_lr_scale`` is given. Defaults are 3DGS's except the SH rates (4x: 1e-2 DC, 5e-4 rest),
    tuned for short per-frame fits (100-300 steps) from a close initialisation: on the two-view test
    scene 100 steps reach 39 dB instead of 32 dB with 3DGS's 2.5e-3 (which assumes 30k steps)."""

    iterations: int = 300
    lr_means: float = 1.6e-4
    lr_log_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh_dc: float = 1e-2
    lr_sh_rest: float = 1e-2 / 20.0
    means_lr_scale: float | None = None
    ssim_lambda: float = 0.2
    prune_interval: int = 100
    prune_opacity: float = 0.005
    views_per_step: int | None = None  # None = every view every step
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    backend: Backend = "auto"
    # what the Gaussians are fitted for: Blender's Cycles (pixel filter, linear-light compositing)
    image: ImageFormation = CYCLES_IMAGE
    # smallest std-dev / largest, kept after every step (0 = free): Cycles under-covers thinner ones
    min_scale_ratio: float = MIN_SCALE_RATIO
    # conjugate-gradient steps of the closed-form colour solve after the Adam steps (0 = none) and its
    # ridge (.color_solve); only for SH degree 0 (view-independent colour), skipped for higher degrees
    color_solve_iterations: int = DEFAULT_ITERATIONS
    color_solve_ridge: float = DEFAULT_RIDGE
    seed: int = 0


@dataclass
class FitResult:
    """Fitted Gaussians (detached), loss per step, final PSNR (dB) per view; ``survivors``: for each
    output Gaussian its row in the input set (pruning removes rows)."""

    gaussians: GaussianSet
    losses: list[float] = field(default_factory=list)
    psnr_per_view: list[float] = field(default_factory=list)
    pruned: int = 0
    survivors: torch.Tensor | None = None


def _as_view(view: FitView | tuple) -> FitView:
    if isinstance(view, FitView):
        return view
    if isinstance(view, tuple) and len(view) in (2, 3):
        return FitView(*view)
    raise ValidationError("a view must be FitView(image, camera, weight) or a tuple (image, camera[, weight])")


def _prepare_views(views: Sequence[FitView | tuple], device: torch.device) -> list[tuple]:
    if len(views) == 0:
        raise ValidationError("fitting needs at least one view")
    prepared = []
    for i, raw in enumerate(views):
        view = _as_view(raw)
        cam = view.camera
        image = torch.as_tensor(np.asarray(view.image) if not isinstance(view.image, torch.Tensor)
                                else view.image).to(device=device, dtype=torch.float32)
        if tuple(image.shape) != (cam.height, cam.width, 3):
            raise ValidationError(f"view {i}: image shape {tuple(image.shape)} does not match its camera "
                                  f"({cam.height}, {cam.width}, 3)")
        if not torch.isfinite(image).all():
            raise ValidationError(f"view {i}: image contains NaN or infinity")
        weight = None
        if view.weight is not None:
            weight = torch.as_tensor(np.asarray(view.weight) if not isinstance(view.weight, torch.Tensor)
                                     else view.weight).to(device=device, dtype=torch.float32)
            if tuple(weight.shape) != (cam.height, cam.width):
                raise ValidationError(f"view {i}: weight mask shape {tuple(weight.shape)} must be "
                                      f"({cam.height}, {cam.width})")
        prepared.append((image, cam, weight))
    return prepared


def _scene_scale(gaussians: GaussianSet, cameras: Sequence[Camera]) -> float:
    centers = torch.as_tensor(np.stack([c.center for c in cameras]), dtype=torch.float32)
    mean_center = centers.mean(dim=0).to(gaussians.device)
    if len(gaussians) == 0:
        return 1.0
    return max(float((gaussians.means.detach() - mean_center).norm(dim=1).median()), 1e-3)


class _Trainable:
    """Leaf tensors + Adam for one GaussianSet; supports pruning with optimiser-state surgery."""

    def __init__(self, gaussians: GaussianSet, config: FitConfig, scene_scale: float) -> None:
        g = gaussians.detach()
        self.sh_degree = g.sh_degree
        tensors = {
            "means": g.means, "log_scales": g.log_scales, "quats": g.quats,
            "logit_opacities": g.logit_opacities, "sh_dc": g.sh[:, :1], "sh_rest": g.sh[:, 1:],
        }
        self.params = {k: v.clone().contiguous().requires_grad_(True) for k, v in tensors.items()}
        lrs = {
            "means": config.lr_means * (config.means_lr_scale or scene_scale),
            "log_scales": config.lr_log_scales, "quats": config.lr_quats,
            "logit_opacities": config.lr_opacities, "sh_dc": config.lr_sh_dc, "sh_rest": config.lr_sh_rest,
        }
        self.optimizer = torch.optim.Adam(
            [{"params": [self.params[k]], "lr": lrs[k], "name": k} for k in PARAM_NAMES], eps=1e-15
        )

    def gaussians(self) -> GaussianSet:
        p = self.params
        return GaussianSet(p["means"], p["log_scales"], p["quats"], p["logit_opacities"],
                           torch.cat([p["sh_dc"], p["sh_rest"]], dim=1), self.sh_degree)

    @torch.no_grad()
    def floor_scales(self, min_ratio: float) -> None:
        """Project the scales back onto ``smallest >= min_ratio * largest`` (in place, no grad)."""
        log_scales = self.params["log_scales"]
        log_scales.copy_(floor_scale_ratio(log_scales, min_ratio))

    @torch.no_grad()
    def prune(self, keep: torch.Tensor) -> None:
        for group in self.optimizer.param_groups:
            old = group["params"][0]
            new = old[keep].clone().requires_grad_(True)
            state = self.optimizer.state.pop(old, None)
            if state is not None:
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = state[key][keep].clone()
                self.optimizer.state[new] = state
            group["params"][0] = new
            self.params[group["name"]] = new


def fit_frame(
    gaussians: GaussianSet,
    views: Sequence[FitView | tuple],
    config: FitConfig | None = None,
    *,
    iterations: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> FitResult:
    """Optimise ``gaussians`` so they reproduce ``views`` (see module docstring).

    ``iterations`` overrides ``config.iterations``. ``progress(step, total, message)`` is called
    every step; ``cancel()`` is checked every step (raises :class:`protocol.errors.Cancelled`).
    The input set is not modified; the result holds detached tensors on the input's device.
    """
    config = config or FitConfig()
    total = int(config.iterations if iterations is None else iterations)
    if total < 0:
        raise ValidationError(f"iterations must be >= 0, got {total}")
    if len(gaussians) == 0:
        raise ValidationError("cannot fit an empty Gaussian set")
    device = gaussians.device
    prepared = _prepare_views(views, device)
    if not 0.0 <= config.min_scale_ratio <= 1.0:
        raise ValidationError(f"min_scale_ratio must be in [0, 1], got {config.min_scale_ratio}")
    if config.color_solve_iterations < 0:
        raise ValidationError(f"color_solve_iterations must be >= 0, got {config.color_solve_iterations}")
    if not config.color_solve_ridge > 0:
        raise ValidationError(f"color_solve_ridge must be > 0, got {config.color_solve_ridge}")
    trainable = _Trainable(gaussians, config, _scene_scale(gaussians, [v[1] for v in prepared]))
    trainable.floor_scales(config.min_scale_ratio)
    background = torch.tensor(config.background, device=device, dtype=torch.float32)
    generator = torch.Generator().manual_seed(config.seed)
    per_step = len(prepared) if config.views_per_step is None else max(1, min(config.views_per_step,
                                                                              len(prepared)))
    result = FitResult(gaussians=gaussians)
    survivors = torch.arange(len(gaussians))
    order: list[int] = []
    for step in range(total):
        check_cancel(cancel)
        if per_step == len(prepared):
            chosen = list(range(len(prepared)))
        else:
            chosen = []
            while len(chosen) < per_step:
                if not order:
                    order = torch.randperm(len(prepared), generator=generator).tolist()
                chosen.append(order.pop())
        current = trainable.gaussians()
        loss = torch.zeros((), device=device)
        for i in chosen:
            image, cam, weight = prepared[i]
            out = rasterize(current, cam, background=background, backend=config.backend, **config.image.kwargs())
            loss = loss + photometric_loss(out.rgb, image, weight, config.ssim_lambda)
        loss = loss / len(chosen)
        trainable.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainable.optimizer.step()
        trainable.floor_scales(config.min_scale_ratio)
        result.losses.append(float(loss.detach()))
        if config.prune_interval > 0 and (step + 1) % config.prune_interval == 0 and step + 1 < total:
            keep = torch.sigmoid(trainable.params["logit_opacities"].detach()) >= config.prune_opacity
            if not bool(keep.all()) and bool(keep.any()):
                result.pruned += int((~keep).sum())
                trainable.prune(keep)
                survivors = survivors[keep.to(survivors.device)]
        if progress is not None:
            progress(step + 1, total, f"fitting Gaussians: step {step + 1}/{total}, loss {result.losses[-1]:.4f}")
    fitted = trainable.gaussians().detach()
    if total > 0 and config.color_solve_iterations > 0 and fitted.sh_degree == 0:
        check_cancel(cancel)
        fitted = solve_colors(fitted, prepared, image=config.image, background=background,
                              iterations=config.color_solve_iterations, ridge=config.color_solve_ridge)
        if progress is not None:
            progress(total, total, f"solved colours ({config.color_solve_iterations} CG steps)")
    with torch.no_grad():
        for image, cam, _weight in prepared:
            out = rasterize(fitted, cam, background=background, backend=config.backend,
                            **config.image.kwargs())
            result.psnr_per_view.append(psnr(out.rgb.clamp(0, 1), image))
    result.gaussians = fitted
    result.survivors = survivors
    return result
