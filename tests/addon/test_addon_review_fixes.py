"""Regression tests for add-on bugs found in review (each failed before its fix)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.blender


class ListClient:
    """The main thread's view of a client: hands out queued events, records credit."""

    def __init__(self, events: list | None = None) -> None:
        self.events = list(events or [])
        self.credits: list[tuple[str, str, int]] = []
        self.fail_next_poll = False

    def poll_events(self, max_items: int, time_budget_s: float) -> list:
        if self.fail_next_poll:
            self.fail_next_poll = False
            raise RuntimeError("boom")
        out, self.events = self.events[:max_items], self.events[max_items:]
        return out

    def consumed(self, job_id: str, stream: str, chunk: int) -> None:
        self.credits.append((job_id, stream, chunk + 1))

    def close(self) -> None:
        pass


def _file_stream(job_id: str, stream: str, filename: str, pieces: list[bytes], from_chunk: int = 0,
                 end: bool = True) -> list:
    from protocol import messages as m

    events = [m.ResultBegin(job_id=job_id, stream=stream, chunks=len(pieces),
                            meta={"filename": filename, "from_chunk": from_chunk})]
    for index, piece in enumerate(pieces):
        events.append(m.ResultChunk(job_id=job_id, stream=stream, chunk=from_chunk + index,
                                    arrays={"data": np.frombuffer(piece, dtype=np.uint8)}))
    if end:
        events.append(m.ResultEnd(job_id=job_id, stream=stream, chunks=from_chunk + len(pieces)))
    return events


def _job(job_id: str, result_dir):
    import bpy

    job = bpy.context.scene.recast4d.jobs.add()
    job.name, job.job_id, job.state, job.result_dir = job_id, job_id, "RUNNING", str(result_dir)
    return job


def _run_ticks(session, client: ListClient, limit: int = 200) -> None:
    for _ in range(limit):
        if not client.events and not session.state().pending_chunks:
            return
        session.tick()
    raise AssertionError("events were not drained")


def test_a_stream_that_starts_over_rewrites_its_file_instead_of_appending(registered_addon, tmp_path):
    from addon import session

    _job("job-refetch", tmp_path)
    # the stream is interrupted after two pieces (e.g. Fetch Results pressed mid-stream) ...
    first = _file_stream("job-refetch", "usd", "scene.usdc", [b"AAAA", b"BBBB"], end=False)
    # ... and the backend sends it again from chunk 0
    again = _file_stream("job-refetch", "usd", "scene.usdc", [b"AAAA", b"BBBB", b"CC"])
    client = ListClient(first + again)
    session.attach_client(client, start_timer=False)
    try:
        _run_ticks(session, client)
    finally:
        session.detach_client()
    assert (tmp_path / "scene.usdc").read_bytes() == b"AAAABBBBCC"


def test_a_resumed_stream_keeps_appending(registered_addon, tmp_path):
    from addon import session

    _job("job-resume", tmp_path)
    first = _file_stream("job-resume", "usd", "scene.usdc", [b"AAAA", b"BBBB"], end=False)
    resumed = _file_stream("job-resume", "usd", "scene.usdc", [b"CC"], from_chunk=2)
    client = ListClient(first + resumed)
    session.attach_client(client, start_timer=False)
    try:
        _run_ticks(session, client)
    finally:
        session.detach_client()
    assert (tmp_path / "scene.usdc").read_bytes() == b"AAAABBBBCC"


def test_an_unusable_file_name_fails_the_job_and_the_tick_goes_on(registered_addon, tmp_path):
    from addon import session

    job = _job("job-evil", tmp_path / "results")
    _job("job-good", tmp_path / "good")
    events = (_file_stream("job-evil", "usd", "../../evil.usdc", [b"AAAA", b"BBBB"])
              + _file_stream("job-good", "usd", "scene.usdc", [b"OK"]))
    client = ListClient(events)
    session.attach_client(client, start_timer=False)
    try:
        _run_ticks(session, client)
    finally:
        session.detach_client()
    assert (job.state, job.error_code) == ("FAILED", "result_write_failed")
    assert "evil.usdc" in job.error
    assert not list(tmp_path.rglob("evil.usdc*"))
    assert ("job-evil", "usd", 2) in client.credits  # its chunks still count as consumed: no stall
    assert (tmp_path / "good" / "scene.usdc").read_bytes() == b"OK"  # later streams still apply
    from protocol import messages as m

    session.process_events([m.Pong(server_session="s", jobs={"job-evil": "done"})])
    assert job.state == "FAILED"  # the backend's "done" does not hide that the file could not be stored
    session.process_events(_file_stream("job-evil", "usd", "../../evil.usdc", [], end=False)[:1])
    assert (job.state, job.error_code) == ("STREAMING", "")  # Fetch Results: a new try


def test_an_unexpected_error_in_a_tick_does_not_stop_the_timer(registered_addon):
    from addon import session

    client = ListClient()
    client.fail_next_poll = True
    session.attach_client(client, start_timer=False)
    try:
        delay = session.tick()  # Blender unregisters a timer whose callback raises
        assert isinstance(delay, float) and delay > 0
        assert "boom" in session.state().status["error"]
    finally:
        session.detach_client()


def test_start_local_backend_is_not_fooled_by_a_stale_connection_file(registered_addon, tmp_path):
    import stat
    import sys

    from addon import connection
    from addon.prefs import PreferenceValues
    from protocol.connection import ConnectionInfo

    conn_file = tmp_path / "server.json"
    ConnectionInfo(transport="tcp", host="127.0.0.1", port=5999, key="00" * 32, pid=999_999,
                   server_session="old-server").write(conn_file)
    fake_python = tmp_path / "python"  # stands in for the backend's python: starts, writes nothing yet
    fake_python.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IXUSR)
    prefs = PreferenceValues(python_path=str(fake_python), connection_file=str(conn_file))
    try:
        connection.start_local_backend(prefs)
        assert not connection.started_backend_ready()  # the old server's file is still there
        ConnectionInfo(transport="tcp", host="127.0.0.1", port=6000, key="11" * 32, pid=1234,
                       server_session="new-server").write(conn_file)
        assert connection.started_backend_ready()
    finally:
        connection.stop_started_backend()


def test_shared_operator_helpers_report_errors_and_poll_messages(registered_addon, tmp_path):
    import bpy

    with pytest.raises(RuntimeError, match="missing.usdc"):  # report_errors: typed error -> ERROR report
        bpy.ops.recast4d.import_usd_file(filepath=str(tmp_path / "missing.usdc"))
    assert not bpy.ops.recast4d.import_result.poll()  # poll_selected_job: nothing selected
    assert not bpy.ops.recast4d.fetch_results.poll()
    assert not bpy.ops.recast4d.remove_job.poll()
    assert not bpy.ops.recast4d.add_target.poll()  # poll_active_camera: no active camera
    assert not bpy.ops.recast4d.export_camera_path.poll()
    bpy.ops.object.camera_add()
    assert bpy.ops.recast4d.add_target.poll() and bpy.ops.recast4d.export_camera_path.poll()
    assert bpy.ops.recast4d.add_target() == {"FINISHED"}


def test_a_connection_file_naming_a_remote_host_needs_online_access(registered_addon, tmp_path):
    import bpy

    from addon import connection, session
    from addon.prefs import PreferenceValues
    from protocol.connection import ConnectionInfo
    from protocol.errors import Recast4DError

    assert not bpy.app.online_access  # the bpy wheel runs without online access
    conn_file = ConnectionInfo(transport="tcp", host="203.0.113.7", port=5999, key="00" * 32, pid=1,
                               server_session="remote").write(tmp_path / "server.json")
    with pytest.raises(Recast4DError, match="online access"):
        connection.connect_backend(PreferenceValues(connection_file=str(conn_file)), start_timer=False)
    assert session.current_client() is None
