"""Issue 14, problems 1-6: each test failed before its fix (bpy wheel, headless).

How modal/timer code is driven without a window: see ``trust_helpers``.
"""

from __future__ import annotations

import pytest
from trust_helpers import NO_GPU_ENGINES, RecordingClient, connect_fake, draw_panel, event, small_scene

pytestmark = pytest.mark.blender


# --------------------------------------------------------------------------- 1. source camera pinned
def test_the_second_job_films_from_the_original_camera_not_the_target(registered_addon):
    import bpy

    from addon import cameras, source, targets

    scene, cam = small_scene(bpy)
    src = scene.recast4d.source
    assert src.camera is None  # blank: "the scene camera"
    expected = cameras.cameras_from_blender(scene, cam, [1, 2, 3])
    target = targets.add_camera_path(bpy.context, "orbit:left:30", pivot_depth=4.0)
    assert src.camera == cam  # pinned when the source was set up
    scene.camera = target  # what Import Result / Set Up Render do
    got = source.export_source_cameras(scene, src)
    assert all(cameras.cameras_equal(a, b) for a, b in zip(got, expected))
    # a blank source camera never falls back to a target camera
    src.camera = None
    problem = source.source_problem(scene, src)
    assert problem and "target camera" in problem
    # and a target camera cannot be picked as the source
    pick = type(src).bl_rna.properties["camera"]
    assert pick is not None
    assert not source._is_source_candidate(src, target) and source._is_source_candidate(src, cam)


# --------------------------------------------------------------------------- 2. undo never loses a job
def test_undo_and_redo_after_refilm_keep_the_running_job(registered_addon):
    import bpy

    from addon import job_ledger, session, submit

    scene, _ = small_scene(bpy)
    assert "UNDO" in submit.RECAST4D_OT_submit_job.bl_options  # Re-film Shot is an undo step of its own
    client = connect_fake(session)
    try:
        bpy.ops.ed.undo_push(message="before re-film")
        request = submit.JobRequest("job-1", "reshoot", {"start_frame": 1}, {}, ["Recast orbit"], ["orbit"])
        submit.submit_request(bpy.context, request)
        lora = scene.recast4d.tune.tuned_loras.add()  # a tune job's entry belongs to the job list too
        lora.name, lora.job_id = "shot-lora", "job-1"
        bpy.ops.ed.undo_push(message="Re-film Shot")  # what Blender does after an UNDO operator
        job = scene.recast4d.jobs[0]
        job.state = "RUNNING"  # events arrive later; they are not undo steps
        job.stage("fill").step, job.stage("fill").total = 2, 5

        bpy.ops.ed.undo()  # back to before the submit: the job list must not follow
        assert bpy.context.scene.frame_current == 1
        jobs = bpy.context.scene.recast4d.jobs
        assert [j.job_id for j in jobs] == ["job-1"] and jobs[0].state == "RUNNING"
        assert jobs[0].stages["fill"].step == 2
        assert [(e.name, e.job_id) for e in bpy.context.scene.recast4d.tune.tuned_loras] == [("shot-lora", "job-1")]
        bpy.ops.ed.redo()
        jobs = bpy.context.scene.recast4d.jobs
        assert [j.job_id for j in jobs] == ["job-1"] and jobs[0].state == "RUNNING"
        assert client.submitted == [("job-1", "reshoot")]
    finally:
        session.detach_client()
        job_ledger.clear()


def test_the_backends_job_list_brings_back_a_lost_entry_but_not_a_removed_one(registered_addon):
    import bpy

    from addon import job_ledger, session, submit
    from protocol.messages import Pong

    scene, _ = small_scene(bpy)
    connect_fake(session)
    try:
        for job_id in ("a", "b"):
            submit.submit_request(bpy.context, submit.JobRequest(job_id, "reshoot", {}, {}, ["T"], ["t"]))
        jobs = scene.recast4d.jobs
        jobs.remove(0)  # "a" lost without the user asking
        jobs[0].state, scene.recast4d.active_job_index = "DONE", 0
        assert bpy.ops.recast4d.remove_job() == {"FINISHED"}  # "b": the user's choice
        session.process_events([event("pong", Pong(server_session="s1", jobs={"a": "running", "b": "done"}))])
        assert [j.job_id for j in scene.recast4d.jobs] == ["a"]
        assert scene.recast4d.jobs[0].state == "RUNNING"
    finally:
        session.detach_client()
        job_ledger.clear()


# --------------------------------------------------------------------------- 3. capture a frame at a time
def test_capture_runs_a_frame_per_step_shows_progress_and_esc_restores(registered_addon):
    import bpy

    from addon import capture_task, session, submit

    scene, _ = small_scene(bpy)
    bpy.ops.recast4d.add_camera_path(preset="orbit", direction="left", amount=20.0)
    render = scene.render
    before = (render.filepath, render.film_transparent, render.image_settings.file_format, scene.camera.name)
    connect_fake(session)
    try:
        task = submit.start_reshoot_capture(scene)
        assert not task.advance()  # one TIMER event = one rendered frame, then the UI redraws
        assert task.last.done == 1 and task.last.total == 6 and 0 < task.fraction < 1
        layout = draw_panel(bpy, type("StatusBar", (), {"draw": capture_task.draw_status_bar}))
        assert any("Esc to cancel" in text and "frame 1" in text for text in layout.labels())
        assert not submit.RECAST4D_OT_submit_job.poll(bpy.context)  # one capture at a time
        task.advance()
        task.cancel()  # Esc
        capture_task.stop(task)
        assert (render.filepath, render.film_transparent, render.image_settings.file_format,
                scene.camera.name) == before
        assert len(scene.recast4d.jobs) == 0
    finally:
        session.detach_client()


def test_a_render_error_during_capture_is_one_readable_report(registered_addon, monkeypatch):
    import bpy

    from addon import capture, session

    small_scene(bpy)
    bpy.ops.recast4d.add_camera_path(preset="orbit", direction="left", amount=20.0)

    def broken_render(scene):
        raise RuntimeError("Traceback (most recent call last):\n  File \"render.py\", line 3\n"
                           "Error: Cannot render, no camera output configured")

    monkeypatch.setattr(capture, "render_still", broken_render)
    connect_fake(session)
    try:
        with pytest.raises(RuntimeError) as caught:
            bpy.ops.recast4d.submit_job()
    finally:
        session.detach_client()
    message = str(caught.value)
    assert "rendering source frame 1 failed: Cannot render, no camera output configured" in message
    assert "Traceback" not in message and "render.py" not in message
    assert len(bpy.context.scene.recast4d.jobs) == 0


# --------------------------------------------------------------------------- 4. engines and full errors
def test_backend_section_lists_engines_and_buttons_say_why_they_are_off(registered_addon):
    import bpy

    from addon import connection, error_ui, session

    scene, _ = small_scene(bpy)
    bpy.ops.recast4d.add_camera_path(preset="orbit", direction="left", amount=20.0)
    connect_fake(session, NO_GPU_ENGINES, gpu=False)
    try:
        text = draw_panel(bpy, connection.RECAST4D_PT_backend).text()
        assert "inpaint classical" in text and "inpaint wan-vace" in text
        assert "'Wan2.1-VACE-1.3B-diffusers'notfoundin/models" in text.replace(" ", "")  # why, in full
        assert "not reported" not in text
        assert "upload" not in text  # protocol capabilities are not engines
        assert bpy.ops.recast4d.submit_job.poll()  # classical runs anywhere
        scene.recast4d.generation.engine = "wan-vace"
        with pytest.raises(RuntimeError, match="cannot run inpaint wan-vace: weights folder"):
            bpy.ops.recast4d.submit_job()
        with pytest.raises(RuntimeError, match="cannot run inpaint wan-vace"):
            bpy.ops.recast4d.tune_lora()
        scene.recast4d.text_to_4d.prompt = "a beach"
        with pytest.raises(RuntimeError, match="video engine 'wan-t2v'|cannot run video wan-t2v"):
            bpy.ops.recast4d.generate_scene()
        session.state().status["engines"][1].update(usable=True, hint="no CUDA GPU: runs on CPU, very slowly")
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            bpy.ops.recast4d.submit_job()
    finally:
        session.detach_client()
    long_error = ("weights folder 'Wan2.1-VACE-1.3B-diffusers' not found in /home/artist/.cache/recast4d/models. "
                  "To fix: download Wan-AI/Wan2.1-VACE-1.3B-diffusers into /home/artist/.cache/recast4d/models/"
                  "Wan2.1-VACE-1.3B-diffusers, or point --models at the folder that holds 'Wan2.1-VACE-1.3B-diffusers'")
    lines = error_ui.wrap_text(long_error, 176)
    assert len(lines) > 3 and all(error_ui.text_width_px(line) <= 176 for line in lines)
    assert "".join(lines).replace(" ", "") == long_error.replace(" ", "")  # nothing cut off


def test_a_failed_job_shows_its_whole_error_with_copy_error(registered_addon):
    import bpy

    from addon import jobs

    message = "depth engine 'depth-anything' needs weights: " + "x" * 300 + " To fix: put them in /models"
    job = bpy.context.scene.recast4d.jobs.add()
    job.job_id, job.kind, job.state, job.error, job.error_code = "j", "reshoot", "FAILED", message, "missing_weights"
    layout = draw_panel(bpy, jobs.RECAST4D_PT_jobs)
    shown = "".join(layout.labels()).replace(" ", "")
    assert message.replace(" ", "") in shown and "To fix" in layout.text()
    assert layout.enabled_operator("recast4d.copy_error") and layout.enabled_operator("recast4d.show_error")
    assert bpy.ops.recast4d.copy_error() == {"FINISHED"}


def test_the_server_sends_its_engine_report_with_welcome():
    from backend.server.handlers import engine_report

    report = {(e["kind"], e["name"]): e for e in engine_report()}
    assert report[("inpaint", "classical")]["usable"] is True
    assert {"reason", "hint", "usable"} <= set(report[("inpaint", "wan-vace")])


# --------------------------------------------------------------------------- 5. set up render respectfully
def test_setup_render_changes_only_what_points_need_and_restores(registered_addon, monkeypatch):
    import bpy

    from addon import render_setup

    scene, cam = small_scene(bpy)
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.cycles.samples, scene.cycles.use_denoising, scene.render.film_transparent = 7, True, True
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    t1 = bpy.data.objects.new("T1", bpy.data.cameras.new("T1"))
    t2 = bpy.data.objects.new("T2", bpy.data.cameras.new("T2"))
    for obj in (t1, t2):
        scene.collection.objects.link(obj)
    scene.recast4d.targets.add().camera = t2  # the Targets list's active row is another camera
    job = scene.recast4d.jobs.add()
    job.job_id, job.state, job.target_cameras = "j", "DONE", "T1,T2"
    preview = bpy.data.objects.new("j Preview", bpy.data.meshes.new("p"))
    preview["recast4d_job"] = "j"
    scene.collection.objects.link(preview)
    monkeypatch.setattr(render_setup, "has_openimagedenoise", lambda: False)  # a Debian-like build

    assert bpy.ops.recast4d.setup_render(hide_originals=True, hide_preview=True) == {"FINISHED"}
    assert scene.render.engine == "CYCLES" and scene.camera == t1
    assert scene.cycles.samples == 7 and scene.render.film_transparent  # the user's, untouched
    assert not scene.cycles.use_denoising  # no OIDN here: off, with a message, no traceback
    assert preview.hide_render and all(o.hide_render for o in scene.objects if o.type == "MESH")
    assert bpy.ops.recast4d.restore_render() == {"FINISHED"}
    assert scene.render.engine == "BLENDER_WORKBENCH" and scene.camera == cam
    assert scene.cycles.use_denoising and scene.cycles.samples == 7
    assert not any(o.hide_render for o in scene.objects)
    assert not render_setup.has_backup(scene)


# --------------------------------------------------------------------------- 6. jobs never get stuck
def test_refilm_waits_for_a_live_backend_and_jobs_can_be_cancelled_or_removed_offline(registered_addon):
    import bpy

    from addon import job_ledger, session, submit

    small_scene(bpy)
    bpy.ops.recast4d.add_camera_path(preset="orbit", direction="left", amount=20.0)
    session.attach_client(RecordingClient(), start_timer=False)  # connecting to a dead backend
    session.state().status.update(connected=False, connecting=True)
    with pytest.raises(RuntimeError, match="Still connecting"):
        bpy.ops.recast4d.submit_job()
    session.detach_client()

    client = connect_fake(session)
    submit.submit_request(bpy.context, submit.JobRequest("j1", "reshoot", {}, {}, ["T"], ["t"]))
    session.detach_client()  # the backend went away
    assert bpy.ops.recast4d.cancel_job() == {"FINISHED"}
    job = bpy.context.scene.recast4d.jobs[0]
    assert job.state == "CANCELLING"
    client = connect_fake(session)  # reconnect: the queued cancel goes out
    assert client.cancelled == ["j1"]
    session.detach_client()
    assert bpy.ops.recast4d.remove_job() == {"FINISHED"}  # offline, a stuck job can be removed
    assert len(bpy.context.scene.recast4d.jobs) == 0
    job_ledger.clear()


def test_refilm_modal_steps_on_timer_events_submits_at_the_end_and_esc_cancels(registered_addon):
    """The operator's own ``modal()`` fed TIMER/ESC events by hand (headless Blender has no event
    loop); ``self`` is a stand-in holding what ``invoke()`` would have set up."""
    import bpy

    from addon import capture_task, session, submit

    scene, _ = small_scene(bpy)
    bpy.ops.recast4d.add_camera_path(preset="orbit", direction="left", amount=20.0)
    op = submit.RECAST4D_OT_submit_job
    reports: list = []
    stand_in = type("RefilmStandIn", (capture_task.ModalCapture,), {
        "finish_capture": op.finish_capture, "cancel_message": op.cancel_message,
        "report": lambda self, kind, text: reports.append((kind, text))})
    timer, esc, mouse = (type("Event", (), {"type": kind, "value": "PRESS"})() for kind in ("TIMER", "ESC", "MOUSEMOVE"))
    client = connect_fake(session)
    try:
        running = stand_in()
        running._task = submit.start_reshoot_capture(scene)
        assert op.modal(running, bpy.context, mouse) == {"PASS_THROUGH"}  # the UI keeps its events
        outcomes = [op.modal(running, bpy.context, timer) for _ in range(6)]  # 3 colour + 3 depth frames
        assert outcomes == [{"RUNNING_MODAL"}] * 6 and not client.submitted
        assert op.modal(running, bpy.context, timer) == {"FINISHED"}
        assert len(client.submitted) == 1 and len(scene.recast4d.jobs) == 1
        cancelled = stand_in()
        cancelled._task = submit.start_reshoot_capture(scene)
        op.modal(cancelled, bpy.context, timer)
        assert op.modal(cancelled, bpy.context, esc) == {"CANCELLED"}
        assert len(client.submitted) == 1 and any("cancelled" in text for _, text in reports)
        assert submit.RECAST4D_OT_submit_job.poll(bpy.context)  # nothing left running
    finally:
        session.detach_client()


@pytest.mark.parametrize("kind", ["tune", "generate"])
def test_tune_and_generate_capture_on_timer_events_too_and_esc_cancels(registered_addon, kind):
    """Tune LoRA and Generate 4D Scene (from the source) capture like Re-film: one frame per TIMER
    event, nothing sent until the capture ends, Esc sends nothing."""
    import bpy

    from addon import capture_task, session, text_to_4d, tuning

    scene, _ = small_scene(bpy, frames=5)
    if kind == "tune":
        op, steps = tuning.RECAST4D_OT_tune_lora, tuning.tune_request_steps
    else:
        scene.recast4d.text_to_4d.use_source = True
        op, steps = text_to_4d.RECAST4D_OT_generate_scene, text_to_4d.generate_request_steps
    reports: list = []
    stand_in = type("StandIn", (capture_task.ModalCapture,), {
        "finish_capture": op.finish_capture, "cancel_message": op.cancel_message, "wait_until_done": False,
        "report": lambda self, level, text: reports.append((level, text))})
    timer, esc = (type("Event", (), {"type": name, "value": "PRESS"})() for name in ("TIMER", "ESC"))
    client = connect_fake(session)
    try:
        running = stand_in()
        running._task = capture_task.start(steps(scene), "capture")
        outcomes = [op.modal(running, bpy.context, timer) for _ in range(10)]  # 5 colour + 5 depth frames
        assert outcomes == [{"RUNNING_MODAL"}] * 10 and not client.submitted
        assert op.modal(running, bpy.context, timer) == {"FINISHED"}, reports
        assert [k for _, k in client.submitted] == [kind]
        cancelled = stand_in()
        cancelled._task = capture_task.start(steps(scene), "capture")
        op.modal(cancelled, bpy.context, timer)
        assert op.modal(cancelled, bpy.context, esc) == {"CANCELLED"}
        assert len(client.submitted) == 1 and any("cancelled" in text for _, text in reports)
    finally:
        session.detach_client()
