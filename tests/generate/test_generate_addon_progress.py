"""The Blender section of a generate job: per-stage, per-ring progress rows, and the device-default fit setting."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.blender


@pytest.fixture
def addon_registered():
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    import addon

    addon.register()
    try:
        yield bpy
    finally:
        addon.unregister()


def test_progress_rows_follow_the_pipeline_and_name_the_ring(addon_registered) -> None:
    from addon import text_to_4d

    bpy = addon_registered
    settings = bpy.context.scene.recast4d
    assert text_to_4d.latest_generate_job(settings) is None
    settings.jobs.add().kind = "reshoot"
    job = settings.jobs.add()
    job.kind = "generate"
    for name, step, total, message in (("outpaint", 3, 8, "ring 1/2, view 3/4 (+15, +0): 12.5% to fill"),
                                       ("split", 1, 1, "motion split: 7.4% of pixels are foreground"),
                                       ("reference", 1, 1, "done")):
        stage = job.stage(name)
        stage.step, stage.total, stage.message = step, total, message
    assert text_to_4d.latest_generate_job(settings) == job
    rows = text_to_4d.generate_progress_rows(job)
    assert [text.split(" ")[0].rstrip(":") for text, _ in rows] == ["reference", "split", "outpaint"]
    assert rows[2] == ("outpaint 3/8: ring 1/2, view 3/4 (+15, +0): 12.5% to fill", 3 / 8)
    assert rows[0] == ("reference", 1.0)


def test_fit_iterations_default_leaves_the_choice_to_the_backend(addon_registered) -> None:
    bpy = addon_registered
    t2 = bpy.context.scene.recast4d.text_to_4d
    assert t2.fit_iterations == -1  # the backend resolves it per device (OutpaintSettings.for_device)
