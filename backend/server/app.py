"""The backend server: one ROUTER socket, an I/O loop thread that never runs heavy work, a worker.

Threads:
- **I/O loop** (``recast4d-io``): owns the ROUTER socket. Decodes and verifies every message
  (``protocol.wire.Codec``), answers ``ping``/``cancel`` at once, validates submits, receives
  uploads under credit, sends coalesced progress (<= 1 per ``progress_interval_s`` per job, latest
  only) and streams persisted result chunks under the client's credit.
- **worker** (``backend.jobs.Worker``): runs jobs FIFO; reports through thread-safe queues.

Every malformed or refused request is answered with a typed ``error`` (or ``job.rejected``) and the
server keeps going. Each job ends with exactly one terminal message to its subscribers:
``job.status{done}``, ``error{job_id}`` (failed) or ``cancelled``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from backend.executors import Executor, make_executor
from backend.jobs import CANCELLED, DONE, FAILED, RUNNING, JobStore
from protocol.connection import ConnectionInfo, curve_keypair, default_connection_path, secure_server_socket
from protocol.errors import ProtocolError, Recast4DError
from protocol.messages import (
    Cancelled,
    ErrorMessage,
    JobStatus,
    Progress,
    WireMessage,
    parse_request,
)
from protocol.wire import Codec, Limits, Message, generate_key

from .config import BindRefused, ServerConfig, check_bind
from .flow import ClientState, StreamSender, UploadReceiver
from .handlers import RequestHandlers
from .jobs_lock import lock_jobs_dir
from .logsafe import RateLimiter, peer_id, safe
from .streaming import ResultStreaming

log = logging.getLogger("recast4d.server")

CAPABILITIES = ["upload", "resend", "progress", "cancel"]
_MAX_OUTBOX = 10_000
_MAX_RECV_PER_TICK = 256
#: Messages queued per peer and direction. Result streams are bounded by credit anyway; a small
#: queue also bounds what one (authenticated) client can make the server hold: 64 x max_frame_bytes.
SOCKET_HWM = 64


class Server(RequestHandlers, ResultStreaming):
    """A running backend: ``start()`` binds and returns the :class:`ConnectionInfo`; ``stop()`` ends it."""

    def __init__(self, config: ServerConfig, limits: Limits | None = None) -> None:
        self.config = config
        self.remote = check_bind(config.host, config.allow_remote)
        if self.remote and not config.curve:
            raise BindRefused(f"refusing to listen on {config.host!r} without transport encryption: remote "
                              "binds always use CURVE")
        self.key = config.key if config.key is not None else generate_key()
        self.session = uuid.uuid4().hex
        self.limits = limits or Limits()
        self.codec = Codec(self.key, self.session, self.limits)
        self._jobs_lock = lock_jobs_dir(Path(config.jobs_dir))
        self.store = JobStore(config.jobs_dir)
        try:
            self.worker: Executor = make_executor(config.executor, self.store, events=self)
        except BaseException:
            self._jobs_lock.close()
            raise
        self.recovered = self.worker.recover()
        self.gpu: dict[str, Any] | None = None
        self.clients: dict[bytes, ClientState] = {}
        self.subscribers: dict[str, set[bytes]] = {}
        self.uploads: dict[tuple[str, str], UploadReceiver] = {}
        self.connection: ConnectionInfo | None = None
        self.connection_path: Path | None = None
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._progress_lock = threading.Lock()
        self._progress: dict[str, dict[str, Any]] = {}
        self._progress_sent: dict[str, float] = {}
        self._stop = threading.Event()
        self._last_expiry = time.monotonic()
        self._rejections = RateLimiter(burst=10, period_s=60.0)
        self._last_upload_check = time.monotonic()
        self._ctx = zmq.Context()
        #: CurveZMQ key pair made for this start (Z85); the public half goes into the connection file.
        self.curve_public, self._curve_secret = curve_keypair() if config.curve else ("", "")
        self._auth: ThreadAuthenticator | None = None
        self.socket = self._make_socket()
        self._wake_rx = self._ctx.socket(zmq.PAIR)
        self._wake_rx.bind(f"inproc://recast4d-server-wake-{self.session}")
        self._wake_tx = self._ctx.socket(zmq.PAIR)
        self._wake_tx.connect(f"inproc://recast4d-server-wake-{self.session}")
        self._wake_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="recast4d-io", daemon=True)
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def _make_socket(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_frame_bytes)
        sock.setsockopt(zmq.SNDHWM, SOCKET_HWM)
        sock.setsockopt(zmq.RCVHWM, SOCKET_HWM)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
        sock.setsockopt(zmq.HEARTBEAT_TTL, 6000)
        if self.config.curve:
            # Authentication before assembly: a peer without the server's public key fails the CURVE
            # handshake, so ZeroMQ never assembles (or allocates) a message of it.
            secure_server_socket(sock, self.curve_public, self._curve_secret)
        return sock

    def _start_authenticator(self) -> None:
        """The ZAP handler (pyzmq's authenticator thread), before the bind: it admits CURVE clients and,
        for a loopback server, only loopback peers."""
        if not self.config.curve:
            return
        self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("recast4d.server.zap"))
        self._auth.start()
        if not self.remote:
            self._auth.allow("127.0.0.1", "::1")
        self._auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)

    def start(self) -> ConnectionInfo:
        """Bind, write the connection file (0600), start the worker and the I/O loop."""
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        if ":" in self.config.host:
            self.socket.setsockopt(zmq.IPV6, 1)
        port = self.config.port
        self._start_authenticator()
        try:
            self.socket.bind(f"tcp://{host}:{port if port else '*'}")
        except zmq.ZMQError as exc:
            if self._auth is not None:
                self._auth.stop()
            self._ctx.destroy(linger=0)
            self._jobs_lock.close()
            raise Recast4DError(f"cannot listen on {self.config.host}:{port}: {exc.strerror}",
                                code="bind_failed") from exc
        endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.port = int(endpoint.rsplit(":", 1)[1])
        if self.remote:
            log.warning("listening on non-loopback %s: anyone who can reach this port and has the connection "
                        "file's keys can submit jobs; traffic is CURVE-encrypted and signed", endpoint)
        elif not self.config.curve:
            log.warning("CURVE is off: any local process can send this server messages (tests only)")
        self.connection = ConnectionInfo(
            transport="tcp", host=self.config.host, port=self.port, key=self.key.hex(), pid=os.getpid(),
            server_session=self.session, curve_server_public=self.curve_public,
        )
        if self.config.write_connection_file:
            path = self.config.connection_file or default_connection_path()
            self.connection_path = self.connection.write(path)
        if os.environ.get("RECAST4D_GPU_PROBE", "1") != "0":
            threading.Thread(target=self._detect_gpu, name="recast4d-gpu-probe", daemon=True).start()
        self.worker.start()
        self._thread.start()
        log.info("recast4d server %s listening on %s (jobs in %s)", self.session[:8], endpoint,
                 self.config.jobs_dir)
        return self.connection

    def stop(self, timeout: float = 5.0) -> None:
        """Tell clients (``error{shutting_down}``), stop the worker, close the socket, remove the file."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.worker.stop(timeout)
        self._jobs_lock.close()
        if self.connection is not None and self.connection_path is not None:
            self.connection.remove(self.connection_path)  # only if it still names this server

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the I/O loop ends; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _detect_gpu(self) -> None:
        try:
            import torch

            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(0)
                self.gpu = {"name": props.name, "mem": int(props.total_memory)}
        except Exception:  # no torch / no driver: welcome says gpu = None
            self.gpu = None

    # ------------------------------------------------------------------ worker events (worker thread)
    def job_progress(self, job_id: str, stage: str, step: int, total: int, message: str) -> None:
        with self._progress_lock:
            record = self.store.get(job_id)
            if record is None or record.terminal:  # cancelled on the I/O side; the job has not noticed yet
                return
            previous = self._progress.get(job_id)
            started = previous["started"] if previous and previous["stage"] == stage else time.monotonic()
            self._progress[job_id] = {"stage": stage, "step": step, "total": total, "msg": message,
                                      "started": started, "dirty": True}

    def job_stream(self, job_id: str, stream: str, manifest: dict[str, Any]) -> None:
        self._events.put(("stream", job_id, stream))
        self._wake()

    def job_chunk(self, job_id: str, stream: str, chunk: int) -> None:
        self._wake()  # the pump reads chunk counts from the store

    def job_state(self, job_id: str, state: str, error: dict[str, Any] | None) -> None:
        self._events.put(("state", job_id, state, error))
        self._wake()

    def _wake(self) -> None:
        """Wake the I/O loop from another thread (the worker) through the inproc PAIR socket."""
        with self._wake_lock, contextlib.suppress(zmq.ZMQError):  # already woken, or shutting down
            self._wake_tx.send(b"", zmq.NOBLOCK)

    # ------------------------------------------------------------------ I/O loop
    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_rx, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(self.config.poll_interval_ms))
                if self._wake_rx in ready:
                    with contextlib.suppress(zmq.Again):
                        while True:
                            self._wake_rx.recv(zmq.NOBLOCK)
                if self.socket in ready:
                    self._drain_socket()
                self._drain_events()
                self._flush_progress()
                self._pump_streams()
                self._flush_outboxes()
                self._expire_clients()
                self._housekeeping()
            self._shutdown_notice()
        except Exception:
            log.exception("I/O loop crashed")
        finally:
            self.socket.close(linger=1000)
            with self._wake_lock:
                self._wake_tx.close(linger=0)
            self._wake_rx.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
            self._ctx.term()

    def _drain_socket(self) -> None:
        for _ in range(_MAX_RECV_PER_TICK):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._handle(frames)

    def _housekeeping(self) -> None:
        """Once a second: fail idle uploads, write job states a full disk kept in memory."""
        now = time.monotonic()
        if now - self._last_upload_check < min(1.0, self.config.upload_idle_timeout_s / 2):
            return
        self._last_upload_check = now
        self.expire_uploads()
        self.store.flush_unsaved()

    def _handle(self, frames: list[zmq.Frame]) -> None:
        identity = frames[0].bytes
        # A peer becomes a client only once one of its messages verified: unsigned noise gets its
        # error reply from a throw-away state, and leaves nothing behind.
        client = self.clients.get(identity) or ClientState(identity=identity)
        msg: Message | None = None
        try:
            if len(frames) - 1 > self.limits.max_frames_per_message:
                raise ProtocolError(f"message has {len(frames) - 1} frames; limit "
                                    f"{self.limits.max_frames_per_message}", code="too_many_frames")
            msg = self.codec.decode(frames[1:])
            client = self.clients.setdefault(identity, client)
            client.last_seen = time.monotonic()
            request = parse_request(msg)
            handler = self.HANDLERS[request.TYPE]
            handler(self, client, msg, request)
        except Recast4DError as exc:
            job_id = getattr(msg, "job_id", None) if msg is not None else None
            self.send(client, ErrorMessage.from_exception(exc, job_id=None),
                      parent_id=msg.msg_id if msg is not None else None)
            self._log_rejection(identity, msg, exc, job_id)
            if exc.code == "version_unsupported":  # protocol.md §10: refused, then forgotten
                self.drop_client(identity, "speaks another protocol major version")
        except OSError as exc:  # e.g. out of descriptors: typed, retryable, the server goes on
            log.error("OS error handling a message from %s: %s", peer_id(identity), exc)
            busy = exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM)
            self.send(client, ErrorMessage(code="server_busy" if busy else "internal", retryable=True,
                                           msg=f"the server could not handle this request: {exc.strerror}"),
                      parent_id=msg.msg_id if msg is not None else None)
        except Exception as exc:  # a bug must not take the server down
            log.exception("internal error handling a message")
            self.send(client, ErrorMessage(code="internal", msg=f"internal server error: {type(exc).__name__}"),
                      parent_id=msg.msg_id if msg is not None else None)

    def _log_rejection(self, identity: bytes, msg: Message | None, exc: Recast4DError, job_id: str | None) -> None:
        """One sanitised line per rejection; unauthenticated ones (no verified message) are rate-limited
        and logged at DEBUG, so noise cannot fill the log."""
        what = safe(msg.type) if msg is not None else "message"
        detail = exc.message if job_id is None else f"job {safe(job_id)}: {exc.message}"
        if msg is None:
            if self._rejections.allow(exc.code):
                log.debug("rejected unverified message from %s: %s (%s)", peer_id(identity), exc.code,
                          safe(exc.message, 200))
            return
        log.info("rejected %s from %s: %s (%s)", what, peer_id(identity), exc.code, safe(detail, 300))

    # ------------------------------------------------------------------ sending
    def send(self, client: ClientState, message: WireMessage | Message, *, parent_id: str | None = None,
             droppable: bool = False) -> bool:
        """Encode and send to one client; queue behind earlier unsent messages. False if not sent now."""
        msg = message if isinstance(message, Message) else message.to_message(parent_id)
        if client.outbox:
            if droppable:
                return False
            client.outbox.append(self.codec.encode(msg))
            self._check_outbox(client)
            return False
        frames = self.codec.encode(msg)
        status = self._send_frames(client, frames)
        if status == "again":
            if droppable:
                return False
            client.outbox.append(frames)
            self._check_outbox(client)
            return False
        return status == "sent"

    def _send_frames(self, client: ClientState, frames: list) -> str:
        try:
            self.socket.send_multipart([client.identity, *frames], flags=zmq.NOBLOCK, copy=False)
            return "sent"
        except zmq.Again:
            return "again"
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.drop_client(client.identity, "unreachable")
                return "gone"
            raise

    def _check_outbox(self, client: ClientState) -> None:
        if len(client.outbox) > _MAX_OUTBOX:
            self.drop_client(client.identity, "not reading its messages")

    def _flush_outboxes(self) -> None:
        for client in list(self.clients.values()):
            while client.outbox:
                status = self._send_frames(client, client.outbox[0])
                if status != "sent":
                    break
                client.outbox.popleft()

    def to_subscribers(self, job_id: str, message: WireMessage, droppable: bool = False) -> None:
        for identity in list(self.subscribers.get(job_id, ())):
            client = self.clients.get(identity)
            if client is not None:
                self.send(client, message, droppable=droppable)

    def drop_client(self, identity: bytes, reason: str) -> None:
        """Forget a client (its jobs keep running; results stay on disk for a later ``resend``)."""
        client = self.clients.pop(identity, None)
        if client is None:
            return
        for subs in self.subscribers.values():
            subs.discard(identity)
        # The codec keeps the session's last seq (LRU-bounded): forgetting it here would let anyone
        # who captured that session's signed messages replay them once it has left.
        log.info("client %s dropped: %s", peer_id(identity), reason)

    def subscribe(self, client: ClientState, job_id: str) -> None:
        self.subscribers.setdefault(job_id, set()).add(client.identity)
        client.jobs.add(job_id)

    # ------------------------------------------------------------------ worker events on the I/O side
    def _drain_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if event[0] == "stream":
                _, job_id, stream = event
                for identity in self.subscribers.get(job_id, ()):
                    client = self.clients.get(identity)
                    if client is not None and (job_id, stream) not in client.senders:
                        client.senders[(job_id, stream)] = StreamSender(job_id, stream, self.limits.window)
            elif event[0] == "state":
                _, job_id, state, error = event
                record = self.store.get(job_id)
                if record is not None and record.state != state:
                    continue  # stale: e.g. "running" of a job cancelled since (cancelled was the last word)
                if state != RUNNING:
                    self._flush_progress(force_job=job_id)
                self.announce_state(job_id, state, error)

    def announce_state(self, job_id: str, state: str, error: dict[str, Any] | None) -> None:
        """Tell subscribers about a committed state (the terminal message for done/failed/cancelled)."""
        if state == RUNNING:
            self.to_subscribers(job_id, JobStatus(job_id=job_id, state=RUNNING))
        elif state == DONE:
            self._begin_streams(job_id)
            self.to_subscribers(job_id, JobStatus(job_id=job_id, state=DONE))
        elif state == FAILED:
            error = error or {}
            self.to_subscribers(job_id, ErrorMessage(
                code=str(error.get("code", "internal")), msg=str(error.get("message", ""))[:4096],
                retryable=bool(error.get("retryable", False)), job_id=job_id))
        elif state == CANCELLED:
            self.to_subscribers(job_id, Cancelled(job_id=job_id))
        if state in (DONE, FAILED, CANCELLED):
            with self._progress_lock:
                self._progress.pop(job_id, None)
            self._progress_sent.pop(job_id, None)

    def _flush_progress(self, force_job: str | None = None) -> None:
        now = time.monotonic()
        with self._progress_lock:
            due = []
            for job_id, p in self._progress.items():
                if not p["dirty"]:
                    continue
                if job_id != force_job and now - self._progress_sent.get(job_id, 0.0) < self.config.progress_interval_s:
                    continue
                p["dirty"] = False
                due.append((job_id, dict(p)))
        for job_id, p in due:
            self._progress_sent[job_id] = now
            eta = None
            if 0 < p["step"] < p["total"]:
                eta = (now - p["started"]) / p["step"] * (p["total"] - p["step"])
            self.to_subscribers(job_id, Progress(job_id=job_id, stage=p["stage"][:64], step=max(0, p["step"]),
                                                 total=max(0, p["total"]), eta_s=eta, msg=p["msg"][:4096]),
                                droppable=True)

    def _expire_clients(self) -> None:
        """Forget clients silent for ``client_ttl_s`` whose jobs are all finished (checked every <= 5 s)."""
        now = time.monotonic()
        if now - self._last_expiry < min(5.0, self.config.client_ttl_s / 2):
            return
        self._last_expiry = now
        for client in list(self.clients.values()):
            if now - client.last_seen < self.config.client_ttl_s:
                continue
            if any((r := self.store.get(j)) is not None and not r.terminal for j in client.jobs):
                continue
            self.drop_client(client.identity, f"silent for more than {self.config.client_ttl_s:.0f} s")

    def _shutdown_notice(self) -> None:
        for client in list(self.clients.values()):
            with contextlib.suppress(zmq.ZMQError):
                self.send(client, ErrorMessage(code="shutting_down", msg="the server is shutting down",
                                               retryable=True))


def serve_forever(config: ServerConfig) -> int:
    """Run a server until SIGINT/SIGTERM (the ``recast4d serve`` command); returns the exit code."""
    import signal

    try:
        server = Server(config)
        info = server.start()
    except Recast4DError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    print(f"recast4d serving on {info.endpoint} (session {info.server_session[:8]}); connection file: "
          f"{server.connection_path}", flush=True)
    if server.recovered:
        print(f"{len(server.recovered)} interrupted job(s) marked failed (retryable)", flush=True)

    def on_signal(signum: int, frame: Any) -> None:
        server._stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not server._stop.is_set() and not server.wait(0.5):
        pass
    crashed = not server._stop.is_set()  # the I/O loop died on its own: exit instead of hanging deaf
    server.stop()
    if crashed:
        print("error (internal): the server's I/O loop stopped unexpectedly; see the log above", file=sys.stderr)
        return 1
    return 0
