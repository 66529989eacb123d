"""bench/tune.py runs end to end on the CPU with the tiny model (--smoke) and prints one JSON line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "tune.py"


def test_bench_smoke_prints_one_json_line(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("recast4d_bench_tune", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["tune.py", "--smoke"])
    module.main()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["bench"] == "tune" and result["smoke"] is True
    assert result["value"] > 0 and result["baseline"] > 0 and result["ratio"] > 0
    assert result["shape"] == "32x32x5"
