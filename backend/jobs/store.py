"""The job store: one folder per job on disk, so a server restart loses nothing.

Layout of ``<jobs_dir>/<job_id>/``::

    request.json     kind, params, declared inputs {name: {dtype, shape, nbytes}}, params digest
    inputs/<name>.npy  uploaded input arrays (written in place while chunks arrive)
    state.json       state, error, per-stream chunk counts, the original submit reply (atomic writes)
    outputs/         files a job writes (USD, PLY, videos: ``JobContext.output_dir``)
    streams/<stream>/<chunk:06d>.chunk  result chunks, persisted before they are streamed
    log.txt          a human-readable log of the job

States: ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled``. On start-up,
:meth:`JobStore.recover` turns jobs left ``queued`` or ``running`` by a previous server into
``failed`` with ``retryable=True``. Every transition goes through :meth:`JobStore.transition`, a
compare-and-set under one lock, so a cancel racing the worker's finish resolves to whichever
committed first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import ValidationError

from .chunks import ALLOWED_DTYPES, StoredChunk, read_chunk, write_chunk

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
TERMINAL_STATES = frozenset({DONE, FAILED, CANCELLED})
ALL_STATES = frozenset({QUEUED, RUNNING}) | TERMINAL_STATES
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_STREAM_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class JobIdConflict(ValidationError):
    """A job id was submitted again with different parameters."""

    code = "job_id_conflict"


@dataclass(frozen=True)
class InputSpec:
    """A declared input array: little-endian numeric ``dtype`` string, ``shape``, byte size."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape), "nbytes": self.nbytes}


@dataclass
class StreamInfo:
    """A result stream of a job: chunks persisted so far, their bytes, the optional manifest."""

    chunks: int = 0
    bytes: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobRecord:
    """What the store knows about a job (mirrors ``state.json`` plus the request)."""

    job_id: str
    kind: str
    params: dict[str, Any]
    inputs: dict[str, InputSpec]
    digest: str
    state: str = QUEUED
    error: dict[str, Any] | None = None
    created: float = 0.0
    updated: float = 0.0
    streams: dict[str, StreamInfo] = field(default_factory=dict)
    reply: dict[str, Any] = field(default_factory=dict)
    uploads_pending: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def summary(self) -> dict[str, Any]:
        """A small dict for listings (CLI ``jobs``, ``pong``)."""
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "state": self.state,
            "error": self.error,
            "created": self.created,
            "updated": self.updated,
            "streams": {name: {"chunks": s.chunks, "bytes": s.bytes} for name, s in self.streams.items()},
        }


def validate_job_id(job_id: object) -> str:
    """Job ids name folders: 1-128 chars of ``[A-Za-z0-9_.-]``, not starting with a dot or dash."""
    if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
        raise ValidationError(
            f"job id {job_id!r} is not usable: use 1-128 letters, digits, '_', '.', '-' (not starting with '.' or '-')",
            code="bad_job_id",
        )
    return job_id


def validate_stream_name(stream: object) -> str:
    if not isinstance(stream, str) or not _STREAM_RE.match(stream):
        raise ValidationError(f"stream name {stream!r} is not usable: use up to 64 of [A-Za-z0-9_.-]")
    return stream


def parse_input_specs(inputs: object, *, max_job_bytes: int) -> dict[str, InputSpec]:
    """Check declared inputs ``{name: {dtype, shape, ...}}`` before anything is allocated."""
    if inputs is None:
        return {}
    if not isinstance(inputs, dict):
        raise ValidationError("inputs must be a map {name: {dtype, shape, nbytes}}")
    specs: dict[str, InputSpec] = {}
    total = 0
    for name, desc in inputs.items():
        validate_stream_name(name)
        if not isinstance(desc, dict):
            raise ValidationError(f"input {name!r} must be described as {{dtype, shape, nbytes}}")
        dtype = desc.get("dtype")
        shape = desc.get("shape")
        if dtype not in ALLOWED_DTYPES:
            raise ValidationError(f"input {name!r} has dtype {dtype!r}; allowed: {', '.join(sorted(ALLOWED_DTYPES))}")
        if (
            not isinstance(shape, list | tuple)
            or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 2**40 for d in shape)
        ):
            raise ValidationError(f"input {name!r} has an unusable shape {shape!r} (up to 8 non-negative ints)")
        spec = InputSpec(dtype=dtype, shape=tuple(shape))
        nbytes = spec.nbytes
        if "nbytes" in desc and desc["nbytes"] != nbytes:
            raise ValidationError(f"input {name!r} declares {desc['nbytes']} bytes but shape x itemsize = {nbytes}")
        total += nbytes
        if total > max_job_bytes:
            raise ValidationError(
                f"inputs add up to more than the per-job limit of {max_job_bytes} bytes", code="too_large"
            )
        specs[name] = spec
    return specs


def request_digest(kind: str, params: dict[str, Any], inputs: dict[str, InputSpec]) -> str:
    """A stable hash of what was asked (kind, params, declared inputs) for idempotent submit."""
    canonical = json.dumps(
        {"kind": kind, "params": params, "inputs": {k: v.to_dict() for k, v in sorted(inputs.items())}},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def chunk_path(job_dir: Path, stream: str, chunk: int) -> Path:
    """Where chunk ``chunk`` (0-based) of ``stream`` lives inside a job folder."""
    return job_dir / "streams" / stream / f"{chunk:06d}.chunk"


def _atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class JobStore:
    """All jobs under one folder; safe to use from the I/O thread and the worker thread."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._load_all()

    # ----------------------------------------------------------------- loading / recovery
    def _load_all(self) -> None:
        for job_dir in sorted(self.root.iterdir()):
            if not (job_dir / "request.json").is_file() or not (job_dir / "state.json").is_file():
                continue
            try:
                request = json.loads((job_dir / "request.json").read_text())
                state = json.loads((job_dir / "state.json").read_text())
                record = JobRecord(
                    job_id=request["job_id"],
                    kind=request["kind"],
                    params=request["params"],
                    inputs={k: InputSpec(v["dtype"], tuple(v["shape"])) for k, v in request["inputs"].items()},
                    digest=request["digest"],
                    state=state["state"],
                    error=state.get("error"),
                    created=state.get("created", 0.0),
                    updated=state.get("updated", 0.0),
                    streams={k: StreamInfo(**v) for k, v in state.get("streams", {}).items()},
                    reply=state.get("reply", {}),
                    uploads_pending=list(state.get("uploads_pending", [])),
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged folder is skipped, never fatal
            self._jobs[record.job_id] = record

    def recover(self, keep: Collection[str] = ()) -> list[str]:
        """Mark jobs a previous server left queued/running as failed (retryable); return their ids.

        ``keep``: ids an executor found still running elsewhere (a cluster worker); left as they are.
        """
        recovered = []
        with self._lock:
            for record in self._jobs.values():
                if record.state in (QUEUED, RUNNING) and record.job_id not in keep:
                    record.state = FAILED
                    record.error = {
                        "code": "server_restarted",
                        "message": "the server stopped before this job finished; submit it again",
                        "retryable": True,
                    }
                    self._save_state(record)
                    self.log(record.job_id, "marked failed (retryable): server restarted")
                    recovered.append(record.job_id)
        return recovered

    # ----------------------------------------------------------------- paths
    def job_dir(self, job_id: str) -> Path:
        return self.root / validate_job_id(job_id)

    def output_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "outputs"

    def _chunk_path(self, job_id: str, stream: str, chunk: int) -> Path:
        return chunk_path(self.job_dir(job_id), stream, chunk)

    # ----------------------------------------------------------------- create / query
    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[JobRecord]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda r: (r.created, r.job_id))

    def create(
        self, job_id: str, kind: str, params: dict[str, Any], inputs: dict[str, InputSpec]
    ) -> tuple[JobRecord, bool]:
        """Create a job folder, or return the existing job for an identical request.

        Returns ``(record, created)``. Raises :class:`JobIdConflict` when ``job_id`` exists with a
        different kind/params/inputs.
        """
        validate_job_id(job_id)
        try:
            digest = request_digest(kind, params, inputs)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"job params must be plain data (maps, lists, numbers, strings): {exc}") from exc
        with self._lock:
            existing = self._jobs.get(job_id)
            if existing is not None:
                if existing.digest != digest:
                    raise JobIdConflict(
                        f"job id {job_id!r} already exists with different parameters; use a new job id"
                    )
                return existing, False
            job_dir = self.job_dir(job_id)
            for sub in ("inputs", "outputs", "streams"):
                (job_dir / sub).mkdir(parents=True, exist_ok=True)
            now = time.time()
            record = JobRecord(
                job_id=job_id, kind=kind, params=params, inputs=inputs, digest=digest,
                created=now, updated=now, uploads_pending=sorted(inputs),
            )
            _atomic_write_json(
                job_dir / "request.json",
                {"job_id": job_id, "kind": kind, "params": params, "digest": digest,
                 "inputs": {k: v.to_dict() for k, v in inputs.items()}},
            )
            self._save_state(record)
            self._jobs[job_id] = record
            self.log(job_id, f"created kind={kind} inputs={sorted(inputs)}")
            return record, True

    def retry(self, job_id: str) -> JobRecord | None:
        """Queue a job that failed with a *retryable* error (e.g. the server stopped mid-job) again.

        What was uploaded stays (``uploads_pending`` still lists what was not); its outputs and
        result streams start afresh. Returns the record, or None if the job is not retryable.
        """
        with self._lock:
            record = self._require(job_id)
            if record.state != FAILED or not (record.error or {}).get("retryable"):
                return None
            job_dir = self.job_dir(job_id)
            for sub in ("outputs", "streams"):
                shutil.rmtree(job_dir / sub, ignore_errors=True)
                (job_dir / sub).mkdir(parents=True, exist_ok=True)
            record.state, record.error, record.streams = QUEUED, None, {}
            self._save_state(record)
        self.log(job_id, "resubmitted: queued again after a retryable failure")
        return record

    def set_reply(self, job_id: str, reply: dict[str, Any]) -> None:
        """Remember the reply to the first submit, returned again for duplicate submits."""
        with self._lock:
            record = self._require(job_id)
            record.reply = dict(reply)
            self._save_state(record)

    # ----------------------------------------------------------------- state
    def transition(
        self, job_id: str, to_state: str, *, from_states: frozenset[str] | set[str] | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Move a job to ``to_state`` if it is in one of ``from_states`` (default: any non-terminal)."""
        if to_state not in ALL_STATES:
            raise ValueError(f"unknown job state {to_state!r}")
        with self._lock:
            record = self._require(job_id)
            allowed = from_states if from_states is not None else {QUEUED, RUNNING}
            if record.state not in allowed:
                return False
            record.state = to_state
            record.error = error
            self._save_state(record)
        self.log(job_id, f"state -> {to_state}" + (f" ({error.get('code')}: {error.get('message')})" if error else ""))
        return True

    def _require(self, job_id: str) -> JobRecord:
        record = self._jobs.get(job_id)
        if record is None:
            raise ValidationError(f"no job with id {job_id!r}", code="unknown_job")
        return record

    def _save_state(self, record: JobRecord) -> None:
        record.updated = time.time()
        _atomic_write_json(
            self.job_dir(record.job_id) / "state.json",
            {
                "job_id": record.job_id, "state": record.state, "error": record.error,
                "created": record.created, "updated": record.updated,
                "streams": {k: asdict(v) for k, v in record.streams.items()},
                "reply": record.reply, "uploads_pending": record.uploads_pending,
            },
        )

    def log(self, job_id: str, line: str) -> None:
        """Append a timestamped line to the job's ``log.txt``."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        try:
            with open(self.job_dir(job_id) / "log.txt", "a") as fh:
                fh.write(f"{stamp} {line}\n")
        except OSError:
            pass

    # ----------------------------------------------------------------- inputs
    def open_input(self, job_id: str, name: str) -> np.memmap | np.ndarray:
        """Create the ``.npy`` file for a declared input and return it writable (memory-mapped)."""
        record = self._require(job_id)
        spec = record.inputs[name]
        path = self.job_dir(job_id) / "inputs" / f"{name}.npy"
        if spec.nbytes == 0:
            arr = np.empty(spec.shape, dtype=spec.dtype)
            np.save(path, arr)
            return arr
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(spec.dtype), shape=spec.shape)

    def input_complete(self, job_id: str, name: str) -> list[str]:
        """Mark input ``name`` uploaded; returns the inputs still pending."""
        with self._lock:
            record = self._require(job_id)
            if name in record.uploads_pending:
                record.uploads_pending.remove(name)
                self._save_state(record)
            return list(record.uploads_pending)

    def load_inputs(self, job_id: str) -> dict[str, np.ndarray]:
        """The job's uploaded inputs as read-only arrays (memory-mapped when non-empty)."""
        record = self._require(job_id)
        out: dict[str, np.ndarray] = {}
        for name, spec in record.inputs.items():
            path = self.job_dir(job_id) / "inputs" / f"{name}.npy"
            arr = np.load(path, mmap_mode="r") if spec.nbytes else np.load(path)
            out[name] = arr
        return out

    # ----------------------------------------------------------------- result streams
    def declare_stream(self, job_id: str, stream: str, manifest: dict[str, Any]) -> None:
        validate_stream_name(stream)
        with self._lock:
            record = self._require(job_id)
            info = record.streams.setdefault(stream, StreamInfo())
            info.manifest = dict(manifest)
            (self.job_dir(job_id) / "streams" / stream).mkdir(parents=True, exist_ok=True)
            self._save_state(record)

    def append_chunk(self, job_id: str, stream: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> int:
        """Persist the next chunk of ``stream``; returns its index (0-based)."""
        validate_stream_name(stream)
        with self._lock:
            record = self._require(job_id)
            info = record.streams.setdefault(stream, StreamInfo())
            index = info.chunks
            path = self._chunk_path(job_id, stream, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        nbytes = write_chunk(path, arrays, meta)
        with self._lock:
            info.chunks = index + 1
            info.bytes += nbytes
            self._save_state(record)
        return index

    def record_chunk(self, job_id: str, stream: str, chunk: int, nbytes: int) -> bool:
        """Count chunk ``chunk`` of ``stream`` that another process (a cluster worker) already wrote
        into this job's folder at :func:`chunk_path`. Returns False for a chunk counted before (a
        replay after a server restart); raises ValueError for a gap or a missing file."""
        validate_stream_name(stream)
        with self._lock:
            record = self._require(job_id)
            info = record.streams.setdefault(stream, StreamInfo())
            if chunk < info.chunks:
                return False
            if chunk > info.chunks:
                raise ValueError(f"chunk {chunk} of stream {stream!r} of job {job_id!r} reported before chunk "
                                 f"{info.chunks}")
            if not self._chunk_path(job_id, stream, chunk).is_file():
                raise ValueError(f"chunk {chunk} of stream {stream!r} of job {job_id!r} is not in the job folder "
                                 f"{self.job_dir(job_id)} (do the cluster workers see the same jobs folder?)")
            info.chunks = chunk + 1
            info.bytes += int(nbytes)
            self._save_state(record)
        return True

    def read_chunk(self, job_id: str, stream: str, chunk: int) -> StoredChunk:
        return read_chunk(self._chunk_path(job_id, validate_stream_name(stream), chunk))
