"""Hostile and broken input: every case is a ProtocolError with the documented code, nothing else."""

from __future__ import annotations

import hashlib
import hmac
import tracemalloc
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ProtocolError
from protocol.wire import ERROR_CODES, PROTOCOL_TAG, Codec, Limits, Message

KEY = b"s" * 32


def header_map(**override: Any) -> dict[str, Any]:
    base = {"v": "1.0", "type": "result.chunk", "msg_id": "m1", "session": "peer", "seq": 1, "ts": 0.0,
            "buf_lens": []}
    base.update(override)
    return {k: v for k, v in base.items() if v is not ...}


def signed(header: dict | bytes, content: dict | bytes, buffers: tuple = (), key: bytes = KEY) -> list[bytes]:
    """Frames with a valid signature over arbitrary (possibly malformed) header/content bytes."""
    header_bytes = header if isinstance(header, bytes) else msgpack.packb(header)
    content_bytes = content if isinstance(content, bytes) else msgpack.packb(content)
    sig = hmac.new(key, header_bytes + content_bytes, hashlib.sha256).digest() if key else b""
    return [PROTOCOL_TAG, sig, header_bytes, content_bytes, *buffers]


def with_array(descriptor: dict, buffers: tuple = ()) -> list[bytes]:
    lens = [len(b) for b in buffers]
    return signed(header_map(buf_lens=lens), {"arrays": {"a": {"__nd__": True, **descriptor}}}, buffers)


def rejected(frames: list, code: str, codec: Codec | None = None) -> ProtocolError:
    assert code in ERROR_CODES
    with pytest.raises(ProtocolError) as info:
        (codec or Codec(KEY)).decode(frames)
    assert info.value.code == code, info.value
    assert str(info.value)  # a message for people
    return info.value


def valid_frames() -> list[bytes]:
    array = np.arange(1 << 15, dtype=np.float32)
    return [bytes(f) for f in Codec(KEY).encode(Message("result.chunk", {"a": array}, job_id="j"))]


# --------------------------------------------------------------------------- envelope and signature
def test_valid_reference_message_decodes() -> None:
    assert Codec(KEY).decode(valid_frames()).content["a"].shape == (1 << 15,)


def test_wrong_key() -> None:
    rejected(valid_frames(), "bad_signature", Codec(b"t" * 32))


@pytest.mark.parametrize("frame", [2, 3], ids=["header", "content"])
@pytest.mark.parametrize("bit", [0, 7, 100])
def test_flipped_bit_in_header_or_content(frame: int, bit: int) -> None:
    frames = valid_frames()
    data = bytearray(frames[frame])
    data[(bit // 8) % len(data)] ^= 1 << (bit % 8)
    frames[frame] = bytes(data)
    rejected(frames, "bad_signature")


@pytest.mark.parametrize("signature", [b"", b"\x00", "truncated", "extended"])
def test_missing_truncated_or_padded_signature(signature: Any) -> None:
    frames = valid_frames()
    if signature == "truncated":
        frames[1] = frames[1][:16]
    elif signature == "extended":
        frames[1] = frames[1] + b"\x00"
    else:
        frames[1] = signature
    rejected(frames, "bad_signature")


def test_signed_message_to_unsigned_receiver_and_unsigned_to_signed() -> None:
    rejected(valid_frames(), "bad_signature", Codec(b""))
    rejected(signed(header_map(), {}, key=b""), "bad_signature")


def test_signature_checked_before_header_and_content_decode() -> None:
    frames = [PROTOCOL_TAG, b"\x00" * 32, b"\xc1garbage", b"\xc1garbage"]
    rejected(frames, "bad_signature")


@pytest.mark.parametrize("count", [0, 1, 3])
def test_too_few_frames(count: int) -> None:
    rejected(valid_frames()[:count], "bad_envelope")


def test_too_many_frames() -> None:
    rejected(signed(header_map(), {}, tuple(b"" for _ in range(100))), "too_many_frames")
    rejected([PROTOCOL_TAG] + [b""] * 10_000, "too_many_frames")
    small = Codec(KEY, limits=Limits(max_buffers=2))
    rejected(signed(header_map(buf_lens=[0, 0, 0]), {}, (b"", b"", b"")), "too_many_frames", small)


def test_frame_that_is_not_bytes() -> None:
    rejected([PROTOCOL_TAG, b"", 42, b""], "bad_envelope")


@pytest.mark.parametrize("tag", [b"B4D2", b"B4D0", b"B4D9"])
def test_other_major_version_tag(tag: bytes) -> None:
    frames = valid_frames()
    frames[0] = tag
    rejected(frames, "version_unsupported")


@pytest.mark.parametrize("tag", [b"", b"GET / HTTP/1.1", b"B4D", b"\x00\x00\x00\x00", b"B4D1x"])
def test_not_our_protocol(tag: bytes) -> None:
    frames = valid_frames()
    frames[0] = tag
    rejected(frames, "bad_tag")


def test_header_version_other_major_and_garbage() -> None:
    rejected(signed(header_map(v="2.0"), {}), "version_unsupported")
    rejected(signed(header_map(v="one"), {}), "bad_message")
    rejected(signed(header_map(v=...), {}), "bad_message")


def test_newer_minor_version_and_unknown_header_fields_are_accepted() -> None:
    msg = Codec(KEY).decode(signed(header_map(v="1.7", future_field={"x": 1}), {"new": 1}))
    assert msg.version == "1.7" and msg.content == {"new": 1}


def test_oversize_header_content_and_buffer() -> None:
    limits = Limits(max_header_bytes=256, max_content_bytes=256, max_frame_bytes=1024)
    codec = Codec(KEY, limits=limits)
    rejected(signed(header_map(pad="x" * 300), {}), "too_large", codec)
    rejected(signed(header_map(), {"pad": "x" * 300}), "too_large", codec)
    rejected(with_array({"dtype": "|u1", "shape": [2048], "buf": 0}, (b"\x00" * 2048,)), "too_large", codec)


# --------------------------------------------------------------------------- header schema and replay
@pytest.mark.parametrize(
    "override",
    [{"type": ...}, {"type": ""}, {"type": 5}, {"msg_id": ...}, {"session": ...}, {"session": b"s"},
     {"seq": ...}, {"seq": -1}, {"seq": True}, {"seq": 1.0}, {"ts": "now"}, {"job_id": 3},
     {"chunk": -2}, {"chunk": "0"}, {"buf_lens": "0"}, {"buf_lens": [-1]}, {"type": "x" * 65}],
)
def test_malformed_header_fields(override: dict) -> None:
    rejected(signed(header_map(**override), {}), "bad_message")


def test_header_that_is_not_a_map() -> None:
    rejected(signed(msgpack.packb([1, 2]), {}), "bad_message")


def test_replayed_and_out_of_order_seq() -> None:
    codec = Codec(KEY)
    codec.decode(signed(header_map(seq=5), {}))
    rejected(signed(header_map(seq=5), {}), "replayed", codec)
    rejected(signed(header_map(seq=4), {}), "replayed", codec)
    codec.decode(signed(header_map(seq=6), {}))
    # Another session has its own counter.
    codec.decode(signed(header_map(seq=1, session="other"), {}))


def test_exact_replay_of_encoded_message() -> None:
    frames = valid_frames()
    codec = Codec(KEY)
    codec.decode(frames)
    rejected(frames, "replayed", codec)


def test_replay_checked_before_content_decode_and_rejects_do_not_advance_seq() -> None:
    codec = Codec(KEY)
    codec.decode(signed(header_map(seq=3), {}))
    rejected(signed(header_map(seq=2), b"\xc1"), "replayed", codec)
    rejected(signed(header_map(seq=9), b"\xc1"), "bad_message", codec)
    codec.decode(signed(header_map(seq=4), {}))  # seq 9 was not committed


# --------------------------------------------------------------------------- buffers and arrays
def test_buffer_length_mismatch_both_ways() -> None:
    descriptor = {"dtype": "|u1", "shape": [8], "buf": 0}
    content = {"a": {"__nd__": True, **descriptor}}
    rejected(signed(header_map(buf_lens=[8]), content, (b"\x00" * 4,)), "bad_buffers")
    rejected(signed(header_map(buf_lens=[8]), content, (b"\x00" * 16,)), "bad_buffers")
    rejected(signed(header_map(buf_lens=[8, 8]), content, (b"\x00" * 8,)), "bad_buffers")
    rejected(signed(header_map(buf_lens=[]), content, (b"\x00" * 8,)), "bad_buffers")


def test_tiny_buffer_with_huge_shape_allocates_nothing() -> None:
    frames = with_array({"dtype": "<f8", "shape": [1 << 20, 1 << 10], "buf": 0}, (b"\x00" * 8,))
    codec = Codec(KEY)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as info:
            codec.decode(frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "bad_array"
    assert peak < 1 << 20  # the declared size is 8 GiB


def test_huge_buffer_with_tiny_shape() -> None:
    rejected(with_array({"dtype": "<f4", "shape": [1], "buf": 0}, (b"\x00" * 4096,)), "bad_array")
    rejected(with_array({"dtype": "<f4", "shape": [2], "data": b"\x00" * 12}), "bad_array")


@pytest.mark.parametrize(
    "shape",
    [[1 << 62, 1 << 62], [(1 << 64) - 1, 2], [0, 1 << 62], [0] + [1 << 30] * 7, [-1], [-(1 << 63)], [1.5],
     [True], [[1]], ["3"], [None], "3", 3, None, {"0": 1}, [1] * 9],
    ids=lambda s: str(s)[:24],
)
def test_bad_shapes(shape: Any) -> None:
    rejected(with_array({"dtype": "|u1", "shape": shape, "data": b""}), "bad_array")


@pytest.mark.parametrize(
    "dtype", ["|O", ">f4", "<U4", "<c16", "|V8", "f4; import os", "<M8[s]", "<i8", "<u8", "float32", "", 5,
              None, ["<f4"], b"<f4", "<f4\x00"],
)
def test_disallowed_dtypes(dtype: Any) -> None:
    rejected(with_array({"dtype": dtype, "shape": [1], "data": b"\x00" * 8}), "bad_dtype")


@pytest.mark.parametrize(
    "descriptor,buffers",
    [
        ({"dtype": "|u1", "shape": [1], "buf": 1}, (b"\x00",)),
        ({"dtype": "|u1", "shape": [1], "buf": -1}, (b"\x00",)),
        ({"dtype": "|u1", "shape": [1], "buf": True}, (b"\x00",)),
        ({"dtype": "|u1", "shape": [1], "buf": "0"}, (b"\x00",)),
        ({"dtype": "|u1", "shape": [1]}, ()),
        ({"dtype": "|u1", "shape": [1], "buf": 0, "data": b"\x00"}, (b"\x00",)),
        ({"dtype": "|u1", "shape": [1], "data": "x"}, ()),
        ({"dtype": "|u1", "shape": [1], "data": b"\x00", "strides": [1]}, ()),
        ({"dtype": "|u1", "shape": [1], "data": b"\x00", "__nd__": 1}, ()),
        ({"dtype": "|u1", "shape": [1], "data": b"\x00"}, (b"\x00",)),  # buffer 0 unused
    ],
    ids=["index-high", "index-negative", "index-bool", "index-str", "no-bytes", "both", "data-str",
         "unknown-key", "marker-not-true", "unused-buffer"],
)
def test_bad_descriptors(descriptor: dict, buffers: tuple) -> None:
    rejected(with_array(descriptor, buffers), "bad_array")


def test_one_buffer_cannot_back_two_arrays() -> None:
    array = {"__nd__": True, "dtype": "|u1", "shape": [4], "buf": 0}
    rejected(signed(header_map(buf_lens=[4]), {"a": array, "b": dict(array)}, (b"\x00" * 4,)), "bad_array")


def test_content_itself_cannot_be_an_array() -> None:
    rejected(signed(header_map(), {"__nd__": True, "dtype": "|u1", "shape": [0], "data": b""}), "bad_message")


# --------------------------------------------------------------------------- msgpack content
def _nested(depth: int) -> bytes:
    return b"\x81\xa1a" + b"\x91" * depth + b"\xc0"


@pytest.mark.parametrize(
    "content",
    [
        _nested(1000),
        _nested(5000),
        b"\x81\x01\x02",  # {1: 2}
        b"\x81\xc4\x01a\x01",  # {b"a": 1}
        b"\x81\xa1a\x81\x01\x02",  # nested int key
        msgpack.packb({"a": 1})[:-1],  # truncated
        msgpack.packb({"a": 1}) + b"\x00",  # trailing data
        msgpack.packb({"a": [1, 2, 3]}) + msgpack.packb({}),
        b"\x81\xa1a\xdb\x06\x40\x00\x00",  # str declaring 100 MiB in a 10-byte message
        b"\x81\xa1a\xc6\x06\x40\x00\x00",  # bin declaring 100 MiB
        b"\x81\xa1a\xdd\x06\x40\x00\x00",  # array declaring 100 M items
        b"\x81\xa1a\xd4\x05\x00",  # ext type 5
        b"\x81\xa1a\xd6\xff\x00\x00\x00\x00",  # timestamp ext
        b"\x81\xa1a\xa2\xff\xfe",  # invalid UTF-8
        b"\xc1",  # reserved byte
        b"",  # empty
        msgpack.packb([1, 2]),  # not a map
        msgpack.packb("text"),
    ],
    ids=["deep-1000", "deep-5000", "int-key", "bytes-key", "nested-int-key", "truncated", "trailing",
         "two-maps", "huge-str", "huge-bin", "huge-array", "ext", "timestamp", "bad-utf8", "reserved",
         "empty", "list", "str"],
)
def test_bad_msgpack_content(content: bytes) -> None:
    rejected(signed(header_map(), content), "bad_message")


def test_nesting_limit_is_configurable_and_exact() -> None:
    codec = Codec(KEY, limits=Limits(max_nesting=4))
    codec.decode(signed(header_map(seq=1), {"a": [[[1]]]}))  # map, list, list, list = 4 levels
    rejected(signed(header_map(seq=2), {"a": [[[[1]]]]}), "bad_message", codec)


def test_deep_header_is_rejected() -> None:
    header = msgpack.packb(header_map())
    assert header[0] == 0x87  # fixmap of 7 entries; append an 8th, 1000 lists deep
    deep = b"\x88" + header[1:] + b"\xa1x" + b"\x91" * 1000 + b"\xc0"
    rejected(signed(deep, {}), "bad_message")


# --------------------------------------------------------------------------- fuzz: only ProtocolError escapes
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_corruption_only_raises_protocol_errors(data: st.DataObject) -> None:
    frames = [bytes(f) for f in Codec(b"").encode(
        Message("result.chunk", {"a": np.arange(8, dtype=np.int32), "b": [1, "x", {"c": None}]}))]
    frame_index = data.draw(st.integers(0, len(frames) - 1))
    target = bytearray(frames[frame_index])
    if target:
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, len(target) - 1))
            target[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        target = target[: data.draw(st.integers(0, len(target)))]
    frames[frame_index] = bytes(target)
    try:
        Codec(b"").decode(frames)
    except ProtocolError as exc:
        assert exc.code in ERROR_CODES


@settings(max_examples=150, deadline=None)
@given(header=st.binary(max_size=64), content=st.binary(max_size=64), extra=st.lists(st.binary(max_size=8),
                                                                                      max_size=3))
def test_random_bytes_only_raise_protocol_errors(header: bytes, content: bytes, extra: list[bytes]) -> None:
    try:
        Codec(b"").decode([PROTOCOL_TAG, b"", header, content, *extra])
    except ProtocolError as exc:
        assert exc.code in ERROR_CODES
