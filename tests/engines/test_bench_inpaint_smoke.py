"""bench/inpaint.py runs end to end (tiny model on the CPU) and prints one JSON object last."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_bench_inpaint_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parents[2] / "bench" / "inpaint.py"
    spec = importlib.util.spec_from_file_location("bench_inpaint", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--smoke"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["bench"] == "inpaint" and summary["unit"] == "s/clip"
    assert summary["value"] > 0 and summary["baseline"] > 0
    assert summary["ratio"] == pytest.approx(summary["baseline"] / summary["value"], rel=0.01)
