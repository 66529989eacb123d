"""Camera-path file formats: round trips, lossy warnings, peer-loader semantics, bad files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from protocol.camera import Camera, look_at, project_points
from protocol.errors import ValidationError
from protocol.paths import build_path, make_path
from protocol.paths.formats import (
    FormatConstraintWarning,
    LossyFormatWarning,
    read_camera_path,
    write_camera_path,
)
from protocol.paths.formats.orbit_txt import interpolate_line, orbit_delta
from protocol.paths.formats.recammaster import _parse_matrix

PIVOT = 3.0


def _source() -> Camera:
    K = np.array([[70.0, 0.0, 30.0], [0.0, 80.0, 25.0], [0.0, 0.0, 1.0]])
    return Camera(K, look_at(np.array([0.5, -0.3, -2.0]), np.array([0.2, 0.1, 1.0])), 64, 48)


def _messy_path(n: int = 6) -> list[Camera]:
    """Cameras with per-frame zoom, shift and roll: only the lossless formats can hold them."""
    src = _source()
    cams = make_path("orbit:left:25+zoom:in:1.5+roll:right:10", [src] * n, PIVOT)
    out = []
    for i, cam in enumerate(cams):
        K = cam.K.copy()
        K[0, 2] += i
        out.append(Camera(K, cam.world_to_camera, cam.width, cam.height))
    return out


def _assert_same(a: list[Camera], b: list[Camera], atol: float = 1e-9) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(y.K, x.K, atol=atol)
        np.testing.assert_allclose(y.world_to_camera, x.world_to_camera, atol=atol)
        assert (y.width, y.height) == (x.width, x.height)


def test_nerfstudio_round_trip_with_intrinsics_and_time_map(tmp_path: Path) -> None:
    path = build_path("bullet:2:orbit:right:20", [_source()] * 5, PIVOT)
    file = tmp_path / "camera_path.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # lossless: no warning
        write_camera_path(file, path.cameras, "nerfstudio", fps=24.0, source_frames=path.source_frames)
    data = read_camera_path(file)
    _assert_same(path.cameras, data.cameras)
    assert data.fps == 24.0 and data.source_frames == [2] * 5
    doc = json.loads(file.read_text())
    assert doc["render_width"] == 64 and doc["seconds"] == pytest.approx(5 / 24)
    # row-major OpenGL camera_to_world: column 2 is the camera's back (-forward) direction
    c2w = np.array(doc["camera_path"][0]["camera_to_world"]).reshape(4, 4)
    np.testing.assert_allclose(c2w[:3, 2], -path.cameras[0].camera_to_world[:3, 2], atol=1e-12)
    np.testing.assert_allclose(c2w[:3, 3], path.cameras[0].center, atol=1e-12)


def test_nerfstudio_without_explicit_intrinsics_reads_like_nerfstudio(tmp_path: Path) -> None:
    file = tmp_path / "ns.json"
    c2w = np.eye(4)
    c2w[:3, 3] = [1.0, 2.0, 3.0]
    doc = {"camera_type": "perspective", "render_width": 100, "render_height": 50, "fps": 10, "seconds": 0.1,
           "camera_path": [{"camera_to_world": c2w.reshape(-1).tolist(), "fov": 90.0, "aspect": 1}]}
    file.write_text(json.dumps(doc))
    cam = read_camera_path(file).cameras[0]
    np.testing.assert_allclose(cam.K, [[25.0, 0, 50.0], [0, 25.0, 25.0], [0, 0, 1]])
    np.testing.assert_allclose(cam.center, [1.0, 2.0, 3.0])
    uv, z = project_points(cam, np.array([1.0, 2.0, 1.0]))  # OpenGL: looks down -z
    assert z == pytest.approx(2.0)


def test_gen3c_round_trip_lossless_and_frame_count_warning(tmp_path: Path) -> None:
    cams = _messy_path()
    file = tmp_path / "camera.npz"
    with pytest.warns(FormatConstraintWarning, match="120"):
        write_camera_path(file, cams, "gen3c")
    with np.load(file) as data:
        assert data["w2c"].shape == (6, 4, 4) and data["intrinsics"].shape == (6, 3, 3)
    _assert_same(cams, read_camera_path(file).cameras, atol=2e-5)  # stored as float32, like GEN3C


def test_recammaster_round_trip_matches_its_loader(tmp_path: Path) -> None:
    cams = _messy_path(5)
    file = tmp_path / "camera_extrinsics.json"
    with pytest.warns(LossyFormatWarning, match="intrinsics"), pytest.warns(FormatConstraintWarning, match="81"):
        write_camera_path(file, cams, "recammaster")
    back = read_camera_path(file, reference=cams[0]).cameras
    for a, b in zip(cams, back):
        np.testing.assert_allclose(b.world_to_camera, a.world_to_camera, atol=1e-7)
    # ReCamMaster's own loader (transpose, reorder columns [1, 2, 0, 3], negate y, cm -> m), then
    # relative to frame 0, must give our relative poses.
    doc = json.loads(file.read_text())
    loaded = []
    for i in range(5):
        m = _parse_matrix(file, "x", doc[f"frame{i}"]["cam01"])  # already transposed back
        c2w = m[:, [1, 2, 0, 3]].copy()
        c2w[:3, 1] *= -1.0
        c2w[:3, 3] /= 100.0
        loaded.append(c2w)
    for i in range(5):
        theirs = np.linalg.inv(loaded[0]) @ loaded[i]
        ours = cams[0].world_to_camera @ cams[i].camera_to_world
        np.testing.assert_allclose(theirs, ours, atol=1e-7)
    assert "0] [" in doc["frame0"]["cam01"] and doc["frame0"]["cam01"].rstrip().endswith("1]")


def test_orbit_formats_round_trip_pure_orbits(tmp_path: Path) -> None:
    src = _source()
    cams = make_path("orbit:right:30+orbit:up:10+dolly:in:0.3", [src] * 7, PIVOT)
    for fmt in ("trajectorycrafter", "viewcrafter"):
        file = tmp_path / f"{fmt}.txt"
        with pytest.warns(LossyFormatWarning) as record:
            write_camera_path(file, cams, fmt, reference=src, pivot_depth=PIVOT)
        message = str(record[0].message)
        assert "intrinsics" in message and "roll" not in message  # pure orbit: only K is not stored
        back = read_camera_path(file, fmt, reference=src, pivot_depth=PIVOT, num_frames=7).cameras
        _assert_same(cams, back, atol=1e-7)
    tc = (tmp_path / "trajectorycrafter.txt").read_text().splitlines()
    vc = (tmp_path / "viewcrafter.txt").read_text().splitlines()
    theta, phi = np.array(tc[0].split(), float), np.array(tc[1].split(), float)
    assert theta[-1] > 0 and phi[-1] > 0  # up and right are positive in TrajectoryCrafter
    np.testing.assert_allclose(np.array(vc[0].split(), float), phi)   # ViewCrafter line 1 = phi
    np.testing.assert_allclose(np.array(vc[1].split(), float), -theta)  # line 2 = theta, + = down
    assert float(tc[2].split()[-1]) < 0  # moved closer: r < 0


def test_orbit_formats_warn_about_roll_and_match_presets(tmp_path: Path) -> None:
    src = _source()
    with pytest.warns(LossyFormatWarning, match="roll"):
        write_camera_path(tmp_path / "t.txt", make_path("roll:right:10", [src] * 3, PIVOT), "trajectorycrafter",
                          reference=src, pivot_depth=PIVOT)
    preset = make_path("orbit:right:30:direct", [src], PIVOT)[0]
    np.testing.assert_allclose(preset.camera_to_world, src.camera_to_world @ orbit_delta(0.0, 30.0, 0.0, PIVOT),
                               atol=1e-12)
    with pytest.raises(ValidationError, match="reference"):
        write_camera_path(tmp_path / "t.txt", [src], "trajectorycrafter")


def test_viewcrafter_resamples_long_paths_and_reads_upstream_example(tmp_path: Path) -> None:
    src = _source()
    cams = make_path("orbit:left:20", [src] * 40, PIVOT)
    file = tmp_path / "long.txt"
    with pytest.warns(LossyFormatWarning, match="resampled to 25"), pytest.warns(LossyFormatWarning, match="orbit"):
        write_camera_path(file, cams, "free4d", reference=src, pivot_depth=PIVOT)
    assert all(len(line.split()) == 25 for line in file.read_text().splitlines())
    # ViewCrafter's documented loop example: lines of different lengths, default reference
    example = tmp_path / "loop1.txt"
    example.write_text("0 -3 -15 -20 -17 -5 0\n0 -2 -5 -10 -8 -5 0 2 5 10 8 5 0\n0  0\n")
    data = read_camera_path(example, "viewcrafter")
    assert len(data.cameras) == 25 and data.cameras[0].width == 1024
    np.testing.assert_allclose(data.cameras[0].world_to_camera, np.eye(4), atol=1e-12)


def test_interpolate_line_passes_through_keyframes() -> None:
    values = np.array([0.0, 3.0, 10.0, 20.0, 17.0])
    np.testing.assert_allclose(interpolate_line(values, 5), values, atol=1e-12)
    np.testing.assert_allclose(interpolate_line(values, 9)[::2], values, atol=1e-12)
    np.testing.assert_allclose(interpolate_line(np.array([0.0, 40.0]), 5), [0, 10, 20, 30, 40])


@pytest.mark.parametrize("name,content,message", [
    ("bad.json", "{not json", "not valid JSON"),
    ("list.json", "[1, 2]", "JSON object"),
    ("other.json", '{"hello": 1}', "neither a nerfstudio"),
    ("ns.json", '{"camera_type": "perspective", "render_width": 4, "render_height": 4, "camera_path": []}',
     "non-empty"),
    ("ns2.json", '{"render_width": 4, "render_height": 4, "camera_path": [{"camera_to_world": [1, 2], "fov": 50}]}',
     "16 \\(or 12\\) numbers"),
    ("ns3.json", '{"render_width": 4, "render_height": 4, "camera_path": [{"camera_to_world": '
                 '[1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1]}]}', "fov"),
    ("ns4.json", '{"camera_type": "equirectangular", "render_width": 4, "render_height": 4, "camera_path": [1]}',
     "perspective only"),
    ("rcm.json", '{"frame0": {"cam01": "[1 0 0] [0 1 0]"}}', "4 bracketed rows"),
    ("rcm2.json", '{"frame0": {"cam02": "[1 0 0 0] [0 1 0 0] [0 0 1 0] [0 0 0 1]"}}', "no camera 'cam01'"),
    ("rcm3.json", '{"frame1": {"cam01": "[1 0 0 0] [0 1 0 0] [0 0 1 0] [0 0 0 1]"}}', "without gaps"),
    ("shear.json", '{"frame0": {"cam01": "[1 0.5 0 0] [0 1 0 0] [0 0 1 0] [0 0 0 1]"}}', "camera 0: .*shear"),
    ("a.txt", "0 1\n0 1\n", None),
    ("nan.npz", None, "not a readable"),
])
def test_bad_files_raise_validation_error_naming_the_file(tmp_path: Path, name: str, content: str | None,
                                                         message: str | None) -> None:
    file = tmp_path / name
    file.write_text(content if content is not None else "not a zip")
    with pytest.raises(ValidationError) as info:
        read_camera_path(file)
    assert name in str(info.value)
    if message:
        assert info.match(message)


def test_bad_txt_and_npz_contents(tmp_path: Path) -> None:
    txt = tmp_path / "t.txt"
    txt.write_text("0 1\n0 x\n0 0\n")
    with pytest.raises(ValidationError, match="line 2"):
        read_camera_path(txt, "trajectorycrafter")
    txt.write_text("0 1\n0 1\n")
    with pytest.raises(ValidationError, match="exactly 3"):
        read_camera_path(txt, "trajectorycrafter")
    npz = tmp_path / "camera.npz"
    np.savez(npz, w2c=np.eye(4)[None].repeat(2, 0), intrinsics=np.eye(3)[None])
    with pytest.raises(ValidationError, match="intrinsics must be"):
        read_camera_path(npz)
    with pytest.raises(ValidationError, match="does not exist"):
        read_camera_path(tmp_path / "missing.json")
    with pytest.raises(ValidationError, match="unknown camera path format"):
        write_camera_path(tmp_path / "x", [_source()], "alembic")
