"""What a new job must pass at submit, before any record or folder exists, and who may touch a job.

:func:`admit_new_job` checks, in order: declared input extents (:func:`backend.jobs.check_input_specs`),
the client's unfinished-job quota, the server-wide cap on open uploads, the job kind, paths a
client may not choose (:func:`backend.pipelines.fields.refuse_client_paths`) and the kind's own
``validate(params, inputs)`` run on zero-memory stand-ins of the declared inputs, so a bad field
is an error naming it before anything is uploaded. Every refusal is a typed
:class:`protocol.errors.Recast4DError`.

Ownership: a job belongs to the client session that submitted it. Another session may read its
results (``hello.resume_jobs``, ``resend``) or cancel it only with the job's token
(``job.accepted.token``); inputs are only ever uploaded by the owning session.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from backend.jobs import InputSpec, JobRecord, check_input_specs, get_job_kind
from protocol.errors import Recast4DError, ValidationError
from protocol.messages import JobSubmit

from .flow import ClientState

if TYPE_CHECKING:
    from .app import Server


class NotOwner(ValidationError):
    """The job belongs to another client (and no valid token was sent)."""

    code = "not_owner"


def may_access(record: JobRecord, session: str, token: str = "") -> bool:
    """True for the owning session, or anyone presenting the job's token (jobs of old servers: anyone)."""
    if not record.owner:
        return True
    if session == record.owner:
        return True
    return bool(token) and bool(record.token) and hmac.compare_digest(token, record.token)


def admit_new_job(server: Server, client: ClientState, req: JobSubmit, inputs: dict[str, InputSpec]) -> None:
    """Raise a typed error if the new job ``req`` cannot be taken; nothing is recorded either way."""
    limits = server.limits
    check_input_specs(inputs, max_job_bytes=limits.max_job_bytes, max_frame_bytes=limits.max_frame_bytes)
    unfinished = sum(1 for j in client.jobs if (r := server.store.get(j)) is not None and not r.terminal)
    if unfinished >= server.config.max_jobs_per_client:
        raise Recast4DError(f"this client already has {unfinished} unfinished jobs (limit "
                            f"{server.config.max_jobs_per_client}); wait or cancel one",
                            code="too_many_jobs", retryable=True)
    uploads = sum(1 for spec in inputs.values() if spec.shape[0] > 0)
    if uploads and len(server.uploads) + uploads > server.config.max_open_uploads:
        raise Recast4DError(f"the server is receiving {len(server.uploads)} inputs already (limit "
                            f"{server.config.max_open_uploads}); submit again in a moment",
                            code="too_many_uploads", retryable=True)
    kind = get_job_kind(req.kind)
    from backend.pipelines.fields import refuse_client_paths, stand_in_inputs

    refuse_client_paths(req.params)
    if kind.validate is None:
        return
    stand_ins = stand_in_inputs({name: (spec.dtype, spec.shape) for name, spec in inputs.items()})
    try:
        kind.validate(req.params, stand_ins)
    except Recast4DError:
        raise
    except Exception as exc:  # a validator's own bug: still a typed refusal, never "internal"
        raise ValidationError(f"params of job kind {req.kind!r} are not usable: {type(exc).__name__}: "
                              f"{str(exc)[:300]}") from None
