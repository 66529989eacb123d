"""Pure-numpy tests: Blender <-> OpenCV camera conversion and depth conventions."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.blender_camera import (
    BlenderCameraParams,
    blender_from_camera,
    camera_from_blender,
    effective_sensor_fit,
    vertical_fov_deg,
    with_resolution_percentage,
)
from protocol.camera import Camera, look_at, project_points, ray_depth_to_z, z_to_ray_depth
from protocol.errors import CameraError


def test_identity_blender_camera_looks_down_minus_z() -> None:
    params = BlenderCameraParams(lens_mm=36.0, sensor_width=36.0, resolution_x=100, resolution_y=50)
    cam = camera_from_blender(params)
    assert cam.fx == pytest.approx(100.0) and cam.fy == pytest.approx(100.0)
    assert (cam.cx, cam.cy) == (50.0, 25.0)
    uv, z = project_points(cam, np.array([[0.0, 0.0, -2.0], [1.0, 1.0, -2.0]]))
    np.testing.assert_allclose(z, [2.0, 2.0])
    np.testing.assert_allclose(uv[0], [50.0, 25.0])
    # Blender +x right, +y up: a point up-right lands right of and above the centre
    assert uv[1, 0] > 50.0 and uv[1, 1] < 25.0


def test_auto_fit_follows_pixel_aspect() -> None:
    assert effective_sensor_fit("AUTO", 64, 60) == "HORIZONTAL"
    assert effective_sensor_fit("AUTO", 64, 60, 1.0, 1.3) == "VERTICAL"
    assert effective_sensor_fit("VERTICAL", 64, 10) == "VERTICAL"


def test_resolution_percentage_scales_intrinsics() -> None:
    params = BlenderCameraParams(shift_x=0.1, shift_y=-0.05, resolution_x=640, resolution_y=480)
    full, half = camera_from_blender(params), camera_from_blender(with_resolution_percentage(params, 50))
    assert (half.width, half.height) == (320, 240)
    np.testing.assert_allclose(half.K[:2], full.K[:2] / 2)


@pytest.mark.parametrize("fit", ["AUTO", "HORIZONTAL", "VERTICAL"])
@pytest.mark.parametrize("size", [(64, 48), (48, 64)])
def test_round_trip_camera_blender_camera(fit: str, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    w, h = size
    for _ in range(5):
        fx = rng.uniform(30, 120)
        K = np.array([[fx, 0, rng.uniform(10, w - 10)], [0, fx * rng.uniform(0.6, 1.7), rng.uniform(10, h - 10)],
                      [0, 0, 1]])
        w2c = look_at(rng.normal(size=3), rng.normal(size=3) + 5.0)
        cam = Camera(K, w2c, w, h)
        params = blender_from_camera(cam, sensor_width=30.0, sensor_fit=fit, sensor_height=20.0)
        assert min(params.pixel_aspect_x, params.pixel_aspect_y) == 1.0
        back = camera_from_blender(params)
        np.testing.assert_allclose(back.K, cam.K, atol=1e-9)
        np.testing.assert_allclose(back.world_to_camera, cam.world_to_camera, atol=1e-9)


def test_scaled_matrix_world_is_normalised_and_shear_rejected() -> None:
    M = np.diag([2.0, 3.0, 0.5, 1.0])
    cam = camera_from_blender(BlenderCameraParams(matrix_world=M))
    np.testing.assert_allclose(cam.rotation, np.diag([1.0, -1.0, -1.0]))
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(CameraError, match="shear"):
        camera_from_blender(BlenderCameraParams(matrix_world=sheared))


def test_bad_blender_values_raise_camera_error() -> None:
    with pytest.raises(CameraError, match="sensor_fit"):
        BlenderCameraParams(sensor_fit="DIAGONAL")
    with pytest.raises(CameraError, match="lens_mm"):
        BlenderCameraParams(lens_mm=0.0)
    with pytest.raises(CameraError, match="clip_start"):
        BlenderCameraParams(clip_start=5.0, clip_end=1.0)
    skewed = Camera(np.array([[50.0, 3.0, 32.0], [0.0, 50.0, 24.0], [0.0, 0.0, 1.0]]), np.eye(4), 64, 48)
    with pytest.raises(CameraError, match="skew"):
        blender_from_camera(skewed)


def test_params_dict_round_trip_and_vertical_fov() -> None:
    params = BlenderCameraParams(lens_mm=24.0, sensor_fit="VERTICAL", resolution_x=200, resolution_y=100)
    again = BlenderCameraParams.from_dict(params.to_dict())
    np.testing.assert_allclose(camera_from_blender(again).K, camera_from_blender(params).K)
    assert vertical_fov_deg(params) == pytest.approx(np.degrees(2 * np.arctan(12.0 / 24.0)))


def test_depth_conversion_against_geometry() -> None:
    cam = Camera(np.array([[40.0, 0.0, 20.0], [0.0, 50.0, 10.0], [0.0, 0.0, 1.0]]), np.eye(4), 32, 24)
    z = np.random.default_rng(0).uniform(1.0, 9.0, (24, 32))
    v, u = np.mgrid[0:24, 0:32] + 0.5
    points = np.stack([(u - 20.0) / 40.0 * z, (v - 10.0) / 50.0 * z, z], axis=-1)
    ray = z_to_ray_depth(z, cam.K)
    np.testing.assert_allclose(ray, np.linalg.norm(points, axis=-1))
    np.testing.assert_allclose(ray_depth_to_z(ray, cam.K), z)
    # batched K and float32 preserved; infinities (no hit) stay infinite
    zf = np.stack([z, z]).astype(np.float32)
    zf[0, 0, 0] = np.inf
    out = z_to_ray_depth(zf, np.stack([cam.K, cam.K]))
    assert out.dtype == np.float32 and np.isinf(out[0, 0, 0])
    with pytest.raises(CameraError):
        z_to_ray_depth(np.ones(5), cam.K)


def test_numpy_depth_conversion_agrees_with_backend_torch() -> None:
    """protocol (numpy) and backend.geometry (torch) must share one depth convention and pixel centres."""
    torch = pytest.importorskip("torch")
    geometry = pytest.importorskip("backend.geometry.cameras")
    from protocol.blender_camera import BLENDER_DEPTH_PASS

    K = np.array([[[40.0, 0.5, 20.0], [0.0, 50.0, 10.0], [0.0, 0.0, 1.0]]])
    ray = np.random.default_rng(1).uniform(1.0, 9.0, (1, 12, 16))
    theirs = geometry.depth_to_planar(torch.tensor(ray), torch.tensor(K), "ray").numpy()
    np.testing.assert_allclose(ray_depth_to_z(ray, K), theirs, rtol=1e-6)
    for kind in set(BLENDER_DEPTH_PASS.values()):
        geometry.check_depth_kind(kind)  # our Blender constants are valid backend depth kinds
