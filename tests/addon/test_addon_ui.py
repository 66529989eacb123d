"""Every panel's ``draw`` runs against a layout recorder that checks what it references.

Headless Blender never draws panels, so typos in ``layout.prop(data, "name")``, operator ids or
list templates would only show up in front of a user. ``CheckingLayout`` records each call and
fails if a property is not in ``data.bl_rna.properties``, an operator id is not registered, or a
``template_list`` names an unknown list class or collection.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.blender


class OperatorProperties:
    """What ``layout.operator`` returns: setting an operator property checks that it exists."""

    def __init__(self, rna) -> None:
        object.__setattr__(self, "_rna", rna)

    def __setattr__(self, name: str, value) -> None:
        assert name in self._rna.properties, f"{self._rna.identifier} has no property {name!r}"


class CheckingLayout:
    def __init__(self, bpy, log: list) -> None:
        self._bpy, self._log = bpy, log
        self.use_property_split = False
        self.enabled = self.active = self.alert = True
        self.alignment = "EXPAND"

    def _child(self, *args, **kwargs) -> CheckingLayout:
        return CheckingLayout(self._bpy, self._log)

    row = column = box = split = _child

    def prop(self, data, prop_name: str, **kwargs) -> None:
        assert prop_name in data.bl_rna.properties, f"{type(data).__name__} has no property {prop_name!r}"
        self._log.append(("prop", prop_name))

    def operator(self, idname: str, **kwargs):
        module, name = idname.split(".")
        assert hasattr(getattr(self._bpy.ops, module), name), idname
        rna = getattr(getattr(self._bpy.ops, module), name).get_rna_type()  # raises if not registered
        self._log.append(("operator", idname))
        return OperatorProperties(rna)

    def label(self, text: str = "", **kwargs) -> None:
        self._log.append(("label", text))

    def progress(self, text: str = "", factor: float = 0.0, type: str = "BAR", **kwargs) -> None:
        assert 0.0 <= factor <= 1.0
        self._log.append(("progress", text))

    def template_list(self, listtype_name, list_id, dataptr, propname, active_dataptr, active_propname, **kwargs):
        assert hasattr(self._bpy.types, listtype_name), listtype_name
        assert propname in dataptr.bl_rna.properties and active_propname in active_dataptr.bl_rna.properties
        self._log.append(("list", propname))

    def template_ID(self, data, prop_name: str, **kwargs) -> None:
        self.prop(data, prop_name)
        if "open" in kwargs:
            self.operator(kwargs["open"])


def _draw_all(bpy, addon) -> list:
    log: list = []
    panels = [cls for name in dir(bpy.types) if name.startswith("RECAST4D_PT_")
              for cls in [getattr(bpy.types, name)]]
    assert {"RECAST4D_PT_main", "RECAST4D_PT_backend", "RECAST4D_PT_source", "RECAST4D_PT_targets",
            "RECAST4D_PT_generation", "RECAST4D_PT_jobs"} <= {p.__name__ for p in panels}
    modules = [addon.panel, addon.connection, addon.source, addon.targets, addon.generation, addon.jobs,
               addon.outputs, addon.tuning, addon.text_to_4d]
    classes = {cls.__name__: cls for m in modules for cls in getattr(m, "CLASSES", ())}
    classes["RECAST4D_PT_main"] = addon.panel.RECAST4D_PT_main
    for name, cls in classes.items():
        if not name.startswith("RECAST4D_PT_"):
            continue
        stand_in = type("PanelStandIn", (), {"layout": CheckingLayout(bpy, log)})()  # draw() only reads .layout
        cls.draw(stand_in, bpy.context)
    return log


def test_panels_draw_in_every_state(registered_addon):
    import bpy

    from addon import session

    log = _draw_all(bpy, registered_addon)  # empty scene, not connected
    assert ("operator", "recast4d.connect") in log and ("operator", "recast4d.submit_job") in log

    settings = bpy.context.scene.recast4d
    settings.source.use_scene_range = False
    settings.source.kind = "IMAGES"
    job = settings.jobs.add()
    job.job_id, job.state, job.error = "abc", "FAILED", "depth engine needs weights\nsecond line"
    stage = job.stage("render")
    stage.step, stage.total = 3, 9
    job.frames_received, job.frames_expected = 2, 9
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    bpy.context.scene.collection.objects.link(cam)
    settings.targets.add().camera = cam
    session.state().status.update(connected=True, gpu="Test GPU (80 GiB)", capabilities=["classical"])

    class Connected:
        def close(self) -> None:
            pass

    session.attach_client(Connected(), start_timer=False)
    try:
        log = _draw_all(bpy, registered_addon)
    finally:
        session.detach_client()
    assert ("operator", "recast4d.disconnect") in log
    assert ("progress", "Render views 3/9") in log and ("progress", "Frames 2/9") in log
    assert ("label", "depth engine needs weights") in log and ("label", "second line") in log
    assert ("operator", "recast4d.copy_error") in log
    assert ("prop", "frame_start") in log and ("list", "targets") in log


def test_operator_polls_explain_themselves(registered_addon):
    import bpy

    checks = {
        bpy.ops.recast4d.submit_job: "Connect to the backend",
        bpy.ops.recast4d.cancel_job: "not running",
        bpy.ops.recast4d.fetch_results: "Select a job",
        bpy.ops.recast4d.import_result: "Select a job",
        bpy.ops.recast4d.disconnect: "Not connected",
        bpy.ops.recast4d.start_backend: "Backend Python",
        bpy.ops.recast4d.render_shot: "Select a job",
        bpy.ops.recast4d.setup_render: "Select a job",
        bpy.ops.recast4d.restore_render: "nothing to restore",
        bpy.ops.recast4d.copy_error: "no error",
        bpy.ops.recast4d.remove_target: "No target selected",
    }
    for op, reason in checks.items():
        assert not op.poll()
        with pytest.raises(RuntimeError, match=reason):
            op()


def test_ui_lists_draw_their_items(registered_addon):
    import bpy

    from addon import jobs, targets

    log: list = []
    settings = bpy.context.scene.recast4d
    job = settings.jobs.add()
    job.job_id, job.state = "0123456789", "STREAMING"
    target = settings.targets.add()
    target.path_spec = "orbit:left:30"
    jobs.RECAST4D_UL_jobs.draw_item(None, bpy.context, CheckingLayout(bpy, log), settings, job, 0, settings,
                                    "active_job_index")
    targets.RECAST4D_UL_targets.draw_item(None, bpy.context, CheckingLayout(bpy, log), settings, target, 0,
                                          settings, "active_target_index")
    assert ("label", "Re-film") in log and ("label", "Streaming") in log
    assert ("prop", "camera") in log and ("label", "orbit:left:30") in log
