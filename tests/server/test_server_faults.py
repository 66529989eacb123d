"""Faults with real sockets: server killed mid-stream, client vanishing, slow consumer, duplicate
submit, cancel races, ping latency under load (issue 2 "Faults", protocol.md tests 15-22)."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import zmq
from jobkinds_for_tests import KIND, frame_arrays
from serverkit import ServerProcess, connect, running_server

from protocol.client import JobRejectedError
from protocol.messages import Cancelled, ErrorMessage, JobStatus, ResultChunk


def _expected_bytes(seed: int, frames: int, points: int) -> list[bytes]:
    return [b"".join(a.tobytes() for a in frame_arrays(seed, i, points).values()) for i in range(frames)]


def _chunk_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    return arrays["xyz"].tobytes() + arrays["rgb"].tobytes()


def _terminal_events(events, job_id):
    return [e for e in events if e.job_id == job_id and e.terminal]


def test_kill_server_mid_stream_restart_and_resume_identical_bytes(tmp_path):
    jobs, conn_file = tmp_path / "jobs", tmp_path / "server.json"
    first = ServerProcess(jobs, conn_file)
    client = connect(conn_file, window=1)
    try:
        client.submit("resume-1", KIND, {"frames": 10, "points": 2000, "seed": 7})
        received: dict[int, bytes] = {}
        done = False
        while len(received) < 3 or not done:  # take 3 chunks (holding credit), and let the job finish
            event = client.next_event(10)
            assert event is not None, "no events from the server"
            if isinstance(event.message, ResultChunk) and len(received) < 3:
                received[event.message.chunk] = _chunk_bytes(event.arrays)
                client.consumed("resume-1", "points", event.message.chunk)
            done = done or (isinstance(event.message, JobStatus) and event.message.state == "done")
        client.submit("interrupted", KIND, {"frames": 50, "delay_s": 0.2})
        old_session = client.welcome.server_session
        first.kill()  # SIGKILL mid-stream: no goodbye, nothing flushed by the server

        second = ServerProcess(jobs, conn_file)
        try:
            welcome = client.reconnect(resume_jobs=["resume-1", "interrupted"])
            assert welcome.server_session != old_session  # a restarted server, found via the connection file
            states = {}
            while len(states) < 2:
                event = client.next_event(10)
                assert event is not None
                if isinstance(event.message, JobStatus):
                    states[event.message.job_id] = event.message
            assert states["resume-1"].state == "done"
            assert states["interrupted"].state == "failed"  # left running by the killed server
            assert "server stopped" in states["interrupted"].detail
            start = max(received) + 1
            client.resend("resume-1", "points", from_chunk=start)
            result = client.wait_job("resume-1", need_terminal=False, streams=["points"])
            stream = result.streams["points"]
            assert stream.end is not None and stream.end.chunks == 10
            for chunk, arrays in stream.arrays.items():
                received[chunk] = _chunk_bytes(arrays)
            assert sorted(received) == list(range(10))
            assert [received[i] for i in range(10)] == _expected_bytes(7, 10, 2000)
        finally:
            second.terminate()
    finally:
        client.close()
        first.kill()


def test_client_vanishes_mid_stream_server_bounded_result_kept(tmp_path):
    with running_server(tmp_path) as server:
        ctx = zmq.Context()
        client = connect(tmp_path / "server.json", window=2, context=ctx)
        client.submit("vanish", KIND, {"frames": 12, "points": 4000, "seed": 3})
        got = 0
        while got < 2:
            event = client.next_event(10)
            assert event is not None
            if isinstance(event.message, ResultChunk):
                got += 1
        client.conn.socket.close(linger=0)  # vanish without bye, holding unacked chunks
        ctx.term()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            record = server.store.get("vanish")
            if record.state == "done" and not server.clients:
                break
            time.sleep(0.05)
        assert server.store.get("vanish").state == "done"
        assert not server.clients, "server still holds state for a vanished client"
        assert server.store.get("vanish").streams["points"].chunks == 12  # result kept on disk

        token = client.conn.tokens["vanish"]  # what the add-on keeps in the .blend
        again = connect(tmp_path / "server.json")
        try:
            again.conn.tokens["vanish"] = token  # a new client session reads the job with its token
            again.resend("vanish", "points", from_chunk=0)
            result = again.wait_job("vanish", need_terminal=False, streams=["points"])
            got_bytes = [_chunk_bytes(result.streams["points"].arrays[i]) for i in range(12)]
            assert got_bytes == _expected_bytes(3, 12, 4000)
        finally:
            again.close()


def test_slow_consumer_holding_credit_keeps_server_memory_flat(tmp_path):
    frames, points = 40, 131072  # 40 x 1.9 MB = 79 MB of results
    server = ServerProcess(tmp_path / "jobs", tmp_path / "server.json")
    client = connect(tmp_path / "server.json", window=2)
    try:
        client.submit("slow", KIND, {"frames": frames, "points": points})
        chunks, last = 0, -1
        while chunks < 1:
            event = client.next_event(10)
            assert event is not None
            if isinstance(event.message, ResultChunk):
                chunks, last = chunks + 1, event.message.chunk
        baseline = server.rss()
        samples = []
        hold_until = time.monotonic() + 3.0  # hold credit for several seconds
        while time.monotonic() < hold_until:
            event = client.next_event(0.25)
            if event is not None and isinstance(event.message, ResultChunk):
                chunks, last = chunks + 1, event.message.chunk
            samples.append(server.rss())
        assert chunks <= 1 + 4, "server sent beyond the granted window"
        record_state = client.ping().jobs.get("slow")
        assert record_state == "done"  # the job finished producing while the consumer was stalled
        growth = max(samples) - baseline
        assert growth < 24 << 20, f"server RSS grew by {growth / 2**20:.1f} MiB while the consumer stalled"
        client.consumed("slow", "points", last)  # resume consuming
        result = client.wait_job("slow", need_terminal=False, streams=["points"], timeout_s=30)
        assert result.streams["points"].end.chunks == frames
    finally:
        client.close()
        server.terminate()


def test_duplicate_submit_runs_once(tmp_path):
    with running_server(tmp_path) as server:
        a = connect(tmp_path / "server.json")
        b = connect(tmp_path / "server.json")
        try:
            params = {"frames": 3, "delay_s": 0.05}
            offsets = np.ones((5, 3), np.float32)
            first = a.submit("dup", KIND, params, {"offsets": offsets})
            again = a.submit("dup", KIND, params, {"offsets": offsets})
            with pytest.raises(JobRejectedError) as refused:  # issue 15: a job belongs to its submitter
                b.submit("dup", KIND, params, {"offsets": offsets})
            assert refused.value.code == "not_owner"
            b.conn.tokens["dup"] = a.conn.tokens["dup"]  # ... or to whoever holds its token
            other = b.submit("dup", KIND, params, {"offsets": offsets})
            assert first == again == other
            result = a.wait_job("dup")
            assert result.state == "done"
            assert len(_terminal_events(result.events, "dup")) == 1
            runs = (server.store.job_dir("dup") / "runs.txt").read_text().splitlines()
            assert runs == ["run"]
            xyz = result.streams["points"].arrays[0]["xyz"]
            assert np.allclose(xyz, frame_arrays(0, 0, 1024)["xyz"] + 5.0)  # uploaded input was used
        finally:
            a.close()
            b.close()


def _collect(client, seconds: float) -> list:
    events, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        event = client.next_event(0.05)
        if event is not None:
            events.append(event)
    return events


def test_cancel_before_during_after_compute_one_terminal_message_each(tmp_path):
    with running_server(tmp_path) as server:
        client = connect(tmp_path / "server.json")
        try:
            client.submit("busy", KIND, {"frames": 100, "delay_s": 0.05})  # occupies the worker
            client.submit("queued", KIND, {"frames": 2})
            client.cancel("queued")  # before compute
            client.cancel("queued")  # twice: still one terminal message
            events = _collect(client, 0.3)
            assert server.store.get("busy").state == "running"
            client.cancel("busy")  # during compute
            events += _collect(client, 0.5)
            client.submit("quick", KIND, {"frames": 2})
            events += client.wait_job("quick").events
            client.cancel("quick")  # after compute
            events += _collect(client, 0.3)
        finally:
            client.close()
        for job_id, kind in (("queued", Cancelled), ("busy", Cancelled), ("quick", JobStatus)):
            terminal = _terminal_events(events, job_id)
            assert len(terminal) == 1, (job_id, [e.type for e in terminal])
            assert isinstance(terminal[0].message, kind)
        assert not (server.store.job_dir("queued") / "runs.txt").exists()  # never ran
        assert server.store.get("busy").streams["points"].chunks < 100  # stopped early
        assert not any(isinstance(e.message, ErrorMessage) and e.job_id for e in events)


def test_ping_answered_fast_while_a_job_holds_the_gil(tmp_path):
    with running_server(tmp_path) as server:
        client = connect(tmp_path / "server.json")
        try:
            client.submit("hog", KIND, {"frames": 20, "busy_s": 0.1})
            while server.store.get("hog").state != "running":
                time.sleep(0.01)
            latencies = []
            for _ in range(10):
                start = time.perf_counter()
                client.ping()
                latencies.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.cancel("hog")
            while not any(isinstance(e.message, Cancelled) for e in _collect(client, 0.01)):
                pass
            cancel_latency = time.perf_counter() - start
        finally:
            client.close()
        assert server.store.get("hog").state == "cancelled"
        assert statistics.median(latencies) < 0.1, latencies
        assert cancel_latency < 0.5, cancel_latency


def test_silent_clients_are_forgotten_after_the_ttl_unless_their_jobs_run(tmp_path):
    with running_server(tmp_path, client_ttl_s=0.3) as server:
        idle = connect(tmp_path / "server.json")
        busy = connect(tmp_path / "server.json")
        try:
            idle.ping()
            busy.submit("long", KIND, {"frames": 100, "delay_s": 0.05})
            time.sleep(1.0)
            assert len(server.clients) == 1  # the idle one is gone, the one with a running job stays
            busy.cancel("long")
            assert idle.ping().server_session == server.session  # a forgotten client can come back
        finally:
            idle.close()
            busy.close()


def test_resume_after_reconnect_fetches_streams_that_began_while_away(tmp_path):
    with running_server(tmp_path) as server:
        first = connect(tmp_path / "server.json")
        first.submit("away", KIND, {"frames": 4, "points": 100, "seed": 9})
        token = first.conn.tokens["away"]  # saved with the job (the add-on keeps it in the .blend)
        first.close()  # gone before any result arrived
        deadline = time.monotonic() + 10
        while server.store.get("away").state != "done" and time.monotonic() < deadline:
            time.sleep(0.02)
        later = BlockingClientFor(tmp_path)
        try:
            later.conn.tokens["away"] = token  # a later client session proves ownership with the token
            later.connect(resume_jobs=["away"])  # job.status lists the streams; the client resends them
            result = later.wait_job("away", need_terminal=False, streams=["points"])
            got = [_chunk_bytes(result.streams["points"].arrays[i]) for i in range(4)]
            assert got == _expected_bytes(9, 4, 100)
        finally:
            later.close()


def BlockingClientFor(tmp_path):  # noqa: N802 - reads like the class it builds
    from protocol.client import BlockingClient

    return BlockingClient.from_file(tmp_path / "server.json", timeout_s=10)


def test_upload_resumes_after_reconnect_mid_upload(tmp_path, monkeypatch):
    from protocol.client import core as client_core
    from protocol.messages import UploadCredit

    monkeypatch.setattr(client_core, "UPLOAD_CHUNK_BYTES", 12 * 1000)  # 1000 rows of (3,) f4 per chunk
    offsets = np.arange(30_000 * 3, dtype=np.float32).reshape(30_000, 3) / 1e6  # 30 upload chunks
    with running_server(tmp_path) as server:
        client = BlockingClientFor(tmp_path)
        try:
            client.connect()
            client.conn.submit("upl", KIND, {"frames": 2, "points": 10}, {"offsets": offsets})
            while True:  # the first credit arrives and the first window of chunks goes out
                event = client.next_event(5)
                assert event is not None
                if isinstance(event.message, UploadCredit):
                    break
            client.reconnect(resume_jobs=["upl"])  # socket replaced mid-upload; the server re-grants credit
            result = client.wait_job("upl", timeout_s=20)
        finally:
            client.close()
        assert result.state == "done", result.error
        np.testing.assert_array_equal(np.load(server.store.job_dir("upl") / "inputs" / "offsets.npy"), offsets)


def test_progress_is_coalesced_to_about_ten_per_second(tmp_path):
    from protocol.messages import Progress

    with running_server(tmp_path):
        client = connect(tmp_path / "server.json")
        try:
            start = time.monotonic()
            client.submit("chatty", KIND, {"frames": 1, "points": 8, "progress_calls": 300})
            result = client.wait_job("chatty", timeout_s=60)
            elapsed = time.monotonic() - start
        finally:
            client.close()
        progress = [e.message for e in result.events if isinstance(e.message, Progress)]
        assert result.state == "done"
        assert 1 <= len(progress) <= elapsed * 10 + 3, (len(progress), elapsed)
        assert len(progress) < 60
        steps = [p.step for p in progress if p.stage == "chatter"]
        assert steps == sorted(steps)  # latest only, in order


def test_job_interrupted_by_a_server_kill_completes_when_resubmitted(tmp_path):
    """Issue 6: killing the server mid-job marks it failed-retryable; the same submit runs it again
    with the inputs already uploaded, and it completes with fresh streams."""
    jobs, conn_file = tmp_path / "jobs", tmp_path / "server.json"
    params = {"frames": 6, "points": 100, "seed": 3, "delay_s": 0.25}
    offsets = np.full((4, 3), 0.25, np.float32)
    first = ServerProcess(jobs, conn_file)
    client = connect(conn_file)
    try:
        client.submit("again", KIND, params, {"offsets": offsets})
        while True:  # the job is computing: its first chunk has been produced
            event = client.next_event(10)
            assert event is not None, "the job never started"
            if isinstance(event.message, ResultChunk):
                break
        first.kill()
        second = ServerProcess(jobs, conn_file)
        try:
            client.reconnect(resume_jobs=["again"])
            while True:  # the restarted server reports the interrupted job as failed, retryable
                event = client.next_event(10)
                assert event is not None, "no status for the interrupted job"
                if isinstance(event.message, JobStatus) and event.job_id == "again":
                    break
            assert event.message.state == "failed" and "submit it again" in event.message.detail
            client.submit("again", KIND, params, {"offsets": offsets})
            result = client.wait_job("again", timeout_s=30)
        finally:
            second.terminate()
    finally:
        client.close()
        first.kill()
    assert result.state == "done"
    stream = result.streams["points"]
    assert stream.end is not None and sorted(stream.arrays) == list(range(6))
    expected = frame_arrays(3, 5, 100)["xyz"] + offsets.sum(axis=0)
    np.testing.assert_array_equal(stream.arrays[5]["xyz"], expected)
    assert (jobs / "again" / "runs.txt").read_text().count("run") == 2
