"""Registration round trip and the scene properties surviving save + reload (bpy wheel)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.blender


def _recast_types(bpy) -> list[str]:
    return [name for name in dir(bpy.types) if name.startswith("RECAST4D_")]


def test_register_unregister_round_trip_leaves_nothing(bpy_clean):
    bpy = bpy_clean
    import addon

    before_handlers = {name: len(getattr(bpy.app.handlers, name)) for name in dir(bpy.app.handlers)
                       if isinstance(getattr(bpy.app.handlers, name), list)}
    def our_menu_entries() -> list:
        draw_funcs = (bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
                      + bpy.types.TOPBAR_MT_file_export._dyn_ui_initialize())
        return [f for f in draw_funcs if getattr(f, "__module__", "").startswith("addon")]

    for _ in range(2):
        addon.register()
        addon.register()  # double registration is a no-op
        assert hasattr(bpy.types.Scene, "recast4d")
        assert len(our_menu_entries()) == 4  # import: result (.usd), splats (.ply), camera path; export: camera path
        assert "RECAST4D_PT_main" in _recast_types(bpy)
        assert bpy.ops.recast4d.setup_render.poll() in (True, False)
        addon.unregister()
        assert not hasattr(bpy.types.Scene, "recast4d")
        assert _recast_types(bpy) == []
        after = {name: len(getattr(bpy.app.handlers, name)) for name in before_handlers}
        assert after == before_handlers
        assert our_menu_entries() == []


def test_scene_properties_survive_save_and_reload(registered_addon, tmp_path):
    import bpy

    scene = bpy.context.scene
    settings = scene.recast4d
    cam = bpy.data.objects.new("target", bpy.data.cameras.new("target"))
    scene.collection.objects.link(cam)
    settings.source.kind = "SCENE"
    settings.source.camera = cam
    settings.source.use_scene_range = False
    settings.source.frame_start, settings.source.frame_end = 3, 40
    target = settings.targets.add()
    target.camera, target.path_spec = cam, "orbit:left:30"
    settings.generation.prompt = "a quiet street at dusk"
    settings.generation.engine = "wan-vace"
    settings.generation.lora_weight = 0.55
    job = settings.jobs.add()
    job.name, job.job_id, job.state = "shot A", "0123456789abcdef", "RUNNING"
    job.result_dir = str(tmp_path / "results")
    job.target_cameras = "target"
    stage = job.stage("depth")
    stage.step, stage.total = 3, 7

    path = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert len(bpy.context.scene.recast4d.jobs) == 0
    bpy.ops.wm.open_mainfile(filepath=str(path))

    settings = bpy.context.scene.recast4d
    assert settings.source.kind == "SCENE"
    assert settings.source.camera.name == "target"
    assert (settings.source.frame_start, settings.source.frame_end) == (3, 40)
    assert settings.targets[0].camera.name == "target" and settings.targets[0].path_spec == "orbit:left:30"
    assert settings.generation.prompt == "a quiet street at dusk"
    assert settings.generation.engine == "wan-vace"
    assert settings.generation.lora_weight == pytest.approx(0.55)
    job = settings.jobs[0]
    assert (job.name, job.job_id, job.state) == ("shot A", "0123456789abcdef", "RUNNING")
    assert job.result_dir == str(tmp_path / "results")
    assert (job.stages["depth"].step, job.stages["depth"].total) == (3, 7)
