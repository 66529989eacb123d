"""Camera-path presets: geometry of every move, timing, bullet time, grammar."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.camera import Camera, look_at, project_points
from protocol.errors import ValidationError
from protocol.paths import PRESETS, Move, PathSpec, build_path, make_path, parse_path_spec, presets_for_ui

PIVOT = 4.0


def _source(eye=(0.3, -0.2, -1.0), target=(1.0, 0.5, 3.0)) -> Camera:
    K = np.array([[60.0, 0.0, 32.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]])
    return Camera(K, look_at(np.array(eye), np.array(target)), 64, 48)


def _pivot(cam: Camera, depth: float = PIVOT) -> np.ndarray:
    return cam.center + depth * cam.camera_to_world[:3, 2]


def _in_source_frame(src: Camera, vec_world: np.ndarray) -> np.ndarray:
    return src.rotation @ vec_world


def _final(text: str, src: Camera | None = None, n: int = 5) -> tuple[Camera, Camera]:
    src = src or _source()
    return src, make_path(text, [src] * n, PIVOT)[-1]


@pytest.mark.parametrize("direction,axis,sign", [("left", 0, -1), ("right", 0, 1), ("up", 1, -1), ("down", 1, 1)])
def test_orbit_moves_around_pivot_and_keeps_it_centred(direction: str, axis: int, sign: int) -> None:
    src, cam = _final(f"orbit:{direction}:30")
    pivot = _pivot(src)
    uv, z = project_points(cam, pivot)
    np.testing.assert_allclose(uv, [cam.cx, cam.cy], atol=1e-9)
    assert z == pytest.approx(PIVOT)
    offset = _in_source_frame(src, cam.center - src.center)
    assert np.sign(offset[axis]) == sign and abs(offset[1 - axis]) < 1e-9
    a, b = src.center - pivot, cam.center - pivot
    angle = np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    assert angle == pytest.approx(30.0)


def test_dolly_zoom_and_dolly_zoom() -> None:
    src, cam = _final("dolly:in:0.5")
    np.testing.assert_allclose(cam.center, src.center + 2.0 * src.camera_to_world[:3, 2])
    np.testing.assert_allclose(cam.rotation, src.rotation, atol=1e-12)
    src, cam = _final("dolly:out:0.25")
    np.testing.assert_allclose(np.linalg.norm(cam.center - _pivot(src)), 5.0)

    src, cam = _final("zoom:in:2")
    np.testing.assert_allclose(cam.K[:2, :2], 2 * src.K[:2, :2])
    np.testing.assert_allclose(cam.K[:2, 2], src.K[:2, 2])
    np.testing.assert_allclose(cam.world_to_camera, src.world_to_camera)
    _, cam = _final("zoom:out:2")
    assert cam.fx == pytest.approx(30.0)

    # dolly zoom: points on the pivot plane keep their pixels, nearer points do not
    for direction in ("in", "out"):
        src, cam = _final(f"dolly_zoom:{direction}:0.5")
        c2w = src.camera_to_world
        plane = _pivot(src) + np.array([[0.7, 0.3, 0.0], [-1.0, 0.5, 0.0]]) @ c2w[:3, :3].T
        np.testing.assert_allclose(project_points(cam, plane)[0], project_points(src, plane)[0], atol=1e-9)
        near = src.center + np.array([0.5, 0.2, 1.0]) @ c2w[:3, :3].T
        assert not np.allclose(project_points(cam, near)[0], project_points(src, near)[0], atol=0.5)


@pytest.mark.parametrize("text,check", [
    ("pan:right:20", lambda f, x, y: f[0] > 0 and abs(f[1]) < 1e-9),
    ("pan:left:20", lambda f, x, y: f[0] < 0),
    ("tilt:up:15", lambda f, x, y: f[1] < 0 and abs(f[0]) < 1e-9),
    ("tilt:down:15", lambda f, x, y: f[1] > 0),
    ("roll:right:15", lambda f, x, y: x[1] > 0 and f[2] == pytest.approx(1.0)),
    ("roll:left:15", lambda f, x, y: x[1] < 0),
])
def test_rotations_in_place(text: str, check) -> None:
    src, cam = _final(text)
    np.testing.assert_allclose(cam.center, src.center, atol=1e-12)
    forward = _in_source_frame(src, cam.camera_to_world[:3, 2])
    x_axis = _in_source_frame(src, cam.camera_to_world[:3, 0])
    assert check(forward, x_axis, None)


def test_gradual_eases_from_source_and_direct_jumps() -> None:
    src = _source()
    gradual = make_path("orbit:left:40", [src] * 9, PIVOT)
    direct = make_path("orbit:left:40:direct", [src] * 9, PIVOT)
    np.testing.assert_allclose(gradual[0].world_to_camera, src.world_to_camera, atol=1e-12)
    np.testing.assert_allclose(gradual[-1].world_to_camera, direct[0].world_to_camera, atol=1e-12)
    for cam in direct:
        np.testing.assert_allclose(cam.world_to_camera, direct[-1].world_to_camera)
    travelled = [np.linalg.norm(c.center - src.center) for c in gradual]
    steps = np.diff(travelled)
    assert np.all(steps > 0) and steps[0] < steps[len(steps) // 2] > steps[-1]  # eases in and out


def test_moving_sources_carry_the_path_and_bullet_time_freezes() -> None:
    sources = [_source(eye=(0.1 * i, 0.0, -1.0), target=(0.1 * i, 0.0, 3.0)) for i in range(6)]
    path = build_path("orbit:right:30:direct", sources, PIVOT)
    assert path.source_frames == list(range(6))
    for src, cam in zip(sources, path.cameras):
        np.testing.assert_allclose(cam.world_to_camera @ src.camera_to_world,
                                   path.cameras[0].world_to_camera @ sources[0].camera_to_world, atol=1e-12)
    bullet = build_path("bullet:4:orbit:right:30", sources, PIVOT)
    assert bullet.source_frames == [4] * 6
    np.testing.assert_allclose(bullet.cameras[0].world_to_camera, sources[4].world_to_camera, atol=1e-12)
    for cam in bullet.cameras:  # every camera looks at the frozen frame's pivot
        np.testing.assert_allclose(project_points(cam, _pivot(sources[4]))[0], [32.0, 24.0], atol=1e-9)
    with pytest.raises(ValidationError, match="outside the source clip"):
        build_path("bullet:6:orbit:right:30", sources, PIVOT)


def test_single_source_image_and_per_frame_pivot() -> None:
    src = _source()
    path = build_path("dolly:in:0.5", [src], PIVOT, num_frames=7)
    assert len(path) == 7 and path.source_frames == [0] * 7
    cams = make_path("dolly:in:0.5:direct", [src, src], [2.0, 4.0])
    assert np.linalg.norm(cams[0].center - src.center) == pytest.approx(1.0)
    assert np.linalg.norm(cams[1].center - src.center) == pytest.approx(2.0)
    with pytest.raises(ValidationError, match="pivot_depth"):
        make_path("dolly:in:0.5", [src], -1.0)
    with pytest.raises(ValidationError, match="source cameras"):
        make_path("dolly:in:0.5", [src, src], 1.0, num_frames=5)


def test_composed_moves() -> None:
    src, cam = _final("orbit:left:30+dolly:in:0.5")
    assert np.linalg.norm(cam.center - _pivot(src)) == pytest.approx(2.0)
    np.testing.assert_allclose(project_points(cam, _pivot(src))[0], [32.0, 24.0], atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(sorted(PRESETS)), data=st.data())
def test_every_preset_starts_at_source_and_round_trips_text(kind: str, data: st.DataObject) -> None:
    preset = PRESETS[kind]
    direction = data.draw(st.sampled_from(preset.directions))
    amount = data.draw(st.floats(preset.amount.minimum, preset.amount.maximum))
    spec = PathSpec((Move(kind, direction, amount),))
    assert parse_path_spec(spec.to_text()).moves[0].amount == pytest.approx(amount, rel=1e-5, abs=1e-9)
    src = _source()
    cams = make_path(spec, [src] * 3, PIVOT)
    np.testing.assert_allclose(cams[0].world_to_camera, src.world_to_camera, atol=1e-12)
    np.testing.assert_allclose(cams[0].K, src.K, atol=1e-12)


def test_grammar() -> None:
    spec = parse_path_spec(" Bullet:40:Arc:Right:30 ")
    assert spec == PathSpec((Move("orbit", "right", 30.0),), "gradual", 40)
    assert parse_path_spec(spec.to_text()) == spec
    assert parse_path_spec("zoom") == PathSpec((Move("zoom", "in", PRESETS["zoom"].amount.default),))
    assert parse_path_spec("vertigo:out:0.2:direct").timing == "direct"
    assert PathSpec.from_dict(spec.to_dict()) == spec
    for bad, message in [("", "empty"), ("spin:left:3", "unknown camera move"), ("orbit:sideways:3", "direction"),
                         ("orbit:left:500", "angle must be in"), ("dolly:in:abc", "not a number"),
                         ("bullet:x:orbit", "frame"), ("bullet:3", "bullet"), ("orbit:left:3:4", "too many"),
                         ("orbit:left:3+", "empty move"), ("bullet:2.5:orbit", "integer")]:
        with pytest.raises(ValidationError, match=message):
            parse_path_spec(bad)


def test_ui_table_defaults_within_range() -> None:
    table = presets_for_ui()
    assert {"orbit", "dolly", "zoom", "dolly_zoom", "pan", "tilt", "roll", "bullet", "timing"} <= set(table)
    for name, preset in PRESETS.items():
        p = preset.amount
        assert p.minimum <= p.default <= p.maximum, name
        assert table[name]["amount"]["unit"] == p.unit
