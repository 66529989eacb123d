"""Codec round trips: dtypes, shapes (zero-size included), layouts, inline vs buffer, real zmq frames."""

from __future__ import annotations

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocol.arrays import ALLOWED_DTYPES
from protocol.errors import ProtocolError, ValidationError
from protocol.wire import PROTOCOL_TAG, Codec, Limits, Message

KEY = b"k" * 32


def _pair(**limits: int) -> tuple[Codec, Codec]:
    lim = Limits(**limits)
    return Codec(KEY, limits=lim), Codec(KEY, limits=lim)


def _roundtrip(content: dict, sender: Codec, receiver: Codec) -> tuple[list, Message]:
    frames = sender.encode(Message("result.chunk", content, job_id="job-1", stream="points", chunk=3))
    # What a socket delivers: independent bytes per frame.
    received = [bytes(frame) for frame in frames]
    return frames, receiver.decode(received)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(sorted(ALLOWED_DTYPES)),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
    ),
    threshold=st.sampled_from([0, 64, 1 << 16]),
)
def test_roundtrip_any_allowed_dtype_and_shape(array: np.ndarray, threshold: int) -> None:
    sender, receiver = _pair(inline_threshold=threshold)
    _, msg = _roundtrip({"a": array, "nested": [{"b": array}]}, sender, receiver)
    for got in (msg.content["a"], msg.content["nested"][0]["b"]):
        assert got.dtype == array.dtype
        assert got.shape == array.shape
        assert got.tobytes() == array.tobytes()  # bitwise, NaN payloads included
        assert not got.flags.writeable
        assert got.flags.c_contiguous


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a[::2],
        lambda a: np.asfortranarray(a),
        lambda a: a.T,
        lambda a: a[:, 1:3],
        lambda a: a.astype(">f4"),  # big-endian input is byte-swapped by the sender
    ],
    ids=["stride", "fortran", "transposed", "slice", "big-endian"],
)
@pytest.mark.parametrize("threshold", [0, 1 << 20], ids=["buffer", "inline"])
def test_non_contiguous_input_is_sent_contiguous(make, threshold: int) -> None:
    base = np.arange(6 * 5, dtype="<f4").reshape(6, 5)
    view = make(base)
    sender, receiver = _pair(inline_threshold=threshold)
    _, msg = _roundtrip({"a": view}, sender, receiver)
    got = msg.content["a"]
    assert got.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(got, view)
    assert got.flags.c_contiguous


def test_small_arrays_inline_big_arrays_as_buffers() -> None:
    sender, receiver = _pair(inline_threshold=1024)
    small = np.zeros(255, np.float32)  # 1020 bytes < 1024 -> inline
    edge = np.zeros(256, np.float32)  # 1024 bytes -> buffer
    big = np.zeros((100, 3), np.float64)
    frames, msg = _roundtrip({"small": small, "edge": edge, "big": big}, sender, receiver)
    assert len(frames) == 4 + 2
    assert [f.nbytes for f in frames[4:]] == [edge.nbytes, big.nbytes]
    np.testing.assert_array_equal(msg.content["big"], big)
    np.testing.assert_array_equal(msg.content["small"], small)


def test_buffers_are_zero_copy_views_of_the_sent_array() -> None:
    sender, _ = _pair()
    array = np.arange(1 << 15, dtype=np.float32)  # 128 KiB
    frames = sender.encode(Message("x", {"a": array}))
    buffer = frames[4]
    assert isinstance(buffer, memoryview)
    assert np.shares_memory(np.frombuffer(buffer, np.float32), array)


def test_decoded_arrays_are_views_over_received_frames() -> None:
    sender, receiver = _pair(inline_threshold=0)
    array = np.arange(1000, dtype=np.uint16)
    frames = [bytearray(bytes(f)) for f in sender.encode(Message("x", {"a": array}))]
    msg = receiver.decode(frames)
    got = msg.content["a"]
    assert np.shares_memory(got, np.frombuffer(frames[4], np.uint8))
    assert not got.flags.writeable  # even over a writable bytearray


def test_header_fields_and_scalars_roundtrip() -> None:
    sender, receiver = _pair()
    content = {"i": np.int64(7), "f": np.float32(0.5), "b": np.bool_(True), "t": (1, 2), "s": "é", "raw": b"\x00"}
    sent = Message("progress", content, job_id="j", stream="s", chunk=0, parent_id="p")
    frames = sender.encode(sent)
    msg = receiver.decode(frames)
    assert msg.content == {"i": 7, "f": 0.5, "b": True, "t": [1, 2], "s": "é", "raw": b"\x00"}
    assert (msg.type, msg.job_id, msg.stream, msg.chunk, msg.parent_id) == ("progress", "j", "s", 0, "p")
    assert (msg.msg_id, msg.session, msg.seq) == (sent.msg_id, sender.session, sent.seq)
    assert msg.seq > 0 and msg.version == "1.0" and msg.ts > 0
    assert receiver.decode(sender.encode(Message("ping"))).seq == sent.seq + 1
    assert frames[0] == PROTOCOL_TAG and len(frames[1]) == 32


def test_sequence_increases_and_sessions_are_tracked_separately() -> None:
    a, b = Codec(KEY, first_seq=1), Codec(KEY, first_seq=1)
    server = Codec(KEY)
    seen = [(m.session, m.seq) for m in (server.decode(s.encode(Message("ping"))) for s in (a, b, a, b))]
    assert seen == [(a.session, 1), (b.session, 1), (a.session, 2), (b.session, 2)]


def test_recreated_codec_with_same_session_is_not_taken_for_a_replay() -> None:
    server = Codec(KEY)
    for _ in range(3):
        server.decode(Codec(KEY, session="addon-instance").encode(Message("ping")))
    stale = Codec(KEY, session="addon-instance", first_seq=1)
    with pytest.raises(ProtocolError) as info:
        server.decode(stale.encode(Message("ping")))
    assert info.value.code == "replayed"


def test_unsigned_mode_with_empty_key() -> None:
    sender, receiver = Codec(b""), Codec(b"")
    frames = sender.encode(Message("ping"))
    assert frames[1] == b""
    assert receiver.decode(frames).type == "ping"


def test_real_zmq_frames_zero_copy() -> None:
    ctx = zmq.Context.instance()
    push, pull = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        push.bind("inproc://b4d-codec-test")
        pull.connect("inproc://b4d-codec-test")
        sender, receiver = _pair()
        xyz = np.random.default_rng(0).random((40000, 3), dtype=np.float32)
        rgb = np.full((40000, 3), 7, np.uint8)
        push.send_multipart(sender.encode(Message("result.chunk", {"arrays": {"xyz": xyz, "rgb": rgb}})),
                            copy=False)
        frames = pull.recv_multipart(copy=False)
        assert all(isinstance(f, zmq.Frame) for f in frames)
        msg = receiver.decode(frames)
        np.testing.assert_array_equal(msg.content["arrays"]["xyz"], xyz)
        np.testing.assert_array_equal(msg.content["arrays"]["rgb"], rgb)
        assert not msg.content["arrays"]["xyz"].flags.writeable
    finally:
        push.close(linger=0)
        pull.close(linger=0)


@pytest.mark.parametrize("bad", [np.zeros(3, np.int64), np.zeros(3, np.complex64), np.array(["a"]),
                                 np.zeros(2, dtype=object), np.zeros(2, "<M8[s]")])
def test_sender_refuses_disallowed_dtypes(bad: np.ndarray) -> None:
    with pytest.raises(ValidationError) as info:
        Codec(KEY).encode(Message("x", {"a": bad}))
    assert info.value.code == "bad_dtype"


def test_sender_refuses_unsendable_values_and_oversize() -> None:
    codec = Codec(KEY, limits=Limits(max_content_bytes=100, max_frame_bytes=1000, max_buffers=1))
    with pytest.raises(ValidationError):
        codec.encode(Message("x", {"a": object()}))
    with pytest.raises(ProtocolError) as info:
        codec.encode(Message("x", {"a": "y" * 200}))
    assert info.value.code == "too_large"
    with pytest.raises(ProtocolError) as info:
        codec.encode(Message("x", {"a": np.zeros(1 << 17, np.uint8)}))
    assert info.value.code == "too_large"
    two_buffers = {"a": np.zeros(1 << 16, np.uint8), "b": np.zeros(1 << 16, np.uint8)}
    with pytest.raises(ProtocolError) as info:
        Codec(KEY, limits=Limits(max_buffers=1)).encode(Message("x", two_buffers))
    assert info.value.code == "too_many_frames"


def test_limits_dict_roundtrip_ignores_unknown_keys() -> None:
    limits = Limits(window=8)
    data = limits.to_dict() | {"max_future_thing": 3}
    assert Limits.from_dict(data) == limits
    assert Limits.from_dict({}) == Limits()
    with pytest.raises(ValidationError):
        Limits(window=-1)
