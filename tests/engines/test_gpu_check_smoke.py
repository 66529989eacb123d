"""bench/gpu_check.py: the GPU check's code paths with tiny models on the CPU (``--smoke``), and its skip."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

GPU_CHECK = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("bench_gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Packages the GPU machine lacks and the check must not need (diffusers/gsplat/peft travel as wheels).
ABSENT_ON_THE_GPU_MACHINE = ("zmq", "pxr", "av", "ftfy")


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_check(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # every child process starts with the GPU machine's missing packages made unimportable
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in ABSENT_ON_THE_GPU_MACHINE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")])))
    assert load_gpu_check().main(["--smoke", "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["bench"] == "gpu_check" and summary["failed"] == []
    checks = summary["checks"]
    assert set(checks) == {"attention", "inpaint", "tune", "gsplat", "geometry", "gpu_tests"}
    assert all(check["status"] == "ok" for check in checks.values()), checks
    assert summary["value"] == summary["baseline"] == 6
    inpaint = checks["inpaint"]["result"]
    assert inpaint["baseline_s_per_clip"] > 0 and inpaint["engine_s_per_clip"] > 0 and inpaint["fast_s_per_clip"] > 0
    backends = {b["name"]: b for b in checks["attention"]["result"]["backends"]}
    assert backends["native"]["usable"] and backends["_native_math"]["usable"]  # checked against SDPA on the CPU
    assert checks["tune"]["result"]["projected_2000_steps_min"] > 0
    assert checks["geometry"]["result"]["frames_per_s"] > 0 and checks["gsplat"]["result"]["fit_its_per_s"] > 0
    assert "test_gsplat_agreement.py" in " ".join(checks["gpu_tests"]["result"]["files"])
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["checks"].keys() == checks.keys() and (tmp_path / "gpu_check.log").stat().st_size > 0


def test_gpu_check_without_cuda_says_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check would run for real")
    assert load_gpu_check().main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "skipped" in out[0] and json.loads(out[-1])["skipped"] is True


def test_a_failing_check_is_reported_and_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_gpu_check()
    monkeypatch.setattr(module, "command_for", lambda name, smoke: ["python3", "-c", "raise SystemExit('boom')"])
    assert module.main(["--smoke", "--jobs", "1", "--only", "geometry,tune", "--out", str(tmp_path)]) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["failed"] == ["tune", "geometry"] and summary["checks"]["geometry"]["error"] == "boom"
    assert summary["value"] == 0 and summary["baseline"] == 2


def test_checks_past_the_time_budget_are_skipped_not_run(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_gpu_check()
    ran: list[str] = []
    monkeypatch.setattr(module, "run_check", lambda name, *args: ran.append(name))
    assert module.main(["--smoke", "--jobs", "1", "--budget-s", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ran == [] and summary["skipped_for_time"] == list(module.CHECK_ORDER) and summary["value"] == 0


def test_gsplat_build_runs_in_the_background_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    module = load_gpu_check()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    build = module.start_gsplat_build(tmp_path / "gsplat_build.log")
    outcome = module.finish_gsplat_build(build, 120)
    if torch.cuda.is_available():
        pytest.skip("a real build ran")
    assert outcome["status"] == "failed" and outcome["result"]["reason"] == "no CUDA device"
    assert outcome["seconds"] > 0 and (tmp_path / "gsplat_build.log").exists()


def test_a_check_that_runs_out_of_time_returns_what_it_printed(tmp_path: Path) -> None:
    import sys

    module = load_gpu_check()
    slow = "import time; print('baseline: 12.0 s/clip', flush=True); time.sleep(30)"
    module.command_for = lambda name, smoke: [sys.executable, "-c", slow]
    with open(tmp_path / "log", "w") as log:
        outcome = module.run_check("inpaint", True, 3.0, log)
    assert outcome["status"] == "timeout" and outcome["partial_output"] == ["baseline: 12.0 s/clip"]
