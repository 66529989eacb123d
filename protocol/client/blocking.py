"""A blocking client for tests, the CLI and ``blender -b`` scripts (everything on the caller's thread)."""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from protocol.connection import ConnectionInfo, default_connection_path
from protocol.errors import Recast4DError
from protocol.messages import (
    ErrorMessage,
    JobAccepted,
    JobRejected,
    Pong,
    ResultBegin,
    ResultChunk,
    ResultEnd,
    Welcome,
)

from .core import Connection, Event


class JobRejectedError(Recast4DError):
    """The server refused a ``job.submit``; ``code`` says why (``unknown_kind``, ``job_id_conflict``...)."""

    code = "job_rejected"


class ServerTimeout(Recast4DError):
    """No answer from the server in time (is it running? is the connection file current?)."""

    code = "timeout"
    retryable = True


@dataclass
class StreamResult:
    """Chunks of one result stream as received: ``arrays[k]`` and ``meta[k]`` for chunk ``k``."""

    arrays: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    meta: dict[int, dict[str, Any]] = field(default_factory=dict)
    begin: ResultBegin | None = None
    end: ResultEnd | None = None
    received: int = 0  # chunk messages received (duplicates after a resend included)

    def ordered(self) -> list[dict[str, np.ndarray]]:
        """Chunk arrays in chunk order."""
        return [self.arrays[k] for k in sorted(self.arrays)]


@dataclass
class JobResult:
    """How a job ended (``state``: done/failed/cancelled, or the last known state on timeout)."""

    job_id: str
    state: str
    error: ErrorMessage | None = None
    streams: dict[str, StreamResult] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


class BlockingClient:
    """Talk to a server synchronously; every call waits at most ``timeout_s`` seconds.

    Credit: chunks are acknowledged after ``on_chunk`` returns (or right away when there is none),
    so the server never runs ahead of the consumer by more than the window.
    """

    def __init__(self, info: ConnectionInfo, *, client_name: str = "recast4d-cli", timeout_s: float = 30.0,
                 window: int | None = None, context: zmq.Context | None = None,
                 connection_file: str | os.PathLike[str] | None = None) -> None:
        self.timeout_s = timeout_s
        self.connection_file = Path(connection_file) if connection_file else None
        self.conn = Connection(info, client_name=client_name, context=context, window=window)
        self._pending: collections.deque[Event] = collections.deque()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> BlockingClient:
        """Connect using a connection file (default: :func:`default_connection_path`)."""
        path = Path(path) if path else default_connection_path(create_dir=False)
        return cls(ConnectionInfo.read(path), connection_file=path, **kwargs)

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    @property
    def welcome(self) -> Welcome | None:
        return self.conn.welcome

    # ------------------------------------------------------------------ waiting
    def _recv(self, deadline: float) -> Event | None:
        while True:
            event = self.conn.recv_event()
            if event is not None:
                return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.conn.poll(min(remaining, 0.1))

    def _await(self, match: Callable[[Event], bool], msg_id: str | None, timeout_s: float | None, what: str) -> Event:
        """Wait for an event matching ``match``; others are kept for :meth:`next_event`."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        for index, event in enumerate(self._pending):
            if match(event):
                del self._pending[index]
                return event
        while True:
            event = self._recv(deadline)
            if event is None:
                raise ServerTimeout(f"no {what} from the server at {self.conn.info.endpoint} within "
                                    f"{self.timeout_s if timeout_s is None else timeout_s:.1f} s")
            if match(event):
                return event
            if (msg_id is not None and event.parent_id == msg_id and isinstance(event.message, ErrorMessage)):
                raise event.message.to_exception()
            self._pending.append(event)

    def next_event(self, timeout_s: float | None = None) -> Event | None:
        """The next server event (buffered ones first), or None after ``timeout_s``."""
        if self._pending:
            return self._pending.popleft()
        return self._recv(time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s))

    # ------------------------------------------------------------------ requests
    def connect(self, resume_jobs: list[str] | None = None, timeout_s: float | None = None) -> Welcome:
        """``hello`` -> ``welcome`` (raises the server's error, e.g. ``version_unsupported``)."""
        msg_id = self.conn.send_hello(resume_jobs)
        event = self._await(lambda e: isinstance(e.message, Welcome), msg_id, timeout_s, "welcome")
        return event.message  # type: ignore[return-value]

    def reconnect(self, info: ConnectionInfo | None = None, resume_jobs: list[str] | None = None,
                  timeout_s: float | None = None) -> Welcome:
        """Reopen the socket (re-reading the connection file if there is one) and say hello again."""
        if info is None and self.connection_file is not None:
            info = ConnectionInfo.read(self.connection_file)
        self.conn.reopen(info)
        self._pending.clear()
        return self.connect(resume_jobs, timeout_s)

    def ping(self, timeout_s: float | None = None) -> Pong:
        msg_id = self.conn.ping()
        event = self._await(lambda e: isinstance(e.message, Pong) and e.parent_id == msg_id, msg_id, timeout_s,
                            "pong")
        return event.message  # type: ignore[return-value]

    def submit(self, job_id: str, kind: str, params: dict[str, Any] | None = None,
               inputs: dict[str, np.ndarray] | None = None, timeout_s: float | None = None) -> JobAccepted:
        """Submit (idempotent per ``job_id``), upload ``inputs`` under credit, return ``job.accepted``.

        Raises :class:`JobRejectedError` with the server's code when the job is refused.
        """
        msg_id = self.conn.submit(job_id, kind, params, inputs)
        event = self._await(
            lambda e: isinstance(e.message, JobAccepted | JobRejected) and e.job_id == job_id, msg_id, timeout_s,
            "reply to job.submit")
        if isinstance(event.message, JobRejected):
            for key in [k for k in self.conn.uploads if k[0] == job_id]:
                del self.conn.uploads[key]
            raise JobRejectedError(event.message.detail or event.message.code, code=event.message.code)
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while self.conn.uploading(job_id):
            event_or_none = self._recv(deadline)
            if event_or_none is None:
                raise ServerTimeout(f"upload of job {job_id!r} stalled (no credit from the server)")
            self._pending.append(event_or_none)
            if event_or_none.terminal and event_or_none.job_id == job_id:
                break
        return event.message  # type: ignore[return-value]

    def cancel(self, job_id: str) -> None:
        """Ask the server to cancel (idempotent); the ``cancelled`` event arrives via the event stream."""
        self.conn.cancel(job_id)

    def resend(self, job_id: str, stream: str, from_chunk: int | None = None) -> None:
        self.conn.resend(job_id, stream, from_chunk)

    def consumed(self, job_id: str, stream: str, chunk: int) -> None:
        self.conn.consumed(job_id, stream, chunk)

    def wait_job(self, job_id: str, timeout_s: float | None = None,
                 on_chunk: Callable[[Event], None] | None = None, *, need_terminal: bool = True,
                 streams: list[str] | None = None, auto_credit: bool = True,
                 keep_arrays: bool = True) -> JobResult:
        """Collect a job's events until it ended and its streams ended (or ``timeout_s``).

        ``need_terminal=False`` with ``streams`` waits only for those streams (after a ``resend``).
        With ``auto_credit`` each chunk is acknowledged after ``on_chunk`` returns. With
        ``keep_arrays=False`` chunk arrays are only handed to ``on_chunk`` (streaming consumers:
        memory stays at one window), and ``StreamResult.arrays`` stays empty.
        """
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        result = JobResult(job_id=job_id, state=self.conn.jobs.get(job_id, "unknown"))
        terminal = not need_terminal
        kept: list[Event] = []
        while True:
            begun = set(result.streams) | set(streams or [])
            ended = {name for name, s in result.streams.items() if s.end is not None}
            if terminal and (result.state in ("failed", "cancelled") or begun <= ended):
                break
            event = self._pending.popleft() if self._pending else self._recv(deadline)
            if event is None:
                raise ServerTimeout(f"job {job_id!r} did not finish within the timeout (state {result.state})")
            if event.job_id != job_id:
                kept.append(event)
                continue
            msg = event.message
            if keep_arrays or not isinstance(msg, ResultChunk):
                result.events.append(event)
            if isinstance(msg, ResultBegin):
                result.streams.setdefault(msg.stream, StreamResult()).begin = msg
            elif isinstance(msg, ResultChunk):
                stream = result.streams.setdefault(msg.stream, StreamResult())
                stream.meta[msg.chunk] = event.meta
                stream.received += 1
                if keep_arrays:
                    stream.arrays[msg.chunk] = msg.arrays
                if on_chunk is not None:
                    on_chunk(event)
                if auto_credit:
                    self.conn.consumed(job_id, msg.stream, msg.chunk)
            elif isinstance(msg, ResultEnd):
                result.streams.setdefault(msg.stream, StreamResult()).end = msg
            if event.terminal:
                terminal = True
                result.state = self.conn.jobs.get(job_id, result.state)
                if isinstance(msg, ErrorMessage):
                    result.error = msg
        self._pending.extendleft(reversed(kept))
        return result
