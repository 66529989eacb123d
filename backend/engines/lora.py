"""LoRA loading for the Wan VACE pipeline with the right effective scale, alone or stacked.

Two ways to apply a LoRA at weight ``w`` (default 0.7), each giving ``W + w * (alpha / r) * B @ A``:

- ``mode="adapter"``: ``load_lora_weights`` + ``set_adapters(name, w)``; switchable per run.
- ``mode="fuse"``: ``load_lora_weights`` (adapter weight left at 1.0) + ``fuse_lora(lora_scale=w)`` +
  ``unload_lora_weights()``; fastest at inference, permanent for this pipeline.

Never both: ``set_adapters(name, w)`` followed by ``fuse_lora(lora_scale=w)`` multiplies to ``w * w``
(0.49 for 0.7).

Stacks (:func:`load_lora_stack`, e.g. the shot's tuned LoRA + a step-distillation LoRA): every
adapter is loaded under its own name and activated together with its own weight,
``W + sum_i w_i * (alpha_i / r_i) * B_i @ A_i``. In fuse mode the weights are set per adapter
with ``set_adapters`` and fused with ``lora_scale=1.0`` (so again each ``w_i`` counts once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from protocol.errors import ValidationError

LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
DEFAULT_ADAPTER_NAME = "recast4d"


@dataclass(frozen=True)
class LoraLayer:
    """One LoRA of a stack: where its weights are, the adapter name it gets, its weight."""

    path: Path
    adapter_name: str
    weight: float


def _weights_location(lora_path: Path) -> tuple[Path, str]:
    lora_path = Path(lora_path)
    if lora_path.is_file():
        return lora_path.parent, lora_path.name
    if (lora_path / LORA_WEIGHTS_FILE).is_file():
        return lora_path, LORA_WEIGHTS_FILE
    raise ValidationError(f"no LoRA weights at {lora_path} (expected a .safetensors file or a folder "
                          f"holding {LORA_WEIGHTS_FILE})")


def load_lora_stack(pipe: Any, layers: list[LoraLayer], *, mode: Literal["adapter", "fuse"] = "adapter") -> None:
    """Load every LoRA of ``layers`` into ``pipe`` and activate them all, each at its own weight."""
    if mode not in ("adapter", "fuse"):
        raise ValidationError(f"LoRA mode must be 'adapter' or 'fuse', got {mode!r}")
    if not layers:
        return
    names = [layer.adapter_name for layer in layers]
    if len(set(names)) != len(names):
        raise ValidationError(f"LoRA adapter names must differ, got {names}")
    for layer in layers:
        folder, weight_name = _weights_location(layer.path)
        pipe.load_lora_weights(str(folder), weight_name=weight_name, adapter_name=layer.adapter_name)
    weights = [float(layer.weight) for layer in layers]
    if mode == "adapter":
        pipe.set_adapters(names, adapter_weights=weights)
    elif len(layers) == 1:
        pipe.set_adapters(names, adapter_weights=[1.0])
        pipe.fuse_lora(components=["transformer"], lora_scale=weights[0], adapter_names=names)
        pipe.unload_lora_weights()
    else:
        pipe.set_adapters(names, adapter_weights=weights)
        pipe.fuse_lora(components=["transformer"], lora_scale=1.0, adapter_names=names)
        pipe.unload_lora_weights()


def load_lora(pipe: Any, lora_path: Path, *, weight: float = 0.7, mode: Literal["adapter", "fuse"] = "adapter",
              adapter_name: str = DEFAULT_ADAPTER_NAME) -> None:
    """Load the diffusers-format LoRA at ``lora_path`` (folder or .safetensors file) into ``pipe`` at ``weight``."""
    load_lora_stack(pipe, [LoraLayer(Path(lora_path), adapter_name, weight)], mode=mode)
