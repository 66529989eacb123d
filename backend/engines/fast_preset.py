"""The ``fast`` preset of the wan-vace engine: a step-distillation LoRA, 4-8 Euler steps, guidance 1.

Step- and CFG-distilled Wan2.1 LoRAs (lightx2v's, e.g. ``lightx2v/Wan2.1-Distill-Loras``
``wan2.1_t2v_14b_lora_rank64_lightx2v_4step.safetensors`` for the 14B model) replace 30 solver
steps with classifier-free guidance (60 transformer passes) by 4 passes. They are trained for a
fixed schedule, lightx2v's ``denoising_step_list`` [1000, 750, 500, 250] with ``sample_shift`` 5:
the flow-matching sigmas ``t / 1000`` shifted by ``shift * s / (1 + (shift - 1) * s)`` and an Euler
step between them (diffusers ``FlowMatchEulerDiscreteScheduler(shift=5.0)`` with
``set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25])``). ``n`` steps (1 to 8) use the evenly spaced list
``1000 * (1 - i / n)``.

The distillation LoRA is stacked with the shot's own tuned LoRA (each adapter keeps its own
weight); both are fused into the transformer by default (``lora_mode="fuse"``), so the few steps
pay nothing for the adapters. It is looked up by id in ``<models>/loras/`` like any LoRA (``resolve_lora``); the Wan
transformer blocks of T2V and VACE share their names, so a T2V distillation LoRA loads into VACE
(its keys for VACE-only layers, if any, are simply absent).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FastPreset:
    """Settings of the few-step mode (data, not code paths)."""

    default_steps: int = 4
    max_steps: int = 8
    guidance_scale: float = 1.0
    shift: float = 5.0
    lora_weight: float = 1.0
    lora_mode: str = "fuse"  # fused into the weights: no per-layer LoRA matmuls in the 4 passes
    lora_id_1_3b: str = "wan2.1-1.3b-step-distill"
    lora_id_14b: str = "wan2.1-14b-step-distill"
    source_14b: str = "lightx2v/Wan2.1-Distill-Loras (wan2.1_t2v_14b_lora_rank64_lightx2v_4step.safetensors)"
    source_1_3b: str = "a step-distillation LoRA for Wan2.1-T2V-1.3B in diffusers, ComfyUI or musubi format"

    def steps_for(self, requested: int | None) -> int:
        """``requested`` when it is a distilled schedule length (1 to ``max_steps``), else ``default_steps``."""
        if requested is not None and 1 <= int(requested) <= self.max_steps:
            return int(requested)
        return self.default_steps


FAST = FastPreset()


def distilled_base_sigmas(steps: int) -> list[float]:
    """The unshifted sigmas of an ``steps``-step distilled schedule: ``1 - i / steps`` (lightx2v's t / 1000)."""
    if steps < 1:
        raise ValueError(f"a distilled schedule needs at least one step, got {steps}")
    return [1.0 - index / steps for index in range(steps)]


def distilled_sigmas(steps: int, shift: float = FAST.shift) -> list[float]:
    """The shifted sigmas the sampler actually visits (before the final 0): ``shift*s / (1 + (shift-1)*s)``."""
    return [shift * s / (1.0 + (shift - 1.0) * s) for s in distilled_base_sigmas(steps)]
