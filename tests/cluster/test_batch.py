"""``recast4d batch``: many job files, progress per job, one summary, resumable after an interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from clusterkit import ray_options

from backend.cli import main
from backend.executors import ExecutorOptions
from backend.executors.batch import run_batch
from backend.executors.job_file import read_job_file
from backend.jobs import DONE, JobStore
from backend.media import write_mp4
from backend.pipelines.reshoot.synthetic import sliding_square_scene

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_TESTS = os.path.join(REPO, "tests", "server")


def points_job(folder, name: str, **params) -> str:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"kind": "test.points", "job_id": name,
                                "params": dict({"frames": 2, "points": 8}, **params)}))
    return str(path)


def test_batch_runs_reshoot_shots_prints_one_summary_and_skips_done_shots_on_a_rerun(tmp_path, capsys):
    scene = sliding_square_scene(num_frames=3, width=32, height=24)
    write_mp4(tmp_path / "plate.mp4", scene.frames, fps=6)
    np.save(tmp_path / "depth.npy", scene.depth)
    files = []
    for name, preset in (("sh010", "orbit:left:10"), ("sh020", "dolly:in:0.2")):
        job = {"kind": "reshoot", "params": {"cameras": [scene.camera.to_dict()],
                                             "trajectories": [{"name": "cam", "preset": preset}],
                                             "gaussians": {"enabled": False}},
               "inputs": {"frames": "plate.mp4", "depth": "depth.npy"}, "out": f"out/{name}"}
        (tmp_path / f"{name}.json").write_text(json.dumps(job))
        files.append(str(tmp_path / f"{name}.json"))
    (tmp_path / "broken.json").write_text(json.dumps({"kind": "reshoot", "params": {},
                                                      "inputs": {"frames": "missing.mp4"}}))
    jobs_dir = str(tmp_path / "jobs")
    assert main(["batch", *files, str(tmp_path / "broken.json"), "--jobs-dir", jobs_dir]) == 1
    captured = capsys.readouterr()
    assert "2/3 jobs done" in captured.out and "missing.mp4" in captured.out
    assert "[1/3]" in captured.err and "sh010" in captured.err  # progress per job
    for name in ("sh010", "sh020"):
        assert json.loads((tmp_path / "out" / name / "report.json").read_text())["frames"] == 3
    # Run again: both shots are done already and are skipped, not recomputed.
    assert main(["batch", *files, "--jobs-dir", jobs_dir]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("done before, skipped") == 2 and "2/2 jobs done" in captured.out


def test_batch_resumes_after_it_was_killed_mid_job(tmp_path):
    quick = points_job(tmp_path, "quick")
    slow = points_job(tmp_path, "slow", frames=20, delay_s=0.1)
    jobs_dir = tmp_path / "jobs"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SERVER_TESTS, REPO]))
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "batch", quick, slow, "--jobs-dir", str(jobs_dir),
                             "--job-kinds", "jobkinds_for_tests"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any((jobs_dir / "slow" / "streams" / "points").glob("*.chunk")):
            assert proc.poll() is None and time.monotonic() < deadline, "the batch never reached the slow job"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert JobStore(jobs_dir).get("quick").state == DONE
    outcomes = run_batch([read_job_file(quick), read_job_file(slow)], jobs_dir, ExecutorOptions(),
                         job_kind_modules=["jobkinds_for_tests"])
    assert [(o.job_id, o.state) for o in outcomes] == [("quick", DONE), ("slow", DONE)]
    assert outcomes[0].detail == "done before (skipped)"
    store = JobStore(jobs_dir)
    assert store.get("slow").streams["points"].chunks == 20
    assert (jobs_dir / "quick" / "runs.txt").read_text().count("run") == 1
    assert (jobs_dir / "slow" / "runs.txt").read_text().count("run") == 2  # interrupted, then run again


@pytest.mark.slow
def test_batch_on_ray_workers(ray_cluster, tmp_path):
    files = [read_job_file(points_job(tmp_path, f"shot{i}", frames=3, delay_s=0.1, seed=i)) for i in range(3)]
    outcomes = run_batch(files, tmp_path / "jobs", ray_options(2), job_kind_modules=["jobkinds_for_tests"])
    assert [o.state for o in outcomes] == [DONE] * 3
    store = JobStore(tmp_path / "jobs")
    assert all(store.get(f"shot{i}").streams["points"].chunks == 3 for i in range(3))


def test_run_job_runs_a_generate_job_file_through_its_job_kind(tmp_path, monkeypatch):
    from backend.media import write_png_sequence

    scene = sliding_square_scene(num_frames=3, width=32, height=24)
    write_png_sequence(tmp_path / "frames", scene.frames)
    np.save(tmp_path / "depth.npy", scene.depth)
    np.save(tmp_path / "masks.npy", scene.foreground)
    (tmp_path / "gen.json").write_text(json.dumps({
        "kind": "generate", "params": {"fov_deg": 60, "gaussians": {"iterations": 0},
                                       "outpaint": {"rings": [[[0, 20]]], "fit_iterations": 0}},
        "inputs": {"frames": "frames", "depth": "depth.npy", "foreground": "masks.npy"}}))
    monkeypatch.setenv("RECAST4D_JOBS", str(tmp_path / "jobs"))
    assert main(["run", "--job", str(tmp_path / "gen.json"), "--engine", "wan-vace", "--out", str(tmp_path / "x")]) == 1
    assert main(["run", "--job", str(tmp_path / "gen.json"), "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["split"]["kind"] == "mask"
