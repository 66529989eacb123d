"""Settings of a per-video LoRA tuning run (EasyCreator training side) and its angle schedule.

Defaults follow the paper: LoRA rank 128 on the VACE transformer's main blocks, 512x512, 81 frames,
2000 steps, AdamW lr 1e-5 with weight decay 0.1, flow-matching loss with logit-normal sigma sampling
shifted by the inference ``flow_shift`` (3.0), bf16 base weights with fp32 LoRA parameters on CUDA
(everything fp32 on the CPU), gradient checkpointing.

Self-iterative rounds: round ``r`` trains on targets whose camera turns by an angle in
``(angles[r-1], angles[r]]`` degrees (round 0 from ``min_angle``), default 30 -> 45 -> 60 -> 75.
Rounds after the first also train on cycle-back pairs built from videos the previous round's LoRA
generated at that round's angles. ``steps`` is split over the rounds by ``round_step_shares``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from protocol.errors import ValidationError

#: Main transformer blocks only (a regex is ``re.fullmatch``-ed by peft; VACE blocks are left alone).
DEFAULT_TARGET_MODULES = r"blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)"
#: Orbit directions the data sampler draws target paths from (protocol.paths presets).
DEFAULT_DIRECTIONS = ("left", "right", "up", "down")


@dataclass
class TuneConfig:
    """Everything a tuning run can be told; see the module docstring for the method."""

    # model and LoRA
    rank: int = 128
    alpha: float | None = None  # LoRA alpha; default = rank (scale 1)
    target_modules: str | list[str] = DEFAULT_TARGET_MODULES
    gradient_checkpointing: bool = True
    dtype: str | None = None  # base weights; default bfloat16 on CUDA, float32 on CPU (LoRA always fp32)
    device: str | None = None
    # optimisation
    steps: int = 2000
    learning_rate: float = 1e-5
    weight_decay: float = 0.1
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0
    flow_shift: float = 3.0  # same shift as inference (wan-vace engine default)
    logit_mean: float = 0.0
    logit_std: float = 1.0
    consistency_weight: float = 0.1  # spatio-temporal consistency term, rounds >= 2
    seed: int = 0
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    # data
    width: int = 512
    height: int = 512
    num_frames: int = 81  # clip length, 4k + 1 (shorter videos use the longest 4k + 1 prefix)
    samples_per_round: int = 24
    min_angle: float = 5.0
    angles: list[float] = field(default_factory=lambda: [30.0, 45.0, 60.0, 75.0])
    round_step_shares: list[float] | None = None  # default: half the steps in round 1, the rest evenly
    directions: list[str] = field(default_factory=lambda: list(DEFAULT_DIRECTIONS))
    mask_probabilities: tuple[float, float, float] = (0.4, 0.3, 0.3)  # point-cloud, editing, union
    generations_per_round: int = 2  # videos generated with the current LoRA per later round
    cycle_fraction: float = 0.5  # share of a later round's new samples that are cycle-back pairs
    prompt: str = ""
    # generation with the current LoRA (wan-vace engine options)
    generation_steps: int = 30
    guidance_scale: float = 6.5
    lora_weight: float = 0.7

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> TuneConfig:
        """Validated config from plain data (params / JSON); unknown keys and bad values raise ValidationError."""
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValidationError(f"unknown tune options {unknown}; known: {sorted(known)}")
        for key in ("adam_betas", "mask_probabilities"):
            if key in raw:
                raw[key] = tuple(float(v) for v in raw[key])
        try:
            config = cls(**raw)
        except TypeError as exc:
            raise ValidationError(f"bad tune options: {exc}") from exc
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        data["mask_probabilities"] = list(self.mask_probabilities)
        return data

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValidationError(message)

        need(isinstance(self.rank, int) and self.rank >= 1, f"rank must be a positive integer, got {self.rank!r}")
        need(isinstance(self.steps, int) and self.steps >= 1, f"steps must be a positive integer, got {self.steps!r}")
        need(self.learning_rate > 0 and self.weight_decay >= 0, "learning_rate must be > 0 and weight_decay >= 0")
        need(self.flow_shift > 0 and self.logit_std > 0, "flow_shift and logit_std must be positive")
        need(self.consistency_weight >= 0, "consistency_weight must be >= 0")
        need(self.checkpoint_every >= 1 and self.keep_checkpoints >= 1,
             "checkpoint_every and keep_checkpoints must be >= 1")
        need(self.width % 16 == 0 and self.height % 16 == 0 and self.width >= 16 and self.height >= 16,
             f"width and height must be multiples of 16 (>= 16), got {self.width}x{self.height}")
        need(self.num_frames >= 5 and (self.num_frames - 1) % 4 == 0,
             f"num_frames must be 4k + 1 >= 5, got {self.num_frames}")
        need(self.samples_per_round >= 1, "samples_per_round must be >= 1")
        need(len(self.angles) >= 1 and all(math.isfinite(a) and 0 < a <= 180 for a in self.angles),
             f"angles must be a non-empty list of degrees in (0, 180], got {self.angles}")
        need(list(self.angles) == sorted(self.angles) and 0 <= self.min_angle < self.angles[0],
             "angles must grow round by round and start above min_angle")
        need(bool(self.directions) and set(self.directions) <= set(DEFAULT_DIRECTIONS),
             f"directions must be a subset of {list(DEFAULT_DIRECTIONS)}, got {self.directions}")
        need(len(self.mask_probabilities) == 3 and min(self.mask_probabilities) >= 0
             and sum(self.mask_probabilities) > 0, "mask_probabilities must be three non-negative weights")
        need(0 <= self.cycle_fraction <= 1 and self.generations_per_round >= 1,
             "cycle_fraction must be in [0, 1] and generations_per_round >= 1")
        if self.round_step_shares is not None:
            need(len(self.round_step_shares) == len(self.angles) and min(self.round_step_shares) >= 0
                 and sum(self.round_step_shares) > 0, "round_step_shares needs one non-negative share per round")
        need(self.steps >= self.num_rounds, f"steps ({self.steps}) must be at least the number of rounds")

    @property
    def num_rounds(self) -> int:
        return len(self.angles)

    @property
    def lora_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)

    def angle_range(self, round_index: int) -> tuple[float, float]:
        """``(low, high]`` degrees of camera turn for round ``round_index`` (0-based)."""
        low = self.min_angle if round_index == 0 else self.angles[round_index - 1]
        return float(low), float(self.angles[round_index])

    def round_steps(self) -> list[int]:
        """Optimiser steps per round, summing to ``steps`` (every round gets at least one)."""
        n = self.num_rounds
        shares = self.round_step_shares or ([1.0] if n == 1 else [1.0] + [1.0 / (n - 1)] * (n - 1))
        total = float(sum(shares))
        counts = [max(1, int(math.floor(self.steps * s / total))) for s in shares]
        counts[0] += self.steps - sum(counts)
        if counts[0] < 1:
            raise ValidationError("too few steps for the rounds asked for")
        return counts
