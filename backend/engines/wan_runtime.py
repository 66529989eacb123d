"""How the wan-vace engine sets a pipeline up on this machine: LoRA stack, placement, attention kernel.

Each helper returns what it decided so that :meth:`WanVaceEngine.runtime_report` can say it in
the job report. See :mod:`backend.engines.vram` (placement), :mod:`backend.engines.attention`
(attention backend) and :mod:`backend.engines.fast_preset` (the step-distillation LoRA).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from backend.engines.attention import AttentionShape, choose_attention_backend, measure_attention_backends
from backend.engines.fast_preset import FAST
from backend.engines.lora import DEFAULT_ADAPTER_NAME, LoraLayer
from backend.engines.registry import LORAS_SUBDIR, resolve_lora, resolve_models_dir
from backend.engines.vram import (
    GIB,
    ClipShape,
    MemoryModel,
    PlacementPlan,
    WanTransformerSize,
    plan_placement,
)
from protocol.errors import MissingWeightsError, ValidationError

DISTILL_ADAPTER_NAME = "step-distill"


def is_14b(transformer_config: Any) -> bool:
    """True for the 14B Wan transformer (hidden size 5120), False for 1.3B (1536) and tiny test models."""
    size = WanTransformerSize.from_config(transformer_config)
    return size.dim >= 5120


def lora_stack(options: Any, models_dir: Path | None, transformer_config: Any) -> list[LoraLayer]:
    """The LoRAs to load: the shot's tuned LoRA (if any), then, for the fast preset, the distillation LoRA."""
    layers = []
    if options.lora:
        layers.append(LoraLayer(resolve_lora(options.lora, models_dir), DEFAULT_ADAPTER_NAME, options.lora_weight))
    if options.preset == "fast":
        big = is_14b(transformer_config)
        lora_id = options.distill_lora or (FAST.lora_id_14b if big else FAST.lora_id_1_3b)
        try:
            path = resolve_lora(lora_id, models_dir)
        except MissingWeightsError as error:
            loras = resolve_models_dir(models_dir) / LORAS_SUBDIR
            raise MissingWeightsError(
                f"the fast preset needs a step-distillation LoRA: {error}. Put "
                f"{FAST.source_14b if big else FAST.source_1_3b} at {loras / lora_id}.safetensors, "
                "or name another with the engine option distill_lora") from error
        layers.append(LoraLayer(path, DISTILL_ADAPTER_NAME, options.distill_lora_weight))
    return layers


def model_side_pixels(max_pixels: int) -> int:
    """The square side (multiple of 16) with about ``max_pixels`` pixels: the size plans are made for."""
    return max(16, int(math.sqrt(max_pixels)) // 16 * 16)


def clip_for(options: Any) -> ClipShape:
    """The largest window the engine will sample, as the memory planner sees it."""
    side = model_side_pixels(options.max_pixels)
    cfg_batch = 2 if options.guidance_scale > 1.0 and options.batch_cfg else 1
    return ClipShape(options.window_frames, side, side, cfg_batch)


def resident_bytes(pipe: Any) -> int:
    """Bytes of the transformer's and VAE's parameters that already sit on a CUDA device."""
    total = 0
    for model in (getattr(pipe, "transformer", None), getattr(pipe, "vae", None)):
        for parameter in getattr(model, "parameters", list)():
            if parameter.device.type == "cuda":
                total += parameter.numel() * parameter.element_size()
    return total


def plan_for(pipe: Any, options: Any, device: Any, dtype: Any, free_bytes: int | None) -> PlacementPlan:
    """The placement for this pipeline: ``options.offload`` if given, else planned from ``free_bytes``.

    ``free_bytes`` is the free VRAM (None without CUDA); ``options.vram_budget_gb`` caps it.
    """
    import torch

    memory = MemoryModel(WanTransformerSize.from_config(pipe.transformer.config), clip_for(options),
                         transformer_bytes_per_parameter=torch.empty((), dtype=dtype).element_size(),
                         vae_tiling=options.vae_tiling)
    if device.type != "cuda":
        free_bytes = None
    elif free_bytes is not None:
        free_bytes += resident_bytes(pipe)  # weights already on the card are part of the plan, not extra
        if options.vram_budget_gb is not None:
            free_bytes = min(free_bytes, int(options.vram_budget_gb * GIB))
    plan = plan_placement(memory, free_bytes)
    if options.offload != "auto" and device.type == "cuda":
        plan.placement = options.offload
        plan.text_encoder_on_gpu = options.offload == "none"
        plan.reason = f"{options.offload}: set by the offload option"
    return plan


def apply_placement(pipe: Any, placement: str, device: Any) -> None:
    """Put the transformer and VAE where ``placement`` says (diffusers' offload hooks for the offloads)."""
    if placement in ("none", "cpu"):
        pipe.transformer.to(device)
        pipe.vae.to(device)
    elif placement == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif placement == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif placement == "group":
        pipe.transformer.enable_group_offload(onload_device=device, offload_device="cpu", offload_type="block_level",
                                              num_blocks_per_group=1, use_stream=True)
        pipe.vae.to(device)
    else:
        raise ValidationError(f"unknown placement {placement!r}")


def set_attention(pipe: Any, options: Any, device: Any, dtype: Any) -> tuple[str, list[dict]]:
    """Set the transformer's attention backend; ``"auto"`` measures the candidates on CUDA (native on CPU).

    Returns the backend name and, for ``"auto"`` on CUDA, every candidate's measurement.
    """
    import torch

    requested = options.attention_backend
    measurements: list[dict] = []
    if requested in (None, "", "native") or (requested == "auto" and device.type != "cuda"):
        pipe.transformer.reset_attention_backend()
        return "native", measurements
    if requested == "auto":
        config = pipe.transformer.config
        clip = clip_for(options)
        shape = AttentionShape.for_wan(frames=clip.frames, height=clip.height, width=clip.width,
                                       heads=config.num_attention_heads, head_dim=config.attention_head_dim,
                                       batch=clip.batch)
        results = measure_attention_backends(shape, device=str(device), dtype=str(dtype).replace("torch.", ""),
                                             repeats=3)
        measurements = [r.to_dict() for r in results]
        requested = choose_attention_backend(results)
        torch.cuda.empty_cache()
        if requested == "native":
            pipe.transformer.reset_attention_backend()
            return requested, measurements
    try:
        pipe.transformer.set_attention_backend(requested)
    except (ValueError, RuntimeError, ImportError) as error:
        raise ValidationError(f"attention backend {requested!r} is not usable here: {error}. "
                              "Use 'auto', 'native' or install the kernel package (flash-attn, sageattention)"
                              ) from error
    return requested, measurements
