"""The Open Job Description templates: valid for openjd-model, and a reshoot shot run locally with openjd-cli."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.farm import FARM_KINDS, template_path
from backend.media import write_mp4
from backend.pipelines.reshoot.synthetic import sliding_square_scene

openjd_model = pytest.importorskip("openjd.model", reason="the farm tests need openjd-model: pip install 'recast4d[farm]'")
REPO = Path(__file__).resolve().parents[2]


def create_job(kind: str, values: dict[str, str]):
    from openjd.model import (
        DocumentType,
        create_job,
        decode_job_template,
        document_string_to_object,
        preprocess_job_parameters,
    )

    path = template_path(kind)
    template = decode_job_template(template=document_string_to_object(document=path.read_text(),
                                                                      document_type=DocumentType.YAML))
    parameters = preprocess_job_parameters(job_template=template, job_parameter_values=values,
                                           job_template_dir=path.parent, current_working_dir=Path.cwd(),
                                           environment_templates=[])
    return create_job(job_template=template, job_parameter_values=parameters)


@pytest.mark.parametrize("kind", FARM_KINDS)
def test_each_template_is_valid_asks_for_a_gpu_and_runs_recast4d_run_job(kind, tmp_path):
    job_file = tmp_path / "shot.json"
    job_file.write_text("{}")
    values = {"JobFile": str(job_file), "OutputDir": str(tmp_path / "out")}
    if kind == "tune":
        values["JobsDir"] = str(tmp_path / "jobs")
    job = create_job(kind, values)
    (step,) = job.steps
    amounts = {a.name: a.min for a in step.hostRequirements.amounts}
    assert amounts["amount.worker.gpu"] == 1 and amounts["amount.worker.gpu.memory"] >= 16000
    on_run = step.script.actions.onRun
    assert on_run.command == "{{Param.Recast4DCommand}}"
    assert on_run.args[:3] == ["run", "--job", "{{Param.JobFile}}"]


def test_a_template_without_its_job_file_is_refused():
    from openjd.model import DecodeValidationError

    with pytest.raises((DecodeValidationError, ValueError), match="JobFile"):
        create_job("reshoot", {"OutputDir": "/tmp/out"})


def test_the_reshoot_template_runs_a_shot_locally_with_openjd_cli(tmp_path):
    openjd = Path(sys.executable).parent / "openjd"
    if not openjd.exists():
        pytest.skip("openjd-cli is not installed: pip install 'recast4d[farm]'")
    scene = sliding_square_scene(num_frames=3, width=32, height=24)
    write_mp4(tmp_path / "plate.mp4", scene.frames, fps=6)
    np.save(tmp_path / "depth.npy", scene.depth)
    (tmp_path / "sh010.json").write_text(json.dumps({
        "kind": "reshoot", "params": {"cameras": [scene.camera.to_dict()],
                                      "trajectories": [{"name": "cam", "preset": "orbit:left:10"}],
                                      "gaussians": {"enabled": False}},
        "inputs": {"frames": "plate.mp4", "depth": "depth.npy"}}))
    launcher = tmp_path / "recast4d"  # what a studio's install puts on the workers
    launcher.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m backend.cli \"$@\"\n")
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    result = subprocess.run(
        [str(openjd), "run", str(template_path("reshoot")), "--step", "Reshoot",
         "-p", f"JobFile={tmp_path / 'sh010.json'}", "-p", f"OutputDir={tmp_path / 'out'}",
         "-p", f"Recast4DCommand={launcher}"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["frames"] == 3
    assert (tmp_path / "out" / "scene.usdc").exists()
