"""Choosing the attention kernel of the Wan transformers through diffusers' attention dispatch.

diffusers routes every Wan attention call through ``models.attention_dispatch.dispatch_attention_fn``
with the backend set by ``transformer.set_attention_backend(name)``. This module runs each candidate
backend on the same random query/key/value tensors, compares its output with native SDPA
(``torch.nn.functional.scaled_dot_product_attention``, backend ``"native"``) and times it; the
fastest backend whose error is within tolerance wins (:func:`choose_attention_backend`).

Tensors use the dispatch layout ``(batch, tokens, heads, head_dim)``. For Wan2.1-1.3B at
512x512x81 self-attention is batch 2 (cond + uncond), 21,504 tokens, 12 heads of 128.

Candidates: on CUDA native SDPA, cuDNN, PyTorch's flash and memory-efficient kernels, and the
``flash`` (flash-attn 2), ``_flash_3`` (FlashAttention 3) and ``sage`` (SageAttention >= 2.1.1)
packages where installed; on the CPU native and the math kernel (and ``flex``, uncompiled). Math
and uncompiled flex are left out on CUDA: at video token counts they materialise the full
score matrix (tens of GB).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

CUDA_CANDIDATES = ("native", "_native_cudnn", "_native_flash", "_native_efficient", "flash", "_flash_3", "sage")
CPU_CANDIDATES = ("native", "_native_math", "flex")
REFERENCE_BACKEND = "native"

#: Largest accepted mean |output - SDPA| relative to mean |SDPA output|, per compute dtype. bf16
#: kernels differ from SDPA by rounding (~0.3 % measured typical); SageAttention's int8 QK adds more.
RELATIVE_TOLERANCE = {"bfloat16": 0.02, "float16": 0.01, "float32": 1e-4}


@dataclass
class AttentionBackendResult:
    """One candidate's outcome: usable (ran and matched SDPA), time per call, error against SDPA."""

    name: str
    usable: bool
    ms_per_call: float | None = None
    max_abs_error: float | None = None
    relative_mean_error: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AttentionShape:
    """Self-attention problem size: batch, tokens, heads, head_dim."""

    batch: int
    tokens: int
    heads: int
    head_dim: int

    @classmethod
    def for_wan(cls, *, frames: int, height: int, width: int, heads: int = 12, head_dim: int = 128,
                batch: int = 2) -> AttentionShape:
        """The Wan transformer's token count for a clip of ``frames`` (4k + 1) at ``height`` x ``width`` pixels.

        Latents are 8x smaller per side and 4x fewer frames (+1), patches 1x2x2, so tokens =
        ``((frames - 1) // 4 + 1) * (height // 16) * (width // 16)``.
        """
        return cls(batch, ((frames - 1) // 4 + 1) * (height // 16) * (width // 16), heads, head_dim)


def default_candidates(device_type: str) -> tuple[str, ...]:
    return CUDA_CANDIDATES if device_type == "cuda" else CPU_CANDIDATES


def _synchronize(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_attention_backends(shape: AttentionShape, *, device: str = "cpu", dtype: str = "float32",
                               candidates: tuple[str, ...] | None = None, repeats: int = 5,
                               seed: int = 0) -> list[AttentionBackendResult]:
    """Run every candidate on the same inputs; time it (ms per call, after one warm-up) and compare with SDPA.

    A candidate that is missing, refuses the inputs, or differs from SDPA by more than
    :data:`RELATIVE_TOLERANCE` is reported with ``usable=False`` and the reason.
    """
    import torch
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _check_attention_backend_requirements,
        dispatch_attention_fn,
    )

    torch_device = torch.device(device)
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    size = (shape.batch, shape.tokens, shape.heads, shape.head_dim)
    query, key, value = (torch.randn(size, generator=generator).to(torch_device, torch_dtype) for _ in range(3))
    with torch.no_grad():
        reference = dispatch_attention_fn(query, key, value, backend=REFERENCE_BACKEND).float()
    reference_scale = float(reference.abs().mean())
    tolerance = RELATIVE_TOLERANCE.get(dtype, 0.02)
    results = []
    for name in candidates or default_candidates(torch_device.type):
        try:
            backend = AttentionBackendName(name)
            _check_attention_backend_requirements(backend)
            with torch.no_grad():
                output = dispatch_attention_fn(query, key, value, backend=backend)  # warm-up
                _synchronize(torch, torch_device)
                start = time.perf_counter()
                for _ in range(repeats):
                    output = dispatch_attention_fn(query, key, value, backend=backend)
                _synchronize(torch, torch_device)
            ms = 1e3 * (time.perf_counter() - start) / repeats
        except Exception as error:  # noqa: BLE001 - any failure means "not usable here", with the reason
            results.append(AttentionBackendResult(name, False, reason=f"{type(error).__name__}: {str(error)[:160]}"))
            continue
        difference = (output.float() - reference).abs()
        relative = float(difference.mean()) / max(reference_scale, 1e-12)
        ok = bool(torch.isfinite(output).all()) and relative <= tolerance
        results.append(AttentionBackendResult(
            name, ok, round(ms, 4), float(difference.max()), relative,
            "" if ok else f"differs from SDPA: relative mean error {relative:.2e} > {tolerance:.0e}"))
    return results


def choose_attention_backend(results: list[AttentionBackendResult]) -> str:
    """The fastest usable backend; ``"native"`` when none was usable (SDPA itself always is)."""
    usable = [r for r in results if r.usable and r.ms_per_call is not None]
    return min(usable, key=lambda r: r.ms_per_call).name if usable else REFERENCE_BACKEND
