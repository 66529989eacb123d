"""Typed messages: a round trip per type through the real codec, field validation both ways, parsing rules."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import messages as m
from protocol.errors import CameraError, ProtocolError, Recast4DError, ValidationError
from protocol.schema import ArraySpec, GpuInfo
from protocol.wire import Codec, Limits, Message

KEY = b"m" * 32
RNG = np.random.default_rng(1)
XYZ = RNG.random((5000, 3), dtype=np.float32)  # 60 kB: inline
RGB = RNG.integers(0, 255, (30000, 3), dtype=np.uint8)  # 90 kB: buffer frame

SAMPLES: list[m.WireMessage] = [
    m.Hello(client="recast4d-addon/0.1", versions=["1.0", "1.1"], capabilities=["preview"], resume_jobs=["job-1"]),
    m.JobSubmit(job_id="job-1", kind="reshoot", params={"fps": 16, "K": np.eye(3), "path": {"preset": "orbit"}},
                inputs={"video": ArraySpec(dtype="|u1", shape=(81, 480, 832, 3), nbytes=81 * 480 * 832 * 3)}),
    m.UploadChunk(job_id="job-1", chunk=2, input="video", frame_range=(8, 12), arrays={"frames": RGB}),
    m.UploadEnd(job_id="job-1", input="video", chunks=21),
    m.Credit(job_id="job-1", stream="result.points", ack=3, window=4),
    m.Cancel(job_id="job-1"),
    m.Resend(job_id="job-1", stream="result.points", from_chunk=40),
    m.Ping(),
    m.Bye(),
    m.Welcome(server_session="srv", version="1.0", capabilities=["preview", "resume"],
              limits=Limits(window=8), gpu=GpuInfo(name="NVIDIA H100", mem=80 << 30)),
    m.JobAccepted(job_id="job-1", queue_pos=2),
    m.JobRejected(job_id="job-1", code="invalid_camera", detail="fx must be > 0"),
    m.UploadCredit(job_id="job-1", input="video", ack=4, window=4),
    m.JobStatus(job_id="job-1", state="running", detail="depth"),
    m.Progress(job_id="job-1", stage="inpaint", step=12, total=30, eta_s=4.5, msg="denoising"),
    m.Preview(job_id="job-1", stage="render", image=np.zeros((48, 64, 3), np.uint8), frame=7),
    m.ResultBegin(job_id="job-1", stream="result.points", chunks=81, frames=81, total_bytes=81 * 150000,
                  layout={"xyz": {"dtype": "<f4", "shape": [-1, 3]}}, meta={"fps": 16}),
    m.ResultChunk(job_id="job-1", stream="result.points", chunk=5, frame_idx=5, arrays={"xyz": XYZ, "rgb": RGB}),
    m.ResultEnd(job_id="job-1", stream="result.points", chunks=81, total_bytes=81 * 150000),
    m.Cancelled(job_id="job-1"),
    m.ErrorMessage(code="replayed", msg="seq not increasing", retryable=False, job_id="job-1"),
    m.Pong(server_session="srv", jobs={"job-1": "streaming", "job-2": "done"}),
]


def assert_same(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif dataclasses.is_dataclass(a):
        for item in dataclasses.fields(a):
            assert_same(getattr(a, item.name), getattr(b, item.name))
    else:
        assert a == b or (a != a and b != b)  # NaN inside free-form params


def test_samples_cover_every_message_type() -> None:
    assert {s.TYPE for s in SAMPLES} == set(m.MESSAGE_CLASSES)
    requests = {"hello", "job.submit", "upload.chunk", "upload.end", "credit", "cancel", "resend", "ping", "bye"}
    events = {"welcome", "job.accepted", "job.rejected", "upload.credit", "job.status", "progress", "preview",
              "result.begin", "result.chunk", "result.end", "cancelled", "error", "pong"}
    assert (requests, events) == (m.REQUEST_TYPES, m.EVENT_TYPES)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.TYPE)
def test_roundtrip_through_codec(sample: m.WireMessage) -> None:
    sender, receiver = Codec(KEY), Codec(KEY)
    msg = sample.to_message(parent_id="parent-1")
    frames = [bytes(f) for f in sender.encode(msg)]
    decoded = receiver.decode(frames)
    assert decoded.parent_id == "parent-1"
    parsed = m.parse(decoded)
    assert_same(sample, parsed)
    if sample.DIRECTION == "request":
        assert_same(sample, m.parse_request(decoded))
    else:
        assert_same(sample, m.parse_event(decoded))


def test_job_submit_declared_input_bytes() -> None:
    submit = m.JobSubmit(job_id="j", kind="k", inputs={"a": ArraySpec.of(np.zeros((4, 3), np.float32)),
                                                       "b": ArraySpec.of(np.zeros(10, np.uint8))})
    assert submit.input_bytes == 4 * 3 * 4 + 10


def test_job_id_stream_and_chunk_travel_in_the_header() -> None:
    msg = SAMPLES[17].to_message()
    assert (msg.job_id, msg.stream, msg.chunk) == ("job-1", "result.points", 5)
    assert not {"job_id", "stream", "chunk"} & msg.content.keys()


def test_unknown_fields_are_ignored_and_optional_fields_default() -> None:
    msg = m.Progress(job_id="j", stage="depth", step=1, total=2).to_message()
    msg.content["added_in_1_5"] = {"x": 1}
    del msg.content["msg"], msg.content["eta_s"]
    parsed = m.parse(msg)
    assert parsed == m.Progress(job_id="j", stage="depth", step=1, total=2, eta_s=None, msg="")


@pytest.mark.parametrize(
    "build,field",
    [
        (lambda: m.Cancel(job_id="../../etc"), "job_id"),
        (lambda: m.Cancel(job_id=""), "job_id"),
        (lambda: m.Cancel(job_id="a" * 65), "job_id"),
        (lambda: m.Credit(job_id="j", stream="s", ack=-1, window=4), "ack"),
        (lambda: m.Credit(job_id="j", stream="s", ack=True, window=4), "ack"),
        (lambda: m.JobStatus(job_id="j", state="exploded"), "state"),
        (lambda: m.Progress(job_id="j", stage="s", step=1, total=2, eta_s=float("nan")), "eta_s"),
        (lambda: m.Preview(job_id="j", stage="s", image=np.zeros((4, 4), np.float32)), "image"),
        (lambda: m.UploadChunk(job_id="j", chunk=0, input="v", frame_range=(5, 2)), "frame_range"),
        (lambda: m.UploadChunk(job_id="j", chunk=0, input="v", frame_range=(0, 1), arrays={"a": [1]}), "arrays"),
        (lambda: m.JobSubmit(job_id="j", kind="k", inputs={"v": {"dtype": "<f4", "shape": [2], "nbytes": 9}}),
         "inputs"),
        (lambda: m.JobSubmit(job_id="j", kind="k", inputs={"v": {"dtype": ">f4", "shape": [2], "nbytes": 8}}),
         "inputs"),
        (lambda: m.JobSubmit(job_id="j", kind="k", params=[1]), "params"),
        (lambda: m.Hello(versions="1.0"), "versions"),
        (lambda: m.ErrorMessage(code="x", retryable="yes"), "retryable"),
        (lambda: m.Welcome(server_session="s", limits={"window": -3}), "limits"),
        (lambda: m.Pong(server_session="s", jobs={"j": "lost"}), "jobs"),
    ],
)
def test_constructing_with_bad_values_names_the_field(build, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        build()
    assert f"'{field}'" in str(info.value)


@pytest.mark.parametrize(
    "mtype,content,header,field",
    [
        ("cancel", {}, {}, "job_id"),
        ("credit", {"ack": 1, "window": 2}, {"job_id": "j"}, "stream"),
        ("credit", {"ack": "1", "window": 2}, {"job_id": "j", "stream": "s"}, "ack"),
        ("result.chunk", {"arrays": {"a": 1}}, {"job_id": "j", "stream": "s", "chunk": 0}, "arrays"),
        ("result.chunk", {}, {"job_id": "j", "stream": "s"}, "chunk"),
        ("job.submit", {"kind": "x", "inputs": {"v": {"dtype": "|O", "shape": [1], "nbytes": 8}}},
         {"job_id": "j"}, "inputs"),
        ("welcome", {"server_session": "s", "gpu": {"name": "x"}}, {}, "gpu"),
        ("hello", {"resume_jobs": ["ok", "../bad"]}, {}, "resume_jobs"),
        ("progress", {"stage": "s", "step": 1, "total": 2, "eta_s": "soon"}, {"job_id": "j"}, "eta_s"),
    ],
)
def test_receiving_bad_fields_is_a_protocol_error_naming_the_field(mtype, content, header, field) -> None:
    with pytest.raises(ProtocolError) as info:
        m.parse(Message(mtype, content, **header))
    assert info.value.code == "bad_message"
    assert f"'{field}'" in str(info.value) and mtype in str(info.value)


def test_unknown_and_misdirected_types() -> None:
    unknown = Message("job.teleport", {})
    for parse in (m.parse, m.parse_request):
        with pytest.raises(ProtocolError) as info:
            parse(unknown)
        assert info.value.code == "unknown_type"
    assert m.parse_event(unknown) is None  # newer server event: ignored by the client
    with pytest.raises(ProtocolError) as info:
        m.parse_request(m.Cancelled(job_id="j").to_message())
    assert info.value.code == "unknown_type"
    with pytest.raises(ProtocolError) as info:
        m.parse_event(m.Cancel(job_id="j").to_message())
    assert info.value.code == "unexpected_type"
    with pytest.raises(ProtocolError):
        m.Cancel.from_message(m.Ping().to_message())


@pytest.mark.parametrize(
    "offered,expected",
    [(["1.0"], "1.0"), (["1.3"], "1.0"), (["2.0", "1.0"], "1.0"), (["2.0"], None), ([], None),
     (["x", "1"], None), (["0.9"], None)],
)
def test_negotiate_version(offered: list[str], expected: str | None) -> None:
    assert m.negotiate_version(offered) == expected


def test_error_message_from_and_to_exception() -> None:
    err = m.ErrorMessage.from_exception(CameraError("fx must be > 0"), job_id="j")
    assert (err.code, err.msg, err.retryable, err.job_id) == ("invalid_camera", "fx must be > 0", False, "j")
    exc = err.to_exception()
    assert isinstance(exc, CameraError) and exc.code == "invalid_camera"
    assert isinstance(m.ErrorMessage(code="bad_signature").to_exception(), ProtocolError)
    assert isinstance(m.ErrorMessage(code="unknown_type").to_exception(), ProtocolError)
    other = m.ErrorMessage(code="out_of_memory", msg="GPU full", retryable=True).to_exception()
    assert type(other) is Recast4DError and other.retryable and other.code == "out_of_memory"


def test_array_spec_of_array_and_welcome_limits_tolerate_new_keys() -> None:
    spec = ArraySpec.of(np.zeros((2, 3), ">f4"))
    assert spec == ArraySpec(dtype="<f4", shape=(2, 3), nbytes=24)
    msg = m.Welcome(server_session="s").to_message()
    msg.content["limits"]["max_inflight_bytes"] = 1 << 30
    assert m.parse(msg).limits == Limits()


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    mtype=st.sampled_from(sorted(m.MESSAGE_CLASSES)),
    content=st.dictionaries(st.sampled_from(["job_id", "kind", "params", "inputs", "ack", "window", "state",
                                             "image", "arrays", "limits", "gpu", "versions", "jobs", "code",
                                             "frame_range", "chunks", "eta_s", "stage", "step", "total",
                                             "server_session", "input", "retryable", "extra"]),
                            _JSONISH, max_size=6),
    job_id=st.none() | st.text(max_size=70),
    chunk=st.none() | st.integers(-5, 5),
)
def test_random_content_only_raises_protocol_errors(mtype: str, content: dict, job_id, chunk) -> None:
    try:
        parsed = m.parse(Message(mtype, content, job_id=job_id, stream="s", chunk=chunk))
    except ProtocolError as exc:
        assert exc.code == "bad_message"
    else:
        # Whatever parses must re-encode to the same typed object.
        assert_same(parsed, m.parse(parsed.to_message()))
