"""Issue 15 items 2, 4, 9, 11: authentication before assembly (CURVE + ZAP), descriptors and upload
timeouts, job ownership, log hygiene."""

from __future__ import annotations

import logging
import time

import numpy as np
import zmq
from jobkinds_for_tests import KIND
from serverkit import ServerProcess, connect, raw_peer, running_server

from protocol.connection import ConnectionInfo, curve_keypair
from protocol.messages import Cancel, ErrorMessage, JobAccepted, JobRejected, UploadChunk, parse

MIB = 1 << 20


def submit_without_upload(client, job_id, kind, params, inputs):
    """Submit, get the reply, and never upload the inputs (an abandoned upload)."""
    client.conn.pump_uploads = lambda: None
    msg_id = client.conn.submit(job_id, kind, params, inputs)
    return client._await(lambda e: isinstance(e.message, JobAccepted | JobRejected) and e.job_id == job_id,
                         msg_id, 10, "reply to job.submit").message


def _blast(info: ConnectionInfo, *, server_key: str | None, frames: int, repeat: int) -> None:
    """A peer without the right keys sends ``repeat`` messages of ``frames`` x 16 MiB frames."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if server_key is not None:  # a CURVE client that does not know the real server key
        public, secret = curve_keypair()
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (
            server_key.encode(), public.encode(), secret.encode())
    sock.connect(info.endpoint)
    payload = bytes(16 * MIB)
    try:
        sent, deadline = 0, time.monotonic() + 3.0
        while sent < repeat and time.monotonic() < deadline:  # never block: the handshake keeps failing
            try:
                sock.send_multipart([b"B4D1", b"x" * 32, b"\x80", b"\x80", *([payload] * frames)],
                                    flags=zmq.NOBLOCK, copy=False)
                sent += 1
            except zmq.Again:
                time.sleep(0.05)
        time.sleep(1.5)  # long enough for the bytes to have arrived, had the server taken them
    finally:
        sock.close(0)
        ctx.term()


def test_unauthenticated_peers_cannot_make_the_server_allocate(tmp_path):
    server = ServerProcess(tmp_path / "jobs", tmp_path / "server.json")
    try:
        info = ConnectionInfo.read(tmp_path / "server.json")
        assert info.curve_server_public, "the connection file carries the server's CURVE public key"
        client = connect(tmp_path / "server.json")
        client.ping()
        before = server.rss()
        _blast(info, server_key=None, frames=30, repeat=2)  # plain ZMTP: refused at the handshake
        _blast(info, server_key=curve_keypair()[0], frames=30, repeat=2)  # wrong server key
        growth = server.rss() - before
        assert growth < 64 * MIB, f"server grew by {growth / MIB:.0f} MiB from 1.9 GB of unauthenticated data"
        assert client.ping(timeout_s=5).server_session == info.server_session
        client.close()
    finally:
        server.kill()


def test_a_client_with_the_connection_file_talks_encrypted(tmp_path):
    with running_server(tmp_path) as server:
        assert server.socket.getsockopt(zmq.CURVE_SERVER) == 1
        assert server.socket.getsockopt(zmq.MAXMSGSIZE) == server.limits.max_frame_bytes  # the second bound
        client = connect(server.connection_path)
        try:
            assert client.conn.socket.getsockopt(zmq.MECHANISM) == zmq.CURVE
            assert client.ping().server_session == server.session
        finally:
            client.close()


def test_open_inputs_hold_no_descriptors_under_a_low_rlimit(tmp_path):
    """64 declared inputs waiting for their uploads used to hold 64 open files (memory maps)."""
    server = ServerProcess(tmp_path / "jobs", tmp_path / "server.json", max_open_files=48)
    owner = connect(tmp_path / "server.json")
    try:
        inputs = {f"in{i}": np.ones((2, 3), np.float32) for i in range(16)}
        for j in range(4):
            assert isinstance(submit_without_upload(owner, f"idle-{j}", KIND, {"frames": 1}, inputs), JobAccepted)
        other = connect(tmp_path / "server.json")
        try:
            other.submit("after", KIND, {"frames": 1, "points": 4}, {"offsets": np.ones((3, 3), np.float32)})
            assert other.wait_job("after").state == "done"
        finally:
            other.close()
    finally:
        owner.close()
        server.kill()


def test_abandoned_upload_times_out_and_the_open_upload_cap_is_typed(tmp_path):
    with running_server(tmp_path, upload_idle_timeout_s=0.3, max_open_uploads=3) as server:
        client = connect(server.connection_path)
        try:
            two = {"a": np.ones((2, 3), np.float32), "b": np.ones((2, 3), np.float32)}
            assert isinstance(submit_without_upload(client, "stalled", KIND, {"frames": 1}, two), JobAccepted)
            reply = submit_without_upload(client, "over-cap", KIND, {"frames": 1}, two)
            assert isinstance(reply, JobRejected)
            assert reply.code == "too_many_uploads" and "limit 3" in reply.detail
            result = client.wait_job("stalled", timeout_s=10)
            assert result.state == "failed" and result.error.code == "upload_timeout" and result.error.retryable
            assert server.store.get("stalled").state == "failed" and not server.uploads
        finally:
            client.close()


def test_only_the_owner_uploads_and_cancels(tmp_path):
    with running_server(tmp_path) as server:
        owner = connect(server.connection_path)
        data = np.full((4, 3), 2.0, np.float32)
        try:
            submit_without_upload(owner, "mine", KIND, {"frames": 1, "points": 4}, {"offsets": data})
            with raw_peer(server) as intruder:
                chunk = UploadChunk(job_id="mine", chunk=0, input="offsets", frame_range=(0, 4),
                                    arrays={"data": np.zeros((4, 3), np.float32)}).to_message()
                frames = intruder.codec.encode(chunk)
                reply = parse(intruder.reply([bytes(f) for f in frames]))
                assert isinstance(reply, ErrorMessage) and reply.code == "not_owner"
                reply = parse(intruder.reply([bytes(f) for f in intruder.codec.encode(Cancel(job_id="mine")
                                                                                        .to_message())]))
                assert isinstance(reply, ErrorMessage) and reply.code == "not_owner"
            assert server.store.get("mine").state == "queued"
            del owner.conn.pump_uploads  # the owner uploads its own data
            upload = owner.conn.uploads[("mine", "offsets")]
            upload.window = max(upload.window, 1)
            owner.conn.pump_uploads()
            result = owner.wait_job("mine")
            assert result.state == "done"
            xyz = result.streams["points"].arrays[0]["xyz"]
            from jobkinds_for_tests import frame_arrays

            assert np.allclose(xyz, frame_arrays(0, 0, 4)["xyz"] + 8.0)  # the owner's chunk, not the intruder's
        finally:
            owner.close()


def test_logs_are_sanitised_rate_limited_and_name_full_peer_ids(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="recast4d.server")
    with running_server(tmp_path) as server, raw_peer(server) as peer:
        peer.ping_ok()
        identity = next(iter(server.clients))
        forged = peer.forge("evil\nINFO forged line\x00", {})
        assert parse(peer.reply(forged)).code == "unknown_type"
        for _ in range(40):  # unsigned noise
            peer.sock.send_multipart(peer.forge("ping", {}, key=b"wrong" * 7))
        time.sleep(0.5)
        assert peer.sock.poll(2000)
    lines = [r.getMessage() for r in caplog.records if r.name == "recast4d.server"]
    assert all("\n" not in line and "\x00" not in line for line in lines)
    assert any("evil\\nINFO forged line\\x00" in line and identity.hex() in line for line in lines)
    noise = [line for line in lines if "bad_signature" in line]
    assert 1 <= len(noise) <= 10, f"{len(noise)} log lines for 40 unsigned messages"


def test_remote_binds_are_always_encrypted(tmp_path):
    import pytest

    from backend.server import BindRefused, Server, ServerConfig

    with pytest.raises(BindRefused, match="encryption"):  # refused before anything binds
        Server(ServerConfig(host="203.0.113.7", allow_remote=True, curve=False, jobs_dir=tmp_path / "jobs",
                            write_connection_file=False))
