"""Several GPUs inside one wan-vace job: diffusers context parallelism (ring / Ulysses attention).

Status: Ulysses with :func:`wan_vace_cp_plan` is checked on CPU (two gloo processes give the same
VACE transformer output as one, ``tests/cluster/test_context_parallel.py``); ring attention needs a
CUDA attention kernel that returns the log-sum-exp and is not checked here. The speed-up on several
GPUs is **unmeasured** until it runs on a multi-GPU machine (``docs/farm.md``). Every process runs
the whole job; under ``torchrun`` ``recast4d run --job`` writes the outputs from rank 0 only.

How it runs: context parallelism splits the video token sequence of every attention call across
``ring_degree x ulysses_degree`` processes, one per GPU, all running the same pipeline call; it needs
``torch.distributed`` initialised, e.g. ``torchrun --nproc-per-node 2 -m backend.cli run --job
JOB.json`` with the engine option ``{"context_parallel": {"ulysses": 2}}``. Ulysses (all-to-all of
heads) needs the head count divisible by its degree (Wan 1.3B: 12 heads, 14B: 40); ring (K/V passed
round the ring) has no such limit but more communication; the two combine.

diffusers 0.42 ships a context-parallel plan for ``WanTransformer3DModel`` but none for the VACE
transformer; :func:`wan_vace_cp_plan` adds the control branch: the VACE blocks run before the main
blocks, so the token split happens at the first VACE block (hidden and control states) and again at
the first main block; the hints the VACE blocks return are already split the same way. (The plan
is built on demand, so importing this module imports neither torch nor diffusers.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.errors import ValidationError


@dataclass(frozen=True)
class ContextParallelOptions:
    """``ring_degree x ulysses_degree`` processes (GPUs) share each attention call of one job."""

    ring_degree: int = 1
    ulysses_degree: int = 1

    @property
    def world_size(self) -> int:
        return self.ring_degree * self.ulysses_degree

    @classmethod
    def from_option(cls, value: object) -> ContextParallelOptions:
        """From the engine option ``context_parallel``: ``{"ring": R, "ulysses": U}`` (each >= 1, default 1)."""
        if not isinstance(value, dict) or not set(value) <= {"ring", "ulysses"}:
            raise ValidationError(f"engine option context_parallel must look like {{\"ring\": 1, \"ulysses\": 2}}, "
                                  f"got {value!r}")
        degrees = {}
        for key in ("ring", "ulysses"):
            degree = value.get(key, 1)
            if type(degree) is not int or degree < 1:
                raise ValidationError(f"context_parallel.{key} must be an int >= 1, got {degree!r}")
            degrees[key] = degree
        return cls(ring_degree=degrees["ring"], ulysses_degree=degrees["ulysses"])


def wan_vace_cp_plan() -> dict[str, Any]:
    """The context-parallel plan of diffusers' ``WanVACETransformer3DModel`` (see the module docstring)."""
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    split_tokens = ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)
    return {
        "rope": {
            0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
            1: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
        },
        "vace_blocks.0": {"hidden_states": split_tokens, "control_hidden_states": split_tokens},
        "blocks.0": {"hidden_states": split_tokens},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


#: Attention backends that return the log-sum-exp ring attention needs (all CUDA kernels).
RING_BACKENDS = ("flash", "_native_flash", "_native_cudnn", "_flash_3_hub", "flash_hub", "sage", "sage_hub")


def enable_context_parallel(transformer: Any, options: ContextParallelOptions, *,
                            attention_backend: str | None = None) -> None:
    """Split ``transformer``'s attention across the ``torch.distributed`` processes (one per GPU).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised here (NCCL on CUDA).

    ``attention_backend``: the backend the model was set to (None = diffusers' default, ``native``);
    ring attention needs one of :data:`RING_BACKENDS`. On CUDA each process takes the GPU of its
    ``LOCAL_RANK``, so call this before the model is moved to ``cuda``. Raises ValidationError when
    torch.distributed is not initialised, its world size is not ``ring x ulysses``, Ulysses cannot
    split the heads, or the backend cannot do ring attention.
    """
    import os

    import torch
    import torch.distributed as dist
    from diffusers import ContextParallelConfig

    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")  # launched by torchrun
    if not dist.is_available() or not dist.is_initialized():
        raise ValidationError("context_parallel needs one process per GPU under torch.distributed: launch with "
                              f"torchrun --nproc-per-node {options.world_size} (or drop the option)")
    if dist.get_world_size() != options.world_size:
        raise ValidationError(f"context_parallel asks for ring {options.ring_degree} x ulysses "
                              f"{options.ulysses_degree} = {options.world_size} processes, but torch.distributed "
                              f"runs {dist.get_world_size()}; make them match")
    heads = int(getattr(transformer.config, "num_attention_heads", 1))
    if heads % options.ulysses_degree:
        raise ValidationError(f"context_parallel.ulysses = {options.ulysses_degree} does not divide the model's "
                              f"{heads} attention heads; use a divisor of {heads}, or ring instead")
    if options.ring_degree > 1 and attention_backend not in RING_BACKENDS:
        raise ValidationError(f"ring attention needs an attention backend that returns the log-sum-exp: set the "
                              f"engine option attention_backend to one of {', '.join(RING_BACKENDS)} "
                              f"(now {attention_backend or 'native'}), or use ulysses")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", dist.get_rank() % torch.cuda.device_count())))
    plan = getattr(type(transformer), "_cp_plan", None) or wan_vace_cp_plan()
    config = ContextParallelConfig(ring_degree=options.ring_degree if options.ring_degree > 1 else None,
                                   ulysses_degree=options.ulysses_degree if options.ulysses_degree > 1 else None)
    try:
        transformer.enable_parallelism(config=config, cp_plan=plan)
    except ValueError as exc:  # e.g. an attention backend without context-parallel support
        raise ValidationError(f"context parallelism could not be enabled: {exc}") from exc
