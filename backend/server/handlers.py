"""Request handlers of the I/O loop (mixed into :class:`backend.server.app.Server`).

Each handler gets the client state, the verified :class:`Message` and its typed request. Handlers
only do cheap work: validation, bookkeeping, writing upload bytes; jobs run in the worker.
"""

from __future__ import annotations

import errno
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from backend.jobs import CANCELLED, FAILED, QUEUED, RUNNING, InputSpec, get_job_kind
from protocol.errors import Recast4DError, ValidationError
from protocol.messages import (
    Bye,
    Cancel,
    Credit,
    ErrorMessage,
    Hello,
    JobAccepted,
    JobRejected,
    JobStatus,
    JobSubmit,
    Ping,
    Pong,
    Resend,
    UploadChunk,
    UploadCredit,
    UploadEnd,
    Welcome,
    negotiate_version,
)
from protocol.schema import GpuInfo
from protocol.wire import Message

from .admission import NotOwner, admit_new_job, may_access
from .flow import ClientState, StreamSender, UploadReceiver
from .logsafe import safe

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger("recast4d.server")


def engine_report() -> list[dict[str, Any]]:
    """The engines this backend can run, as ``recast4d doctor`` sees them: one plain map per engine
    (``kind``, ``name``, ``usable``, ``reason``, ``hint``), sent with ``welcome`` (extra content key
    ``engines``) so a client can disable what would fail. Empty if the registry cannot be read."""
    try:
        from backend.engines.registry import engine_status

        statuses = engine_status()
    except Exception as exc:  # never fail a hello over the report
        log.warning("engine report unavailable: %s", exc)
        return []
    return [{"kind": s.kind, "name": s.name, "usable": bool(s.usable), "reason": str(s.reason)[:512],
             "hint": str(s.hint)[:512]} for s in statuses]


def _error_dict(exc: Recast4DError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "retryable": exc.retryable}


class RequestHandlers:
    """One method per request type; ``HANDLERS`` maps the wire type to it."""

    HANDLERS: dict[str, Callable[..., None]] = {}

    # ------------------------------------------------------------------ hello / ping / bye
    def on_hello(self: Server, client: ClientState, msg: Message, req: Hello) -> None:
        version = negotiate_version(req.versions)
        if version is None:
            self.send(client, ErrorMessage(code="version_unsupported",
                                           msg=f"this server speaks protocol 1.x; the client offered {req.versions}"),
                      parent_id=msg.msg_id)
            self.drop_client(client.identity, "version unsupported")
            return
        client.session, client.name, client.welcomed = msg.session, req.client, True
        from .app import CAPABILITIES

        gpu = GpuInfo(**self.gpu) if self.gpu else None
        welcome = Welcome(server_session=self.session, version=version, capabilities=CAPABILITIES,
                          limits=self.limits, gpu=gpu).to_message(msg.msg_id)
        welcome.content["engines"] = engine_report()  # doctor data: what the add-on may offer
        self.send(client, welcome)
        for job_id in req.resume_jobs:
            record = self.store.get(job_id)
            if record is None:
                reason = self.store.damaged.get(job_id)
                detail = (f"job {job_id!r} is damaged on this server ({reason}); submit it again" if reason else
                          f"no job {job_id!r} on this server (it restarted with another jobs folder?)")
                self.send(client, ErrorMessage(code="damaged_job" if reason else "unknown_job", msg=detail,
                                               job_id=job_id))
                continue
            if not may_access(record, msg.session, req.resume_tokens.get(job_id, "")):
                self.send(client, ErrorMessage(code="not_owner", msg=f"job {job_id!r} belongs to another client: "
                                               "send its token in hello.resume_tokens to resume it"))
                continue
            self.subscribe(client, job_id)
            detail = record.error.get("message", "") if record.error else ""
            status = JobStatus(job_id=job_id, state=record.state, detail=str(detail)[:4096]).to_message()
            status.content["streams"] = {name: info.chunks for name, info in list(record.streams.items())}
            self.send(client, status)
            for (upload_job, name), upload in self.uploads.items():  # continue interrupted uploads
                if upload_job == job_id and upload.session == msg.session:
                    upload.owner = client.identity
                    self.send(client, UploadCredit(job_id=job_id, input=name, ack=upload.received,
                                                   window=upload.window))

    def on_ping(self: Server, client: ClientState, msg: Message, req: Ping) -> None:
        jobs = {}
        for job_id in client.jobs:
            record = self.store.get(job_id)
            if record is not None:
                jobs[job_id] = record.state
        self.send(client, Pong(server_session=self.session, jobs=jobs), parent_id=msg.msg_id)

    def on_bye(self: Server, client: ClientState, msg: Message, req: Bye) -> None:
        self.drop_client(client.identity, "said bye")

    # ------------------------------------------------------------------ submit and uploads
    def on_submit(self: Server, client: ClientState, msg: Message, req: JobSubmit) -> None:
        def reject(exc: Recast4DError) -> None:
            self.send(client, JobRejected(job_id=req.job_id, code=exc.code, detail=exc.message[:4096]),
                      parent_id=msg.msg_id)

        inputs = {name: InputSpec(spec.dtype, tuple(spec.shape)) for name, spec in req.inputs.items()}
        existing = self.store.get(req.job_id)
        if existing is not None and not may_access(existing, msg.session, req.token):
            return reject(NotOwner(f"job id {req.job_id!r} belongs to another client; use a new job id (or send the "
                                   "job's token to take it over)"))
        if existing is None:
            try:
                admit_new_job(self, client, req, inputs)
            except Recast4DError as exc:
                return reject(exc)
        token = secrets.token_hex(16)
        try:
            record, created = self.store.create(req.job_id, req.kind, req.params, inputs, owner=msg.session,
                                                token=token)
        except Recast4DError as exc:
            return reject(exc)
        self.subscribe(client, req.job_id)
        try:
            if not created and self.store.retry(req.job_id) is not None:
                created = True  # a retryable failure (e.g. the server stopped mid-job): run it again
                for other in self.clients.values():  # its streams start afresh: senders of the old run go
                    for key in [k for k in other.senders if k[0] == req.job_id]:
                        del other.senders[key]
        except Recast4DError as exc:
            return reject(exc)
        if not created:  # idempotent: the original reply, then where the job is now
            reply = record.reply or {"job_id": record.job_id, "queue_pos": 0}
            self.send(client, JobAccepted(**reply, token=record.token), parent_id=msg.msg_id)
            self.send(client, JobStatus(job_id=record.job_id, state=record.state))
            for (job_id, name), upload in self.uploads.items():
                if job_id == record.job_id:
                    upload.owner = client.identity
                    self.send(client, UploadCredit(job_id=job_id, input=name, ack=upload.received,
                                                   window=upload.window))
            return
        queue_pos = self.worker.queue_length() + (1 if self.worker.current_job else 0)
        reply = {"job_id": req.job_id, "queue_pos": queue_pos}
        try:
            self.store.set_reply(req.job_id, reply)
        except Recast4DError as exc:
            log.warning("reply of job %s not saved: %s", safe(req.job_id), exc.message)
        self.send(client, JobAccepted(**reply, token=record.token), parent_id=msg.msg_id)
        for name in list(record.uploads_pending):  # all inputs for a new job; what is missing for a retry
            spec = record.inputs[name]
            try:
                target = self.store.open_input(req.job_id, name)
                if spec.shape[0] == 0:
                    self.store.input_complete(req.job_id, name)
                    continue
            except Recast4DError as exc:  # disk full: this job fails, the server goes on
                return self._fail_job(req.job_id, exc)
            upload = UploadReceiver(req.job_id, name, target, window=self.limits.window, owner=client.identity,
                                    session=msg.session)
            self.uploads[(req.job_id, name)] = upload
            self.send(client, UploadCredit(job_id=req.job_id, input=name, ack=0, window=upload.window))
        if not self.store.get(req.job_id).uploads_pending:
            self._start_job(req.job_id)

    def _upload_of_ended_job(self: Server, job_id: str) -> bool:
        """True if ``job_id`` already ended (e.g. cancelled): its upload pieces still in flight are
        dropped quietly, not answered with errors."""
        record = self.store.get(job_id)
        return record is not None and record.terminal

    def _owned_upload(self: Server, msg: Message, job_id: str, name: str) -> UploadReceiver | None:
        """The upload of ``name``, if this message's session owns the job (others never upload)."""
        upload = self.uploads.get((job_id, name))
        record = self.store.get(job_id)
        if record is not None and record.owner and record.owner != msg.session:
            raise NotOwner(f"job {job_id!r} belongs to another client: only the client that submitted it uploads "
                           "its inputs")
        return upload

    def on_upload_chunk(self: Server, client: ClientState, msg: Message, req: UploadChunk) -> None:
        upload = self._owned_upload(msg, req.job_id, req.input)
        if upload is None:
            if self._upload_of_ended_job(req.job_id):
                return
            raise ValidationError(f"no upload in progress for input {req.input!r} of job {req.job_id!r}",
                                  code="unexpected_upload")
        try:
            upload.write(req.chunk, req.frame_range, req.arrays)
        except ValueError as exc:
            return self._fail_job(req.job_id, ValidationError(str(exc), code="bad_upload"))
        except Recast4DError as exc:  # disk full
            return self._fail_job(req.job_id, exc)
        except OSError as exc:
            return self._fail_job(req.job_id, Recast4DError(
                f"input {req.input!r} of job {req.job_id!r} could not be written on the server: {exc.strerror}",
                code="server_busy" if exc.errno in (errno.EMFILE, errno.ENFILE) else "internal", retryable=True))
        self.send(client, UploadCredit(job_id=req.job_id, input=req.input, ack=upload.received,
                                       window=upload.window))

    def on_upload_end(self: Server, client: ClientState, msg: Message, req: UploadEnd) -> None:
        upload = self._owned_upload(msg, req.job_id, req.input)
        if upload is None:
            record = self.store.get(req.job_id)
            if record is not None and req.input in record.inputs and req.input not in record.uploads_pending:
                return  # duplicate end: already complete
            if self._upload_of_ended_job(req.job_id):
                return
            raise ValidationError(f"no upload in progress for input {req.input!r} of job {req.job_id!r}",
                                  code="unexpected_upload")
        if req.chunks != upload.received or not upload.complete:
            return self._fail_job(req.job_id, ValidationError(
                f"upload of {req.input!r} ended after {upload.received} chunks / {upload.frames} of "
                f"{upload.total_frames} frames (client said {req.chunks} chunks)", code="bad_upload"))
        try:
            upload.target.sync()
            del self.uploads[(req.job_id, req.input)]
            pending = self.store.input_complete(req.job_id, req.input)
        except Recast4DError as exc:
            return self._fail_job(req.job_id, exc)
        if not pending:
            self._start_job(req.job_id)

    def _start_job(self: Server, job_id: str) -> None:
        """All inputs are in: validate (I/O side, cheap checks), then queue for the worker."""
        record = self.store.get(job_id)
        if record is None or record.state != QUEUED:
            return
        try:
            kind = get_job_kind(record.kind)
            if kind.validate is not None and record.inputs:
                kind.validate(record.params, self.store.load_inputs(job_id))
        except Recast4DError as exc:
            return self._fail_job(job_id, exc)
        except Exception as exc:
            return self._fail_job(job_id, ValidationError(f"input validation failed: {type(exc).__name__}: {exc}"))
        self.worker.enqueue(job_id)

    def _fail_job(self: Server, job_id: str, exc: Recast4DError) -> None:
        """Fail a queued job (its terminal message goes out even when its state cannot be written)."""
        for key in [k for k in self.uploads if k[0] == job_id]:
            del self.uploads[key]
        if self.store.finish(job_id, FAILED, from_states={QUEUED}, error=_error_dict(exc)):
            record = self.store.get(job_id)
            self.announce_state(job_id, FAILED, record.error if record is not None else _error_dict(exc))

    def expire_uploads(self: Server) -> None:
        """Fail jobs whose upload received nothing for ``upload_idle_timeout_s`` (``upload_timeout``)."""
        now = time.monotonic()
        limit = self.config.upload_idle_timeout_s
        for (job_id, name), upload in list(self.uploads.items()):
            if now - upload.last_activity > limit and (job_id, name) in self.uploads:
                self._fail_job(job_id, Recast4DError(
                    f"the upload of input {name!r} of job {job_id!r} received nothing for {limit:g} s; submit the "
                    "job again to continue", code="upload_timeout", retryable=True))

    # ------------------------------------------------------------------ streaming, cancel
    def on_credit(self: Server, client: ClientState, msg: Message, req: Credit) -> None:
        sender = client.senders.get((req.job_id, req.stream))
        if sender is not None:  # stale credit for a finished or unknown stream: a no-op
            sender.grant(req.ack, req.window, max_window=max(self.limits.window, 1) * 16)

    def on_resend(self: Server, client: ClientState, msg: Message, req: Resend) -> None:
        record = self.store.get(req.job_id)
        if record is None:
            raise ValidationError(f"no job {req.job_id!r} on this server", code="unknown_job")
        if not may_access(record, msg.session, req.token):
            raise NotOwner(f"job {req.job_id!r} belongs to another client: send its token to read its results")
        info = record.streams.get(req.stream)
        if info is not None and req.from_chunk > info.chunks:
            raise ValidationError(f"stream {req.stream!r} of job {req.job_id!r} has {info.chunks} chunks so far; "
                                  f"cannot resend from chunk {req.from_chunk}", code="bad_resend")
        self.subscribe(client, req.job_id)
        sender = client.senders.get((req.job_id, req.stream))
        if sender is None:
            sender = client.senders[(req.job_id, req.stream)] = StreamSender(req.job_id, req.stream,
                                                                             self.limits.window)
        sender.restart_from(req.from_chunk)

    def on_cancel(self: Server, client: ClientState, msg: Message, req: Cancel) -> None:
        record = self.store.get(req.job_id)
        if record is None:
            raise ValidationError(f"no job {req.job_id!r} to cancel", code="unknown_job")
        if not may_access(record, msg.session, req.token):
            raise NotOwner(f"job {req.job_id!r} belongs to another client: only its owner (or its token) cancels it")
        self.subscribe(client, req.job_id)
        if record.terminal:
            log.info("cancel of %s ignored: already %s", safe(req.job_id), record.state)
            return
        self.worker.request_cancel(req.job_id)
        if self.store.finish(req.job_id, CANCELLED, from_states={QUEUED, RUNNING}):
            for key in [k for k in self.uploads if k[0] == req.job_id]:
                del self.uploads[key]
            self.announce_state(req.job_id, CANCELLED, None)


RequestHandlers.HANDLERS = {
    Hello.TYPE: RequestHandlers.on_hello,
    Ping.TYPE: RequestHandlers.on_ping,
    Bye.TYPE: RequestHandlers.on_bye,
    JobSubmit.TYPE: RequestHandlers.on_submit,
    UploadChunk.TYPE: RequestHandlers.on_upload_chunk,
    UploadEnd.TYPE: RequestHandlers.on_upload_end,
    Credit.TYPE: RequestHandlers.on_credit,
    Resend.TYPE: RequestHandlers.on_resend,
    Cancel.TYPE: RequestHandlers.on_cancel,
}


