"""Typed B4D v1 messages (``docs/protocol.md`` §Messages) over :class:`protocol.wire.Message`.

Every message type is a dataclass with ``TYPE`` (the header ``type``), ``DIRECTION`` (``"request"``:
client -> server, ``"event"``: server -> client), ``to_message()`` and ``from_message()``.
Field values are checked when an object is built (ValidationError naming type and field) and when
one is received (ProtocolError ``bad_message`` naming type and field). ``job_id``, ``stream`` and
``chunk`` travel in the signed header; every other field is a content key of the same name.
Unknown content keys are ignored (newer minor versions may add fields); missing optional keys
take their defaults.

    >>> from protocol.messages import Cancel, parse
    >>> msg = Cancel(job_id="job-1").to_message()
    >>> parse(msg)
    Cancel(job_id='job-1')
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from protocol.errors import (
    CameraError,
    MissingWeightsError,
    ProtocolError,
    Recast4DError,
    ValidationError,
)
from protocol.errors import Cancelled as CancelledError
from protocol.schema import (
    NAME,
    AnyMap,
    Array,
    ArraySpec,
    Bool,
    Check,
    FieldError,
    Float,
    FrameRange,
    GpuInfo,
    Int,
    ListOf,
    MapOf,
    OneOf,
    Optional,
    Record,
    Str,
)
from protocol.wire import ERROR_CODES, PROTOCOL_MAJOR, PROTOCOL_MINOR, PROTOCOL_VERSION, Limits, Message

HEADER_FIELDS = ("job_id", "stream", "chunk")
JOB_STATES = ("queued", "running", "streaming", "done", "failed", "cancelled")
TERMINAL_STATES = frozenset({"done", "failed", "cancelled"})
#: Codes of ProtocolError: the codec's (``wire.ERROR_CODES``) plus the message layer's.
PROTOCOL_ERROR_CODES: frozenset[str] = frozenset(ERROR_CODES) | {"unknown_type", "unexpected_type"}

_ARRAYS = MapOf(Array(), max_len=32)
_CODE = Str(max_len=64, min_len=1)
_TEXT = Str(max_len=4096)
_VERSION = Str(max_len=16, min_len=3)
#: A job token (``job.accepted.token``): hex, proves ownership of a job to the server.
_TOKEN = Str(max_len=64, pattern=re.compile(r"[0-9a-f]{0,64}"))
_LIMITS = Record(Limits, Limits.from_dict, Limits.to_dict)
_GPU = Record(GpuInfo, GpuInfo.from_dict, GpuInfo.to_dict)
_SPEC = Record(ArraySpec, ArraySpec.from_dict, ArraySpec.to_dict)


def wire_field(check: Check, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A dataclass field checked by ``check``; no default = required on the wire."""
    return field(default=default, default_factory=default_factory, metadata={"check": check})


@dataclass
class WireMessage:
    """Base of all typed messages; subclasses set ``TYPE``, ``DIRECTION`` and wire fields."""

    TYPE: ClassVar[str] = ""
    DIRECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            try:
                setattr(self, item.name, item.metadata["check"].load(getattr(self, item.name)))
            except FieldError as exc:
                raise ValidationError(f"{self.TYPE}: field {item.name!r} {exc}") from None

    def to_message(self, parent_id: str | None = None) -> Message:
        """The untyped :class:`Message` to hand to ``Codec.encode``."""
        msg = Message(type=self.TYPE, parent_id=parent_id)
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in HEADER_FIELDS:
                setattr(msg, item.name, value)
            else:
                msg.content[item.name] = item.metadata["check"].dump(value)
        return msg

    @classmethod
    def from_message(cls, msg: Message) -> Self:
        """Check and convert a decoded :class:`Message`; ProtocolError ``bad_message`` on bad fields."""
        if msg.type != cls.TYPE:
            raise ProtocolError(f"expected a {cls.TYPE!r} message, got {msg.type!r}", code="bad_message")
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            if item.name in HEADER_FIELDS:
                raw = getattr(msg, item.name)
                present = raw is not None
            else:
                present = item.name in msg.content
                raw = msg.content.get(item.name)
            if not present:
                if item.default is MISSING and item.default_factory is MISSING:
                    where = "header" if item.name in HEADER_FIELDS else "content"
                    raise ProtocolError(f"{cls.TYPE}: required {where} field {item.name!r} is missing",
                                        code="bad_message")
                continue
            try:
                values[item.name] = item.metadata["check"].load(raw)
            except FieldError as exc:
                raise ProtocolError(f"{cls.TYPE}: field {item.name!r} {exc}", code="bad_message") from None
        return cls(**values)


# --------------------------------------------------------------------------- requests (client -> server)
@dataclass
class Hello(WireMessage):
    """First message of a connection: versions offered, client name, capabilities, jobs to resume."""

    TYPE: ClassVar[str] = "hello"
    DIRECTION: ClassVar[str] = "request"
    client: str = wire_field(Str(max_len=128), default="")
    versions: list[str] = wire_field(ListOf(_VERSION, max_len=16), default_factory=lambda: [PROTOCOL_VERSION])
    capabilities: list[str] = wire_field(ListOf(_CODE, max_len=64), default_factory=list)
    resume_jobs: list[str] = wire_field(ListOf(NAME, max_len=256), default_factory=list)
    #: tokens (``job.accepted.token``) of resumed jobs this client session did not submit itself
    resume_tokens: dict[str, str] = wire_field(MapOf(_TOKEN, key=NAME, max_len=256), default_factory=dict)


@dataclass
class JobSubmit(WireMessage):
    """Start a job (idempotent per ``job_id``): kind, kind-specific params, declared upload inputs."""

    TYPE: ClassVar[str] = "job.submit"
    DIRECTION: ClassVar[str] = "request"
    job_id: str = wire_field(NAME)
    kind: str = wire_field(NAME)
    params: dict[str, Any] = wire_field(AnyMap(), default_factory=dict)
    inputs: dict[str, ArraySpec] = wire_field(MapOf(_SPEC, key=NAME, max_len=64), default_factory=dict)
    token: str = wire_field(_TOKEN, default="")  # a repeated submit from another session proves ownership

    @property
    def input_bytes(self) -> int:
        """Total declared upload size in bytes (compare with ``Limits.max_job_bytes``)."""
        return sum(spec.nbytes for spec in self.inputs.values())


@dataclass
class UploadChunk(WireMessage):
    """One chunk of an input upload (frames ``[start, stop)``); sent only within granted credit."""

    TYPE: ClassVar[str] = "upload.chunk"
    DIRECTION: ClassVar[str] = "request"
    job_id: str = wire_field(NAME)
    chunk: int = wire_field(Int())
    input: str = wire_field(NAME)
    frame_range: tuple[int, int] = wire_field(FrameRange())
    arrays: dict[str, np.ndarray] = wire_field(_ARRAYS, default_factory=dict)


@dataclass
class UploadEnd(WireMessage):
    """All ``chunks`` chunks of ``input`` were sent."""

    TYPE: ClassVar[str] = "upload.end"
    DIRECTION: ClassVar[str] = "request"
    job_id: str = wire_field(NAME)
    input: str = wire_field(NAME)
    chunks: int = wire_field(Int())


@dataclass
class Credit(WireMessage):
    """Result-stream credit: chunks ``< ack + window`` may be sent. Cumulative, duplicates harmless."""

    TYPE: ClassVar[str] = "credit"
    DIRECTION: ClassVar[str] = "request"
    job_id: str = wire_field(NAME)
    stream: str = wire_field(NAME)
    ack: int = wire_field(Int())
    window: int = wire_field(Int(maximum=1 << 16))


@dataclass
class Cancel(WireMessage):
    """Cancel a job in any state (idempotent)."""

    TYPE: ClassVar[str] = "cancel"
    DIRECTION: ClassVar[str] = "request"
    job_id: str = wire_field(NAME)
    token: str = wire_field(_TOKEN, default="")  # needed when this session did not submit the job


@dataclass
class Resend(WireMessage):
    """Resume a result stream from ``from_chunk`` (after reconnect)."""

    TYPE: ClassVar[str] = "resend"
    DIRECTION: ClassVar[str] = "request"
    job_id: str = wire_field(NAME)
    stream: str = wire_field(NAME)
    from_chunk: int = wire_field(Int(), default=0)
    token: str = wire_field(_TOKEN, default="")  # needed when this session did not submit the job


@dataclass
class Ping(WireMessage):
    """Liveness probe; answered by ``pong`` from the I/O loop even while a job runs."""

    TYPE: ClassVar[str] = "ping"
    DIRECTION: ClassVar[str] = "request"


@dataclass
class Bye(WireMessage):
    """The client is going away (its jobs keep running for the grace period)."""

    TYPE: ClassVar[str] = "bye"
    DIRECTION: ClassVar[str] = "request"


# --------------------------------------------------------------------------- events (server -> client)
@dataclass
class Welcome(WireMessage):
    """Reply to ``hello``: negotiated version, server instance id, capabilities, limits, GPU."""

    TYPE: ClassVar[str] = "welcome"
    DIRECTION: ClassVar[str] = "event"
    server_session: str = wire_field(Str(max_len=64, min_len=1))
    version: str = wire_field(_VERSION, default=PROTOCOL_VERSION)
    capabilities: list[str] = wire_field(ListOf(_CODE, max_len=64), default_factory=list)
    limits: Limits = wire_field(_LIMITS, default_factory=Limits)
    gpu: GpuInfo | None = wire_field(Optional(_GPU), default=None)


@dataclass
class JobAccepted(WireMessage):
    """The job is stored and queued at ``queue_pos`` (0 = next)."""

    TYPE: ClassVar[str] = "job.accepted"
    DIRECTION: ClassVar[str] = "event"
    job_id: str = wire_field(NAME)
    queue_pos: int = wire_field(Int(), default=0)
    #: the job's ownership token (sent to its owner only); keep it (e.g. in the .blend) to resume,
    #: read or cancel the job from a later client session
    token: str = wire_field(_TOKEN, default="")


@dataclass
class JobRejected(WireMessage):
    """The job was refused: error ``code`` and a ``detail`` for people."""

    TYPE: ClassVar[str] = "job.rejected"
    DIRECTION: ClassVar[str] = "event"
    job_id: str = wire_field(NAME)
    code: str = wire_field(_CODE)
    detail: str = wire_field(_TEXT, default="")


@dataclass
class UploadCredit(WireMessage):
    """Upload credit from the server: chunks ``< ack + window`` of ``input`` may be sent."""

    TYPE: ClassVar[str] = "upload.credit"
    DIRECTION: ClassVar[str] = "event"
    job_id: str = wire_field(NAME)
    input: str = wire_field(NAME)
    ack: int = wire_field(Int())
    window: int = wire_field(Int(maximum=1 << 16))


@dataclass
class JobStatus(WireMessage):
    """Job state change (one of :data:`JOB_STATES`); ``detail`` optional text."""

    TYPE: ClassVar[str] = "job.status"
    DIRECTION: ClassVar[str] = "event"
    job_id: str = wire_field(NAME)
    state: str = wire_field(OneOf(JOB_STATES))
    detail: str = wire_field(_TEXT, default="")
    streams: dict[str, Any] = wire_field(AnyMap(), default_factory=dict)  # {stream: chunks}, in resume replies


@dataclass
class Progress(WireMessage):
    """Coalesced progress of a job stage: ``step`` of ``total``, ETA in seconds if known."""

    TYPE: ClassVar[str] = "progress"
    DIRECTION: ClassVar[str] = "event"
    job_id: str = wire_field(NAME)
    stage: str = wire_field(Str(max_len=64))
    step: int = wire_field(Int())
    total: int = wire_field(Int())
    eta_s: float | None = wire_field(Optional(Float(minimum=0.0)), default=None)
    msg: str = wire_field(_TEXT, default="")


@dataclass
class Preview(WireMessage):
    """A small preview image: ``raw`` = uint8 (H, W) or (H, W, 1|3|4); ``jpeg`` = uint8 (N,) bytes."""

    TYPE: ClassVar[str] = "preview"
    DIRECTION: ClassVar[str] = "event"
    job_id: str = wire_field(NAME)
    stage: str = wire_field(Str(max_len=64))
    image: np.ndarray = wire_field(Array(dtypes=("|u1",), ndims=(1, 2, 3)))
    encoding: str = wire_field(OneOf(("raw", "jpeg")), default="raw")
    frame: int = wire_field(Int(), default=0)


@dataclass
class ResultBegin(WireMessage):
    """Start of a result stream: counts and byte total for pre-allocation, per-frame ``layout``
    (array name -> {dtype, shape}) and free-form ``meta`` (fps, frame range, file names...)."""

    TYPE: ClassVar[str] = "result.begin"
    DIRECTION: ClassVar[str] = "event"
    job_id: str = wire_field(NAME)
    stream: str = wire_field(NAME)
    chunks: int = wire_field(Int())
    frames: int = wire_field(Int(), default=0)
    total_bytes: int = wire_field(Int(), default=0)
    layout: dict[str, Any] = wire_field(AnyMap(), default_factory=dict)
    meta: dict[str, Any] = wire_field(AnyMap(), default_factory=dict)


@dataclass
class ResultChunk(WireMessage):
    """One result chunk (one frame, or part of one) with its arrays as buffers."""

    TYPE: ClassVar[str] = "result.chunk"
    DIRECTION: ClassVar[str] = "event"
    job_id: str = wire_field(NAME)
    stream: str = wire_field(NAME)
    chunk: int = wire_field(Int())
    frame_idx: int = wire_field(Int(), default=0)
    arrays: dict[str, np.ndarray] = wire_field(_ARRAYS, default_factory=dict)
    meta: dict[str, Any] = wire_field(AnyMap(), default_factory=dict)  # what the job emitted with the chunk


@dataclass
class ResultEnd(WireMessage):
    """End of a result stream: ``chunks`` chunks, ``total_bytes`` bytes of buffers were sent."""

    TYPE: ClassVar[str] = "result.end"
    DIRECTION: ClassVar[str] = "event"
    job_id: str = wire_field(NAME)
    stream: str = wire_field(NAME)
    chunks: int = wire_field(Int())
    total_bytes: int = wire_field(Int(), default=0)


@dataclass
class Cancelled(WireMessage):
    """The job was cancelled (sent exactly once per job)."""

    TYPE: ClassVar[str] = "cancelled"
    DIRECTION: ClassVar[str] = "event"
    job_id: str = wire_field(NAME)


@dataclass
class ErrorMessage(WireMessage):
    """An error for a job (``job_id`` set) or the connection: stable ``code``, text, retryable."""

    TYPE: ClassVar[str] = "error"
    DIRECTION: ClassVar[str] = "event"
    code: str = wire_field(_CODE)
    msg: str = wire_field(_TEXT, default="")
    retryable: bool = wire_field(Bool(), default=False)
    job_id: str | None = wire_field(Optional(NAME), default=None)

    @classmethod
    def from_exception(cls, exc: Recast4DError, job_id: str | None = None) -> ErrorMessage:
        """Wire form of a typed error (message text only, never a traceback)."""
        return cls(code=exc.code, msg=exc.message[:4096], retryable=exc.retryable, job_id=job_id)

    def to_exception(self) -> Recast4DError:
        """The typed error to raise on the receiving side, chosen by ``code``.

        Wire-format codes -> ProtocolError, ``invalid_camera`` -> CameraError, ``invalid_input`` ->
        ValidationError, ``missing_weights`` -> MissingWeightsError, ``cancelled`` -> errors.Cancelled,
        anything else -> Recast4DError; the code and retryable flag are kept.
        """
        kinds: dict[str, type[Recast4DError]] = {
            "invalid_camera": CameraError, "invalid_input": ValidationError,
            "missing_weights": MissingWeightsError, "cancelled": CancelledError,
        }
        kind = kinds.get(self.code, ProtocolError if self.code in PROTOCOL_ERROR_CODES else Recast4DError)
        return kind(self.msg or self.code, code=self.code, retryable=self.retryable)


@dataclass
class Pong(WireMessage):
    """Reply to ``ping``: server instance id (changes on restart) and the states of this client's jobs."""

    TYPE: ClassVar[str] = "pong"
    DIRECTION: ClassVar[str] = "event"
    server_session: str = wire_field(Str(max_len=64, min_len=1))
    jobs: dict[str, str] = wire_field(MapOf(OneOf(JOB_STATES), key=NAME, max_len=4096), default_factory=dict)


# --------------------------------------------------------------------------- registry and parsing
MESSAGE_CLASSES: dict[str, type[WireMessage]] = {
    cls.TYPE: cls
    for cls in (Hello, JobSubmit, UploadChunk, UploadEnd, Credit, Cancel, Resend, Ping, Bye,
                Welcome, JobAccepted, JobRejected, UploadCredit, JobStatus, Progress, Preview,
                ResultBegin, ResultChunk, ResultEnd, Cancelled, ErrorMessage, Pong)
}
REQUEST_TYPES: frozenset[str] = frozenset(t for t, c in MESSAGE_CLASSES.items() if c.DIRECTION == "request")
EVENT_TYPES: frozenset[str] = frozenset(t for t, c in MESSAGE_CLASSES.items() if c.DIRECTION == "event")


def parse(msg: Message) -> WireMessage:
    """Typed object for any known message type; unknown type -> ProtocolError ``unknown_type``."""
    cls = MESSAGE_CLASSES.get(msg.type)
    if cls is None:
        raise ProtocolError(f"unknown message type {msg.type[:64]!r}", code="unknown_type")
    return cls.from_message(msg)


def parse_request(msg: Message) -> WireMessage:
    """Server side: a typed request. Unknown types and server events -> ProtocolError ``unknown_type``."""
    if msg.type not in REQUEST_TYPES:
        raise ProtocolError(f"{msg.type[:64]!r} is not a request this server understands "
                            f"(requests: {sorted(REQUEST_TYPES)})", code="unknown_type")
    return parse(msg)


def parse_event(msg: Message) -> WireMessage | None:
    """Client side: a typed event, or ``None`` for an unknown event type (newer server; ignore it).

    A request type arriving at the client is a protocol violation (ProtocolError ``unexpected_type``).
    """
    if msg.type in REQUEST_TYPES:
        raise ProtocolError(f"server sent request type {msg.type!r}", code="unexpected_type")
    if msg.type not in EVENT_TYPES:
        return None
    return parse(msg)


def negotiate_version(offered: list[str]) -> str | None:
    """Pick the version to speak from a client's ``hello.versions``: same major, lowest common minor.

    Returns e.g. ``"1.0"``, or ``None`` when no offered version has our major (reply
    ``error{code: "version_unsupported"}`` and drop the peer). Malformed entries are skipped.
    """
    best: int | None = None
    for version in offered:
        major, _, minor = str(version).partition(".")
        if major.isdigit() and minor.isdigit() and int(major) == PROTOCOL_MAJOR:
            common = min(int(minor), PROTOCOL_MINOR)
            best = common if best is None else max(best, common)
    return None if best is None else f"{PROTOCOL_MAJOR}.{best}"
