"""Bad input on the Blender side: a result without Gaussians, a Blender without USD, NaN scales or
zero quaternions in a USD or PLY -> a clear message, nothing half-imported, no traceback."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.blender


def _data_counts(bpy) -> dict[str, int]:
    return {name: len(getattr(bpy.data, name)) for name in
            ("objects", "collections", "cache_files", "pointclouds", "meshes", "materials", "node_groups")}


def _add_job(bpy, folder):
    job = bpy.context.scene.recast4d.jobs.add()
    job.job_id, job.state, job.result_dir, job.name = "bad", "DONE", str(folder), "bad shot"
    return job


def _import_operator_fails(bpy, match: str, **options) -> None:
    """Import Result refuses with an error report and no traceback (called from Python, Blender
    raises an operator's error report as ``RuntimeError: Error: <message>``)."""
    with pytest.raises(RuntimeError, match=match) as failure:
        bpy.ops.recast4d.import_result(**options)
    assert "Traceback" not in str(failure.value) and str(failure.value).startswith("Error: ")


@pytest.mark.parametrize("native", [True, False], ids=["native", "spheres"])
@pytest.mark.parametrize("kind", ["nan_scales", "zero_quats"])
def test_broken_gaussians_in_usd_are_refused_and_nothing_stays(registered_addon, backend_files, kind, native):
    import bpy

    from addon import results, splats
    from protocol.errors import ValidationError

    if native and not splats.native_splats_supported():
        pytest.skip("needs native Gaussian splats (bpy 5.3)")
    folder = backend_files(kind)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end, scene.render.fps = 10, 20, 50
    before = _data_counts(bpy)
    what = "NaN, infinite or negative scale" if kind == "nan_scales" else "zero or NaN rotation"
    with pytest.raises(ValidationError, match=rf"scene\.usdc: frame 2 of .*{what}.*nothing was imported"):
        results.import_usd_result(bpy.context, folder / "scene.usdc", native_splats=native)
    assert _data_counts(bpy) == before
    assert (scene.frame_start, scene.frame_end, scene.render.fps) == (10, 20, 50)


def test_broken_result_through_the_operator_reports_and_cleans_up(registered_addon, backend_files):
    import bpy

    _add_job(bpy, backend_files("nan_scales"))
    before = _data_counts(bpy)
    _import_operator_fails(bpy, "frame 2 of .* NaN")
    assert _data_counts(bpy) == before


def test_result_without_gaussians(registered_addon, backend_files):
    import bpy

    from addon import results
    from protocol.errors import ValidationError

    folder = backend_files("points_only")
    before = _data_counts(bpy)
    with pytest.raises(ValidationError, match="has no Gaussians, only point clouds.*Point Cloud Layer"):
        results.import_usd_result(bpy.context, folder / "scene.usdc", import_points=False)
    assert _data_counts(bpy) == before
    _add_job(bpy, folder)
    _import_operator_fails(bpy, "no Gaussians", import_points=False)
    assert _data_counts(bpy) == before
    # with the point layer the points come in, and the report says there were no Gaussians
    imported = results.import_usd_result(bpy.context, folder / "scene.usdc")
    assert len(imported.point_objects) == 1 and not imported.splat_objects and not imported.gaussian_objects


def test_blender_without_usd_gets_a_clear_message(registered_addon, backend_files, monkeypatch):
    import bpy

    from addon import results
    from protocol.errors import ValidationError

    assert results.usd_importer_available()  # the wheel has USD; a build without it is simulated
    monkeypatch.setattr(results, "usd_importer_available", lambda: False)
    folder = backend_files("result")
    before = _data_counts(bpy)
    with pytest.raises(ValidationError, match=r"no USD importer \(bpy\.ops\.wm\.usd_import\).*official Blender"):
        results.import_usd_result(bpy.context, folder / "scene.usdc")
    _add_job(bpy, folder)
    _import_operator_fails(bpy, "no USD importer")
    assert _data_counts(bpy) == before


@pytest.mark.parametrize("kind", ["nan_scales", "zero_quats"])
def test_broken_gaussians_in_ply_are_refused(native_splats, backend_files, kind):
    import bpy

    from addon import results
    from protocol.errors import ValidationError

    folder = backend_files(kind)
    good = results.import_gaussian_ply(bpy.context, folder / "gaussians_00000.ply")
    assert good.data.type == "GAUSSIAN_SPLAT" and len(good.data.points) == 150
    before = _data_counts(bpy)
    with pytest.raises(ValidationError, match=r"gaussians_00001\.ply: .*(NaN|zero).*nothing was imported"):
        results.import_gaussian_ply(bpy.context, folder / "gaussians_00001.ply")
    assert _data_counts(bpy) == before


def test_ply_import_operator_refuses_broken_splats(native_splats, backend_files):
    import bpy

    folder = backend_files("zero_quats")
    assert bpy.ops.recast4d.import_splat_ply(filepath=str(folder / "gaussians_00000.ply")) == {"FINISHED"}
    assert bpy.context.scene.view_settings.view_transform == "Standard"
    before = _data_counts(bpy)
    with pytest.raises(RuntimeError, match=r"^Error: gaussians_00001\.ply: 160 splat\(s\) with a zero") as failure:
        bpy.ops.recast4d.import_splat_ply(filepath=str(folder / "gaussians_00001.ply"))
    assert "Traceback" not in str(failure.value)
    assert _data_counts(bpy) == before
