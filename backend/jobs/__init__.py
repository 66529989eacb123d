"""Jobs: the on-disk job store, the job-kind registry, the job context and the worker thread.

See :mod:`backend.jobs.registry` for how a pipeline registers a job kind.
"""

from .chunks import StoredChunk
from .context import JobContext, JobEvents, NullEvents, make_context
from .registry import (
    JOB_KIND_MODULES,
    JobKind,
    get_job_kind,
    job_kinds,
    load_job_kind_modules,
    register_job_kind,
    unregister_job_kind,
)
from .specs import InputSpec, check_input_specs, parse_input_specs, validate_job_id, validate_name
from .store import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    TERMINAL_STATES,
    JobIdConflict,
    JobRecord,
    JobStore,
    StreamInfo,
)
from .worker import Worker, WorkerEvents

__all__ = [
    "CANCELLED", "DONE", "FAILED", "JOB_KIND_MODULES", "QUEUED", "RUNNING", "TERMINAL_STATES",
    "InputSpec", "JobContext", "JobEvents", "JobIdConflict", "JobKind", "JobRecord", "JobStore",
    "NullEvents", "StoredChunk", "StreamInfo", "Worker", "WorkerEvents", "get_job_kind", "job_kinds",
    "check_input_specs", "load_job_kind_modules", "make_context", "parse_input_specs", "register_job_kind",
    "unregister_job_kind", "validate_job_id", "validate_name",
]
