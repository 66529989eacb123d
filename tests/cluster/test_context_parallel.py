"""Context parallelism for the wan-vace transformer: option checks, and Ulysses over two real
processes (gloo, CPU) giving the same output as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.engines.context_parallel import ContextParallelOptions, enable_context_parallel
from protocol.errors import ValidationError

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.mark.parametrize("value", [{"ring": 0}, {"ulysses": 1.5}, {"ring": 2, "heads": 3}, "2", None])
def test_bad_context_parallel_options_name_the_field(value):
    with pytest.raises(ValidationError, match="context_parallel"):
        ContextParallelOptions.from_option(value)


def test_the_wan_vace_engine_checks_the_option_before_loading_anything():
    from backend.engines.wan_vace import WanVaceOptions

    assert WanVaceOptions.from_kwargs({"context_parallel": {"ulysses": 2}}).context_parallel == {"ulysses": 2}
    with pytest.raises(ValidationError, match="context_parallel.ring"):
        WanVaceOptions.from_kwargs({"context_parallel": {"ring": -1}})


def test_without_torch_distributed_the_error_says_how_to_launch():
    from cp_worker import tiny_vace_transformer

    with pytest.raises(ValidationError, match="torchrun --nproc-per-node 2"):
        enable_context_parallel(tiny_vace_transformer(), ContextParallelOptions(ulysses_degree=2))


@pytest.mark.slow
def test_ulysses_on_two_processes_matches_one_process(tmp_path):
    import torch
    from cp_worker import tiny_inputs, tiny_vace_transformer

    with torch.no_grad():
        torch.save(tiny_vace_transformer()(**tiny_inputs())[0], tmp_path / "reference.pt")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(HERE / "cp_worker.py"), str(tmp_path / "reference.pt"), "ulysses"],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("ulysses: max abs error") == 2
