"""The ``tune`` job kind and ``recast4d tune``: validation errors, a tiny end-to-end run each, and the
registered LoRA resolvable by id for reshoot."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import backend.pipelines.tune  # noqa: F401  (registers the "tune" job kind, as the server does)
from protocol.errors import CameraError, ValidationError

TINY = {"rank": 4, "width": 32, "height": 32, "num_frames": 5, "steps": 2, "angles": [20.0],
        "samples_per_round": 1, "generation_steps": 2, "checkpoint_every": 1}


def _inputs(tiny_source) -> dict[str, np.ndarray]:
    return {"frames": tiny_source.frames, "depth": tiny_source.depth}


def test_request_validation_names_the_problem(tiny_source):
    from backend.pipelines.tune.request import TuneRequest

    good = {"tune": TINY, "fov_deg": 60.0}
    assert TuneRequest.from_params(good, _inputs(tiny_source)).config.rank == 4
    with pytest.raises(ValidationError, match="depth is missing"):
        TuneRequest.from_params(good, {"frames": tiny_source.frames})
    with pytest.raises(ValidationError, match="no positive finite"):
        TuneRequest.from_params(good, {"frames": tiny_source.frames, "depth": np.zeros((5, 32, 32), np.float32)})
    with pytest.raises(ValidationError, match="unknown tune options"):
        TuneRequest.from_params({"tune": {"ranks": 3}}, _inputs(tiny_source))
    with pytest.raises(ValidationError, match="lora_id"):
        TuneRequest.from_params({**good, "lora_id": "../escape"}, _inputs(tiny_source))
    with pytest.raises(ValidationError, match="at least 5 frames"):
        TuneRequest.from_params(good, {"frames": tiny_source.frames[:3], "depth": tiny_source.depth[:3]})
    with pytest.raises(CameraError):
        TuneRequest.from_params({**good, "cameras": [{"K": [[1, 0, 0]], "world_to_camera": np.eye(4).tolist(),
                                                      "width": 32, "height": 32}]}, _inputs(tiny_source))


def test_tune_job_kind_runs_and_registers_the_lora(tune_models_dir, tiny_source, tmp_path):
    from backend.engines import resolve_lora
    from backend.jobs import JobStore, get_job_kind
    from backend.jobs.context import JobContext

    kind = get_job_kind("tune")
    params = {"tune": TINY, "models_dir": str(tune_models_dir), "prompt": "a street"}
    kind.validate(params, _inputs(tiny_source))
    store = JobStore(tmp_path / "jobs")
    store.create("job-1", "tune", params, {})  # inputs handed to the context directly
    ctx = JobContext("job-1", store.job_dir("job-1"), params, _inputs(tiny_source), store)
    kind.run(ctx)
    lora = resolve_lora("tune-job-1", tune_models_dir)
    assert (lora / "pytorch_lora_weights.safetensors").is_file()
    streams = store.get("job-1").streams
    assert {"file.pytorch_lora_weights.safetensors", "file.report.json"} <= set(streams)
    report = json.loads((ctx.output_dir / "report.json").read_text())
    assert report["lora_id"] == "tune-job-1" and report["rounds"][0]["steps"] == 2


def test_cli_tune_writes_and_registers_a_lora(tune_models_dir, tiny_source, tmp_path):
    from backend.cli import main
    from backend.engines import resolve_lora

    video_dir = tmp_path / "video"
    video_dir.mkdir()
    for i, frame in enumerate(tiny_source.frames):
        cv2.imwrite(str(video_dir / f"frame_{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    np.save(tmp_path / "depth.npy", tiny_source.depth)
    config = tmp_path / "tune.json"
    config.write_text(json.dumps({k: v for k, v in TINY.items() if k not in ("width", "height", "steps")}))
    out = tmp_path / "shot-a"
    code = main(["tune", "--video", str(video_dir), "--depth", str(tmp_path / "depth.npy"), "--out", str(out),
                 "--models", str(tune_models_dir), "--config", str(config), "--size", "32x32", "--steps", "2",
                 "--fov", "60"])
    assert code == 0
    assert (out / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert resolve_lora("shot-a", tune_models_dir) == Path(tune_models_dir) / "loras" / "shot-a"
    again = main(["tune", "--video", str(video_dir), "--depth", str(tmp_path / "depth.npy"), "--out", str(out),
                  "--models", str(tune_models_dir), "--config", str(config), "--size", "32x32", "--steps", "2",
                  "--fov", "60"])  # resumes: everything is on disk, nothing is retrained
    assert again == 0
    assert json.loads((out / "report.json").read_text())["rounds"][0]["steps"] == 2
