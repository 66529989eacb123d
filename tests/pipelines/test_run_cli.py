"""``recast4d run``: same pipeline from the command line; bad input exits non-zero with a clear message."""

from __future__ import annotations

import json

import numpy as np

from backend.cli import main
from backend.media import write_mp4
from backend.pipelines.reshoot.synthetic import sliding_square_scene
from protocol.paths.formats import write_camera_path


def _inputs(tmp_path):
    scene = sliding_square_scene(num_frames=3, width=32, height=24)
    write_mp4(tmp_path / "in.mp4", scene.frames, fps=6)
    np.save(tmp_path / "depth.npy", scene.depth)
    write_camera_path(tmp_path / "source.json", [scene.camera] * 3, "nerfstudio", fps=6)
    return scene


def test_run_with_video_depth_and_presets(tmp_path, capsys):
    _inputs(tmp_path)
    code = main(["run", "--video", str(tmp_path / "in.mp4"), "--depth", str(tmp_path / "depth.npy"),
                 "--camera", str(tmp_path / "source.json"), "--camera-path", "orbit:left:10",
                 "--gaussian-iterations", "0", "--out", str(tmp_path / "out")])
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["frames"] == 3 and report["trajectories"][0]["name"] == "orbit0"
    assert (tmp_path / "out" / "orbit0" / "video.mp4").exists()
    assert "wrote" in capsys.readouterr().out


def test_run_from_a_job_file_with_a_camera_path_file(tmp_path):
    scene = _inputs(tmp_path)
    pose = np.eye(4)
    pose[0, 3] = -0.05  # 5 cm to the right
    shifted = [scene.camera.with_pose(pose)] * 3
    write_camera_path(tmp_path / "target.json", shifted, "nerfstudio", fps=6)
    job = {"params": {"cameras": [scene.camera.to_dict()],
                      "trajectories": [{"name": "slide", "cameras": [c.to_dict() for c in shifted]}],
                      "gaussians": {"enabled": False}, "outputs": ["video", "cameras"]},
           "inputs": {"frames": "in.mp4", "depth": "depth.npy"}, "out": "job_out"}
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert main(["run", "--job", str(tmp_path / "job.json")]) == 0
    assert (tmp_path / "job_out" / "slide" / "cameras.json").exists()


def test_bad_inputs_exit_non_zero_with_a_message(tmp_path, capsys):
    _inputs(tmp_path)
    assert main(["run", "--video", str(tmp_path / "missing.mp4"), "--camera-path", "orbit:left:5",
                 "--out", str(tmp_path / "o")]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["run", "--video", str(tmp_path / "in.mp4"), "--depth", str(tmp_path / "depth.npy"),
                 "--out", str(tmp_path / "o")]) == 1
    assert "--camera-path" in capsys.readouterr().err
    assert main(["run", "--video", str(tmp_path / "in.mp4"), "--depth", str(tmp_path / "depth.npy"),
                 "--camera-path", "spin:wildly", "--out", str(tmp_path / "o")]) == 1
    assert "spin" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["run", "--job", str(tmp_path / "bad.json")]) == 1
    assert "not valid JSON" in capsys.readouterr().err
