"""Regression tests for server bugs found in review (each failed before its fix)."""

from __future__ import annotations

import numpy as np
import pytest
from serverkit import connect, raw_peer, running_server

from backend.jobs import JobContext, register_job_kind, unregister_job_kind

BAD_META_KIND = "test.review.bad_meta"


def _run_bad_meta(ctx: JobContext) -> None:
    # msgpack stores the int key on disk, but it cannot be read back under the wire's str-keys rule
    ctx.emit("points", {"xyz": np.zeros((4, 3), np.float32)}, {1: "int key"})


@pytest.fixture
def bad_meta_kind():
    register_job_kind(BAD_META_KIND, _run_bad_meta, replace=True)
    yield BAD_META_KIND
    unregister_job_kind(BAD_META_KIND)


def test_unreadable_result_chunk_fails_the_job_and_the_server_keeps_answering(tmp_path, bad_meta_kind):
    with running_server(tmp_path) as server:
        client = connect(server.connection_path, timeout_s=10.0)
        try:
            client.submit("bad-meta-1", bad_meta_kind)
            result = client.wait_job("bad-meta-1")
            assert result.state == "failed"
            assert result.error is not None and result.error.code == "result_unreadable"
            assert "points" in result.error.msg
            assert client.ping(timeout_s=5.0).server_session == server.session  # the I/O loop is alive
            assert server.wait(0.01) is False
        finally:
            client.close()


@pytest.fixture
def idle_server(tmp_path):
    """A server that is built but not started: tests drive its I/O-side methods by hand."""
    from backend.server import Server, ServerConfig

    server = Server(ServerConfig(jobs_dir=tmp_path / "jobs", write_connection_file=False))
    yield server
    server.stop()
    for sock in (server.socket, server._wake_rx, server._wake_tx):
        sock.close(linger=0)
    server._ctx.term()


def test_cancel_right_after_the_worker_started_the_job_is_the_last_word(idle_server):
    from backend.jobs import QUEUED, RUNNING
    from backend.server.flow import ClientState
    from protocol.messages import Cancel
    from protocol.wire import Message

    server, sent = idle_server, []
    server.send = lambda client, message, **kwargs: sent.append(message) or True  # type: ignore[method-assign]
    client = server.clients[b"c1"] = ClientState(identity=b"c1")
    server.store.create("j1", "test.points", {}, {})
    server.subscribe(client, "j1")
    # the worker commits "running"; its event is still queued for the I/O loop ...
    assert server.store.transition("j1", RUNNING, from_states={QUEUED})
    server.job_state("j1", RUNNING, None)
    # ... when the I/O loop handles a cancel, and the job reports progress before it sees its flag
    server.on_cancel(client, Message(type="cancel", job_id="j1"), Cancel(job_id="j1"))
    server.job_progress("j1", "points", 1, 3, "late")
    server._drain_events()
    server._flush_progress()
    assert [message.TYPE for message in sent] == ["cancelled"]
    assert server._progress == {}


def test_result_begin_queued_behind_a_full_socket_goes_out_once_and_before_its_chunks(idle_server):
    from backend.jobs import QUEUED, RUNNING
    from backend.server.flow import ClientState, StreamSender
    from protocol.wire import Codec

    server = idle_server
    peer_codec, received, socket_full = Codec(server.key), [], [True]

    def fake_send_frames(client, frames):
        if socket_full[0]:
            return "again"
        received.append(peer_codec.decode(frames).type)
        return "sent"

    server._send_frames = fake_send_frames  # type: ignore[method-assign]
    client = server.clients[b"c1"] = ClientState(identity=b"c1")
    server.store.create("j1", "test.points", {}, {})
    server.subscribe(client, "j1")
    assert server.store.transition("j1", RUNNING, from_states={QUEUED})
    for frame in range(2):
        server.store.append_chunk("j1", "points", {"xyz": np.zeros((2, 3), np.float32)}, {"frame": frame})
    client.senders[("j1", "points")] = StreamSender("j1", "points", window=4)
    server._pump_streams()  # the socket is full: result.begin waits in the client's outbox
    socket_full[0] = False
    for _ in range(3):  # later I/O loop rounds
        server._pump_streams()
        server._flush_outboxes()
    assert received == ["result.begin", "result.chunk", "result.chunk"]


def test_a_message_captured_before_bye_cannot_be_replayed_after_it(tmp_path):
    from protocol.messages import ErrorMessage, Hello, Pong, Welcome, parse
    from protocol.wire import Message

    with running_server(tmp_path) as server, raw_peer(server) as peer:
        codec = peer.codec
        assert isinstance(parse(peer.reply(codec.encode(Hello(client="replay-test").to_message()))), Welcome)
        ping = [bytes(f) for f in codec.encode(Message(type="ping"))]
        assert isinstance(parse(peer.reply(ping)), Pong)
        peer.sock.send_multipart(codec.encode(Message(type="bye")))
        reply = parse(peer.reply(ping))  # the same signed frames again, after the session said bye
        assert isinstance(reply, ErrorMessage) and reply.code == "replayed"


def test_a_peer_of_another_major_version_is_refused_and_forgotten(tmp_path):
    import time

    from protocol.messages import ErrorMessage, parse
    from protocol.wire import Message

    with running_server(tmp_path) as server, raw_peer(server) as peer:
        frames = peer.codec.encode(Message(type="hello"))
        reply = parse(peer.reply([b"B4D2", *frames[1:]]))
        assert isinstance(reply, ErrorMessage) and reply.code == "version_unsupported"
        deadline = time.monotonic() + 2
        while server.clients and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.clients == {}


def test_a_peer_without_the_key_gets_its_error_but_leaves_no_client_state(tmp_path):
    from protocol.messages import ErrorMessage, parse
    from protocol.wire import Codec, Message

    with running_server(tmp_path) as server, raw_peer(server) as peer:
        reply = parse(peer.reply(Codec(b"k" * 32).encode(Message(type="ping"))))  # signed with a wrong key
        assert isinstance(reply, ErrorMessage) and reply.code == "bad_signature"
        assert server.clients == {}


def test_upload_pieces_in_flight_when_a_job_is_cancelled_are_dropped_quietly(idle_server):
    from backend.jobs import InputSpec
    from backend.server.flow import ClientState, UploadReceiver
    from protocol.messages import Cancel, UploadChunk, UploadEnd
    from protocol.wire import Message

    server, sent = idle_server, []
    server.send = lambda client, message, **kwargs: sent.append(message) or True  # type: ignore[method-assign]
    client = server.clients[b"c1"] = ClientState(identity=b"c1")
    server.store.create("j1", "test.points", {}, {"offsets": InputSpec("<f4", (4, 3))})
    server.subscribe(client, "j1")
    target = server.store.open_input("j1", "offsets")
    server.uploads[("j1", "offsets")] = UploadReceiver("j1", "offsets", target, window=4)
    server.on_cancel(client, Message(type="cancel", job_id="j1"), Cancel(job_id="j1"))
    chunk = UploadChunk(job_id="j1", chunk=0, input="offsets", frame_range=(0, 4),
                        arrays={"data": np.zeros((4, 3), np.float32)})
    server.on_upload_chunk(client, chunk.to_message(), chunk)  # raised unexpected_upload before
    end = UploadEnd(job_id="j1", input="offsets", chunks=1)
    server.on_upload_end(client, end.to_message(), end)
    assert [message.TYPE for message in sent] == ["cancelled"]


def test_the_client_stops_uploading_once_its_job_is_cancelled():
    from protocol.client.core import Connection, Event
    from protocol.connection import ConnectionInfo
    from protocol.messages import Cancelled
    from protocol.wire import Message

    info = ConnectionInfo(transport="tcp", host="127.0.0.1", port=9, key="", pid=0, server_session="none")
    conn = Connection(info)
    try:
        conn.uploads[("j1", "frames")] = object()  # type: ignore[assignment]
        message = Cancelled(job_id="j1")
        conn._track(Event(type=message.TYPE, job_id="j1", message=message), Message(type=message.TYPE))
        assert conn.uploads == {} and conn.jobs["j1"] == "cancelled"
    finally:
        conn.close()


def test_chunks_still_in_flight_when_a_stream_is_resent_are_not_reported_as_missing():
    from protocol.client.core import Connection, Event
    from protocol.connection import ConnectionInfo
    from protocol.messages import ResultBegin, ResultChunk, ResultEnd
    from protocol.wire import Message

    info = ConnectionInfo(transport="tcp", host="127.0.0.1", port=9, key="", pid=0, server_session="none")
    conn = Connection(info)

    def track(message) -> bool:
        return conn._track(Event(type=message.TYPE, job_id=message.job_id, message=message),
                           Message(type=message.TYPE, content={}))

    try:
        arrays = {"xyz": np.zeros((1, 3), np.float32)}
        for chunk in range(3):
            assert track(ResultChunk(job_id="j", stream="s", chunk=chunk, arrays=arrays))
        conn.resend("j", "s", 0)  # e.g. Fetch Results mid-stream; chunks 3, 4 and the end are on the way
        assert not track(ResultChunk(job_id="j", stream="s", chunk=3, arrays=arrays))  # raised before
        assert not track(ResultEnd(job_id="j", stream="s", chunks=5))
        assert track(ResultBegin(job_id="j", stream="s", chunks=5, meta={"from_chunk": 0}))
        assert track(ResultChunk(job_id="j", stream="s", chunk=0, arrays=arrays))
        assert conn.streams[("j", "s")].received == 1 and not conn.streams[("j", "s")].ended
    finally:
        conn.close()


def test_cancelling_a_job_that_never_reached_the_worker_keeps_no_flag(tmp_path):
    from backend.jobs import CANCELLED, QUEUED, JobStore, Worker

    store = JobStore(tmp_path / "jobs")
    store.create("uploading", "test.points", {}, {})
    worker = Worker(store)
    worker.request_cancel("uploading")  # the server cancels a job whose inputs were still uploading
    assert store.transition("uploading", CANCELLED, from_states={QUEUED})
    assert worker._cancel == {}
    worker.enqueue("queued")
    worker.request_cancel("queued")
    assert worker._cancel["queued"].is_set()


def test_an_upload_tail_lost_in_a_reconnect_is_sent_again():
    from protocol.client.core import Connection, Event
    from protocol.connection import ConnectionInfo
    from protocol.messages import JobStatus, UploadCredit
    from protocol.wire import Message

    info = ConnectionInfo(transport="tcp", host="127.0.0.1", port=9, key="", pid=0, server_session="none")
    conn = Connection(info)
    sent: list[str] = []
    real_send = conn.send
    conn.send = lambda message: sent.append(message.TYPE) or real_send(message)  # type: ignore[method-assign]

    def track(message) -> None:
        conn._track(Event(type=message.TYPE, job_id=message.job_id, message=message),
                    Message(type=message.TYPE, content={}))

    try:
        conn.submit("j", "test.points", {}, {"offsets": np.zeros((4, 3), np.float32)})
        track(UploadCredit(job_id="j", input="offsets", ack=0, window=4))
        assert sent[-2:] == ["upload.chunk", "upload.end"] and not conn.uploading("j")
        conn.reopen()  # the connection dropped before the server got the last chunk and the end
        sent.clear()
        track(UploadCredit(job_id="j", input="offsets", ack=0, window=4))  # server: resume from chunk 0
        assert sent == ["upload.chunk", "upload.end"]  # before the fix the upload was forgotten: nothing
        track(JobStatus(job_id="j", state="running"))
        assert conn.uploads == {}
    finally:
        conn.close()
