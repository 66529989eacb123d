"""Source cameras from nerfstudio / instant-ngp ``transforms.json`` and COLMAP text models: round trips,
the conventions against hand-written files, and bad files that must name the file and the problem."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from protocol.camera import Camera, look_at, project_points
from protocol.errors import ValidationError
from protocol.paths import make_path
from protocol.paths.formats import CameraFormatWarning, read_camera_path, write_camera_path
from protocol.paths.formats.colmap import quaternion_to_rotation, rotation_to_quaternion


def _moving_cameras(n: int = 7) -> list[Camera]:
    K = np.array([[70.0, 0.0, 31.5], [0.0, 72.0, 23.0], [0.0, 0.0, 1.0]])
    src = Camera(K, look_at(np.array([0.5, -0.3, -2.0]), np.array([0.2, 0.1, 1.0])), 64, 48)
    return make_path("orbit:left:40+roll:right:10+dolly:in:0.3", [src] * n, 3.0)


def _assert_same(a: list[Camera], b: list[Camera], atol: float = 1e-9) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(y.K, x.K, atol=atol)
        np.testing.assert_allclose(y.world_to_camera, x.world_to_camera, atol=atol)
        assert (y.width, y.height) == (x.width, x.height)


@pytest.mark.parametrize("fmt", ["transforms", "colmap"])
def test_round_trip_is_lossless(tmp_path: Path, fmt: str) -> None:
    cams = _moving_cameras()
    target = tmp_path / ("transforms.json" if fmt == "transforms" else "sparse")
    write_camera_path(target, cams, fmt, fps=24.0)
    data = read_camera_path(target)  # format found from the file / folder
    _assert_same(cams, data.cameras)
    if fmt == "colmap":
        _assert_same(cams, read_camera_path(target / "images.txt", num_frames=len(cams)).cameras)


def test_quaternions_round_trip_for_every_angle() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[0] >= 0 else -q
        R = quaternion_to_rotation(*q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(rotation_to_quaternion(R), q, atol=1e-9)
    # 180 degrees about x: w = 0, the case where naive trace formulas divide by zero
    np.testing.assert_allclose(rotation_to_quaternion(np.diag([1.0, -1.0, -1.0])), [0, 1, 0, 0], atol=1e-12)


def test_colmap_convention_matches_a_hand_written_model(tmp_path: Path) -> None:
    """A camera at world (0, 0, -5) looking down +z (identity rotation): COLMAP T = -R C = (0, 0, 5).
    The world origin must project to the principal point, 5 m in front."""
    (tmp_path / "cameras.txt").write_text("# comment\n1 SIMPLE_PINHOLE 40 30 50 20 15\n2 PINHOLE 40 30 50 60 19.5 15.5\n")
    (tmp_path / "images.txt").write_text(
        "# Image list\n"
        "2 1 0 0 0 0 0 5 1 frame_10.png\n\n"
        "1 0.7071067811865476 0 0.7071067811865476 0 0 0 5 2 frame_9.png\n"
        "10.5 3.5 -1 11 12 7\n")
    data = read_camera_path(tmp_path)
    assert data.extras["image_names"] == ["frame_9.png", "frame_10.png"]  # natural order (9 < 10), not id or text order
    first, second = data.cameras
    np.testing.assert_allclose(first.K, [[50, 0, 19.5], [0, 60, 15.5], [0, 0, 1]])
    uv, z = project_points(second, np.zeros(3))
    np.testing.assert_allclose(uv, [20.0, 15.0])
    assert z == pytest.approx(5.0)
    # 90 degrees about y: R maps world +z to camera +x, so world (0, 0, 1) sits 1 m right of the axis
    uv, z = project_points(first, np.array([0.0, 0.0, 1.0]))
    assert z == pytest.approx(5.0)
    np.testing.assert_allclose(uv, [50.0 / 5.0 + 19.5, 15.5])


def test_transforms_conventions_nerf_synthetic_and_nerfstudio(tmp_path: Path) -> None:
    """NeRF-synthetic style (camera_angle_x, no w/h, OpenGL c2w) and nerfstudio style (fl_x.., w, h)."""
    c2w_gl = np.eye(4)
    c2w_gl[:3, 3] = [0.0, 0.0, 4.0]  # camera at z = 4 looking down -z (OpenGL) at the origin
    doc = {"camera_angle_x": 2 * math.atan(0.5), "frames": [
        {"file_path": "./train/r_10", "transform_matrix": c2w_gl.tolist()},
        {"file_path": "./train/r_9", "transform_matrix": c2w_gl.tolist()}]}
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValidationError, match=r"transforms.json.*frames\[\d\].*image size"):
        read_camera_path(path)
    data = read_camera_path(path, width=40, height=30)
    assert data.extras["file_paths"] == ["./train/r_9", "./train/r_10"]
    cam = data.cameras[0]
    assert cam.fx == pytest.approx(40.0) and cam.fy == pytest.approx(40.0)  # 0.5 W / tan(fov / 2) = 20 / 0.5
    uv, z = project_points(cam, np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(uv[0], [20.0, 15.0])
    np.testing.assert_allclose(uv[1], [30.0, 5.0])  # world +y is up: above the centre in the image
    assert z[0] == pytest.approx(4.0)
    doc = {"camera_model": "OPENCV", "fl_x": 50.0, "fl_y": 52.0, "cx": 19.0, "cy": 14.0, "w": 40, "h": 30,
           "k1": 0.1, "frames": [{"file_path": "images/frame_00001.png", "transform_matrix": c2w_gl.tolist()}]}
    path.write_text(json.dumps(doc))
    with pytest.warns(CameraFormatWarning, match="distortion"):
        cam = read_camera_path(path).cameras[0]
    np.testing.assert_allclose(cam.K, [[50, 0, 19], [0, 52, 14], [0, 0, 1]])


def test_colmap_bad_models_name_the_file(tmp_path: Path) -> None:
    cams = _moving_cameras(5)
    write_camera_path(tmp_path, cams, "colmap")
    images = (tmp_path / "images.txt").read_text().splitlines()
    kept = [line for line in images if "frame_00003.png" not in line]
    (tmp_path / "images.txt").write_text("\n".join(kept) + "\n")
    with pytest.raises(ValidationError, match=r"images.txt.*missing.*frame_00003.png"):
        read_camera_path(tmp_path)
    write_camera_path(tmp_path, cams, "colmap")
    with pytest.raises(ValidationError, match=r"images.txt.*5 registered images but the clip has 6 frames"):
        read_camera_path(tmp_path, num_frames=6)
    (tmp_path / "cameras.txt").write_text("1 OPENCV_FISHEYE 64 48 70 70 32 24 0 0 0 0\n")
    with pytest.raises(ValidationError, match=r"cameras.txt line 1.*OPENCV_FISHEYE"):
        read_camera_path(tmp_path)
    (tmp_path / "cameras.txt").write_text("7 PINHOLE 64 48 70 70 32\n")
    with pytest.raises(ValidationError, match=r"cameras.txt line 1.*4 parameters"):
        read_camera_path(tmp_path)
    (tmp_path / "cameras.txt").write_text("7 PINHOLE 64 48 70 70 32 24\n")
    with pytest.raises(ValidationError, match=r"images.txt line \d+.*CAMERA_ID 1.*does not define"):
        read_camera_path(tmp_path)
    (tmp_path / "cameras.txt").unlink()
    (tmp_path / "cameras.bin").write_bytes(b"\0")
    with pytest.raises(ValidationError, match=r"cameras.txt.*not found.*model_converter"):
        read_camera_path(tmp_path / "images.txt")


def test_transforms_bad_files_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps({"camera_model": "OPENCV_FISHEYE", "fl_x": 5, "w": 4, "h": 4,
                                "frames": [{"transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(ValidationError, match=r"transforms.json.*OPENCV_FISHEYE"):
        read_camera_path(path)
    path.write_text(json.dumps({"w": 4, "h": 4, "frames": [{"transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(ValidationError, match=r"transforms.json.*frames\[0\].*focal"):
        read_camera_path(path)
    path.write_text(json.dumps({"fl_x": 5, "w": 4, "h": 4, "frames": [{"transform_matrix": [1, 2, 3]}]}))
    with pytest.raises(ValidationError, match=r"transforms.json.*transform_matrix"):
        read_camera_path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no distortion: no warning
        path.write_text(json.dumps({"fl_x": 5, "w": 4, "h": 4, "frames": [{"transform_matrix": np.eye(4).tolist()}]}))
        assert read_camera_path(path).cameras[0].fx == 5.0


def test_cli_source_cameras_must_match_the_clip(tmp_path: Path) -> None:
    from backend.pipelines.cli_support import source_camera_dicts

    cams = _moving_cameras(5)
    write_camera_path(tmp_path / "sparse", cams, "colmap")
    assert len(source_camera_dicts(tmp_path / "sparse", 5, 64, 48)) == 5
    with pytest.raises(ValidationError, match=r"sparse.*images.txt.*5 registered images but the clip has 7"):
        source_camera_dicts(tmp_path / "sparse", 7, 64, 48)
    write_camera_path(tmp_path / "transforms.json", cams, "transforms")
    with pytest.raises(ValidationError, match=r"transforms.json: 5 cameras for a clip of 7 frames"):
        source_camera_dicts(tmp_path / "transforms.json", 7, 64, 48)
    with pytest.raises(ValidationError, match=r"transforms.json: cameras are 64x48 but the clip is 32x24"):
        source_camera_dicts(tmp_path / "transforms.json", 5, 32, 24)
    with pytest.raises(ValidationError, match="camera file not found"):
        source_camera_dicts(tmp_path / "nope.json", 5, 64, 48)
