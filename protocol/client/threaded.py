"""A client whose socket lives in its own I/O thread; the caller never blocks (Blender's main thread).

The caller sends commands (``submit``, ``cancel``, ``resend``, ``ping``, ``consumed``), which are
queued and wake the I/O thread through an ``inproc`` PAIR socket, and drains events with
:meth:`ThreadedClient.poll_events` under an item and time budget. The I/O thread pings when the
line is quiet, and if nothing arrives for ``heartbeat_s * liveness`` seconds (10 s by default) it reconnects with
exponential backoff (1 -> 32 s), re-reading the connection file, says ``hello`` with the same
client session and ``resume_jobs``, and resends unfinished streams from the first missing chunk.
A changed ``server_session`` is reported as a ``client.server_restarted`` event.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from protocol.connection import ConnectionInfo
from protocol.errors import Recast4DError
from protocol.messages import Bye, ResultChunk, Welcome

from .core import Connection, Event

_instance_ids = itertools.count()


class ThreadedClient:
    """Owns a :class:`Connection` in a background thread; all methods are safe from any thread."""

    def __init__(self, info: ConnectionInfo | None = None, *,
                 connection_file: str | os.PathLike[str] | None = None, client_name: str = "recast4d-blender",
                 auto_ack: bool = False, heartbeat_s: float = 1.0, liveness: int = 10,
                 max_backoff_s: float = 32.0, window: int | None = None,
                 resume_jobs: Sequence[str] = (), job_tokens: Mapping[str, str] | None = None) -> None:
        """``resume_jobs``: jobs this client started in an earlier life (e.g. listed in a saved .blend);
        the first ``hello`` names them so the server replies with their state and streams.
        ``job_tokens``: their ownership tokens (``job.accepted.token``, saved with them), which a new
        client session needs to read or cancel them."""
        if info is None and connection_file is None:
            raise ValueError("give a ConnectionInfo or a connection file path")
        self.connection_file = Path(connection_file) if connection_file else None
        self._info = info
        self.client_name = client_name
        self.auto_ack = auto_ack
        self.heartbeat_s = heartbeat_s
        self.liveness = liveness
        self.max_backoff_s = max_backoff_s
        self.window = window
        self.resume_jobs = list(resume_jobs)
        self.job_tokens = dict(job_tokens or {})
        self.state = "idle"
        self.server_session: str | None = None
        self._events: queue.Queue[Event] = queue.Queue()
        self._commands: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
        self._ctx = zmq.Context()
        self._wake_addr = f"inproc://recast4d-client-wake-{id(self)}-{next(_instance_ids)}"
        self._wake_rx = self._ctx.socket(zmq.PAIR)
        self._wake_rx.bind(self._wake_addr)
        self._wake_tx = self._ctx.socket(zmq.PAIR)
        self._wake_tx.setsockopt(zmq.LINGER, 0)
        self._wake_tx.connect(self._wake_addr)
        self._wake_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recast4d-client-io", daemon=True)

    # ------------------------------------------------------------------ caller side
    def start(self) -> None:
        """Start the I/O thread (connects and says hello; ``client.connected`` follows the welcome)."""
        self.state = "connecting"
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        """Say bye, stop and join the I/O thread, close sockets (returns within about ``timeout_s``)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        with self._wake_lock:
            self._wake_tx.close(linger=0)
        if not self._thread.is_alive():
            self._wake_rx.close(linger=0)
            self._ctx.term()
        self.state = "closed"

    close = stop

    def _command(self, name: str, *args: Any) -> None:
        if self._stop.is_set():
            raise Recast4DError("the client is stopped", code="client_stopped")
        self._commands.put((name, args))
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock, contextlib.suppress(zmq.ZMQError):  # already woken (queue full) or closed
            self._wake_tx.send(b"", zmq.NOBLOCK)

    def submit(self, job_id: str, kind: str, params: dict[str, Any] | None = None,
               inputs: dict[str, np.ndarray] | None = None) -> None:
        self._command("submit", job_id, kind, params, inputs)

    def cancel(self, job_id: str) -> None:
        self._command("cancel", job_id)

    def resend(self, job_id: str, stream: str, from_chunk: int | None = None) -> None:
        self._command("resend", job_id, stream, from_chunk)

    def ping(self) -> None:
        self._command("ping")

    def consumed(self, job_id: str, stream: str, chunk: int) -> None:
        """Grant credit after consuming ``chunk`` (only needed with ``auto_ack=False``)."""
        self._command("consumed", job_id, stream, chunk)

    def poll_events(self, max_items: int = 64, time_budget_s: float = 0.008) -> list[Event]:
        """Up to ``max_items`` events, returning early once ``time_budget_s`` is spent; never blocks.

        With ``auto_ack`` each ``result.chunk`` handed out here counts as consumed (credit is sent);
        without it (the default) call :meth:`consumed` once a chunk has been applied.
        """
        start = time.perf_counter()
        out: list[Event] = []
        while len(out) < max_items and time.perf_counter() - start < time_budget_s:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            out.append(event)
            if self.auto_ack and isinstance(event.message, ResultChunk) and not self._stop.is_set():
                self._command("consumed", event.job_id, event.message.stream, event.message.chunk)
        return out

    # ------------------------------------------------------------------ I/O thread
    def _emit(self, kind: str, **data: Any) -> None:
        self._events.put(Event(type=f"client.{kind}", data=data))

    def _read_info(self) -> ConnectionInfo:
        if self.connection_file is not None:
            return ConnectionInfo.read(self.connection_file)
        assert self._info is not None
        return self._info

    def _run(self) -> None:
        conn: Connection | None = None
        try:
            conn = self._connect_first()
            if conn is None:
                return
            self._loop(conn)
        except Exception as exc:  # report, never die silently
            self._emit("error", code=getattr(exc, "code", "internal"), message=str(exc))
        finally:
            if conn is not None:
                with contextlib.suppress(zmq.ZMQError, Recast4DError):
                    conn.send(Bye())
                conn.socket.close(linger=0)
            self.state = "closed"

    def _connect_first(self) -> Connection | None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                info = self._read_info()
                conn = Connection(info, client_name=self.client_name, context=self._ctx, window=self.window)
                conn.tokens.update(self.job_tokens)
                conn.send_hello(resume_jobs=self.resume_jobs)
                return conn
            except Recast4DError as exc:
                self.state = "reconnecting"
                self._emit("unreachable", code=exc.code, message=str(exc), retry_in_s=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
        return None

    def _loop(self, conn: Connection) -> None:
        poller = zmq.Poller()
        poller.register(self._wake_rx, zmq.POLLIN)
        poller.register(conn.socket, zmq.POLLIN)
        last_ping = time.monotonic()
        backoff = 1.0
        hello_at = time.monotonic()
        while not self._stop.is_set():
            ready = dict(poller.poll(50))
            if self._wake_rx in ready:
                while True:
                    try:
                        self._wake_rx.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
            self._run_commands(conn)
            while True:
                try:
                    event = conn.recv_event()
                except Recast4DError as exc:
                    self._emit("error", code=exc.code, message=str(exc))
                    continue
                if event is None:
                    break
                backoff = 1.0
                if isinstance(event.message, Welcome):
                    self._on_welcome(conn, event.message)
                self._events.put(event)
            now = time.monotonic()
            quiet = now - max(conn.last_recv, hello_at)
            if quiet > self.heartbeat_s and now - last_ping > self.heartbeat_s:
                conn.ping()
                last_ping = now
            if quiet > self.heartbeat_s * self.liveness:
                self.state = "reconnecting"
                self._emit("reconnecting", retry_in_s=backoff, quiet_s=quiet)
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)
                poller.unregister(conn.socket)
                try:
                    info = self._read_info()
                except Recast4DError as exc:
                    self._emit("unreachable", code=exc.code, message=str(exc))
                    info = conn.info
                conn.reopen(info)
                poller.register(conn.socket, zmq.POLLIN)
                resume = sorted({job for job, state in conn.jobs.items()
                                 if state not in ("done", "failed", "cancelled")}
                                | {job for job, _, _ in conn.unfinished_streams()})
                conn.send_hello(resume_jobs=resume)
                hello_at = time.monotonic()

    def _on_welcome(self, conn: Connection, welcome: Welcome) -> None:
        restarted = self.server_session is not None and welcome.server_session != self.server_session
        first = self.server_session is None
        self.server_session = welcome.server_session
        self.state = "connected"
        if restarted:
            self._emit("server_restarted", server_session=welcome.server_session)
        self._emit("connected", server_session=welcome.server_session, first=first)
        if not first:
            for job_id, stream, next_chunk in conn.unfinished_streams():
                conn.resend(job_id, stream, next_chunk)

    def _run_commands(self, conn: Connection) -> None:
        while True:
            try:
                name, args = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                if name == "submit":
                    conn.submit(*args)
                elif name == "cancel":
                    conn.cancel(*args)
                elif name == "resend":
                    conn.resend(*args)
                elif name == "ping":
                    conn.ping()
                elif name == "consumed":
                    conn.consumed(*args)
            except Recast4DError as exc:
                self._emit("error", code=exc.code, message=str(exc), command=name)
