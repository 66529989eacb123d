"""Run by ``torch.distributed.run`` from ``test_context_parallel.py``: one rank of a context-parallel
forward pass of the tiny VACE transformer on CPU (gloo), compared with the single-process output.

    python -m torch.distributed.run --nproc-per-node 2 cp_worker.py REFERENCE.pt ulysses
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (tiny_models)


def tiny_vace_transformer():
    """The tiny VACE transformer of ``tiny_models`` (3 blocks, VACE blocks at 0 and 2), seeded."""
    from diffusers import WanVACETransformer3DModel
    from tiny_models import _transformer_kwargs

    torch.manual_seed(0)
    return WanVACETransformer3DModel(in_channels=16, vace_layers=[0, 2], vace_in_channels=48,
                                     **_transformer_kwargs(3)).eval()


def tiny_inputs() -> dict:
    """Latents (1, 16, 3, 8, 8) -> 48 tokens, 8 text tokens, control latents (1, 48, 3, 8, 8)."""
    from tiny_models import TEXT_DIM

    g = torch.Generator().manual_seed(1)
    return {"hidden_states": torch.randn(1, 16, 3, 8, 8, generator=g), "timestep": torch.tensor([500]),
            "encoder_hidden_states": torch.randn(1, 8, TEXT_DIM, generator=g),
            "control_hidden_states": torch.randn(1, 48, 3, 8, 8, generator=g), "return_dict": False}


def main(reference: Path, mode: str) -> int:
    from backend.engines.context_parallel import ContextParallelOptions, enable_context_parallel

    dist.init_process_group("gloo")
    # diffusers places rank r on accelerator r % count; a CPU-only machine has none, so say "one".
    torch.accelerator.device_count = lambda: 1
    model = tiny_vace_transformer()
    collectives = {"calls": 0}
    import torch.distributed._functional_collectives as functional

    original = functional.all_to_all_single

    def counted(*args, **kwargs):
        collectives["calls"] += 1
        return original(*args, **kwargs)

    functional.all_to_all_single = counted
    enable_context_parallel(model, ContextParallelOptions.from_option({mode: 2}))
    with torch.no_grad():
        output = model(**tiny_inputs())[0]
    error = (output - torch.load(reference)).abs().max().item()
    print(f"rank {dist.get_rank()} {mode}: max abs error {error:.3g}, all-to-all calls {collectives['calls']}")
    dist.destroy_process_group()
    return 0 if error < 1e-5 and collectives["calls"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
