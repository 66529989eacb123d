"""Bad input at the server: every case gets a typed error, nothing big is allocated, the server
answers the next ping (issue 2 "Rejections", protocol.md tests 4-11)."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import msgpack
import numpy as np
import pytest
from serverkit import RawPeer, process_rss_bytes, raw_peer, running_server

from protocol.messages import ErrorMessage, JobRejected, JobSubmit, Pong, parse
from protocol.wire import Message


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("rejections")) as srv:
        yield srv


@pytest.fixture
def peer(server):
    with raw_peer(server) as raw:
        yield raw


def _error_code(msg: Message) -> str:
    typed = parse(msg)
    assert isinstance(typed, ErrorMessage | JobRejected), typed
    return typed.code


def test_wrong_key_flipped_bit_truncated_signature(peer):
    assert _error_code(peer.reply(peer.forge("ping", {}, key=b"k" * 32))) == "bad_signature"
    frames = peer.forge("ping", {})
    frames[2] = bytes([frames[2][0] ^ 0x01]) + frames[2][1:]
    assert _error_code(peer.reply(frames)) == "bad_signature"
    frames = peer.forge("ping", {})
    frames[1] = frames[1][:16]
    assert _error_code(peer.reply(frames)) == "bad_signature"
    peer.ping_ok()


def test_replayed_seq(peer):
    frames = peer.forge("ping", {})
    assert isinstance(parse(peer.reply(frames)), Pong)
    assert _error_code(peer.reply(frames)) == "replayed"
    assert _error_code(peer.reply(peer.forge("ping", {}, seq=1))) == "replayed"
    peer.ping_ok()


@pytest.mark.parametrize(
    ("descriptor", "buffer", "code"),
    [
        ({"dtype": "<f4", "shape": [1000, 1000], "buf": 0}, b"\0" * 16, "bad_array"),  # tiny buffer, big shape
        ({"dtype": "<f4", "shape": [2], "buf": 0}, b"\0" * 4096, "bad_array"),  # big buffer, tiny shape
        ({"dtype": "<f4", "shape": [2**40, 2**40, 3], "buf": 0}, b"\0" * 12, "bad_array"),  # huge declared
        ({"dtype": "|O", "shape": [1], "buf": 0}, b"\0" * 8, "bad_dtype"),
        ({"dtype": ">f4", "shape": [2], "buf": 0}, b"\0" * 8, "bad_dtype"),
        ({"dtype": "<U8", "shape": [1], "buf": 0}, b"\0" * 32, "bad_dtype"),
        ({"dtype": "f4; import os", "shape": [1], "buf": 0}, b"\0" * 4, "bad_dtype"),
    ],
)
def test_bad_array_descriptors(peer, descriptor, buffer, code):
    content = {"job_id": "j", "chunk": 0, "input": "x", "frame_range": [0, 1],
               "arrays": {"data": {"__nd__": True, **descriptor}}}
    before = process_rss_bytes_self()
    assert _error_code(peer.reply(peer.forge("upload.chunk", content, (buffer,)))) == code
    assert process_rss_bytes_self() - before < 32 << 20  # nothing sized by the declared shape
    peer.ping_ok()


def process_rss_bytes_self() -> int:
    import os

    return process_rss_bytes(os.getpid())


def test_buffer_lengths_must_match_header(peer):
    content = {"arrays": {"a": {"__nd__": True, "dtype": "|u1", "shape": [8], "buf": 0}}}
    assert _error_code(peer.reply(peer.forge("upload.chunk", content, (b"\0" * 8,), buf_lens=[80]))) == "bad_buffers"
    peer.ping_ok()


def test_deep_nesting_and_truncated_msgpack(peer):
    deep: list = []
    for _ in range(1000):
        deep = [deep]
    assert _error_code(peer.reply(peer.forge("ping", {"x": deep}))) == "bad_message"
    packed = msgpack.packb({"job_id": "abc", "kind": "test.points", "params": {"frames": 3}})
    assert _error_code(peer.reply(peer.forge("job.submit", packed[:-3]))) == "bad_message"
    peer.ping_ok()


def test_unknown_type_and_server_event_as_request(peer):
    assert _error_code(peer.reply(peer.forge("frobnicate", {}))) == "unknown_type"
    assert _error_code(peer.reply(peer.forge("welcome", {"server_session": "x"}))) == "unknown_type"
    peer.ping_ok()


def test_not_a_b4d_peer(peer):
    peer.sock.send_multipart([b"GET / HTTP/1.1", b"", b"", b""])
    assert peer.sock.poll(5000)
    assert _error_code(peer.codec.decode(peer.sock.recv_multipart())) == "bad_tag"
    peer.ping_ok()


def _submit(peer: RawPeer, **fields) -> Message:
    return peer.reply(_signed(peer, JobSubmit(**fields).to_message()))


def _signed(peer: RawPeer, msg: Message) -> list[bytes]:
    frames = peer.forge(msg.type, msgpack.packb(msg.content, use_bin_type=True))
    header = msgpack.unpackb(frames[2])
    header["job_id"] = msg.job_id
    frames[2] = msgpack.packb(header)
    frames[1] = hmac.new(peer.key, frames[2] + frames[3], hashlib.sha256).digest()
    return frames


@pytest.mark.parametrize(
    ("camera", "word"),
    [
        ({"K": [[float("nan"), 0, 8], [0, 100, 8], [0, 0, 1]], "world_to_camera": np.eye(4).tolist(),
          "width": 16, "height": 16}, "NaN"),
        ({"K": [[-5.0, 0, 8], [0, 100, 8], [0, 0, 1]], "world_to_camera": np.eye(4).tolist(),
          "width": 16, "height": 16}, "f"),
    ],
)
def test_bad_camera_values_are_rejected_before_running(peer, server, camera, word):
    job_id = f"cam-{uuid.uuid4().hex[:8]}"
    reply = parse(_submit(peer, job_id=job_id, kind="test.points", params={"frames": 2, "camera": camera}))
    assert isinstance(reply, JobRejected)
    assert reply.code == "invalid_camera"
    assert word in reply.detail
    assert server.store.get(job_id) is None  # nothing stored, nothing ran
    peer.ping_ok()


def test_unknown_kind_and_huge_declared_inputs(peer, server):
    reply = parse(_submit(peer, job_id="nokind", kind="no.such.kind", params={}))
    assert isinstance(reply, JobRejected) and reply.code == "unknown_kind"
    before = process_rss_bytes_self()
    huge = {"dtype": "<f4", "shape": [2**20, 2**20, 3], "nbytes": 4 * 3 * 2**40}
    reply = parse(_submit(peer, job_id="huge", kind="test.points", params={}, inputs={"offsets": huge}))
    assert isinstance(reply, JobRejected) and reply.code == "too_large"
    assert process_rss_bytes_self() - before < 32 << 20
    assert server.store.get("huge") is None
    peer.ping_ok()
