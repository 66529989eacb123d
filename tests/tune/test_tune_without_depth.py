"""Tuning from a video alone: the reshoot's depth stage estimates the depth (tiny Depth Anything), in the
``tune`` job and in ``recast4d tune`` without ``--depth``; blank frames and missing depth are typed errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import backend.pipelines.tune  # noqa: F401  (registers the "tune" job kind, as the server does)
from protocol.errors import ValidationError

TINY = {"rank": 4, "width": 32, "height": 32, "num_frames": 5, "steps": 2, "angles": [20.0],
        "samples_per_round": 1, "generation_steps": 2, "checkpoint_every": 1}


def test_validation_without_depth(tiny_source):
    from backend.pipelines.tune.request import TuneRequest

    frames = tiny_source.frames
    with pytest.raises(ValidationError, match="depth is missing.*depth_engine = 'depth-anything'"):
        TuneRequest.from_params({"tune": TINY}, {"frames": frames})
    with pytest.raises(ValidationError, match="unknown depth engine 'midas'"):
        TuneRequest.from_params({"tune": TINY, "depth_engine": "midas"}, {"frames": frames})
    black = frames.copy()
    black[1:3] = 0
    with pytest.raises(ValidationError, match=r"frames: 2 of 5 frames are blank.*frame\(s\) 1, 2"):
        TuneRequest.from_params({"tune": TINY, "depth_engine": "depth-anything"}, {"frames": black})
    request = TuneRequest.from_params({"tune": TINY, "depth_engine": "depth-anything"}, {"frames": frames})
    assert request.depth is None and request.cameras_guessed


def test_tune_job_on_a_video_with_no_depth_runs_end_to_end(tune_models_dir, tiny_source, tmp_path):
    from backend.engines import resolve_lora
    from backend.jobs import JobStore, get_job_kind
    from backend.jobs.context import JobContext

    kind = get_job_kind("tune")
    params = {"tune": TINY, "models_dir": str(tune_models_dir), "depth_engine": "depth-anything"}
    inputs = {"frames": tiny_source.frames}
    kind.validate(params, inputs)
    store = JobStore(tmp_path / "jobs")
    store.create("job-nd", "tune", params, {})
    ctx = JobContext("job-nd", store.job_dir("job-nd"), params, inputs, store)
    kind.run(ctx)
    assert (resolve_lora("tune-job-nd", tune_models_dir) / "pytorch_lora_weights.safetensors").is_file()
    report = json.loads((ctx.output_dir / "report.json").read_text())
    assert report["rounds"][0]["steps"] == 2


def test_cli_tune_without_depth(tune_models_dir, tiny_source, tmp_path, capsys):
    from backend.cli import main

    video_dir = tmp_path / "video"
    video_dir.mkdir()
    for i, frame in enumerate(tiny_source.frames):
        cv2.imwrite(str(video_dir / f"frame_{i:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = tmp_path / "shot-nd"
    config = tmp_path / "tune.json"
    config.write_text(json.dumps({k: v for k, v in TINY.items() if k not in ("width", "height", "steps")}))
    code = main(["tune", "--video", str(video_dir), "--out", str(out), "--models", str(tune_models_dir),
                 "--config", str(config), "--size", "32x32", "--steps", "2", "--no-register"])
    assert code == 0
    assert (out / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert "relative" in capsys.readouterr().err  # the depth stage says its scale is not metric


def test_depth_stage_refuses_an_estimate_with_no_usable_value(tiny_source, monkeypatch):
    from backend.pipelines.source_depth import estimate_source_depth
    from protocol.camera import Camera

    cams = [Camera.from_fov(60.0, 32, 32)] * 5

    class NoDepth:
        relative = True

        def predict(self, frames, **kwargs):
            out = np.ones(frames.shape[:3], np.float32)
            out[3] = np.nan
            return out

    monkeypatch.setattr("backend.engines.get_depth_engine", lambda *args, **kwargs: NoDepth())
    with pytest.raises(ValidationError, match=r"no usable depth in frame\(s\) 3"):
        estimate_source_depth(tiny_source.frames, cams, "depth-anything", cameras_guessed=True)
