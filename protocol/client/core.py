"""The client's protocol engine: one DEALER socket plus upload/stream flow-control state.

:class:`Connection` is used by exactly one thread (the caller's for :class:`BlockingClient`, the
I/O thread for :class:`ThreadedClient`). It signs and verifies every message, uploads inputs
only against server-granted credit, and grants result credit when the caller says a chunk was
consumed (so a slow consumer throttles the server end to end). numpy, msgpack, pyzmq only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from protocol.arrays import contiguous_wire_array
from protocol.connection import ConnectionInfo, secure_client_socket
from protocol.errors import ProtocolError, Recast4DError
from protocol.messages import (
    TERMINAL_STATES,
    Cancel,
    Cancelled,
    Credit,
    ErrorMessage,
    Hello,
    JobAccepted,
    JobStatus,
    JobSubmit,
    Ping,
    Resend,
    ResultBegin,
    ResultChunk,
    ResultEnd,
    UploadChunk,
    UploadCredit,
    UploadEnd,
    Welcome,
    WireMessage,
    parse_event,
)
from protocol.schema import ArraySpec
from protocol.wire import Codec, Limits, Message

#: Target size of one upload chunk (whole frames along axis 0; at least one frame).
UPLOAD_CHUNK_BYTES = 8 << 20


@dataclass
class Event:
    """One message from the server, as plain data for the caller.

    ``message`` is the typed object (``protocol.messages``); ``meta`` is the chunk's metadata for
    ``result.chunk`` (frame index, names... as the job emitted it), else ``{}``. Synthetic events
    made by the client itself have ``type`` starting with ``client.`` (e.g. ``client.connected``).
    """

    type: str
    job_id: str | None = None
    stream: str | None = None
    chunk: int | None = None
    message: WireMessage | None = None
    parent_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays of a ``result.chunk`` (read-only views over the received frames)."""
        return getattr(self.message, "arrays", {}) or {}

    @property
    def terminal(self) -> bool:
        """True for the one message that ends a job: done status, job error, or cancelled."""
        if isinstance(self.message, JobStatus):
            return self.message.state in TERMINAL_STATES
        if isinstance(self.message, ErrorMessage):
            return self.message.job_id is not None
        return isinstance(self.message, Cancelled)


@dataclass
class _Upload:
    job_id: str
    name: str
    array: np.ndarray
    frames_per_chunk: int
    next_chunk: int = 0
    ack: int = 0
    window: int = 0
    ended: bool = False

    @property
    def chunks(self) -> int:
        return max(1, -(-self.array.shape[0] // self.frames_per_chunk))


@dataclass
class _Stream:
    """What the client knows of one result stream: chunks received and consumed (acked)."""

    job_id: str
    stream: str
    received: int = 0  # next chunk index expected
    consumed: int = 0  # chunks the caller has consumed
    acked: int = 0  # the cumulative ack last sent to the server (<= consumed)
    ended: bool = False
    restarting: bool = False  # a resend was asked: chunks before its result.begin are stale


class Connection:
    """A DEALER connected to one server, with the protocol state around it (single-threaded)."""

    def __init__(self, info: ConnectionInfo, *, client_name: str = "recast4d", session: str | None = None,
                 context: zmq.Context | None = None, window: int | None = None) -> None:
        self.client_name = client_name
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.info = info
        self.codec = Codec(info.key_bytes, session)
        self.session = self.codec.session
        self.welcome: Welcome | None = None
        self.window_override = window
        self.uploads: dict[tuple[str, str], _Upload] = {}
        self.streams: dict[tuple[str, str], _Stream] = {}
        self.jobs: dict[str, str] = {}  # job_id -> last known state
        self.resuming: set[str] = set()  # jobs named in the last hello's resume_jobs
        #: ownership tokens per job (from ``job.accepted``; keep them, e.g. in the .blend, and put them
        #: back here in a later session to resume, read or cancel those jobs)
        self.tokens: dict[str, str] = {}
        self.last_recv = time.monotonic()
        self.socket = self._open(info)

    # ------------------------------------------------------------------ socket
    def _open(self, info: ConnectionInfo) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
        sock.setsockopt(zmq.MAXMSGSIZE, Limits().max_frame_bytes)
        secure_client_socket(sock, info)  # CURVE with the server's public key from the connection file
        sock.connect(info.endpoint)
        return sock

    def reopen(self, info: ConnectionInfo | None = None) -> None:
        """Close the socket and connect again (same client session), e.g. to a restarted server."""
        self.socket.close(linger=0)
        info = info or self.info
        if info.key_bytes != self.codec.key:
            self.codec = Codec(info.key_bytes, self.session)
        self.info = info
        self.welcome = None
        self.socket = self._open(info)
        for upload in self.uploads.values():  # chunks in flight may be lost: resume from the last ack
            upload.next_chunk = upload.ack
            upload.window = 0  # wait for the server's credit (sent in reply to hello.resume_jobs)
            upload.ended = False  # upload.end may have been lost too; the server ignores a second one

    def close(self) -> None:
        self.socket.close(linger=0)
        if self._own_context:
            self.context.term()

    @property
    def limits(self) -> Limits:
        return self.welcome.limits if self.welcome is not None else Limits()

    @property
    def window(self) -> int:
        return max(1, self.window_override or self.limits.window)

    # ------------------------------------------------------------------ send / receive
    def send(self, message: WireMessage) -> str:
        """Sign and send a request; returns its msg_id."""
        msg = message.to_message()
        self.socket.send_multipart(self.codec.encode(msg), copy=False)
        return msg.msg_id

    def send_hello(self, resume_jobs: list[str] | None = None) -> str:
        """``hello``; the server answers each of ``resume_jobs`` with its ``job.status`` (and stream names)."""
        self.resuming = set(resume_jobs or [])
        tokens = {job: self.tokens[job] for job in self.resuming if self.tokens.get(job)}
        return self.send(Hello(client=self.client_name, resume_jobs=list(resume_jobs or []), resume_tokens=tokens))

    def poll(self, timeout_s: float) -> bool:
        return bool(self.socket.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN))

    def recv_event(self) -> Event | None:
        """Receive and handle one message if one is waiting (non-blocking); None otherwise.

        Internal bookkeeping happens here: upload credit sends the next upload chunks, result
        chunks are checked for order. A message that fails verification raises ProtocolError.
        """
        try:
            frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        self.last_recv = time.monotonic()
        msg = self.codec.decode(frames)
        typed = parse_event(msg)
        if typed is None:
            return Event(type=msg.type, job_id=msg.job_id, stream=msg.stream, chunk=msg.chunk,
                         parent_id=msg.parent_id)
        job_id = msg.job_id if msg.job_id is not None else getattr(typed, "job_id", None)
        event = Event(type=msg.type, job_id=job_id, stream=msg.stream, chunk=msg.chunk, message=typed,
                      parent_id=msg.parent_id)
        if not self._track(event, msg):
            return None  # stale (superseded by a resend); the caller simply receives again
        return event

    def _track(self, event: Event, msg: Message) -> bool:
        """Bookkeeping for one received event; False if the event is stale and must not be delivered."""
        typed = event.message
        if isinstance(typed, Welcome):
            self.welcome = typed
            self.codec.limits = typed.limits
            engines = msg.content.get("engines")  # the server's doctor data (extra key; older servers omit it)
            event.data = {"engines": engines if isinstance(engines, list) else None}
        elif isinstance(typed, JobAccepted):
            if typed.token:
                self.tokens[typed.job_id] = typed.token
        elif isinstance(typed, UploadCredit):
            upload = self.uploads.get((typed.job_id, typed.input))
            if upload is not None:
                upload.ack = max(upload.ack, typed.ack)
                upload.next_chunk = max(upload.next_chunk, typed.ack)  # the server already has these
                upload.window = typed.window
                self.pump_uploads()
        elif isinstance(typed, ResultBegin):
            key = (typed.job_id, typed.stream)
            start = int(typed.meta.get("from_chunk", 0)) if isinstance(typed.meta, dict) else 0
            state = self.streams.get(key)
            if state is None or start < state.received:
                self.streams[key] = _Stream(typed.job_id, typed.stream, received=start, consumed=start, acked=start)
            self.streams[key].ended = self.streams[key].restarting = False
        elif isinstance(typed, ResultChunk):
            meta = msg.content.get("meta")
            event.meta = meta if isinstance(meta, dict) else {}
            state = self.streams.setdefault((typed.job_id, typed.stream), _Stream(typed.job_id, typed.stream))
            if state.restarting:  # sent before the server saw our resend: it sends them again after its begin
                return False
            if typed.chunk > state.received:
                raise ProtocolError(f"result chunk {typed.chunk} of {typed.stream!r} arrived, expected "
                                    f"{state.received} (a chunk went missing)", code="bad_message")
            state.received = max(state.received, typed.chunk + 1)
        elif isinstance(typed, ResultEnd):
            state = self.streams.get((typed.job_id, typed.stream))
            if state is not None:
                if state.restarting:
                    return False
                state.ended = True
        elif isinstance(typed, JobStatus):
            self.jobs[typed.job_id] = typed.state
            if typed.state != "queued":  # the job started, so the server has every input: forget them
                for key in [k for k in self.uploads if k[0] == typed.job_id]:
                    del self.uploads[key]
            streams = msg.content.get("streams")
            if typed.job_id in self.resuming and isinstance(streams, dict):
                self.resuming.discard(typed.job_id)
                for name in streams:  # streams that began while we were away: fetch them from the start
                    if isinstance(name, str) and (typed.job_id, name) not in self.streams:
                        self.resend(typed.job_id, name, 0)
        elif isinstance(typed, Cancelled | ErrorMessage) and typed.job_id:
            self.jobs[typed.job_id] = "cancelled" if isinstance(typed, Cancelled) else "failed"
            for key in [k for k in self.uploads if k[0] == typed.job_id]:  # the job ended: stop uploading
                del self.uploads[key]
        return True

    # ------------------------------------------------------------------ requests
    def submit(self, job_id: str, kind: str, params: dict[str, Any] | None = None,
               inputs: dict[str, np.ndarray] | None = None) -> str:
        """Send ``job.submit`` and prepare uploads (they start when the server grants credit)."""
        arrays = {name: contiguous_wire_array(np.asarray(a)) for name, a in (inputs or {}).items()}
        for name, array in arrays.items():
            if array.ndim == 0:
                raise Recast4DError(f"input {name!r} is a scalar; put scalars in params", code="invalid_input")
        specs = {name: ArraySpec.of(array) for name, array in arrays.items()}
        limit = self.limits.max_frame_bytes
        for name, array in arrays.items():  # a frame travels in one upload chunk: refuse before submitting
            frame_bytes = array.nbytes // max(1, array.shape[0])
            if frame_bytes > limit:
                raise Recast4DError(
                    f"inputs.{name}: one frame of shape {list(array.shape[1:])} {array.dtype.str} is {frame_bytes} "
                    f"bytes; the server takes frames of at most {limit} bytes (max_frame_bytes): send a smaller "
                    "resolution or split the frame", code="too_large")
        msg_id = self.send(JobSubmit(job_id=job_id, kind=kind, params=dict(params or {}), inputs=specs,
                                     token=self.tokens.get(job_id, "")))
        for name, array in arrays.items():
            frame_bytes = max(1, array.nbytes // max(1, array.shape[0]))
            limit = min(UPLOAD_CHUNK_BYTES, self.limits.max_frame_bytes)
            per_chunk = max(1, limit // frame_bytes)
            self.uploads[(job_id, name)] = _Upload(job_id, name, array, per_chunk)
        self.jobs.setdefault(job_id, "queued")
        return msg_id

    def pump_uploads(self) -> None:
        """Send every upload chunk the server's credit allows; ``upload.end`` after the last one."""
        for up in list(self.uploads.values()):
            while up.next_chunk < up.chunks and up.next_chunk < up.ack + up.window:
                start = up.next_chunk * up.frames_per_chunk
                stop = min(up.array.shape[0], start + up.frames_per_chunk)
                self.send(UploadChunk(job_id=up.job_id, chunk=up.next_chunk, input=up.name,
                                      frame_range=(start, stop), arrays={"data": up.array[start:stop]}))
                up.next_chunk += 1
            if up.next_chunk >= up.chunks and not up.ended:
                self.send(UploadEnd(job_id=up.job_id, input=up.name, chunks=up.chunks))
                up.ended = True  # kept until the job starts: a reconnect may have to send the tail again

    def uploading(self, job_id: str) -> bool:
        """True while some input of ``job_id`` has not been sent completely (``upload.end`` included)."""
        return any(up.job_id == job_id and not up.ended for up in self.uploads.values())

    def consumed(self, job_id: str, stream: str, chunk: int) -> None:
        """The caller is done with ``chunk`` (and all before it): grant credit for more."""
        state = self.streams.get((job_id, stream))
        if state is None:
            return
        state.consumed = max(state.consumed, chunk + 1)
        # Credit is cumulative, so one ack per half window keeps the server at least half a window
        # ahead of the consumer (it may send up to acked + window - 1) at half the messages.
        if state.consumed - state.acked >= max(1, self.window // 2):
            state.acked = state.consumed
            self.send(Credit(job_id=job_id, stream=stream, ack=state.consumed, window=self.window))

    def cancel(self, job_id: str) -> str:
        return self.send(Cancel(job_id=job_id, token=self.tokens.get(job_id, "")))

    def ping(self) -> str:
        return self.send(Ping())

    def resend(self, job_id: str, stream: str, from_chunk: int | None = None) -> str:
        """Ask for ``stream`` again from ``from_chunk`` (default: the first chunk not yet received)."""
        state = self.streams.get((job_id, stream))
        start = from_chunk if from_chunk is not None else (state.received if state is not None else 0)
        self.streams[(job_id, stream)] = _Stream(job_id, stream, received=start, consumed=start, acked=start,
                                                   restarting=True)
        return self.send(Resend(job_id=job_id, stream=stream, from_chunk=start, token=self.tokens.get(job_id, "")))

    def unfinished_streams(self) -> list[tuple[str, str, int]]:
        """``(job_id, stream, next_chunk)`` for streams that have not ended (to resume after reconnect)."""
        return [(s.job_id, s.stream, s.received) for s in self.streams.values() if not s.ended]
