"""ThreadedClient: the caller never blocks, credit follows consumption, reconnect after restart."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from jobkinds_for_tests import KIND, frame_arrays  # noqa: E402
from serverkit import running_server  # noqa: E402

from protocol.client import ThreadedClient  # noqa: E402
from protocol.client import core as client_core  # noqa: E402
from protocol.messages import JobAccepted, JobStatus, ResultBegin, ResultChunk, ResultEnd  # noqa: E402


def _drain(client: ThreadedClient, until, timeout_s: float = 10.0, on_event=None) -> list:
    events, deadline, worst = [], time.monotonic() + timeout_s, 0.0
    while time.monotonic() < deadline:
        start = time.perf_counter()
        batch = client.poll_events(max_items=8, time_budget_s=0.004)
        worst = max(worst, time.perf_counter() - start)
        for event in batch:
            events.append(event)
            if on_event is not None:
                on_event(event)
        if until(events):
            return events
        time.sleep(0.005)
    raise AssertionError(f"timed out; got {[e.type for e in events]}")


def test_threaded_client_submit_upload_stream_with_manual_credit(tmp_path, monkeypatch):
    monkeypatch.setattr(client_core, "UPLOAD_CHUNK_BYTES", 64 << 10)  # 480 kB input -> 8 upload chunks
    with running_server(tmp_path) as server:
        client = ThreadedClient(connection_file=tmp_path / "server.json", window=2)
        client.start()
        try:
            _drain(client, lambda ev: any(e.type == "client.connected" for e in ev))
            offsets = np.full((40_000, 3), 0.5, np.float32)
            client.submit("t1", KIND, {"frames": 6, "points": 500}, {"offsets": offsets})
            outstanding = []

            def consume(event):
                if isinstance(event.message, ResultChunk):
                    outstanding.append(event)
                    assert len(outstanding) <= 2  # never more than the window in flight
                    done = outstanding.pop(0)  # "apply" it, then grant credit
                    client.consumed(done.job_id, done.message.stream, done.message.chunk)

            events = _drain(client, lambda ev: any(isinstance(e.message, ResultEnd) for e in ev), on_event=consume)
        finally:
            client.stop()
        assert sum(e.type == "upload.credit" for e in events) == 1 + 8  # initial grant + one ack per chunk
        chunks = [e for e in events if isinstance(e.message, ResultChunk)]
        assert [e.message.chunk for e in chunks] == list(range(6))
        expected = frame_arrays(0, 5, 500)["xyz"] + 20_000.0
        np.testing.assert_allclose(chunks[5].arrays["xyz"], expected)
        assert chunks[5].meta == {"frame": 5}
        begin = next(e.message for e in events if isinstance(e.message, ResultBegin))
        assert begin.frames == 6 and begin.chunks == 6
        assert client.state == "closed"
        assert server.store.get("t1").state == "done"
        uploaded = (tmp_path / "jobs" / "t1" / "inputs" / "offsets.npy").stat().st_size
        assert uploaded >= offsets.nbytes
        assert not [t for t in threading.enumerate() if t.name == "recast4d-client-io"]


def test_poll_events_respects_item_budget_and_never_blocks(tmp_path):
    with running_server(tmp_path):
        client = ThreadedClient(connection_file=tmp_path / "server.json", auto_ack=True)
        client.start()
        try:
            start = time.perf_counter()
            assert isinstance(client.poll_events(max_items=4, time_budget_s=0.002), list)
            assert time.perf_counter() - start < 0.5  # returns at once, connected or not
            _drain(client, lambda ev: any(e.type == "client.connected" for e in ev))
            client.submit("t2", KIND, {"frames": 20, "points": 100})
            time.sleep(0.5)
            assert len(client.poll_events(max_items=3)) <= 3
            events = _drain(client, lambda ev: any(isinstance(e.message, JobStatus) and e.message.state == "done"
                                                   for e in ev) and any(isinstance(e.message, ResultEnd) for e in ev))
            assert events
        finally:
            client.stop()


def test_threaded_client_reconnects_to_a_restarted_server_and_resumes(tmp_path):
    with running_server(tmp_path):
        client = ThreadedClient(connection_file=tmp_path / "server.json", heartbeat_s=0.2, liveness=3,
                                max_backoff_s=0.5, window=1)
        client.start()
        _drain(client, lambda ev: any(e.type == "client.connected" for e in ev))
        client.submit("t3", KIND, {"frames": 8, "points": 300, "seed": 4})
        first = _drain(client, lambda ev: any(isinstance(e.message, ResultChunk) for e in ev))
        got = {e.message.chunk: e.arrays["xyz"].copy() for e in first if isinstance(e.message, ResultChunk)}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the job finishes on disk while we hold the credit
            if (tmp_path / "jobs" / "t3" / "state.json").read_text().count('"done"'):
                break
            time.sleep(0.02)
    # server stopped; a new one on the same jobs dir writes a new connection file (new port and key)
    with running_server(tmp_path):
        try:
            for chunk in sorted(got):
                client.consumed("t3", "points", chunk)

            def grant(event):
                if isinstance(event.message, ResultChunk):
                    got[event.message.chunk] = event.arrays["xyz"].copy()
                    client.consumed("t3", "points", event.message.chunk)

            events = _drain(client, lambda ev: any(isinstance(e.message, ResultEnd) for e in ev), timeout_s=15,
                            on_event=grant)
        finally:
            client.stop()
        kinds = [e.type for e in events]
        assert "client.reconnecting" in kinds and "client.server_restarted" in kinds
        assert sorted(got) == list(range(8))
        for chunk, xyz in got.items():
            np.testing.assert_array_equal(xyz, frame_arrays(4, chunk, 300)["xyz"])


def test_a_new_client_resumes_jobs_named_at_start(tmp_path):
    """After a Blender restart the add-on names the .blend's jobs; the server replies with their streams."""
    with running_server(tmp_path):
        first = ThreadedClient(connection_file=tmp_path / "server.json", auto_ack=True)
        first.start()
        try:
            _drain(first, lambda ev: any(e.type == "client.connected" for e in ev))
            first.submit("kept", KIND, {"frames": 3, "points": 50}, {})
            done = _drain(first, lambda ev: any(isinstance(e.message, JobStatus) and e.message.state == "done"
                                                for e in ev))
        finally:
            first.stop()
        token = next(e.message.token for e in done if isinstance(e.message, JobAccepted))  # saved in the .blend
        second = ThreadedClient(connection_file=tmp_path / "server.json", resume_jobs=["kept"],
                                job_tokens={"kept": token})
        second.start()
        try:
            events = _drain(second, lambda ev: any(isinstance(e.message, JobStatus) for e in ev))
        finally:
            second.stop()
    status = next(e.message for e in events if isinstance(e.message, JobStatus))
    assert status.job_id == "kept" and status.state == "done"
    assert status.streams and all(chunks >= 1 for chunks in status.streams.values())
