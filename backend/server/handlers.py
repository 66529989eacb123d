"""Request handlers of the I/O loop (mixed into :class:`backend.server.app.Server`).

Each handler gets the client state, the verified :class:`Message` and its typed request. Handlers
only do cheap work: validation, bookkeeping, writing upload bytes; jobs run in the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.jobs import CANCELLED, FAILED, QUEUED, RUNNING, InputSpec, JobIdConflict, get_job_kind
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

from .flow import ClientState, StreamSender, UploadReceiver

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
                self.send(client, ErrorMessage(code="unknown_job", msg=f"no job {job_id!r} on this server "
                                               "(it restarted with another jobs folder?)", job_id=job_id))
                continue
            self.subscribe(client, job_id)
            detail = record.error.get("message", "") if record.error else ""
            status = JobStatus(job_id=job_id, state=record.state, detail=str(detail)[:4096]).to_message()
            status.content["streams"] = {name: info.chunks for name, info in list(record.streams.items())}
            self.send(client, status)
            for (upload_job, name), upload in self.uploads.items():  # continue interrupted uploads
                if upload_job == job_id:
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
        total = sum(spec.nbytes for spec in inputs.values())
        if total > self.limits.max_job_bytes:
            return reject(ValidationError(f"inputs total {total} bytes; this server accepts up to "
                                          f"{self.limits.max_job_bytes} per job", code="too_large"))
        if any(len(spec.shape) == 0 for spec in inputs.values()):
            return reject(ValidationError("inputs must have at least one dimension (send scalars in params)"))
        existing = self.store.get(req.job_id)
        if existing is None:
            unfinished = sum(1 for j in client.jobs if (r := self.store.get(j)) is not None and not r.terminal)
            if unfinished >= self.config.max_jobs_per_client:
                return reject(Recast4DError(f"this client already has {unfinished} unfinished jobs (limit "
                                            f"{self.config.max_jobs_per_client}); wait or cancel one",
                                            code="too_many_jobs", retryable=True))
            try:
                kind = get_job_kind(req.kind)
                if not inputs and kind.validate is not None:
                    kind.validate(req.params, {})
            except Recast4DError as exc:
                return reject(exc)
        try:
            record, created = self.store.create(req.job_id, req.kind, req.params, inputs)
        except JobIdConflict as exc:
            return reject(exc)
        except Recast4DError as exc:
            return reject(exc)
        self.subscribe(client, req.job_id)
        if not created and self.store.retry(req.job_id) is not None:
            created = True  # a retryable failure (e.g. the server stopped mid-job): run it again
            for other in self.clients.values():  # its streams start afresh: senders of the old run go
                for key in [k for k in other.senders if k[0] == req.job_id]:
                    del other.senders[key]
        if not created:  # idempotent: the original reply, then where the job is now
            reply = record.reply or {"job_id": record.job_id, "queue_pos": 0}
            self.send(client, JobAccepted(**reply), parent_id=msg.msg_id)
            self.send(client, JobStatus(job_id=record.job_id, state=record.state))
            for (job_id, name), upload in self.uploads.items():
                if job_id == record.job_id:
                    self.send(client, UploadCredit(job_id=job_id, input=name, ack=upload.received,
                                                   window=upload.window))
            return
        queue_pos = self.worker.queue_length() + (1 if self.worker.current_job else 0)
        reply = {"job_id": req.job_id, "queue_pos": queue_pos}
        self.store.set_reply(req.job_id, reply)
        self.send(client, JobAccepted(**reply), parent_id=msg.msg_id)
        for name in list(record.uploads_pending):  # all inputs for a new job; what is missing for a retry
            spec = inputs[name]
            target = self.store.open_input(req.job_id, name)
            upload = UploadReceiver(req.job_id, name, target, window=self.limits.window)
            if spec.shape[0] == 0:
                self.store.input_complete(req.job_id, name)
                continue
            self.uploads[(req.job_id, name)] = upload
            self.send(client, UploadCredit(job_id=req.job_id, input=name, ack=0, window=upload.window))
        if not self.store.get(req.job_id).uploads_pending:
            self._start_job(req.job_id)

    def _upload_of_ended_job(self: Server, job_id: str) -> bool:
        """True if ``job_id`` already ended (e.g. cancelled): its upload pieces still in flight are
        dropped quietly, not answered with errors."""
        record = self.store.get(job_id)
        return record is not None and record.terminal

    def on_upload_chunk(self: Server, client: ClientState, msg: Message, req: UploadChunk) -> None:
        upload = self.uploads.get((req.job_id, req.input))
        if upload is None:
            if self._upload_of_ended_job(req.job_id):
                return
            raise ValidationError(f"no upload in progress for input {req.input!r} of job {req.job_id!r}",
                                  code="unexpected_upload")
        try:
            upload.write(req.chunk, req.frame_range, req.arrays)
        except ValueError as exc:
            return self._fail_job(req.job_id, ValidationError(str(exc), code="bad_upload"))
        self.send(client, UploadCredit(job_id=req.job_id, input=req.input, ack=upload.received,
                                       window=upload.window))

    def on_upload_end(self: Server, client: ClientState, msg: Message, req: UploadEnd) -> None:
        upload = self.uploads.get((req.job_id, req.input))
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
        if isinstance(upload.target, np.memmap):
            upload.target.flush()
        del self.uploads[(req.job_id, req.input)]
        if not self.store.input_complete(req.job_id, req.input):
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
        for key in [k for k in self.uploads if k[0] == job_id]:
            del self.uploads[key]
        error = _error_dict(exc)
        if self.store.transition(job_id, FAILED, from_states={QUEUED}, error=error):
            self.announce_state(job_id, FAILED, error)

    # ------------------------------------------------------------------ streaming, cancel
    def on_credit(self: Server, client: ClientState, msg: Message, req: Credit) -> None:
        sender = client.senders.get((req.job_id, req.stream))
        if sender is not None:  # stale credit for a finished or unknown stream: a no-op
            sender.grant(req.ack, req.window, max_window=max(self.limits.window, 1) * 16)

    def on_resend(self: Server, client: ClientState, msg: Message, req: Resend) -> None:
        record = self.store.get(req.job_id)
        if record is None:
            raise ValidationError(f"no job {req.job_id!r} on this server", code="unknown_job")
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
        self.subscribe(client, req.job_id)
        if record.terminal:
            log.info("cancel of %s ignored: already %s", req.job_id, record.state)
            return
        self.worker.request_cancel(req.job_id)
        if self.store.transition(req.job_id, CANCELLED, from_states={QUEUED, RUNNING}):
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


