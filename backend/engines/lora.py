"""LoRA loading for the Wan VACE pipeline with the right effective scale.

Two ways to apply a LoRA at weight ``w`` (default 0.7), each giving ``W + w * (alpha / r) * B @ A``:

- ``mode="adapter"``: ``load_lora_weights`` + ``set_adapters(name, w)``; switchable per run.
- ``mode="fuse"``: ``load_lora_weights`` (adapter weight left at 1.0) + ``fuse_lora(lora_scale=w)`` +
  ``unload_lora_weights()``; fastest at inference, permanent for this pipeline.

Never both: ``set_adapters(name, w)`` followed by ``fuse_lora(lora_scale=w)`` multiplies to ``w * w``
(0.49 for 0.7).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from protocol.errors import ValidationError

LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
DEFAULT_ADAPTER_NAME = "recast4d"


def load_lora(pipe: Any, lora_path: Path, *, weight: float = 0.7, mode: Literal["adapter", "fuse"] = "adapter",
              adapter_name: str = DEFAULT_ADAPTER_NAME) -> None:
    """Load the diffusers-format LoRA at ``lora_path`` (folder or .safetensors file) into ``pipe`` at ``weight``."""
    lora_path = Path(lora_path)
    if lora_path.is_file():
        folder, weight_name = lora_path.parent, lora_path.name
    elif (lora_path / LORA_WEIGHTS_FILE).is_file():
        folder, weight_name = lora_path, LORA_WEIGHTS_FILE
    else:
        raise ValidationError(f"no LoRA weights at {lora_path} (expected a .safetensors file or a folder "
                              f"holding {LORA_WEIGHTS_FILE})")
    pipe.load_lora_weights(str(folder), weight_name=weight_name, adapter_name=adapter_name)
    if mode == "adapter":
        pipe.set_adapters([adapter_name], adapter_weights=[float(weight)])
    elif mode == "fuse":
        pipe.set_adapters([adapter_name], adapter_weights=[1.0])
        pipe.fuse_lora(components=["transformer"], lora_scale=float(weight), adapter_names=[adapter_name])
        pipe.unload_lora_weights()
    else:
        raise ValidationError(f"LoRA mode must be 'adapter' or 'fuse', got {mode!r}")
