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

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import DiskFull, ValidationError

from .chunks import StoredChunk, read_chunk, write_chunk
from .disk import InputFile, SpaceReserve, disk_full_error, is_disk_full
from .specs import (
    InputSpec,
    params_from_json,
    params_to_json,
    request_digest,
    validate_job_id,
    validate_stream_name,
)

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
TERMINAL_STATES = frozenset({DONE, FAILED, CANCELLED})
ALL_STATES = frozenset({QUEUED, RUNNING}) | TERMINAL_STATES


class JobIdConflict(ValidationError):
    """A job id was submitted again with different parameters."""

    code = "job_id_conflict"


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
    owner: str = ""  # client session that submitted the job
    token: str = ""  # the job's ownership token (job.accepted.token); state.json is server-private

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


def chunk_path(job_dir: Path, stream: str, chunk: int) -> Path:
    """Where chunk ``chunk`` (0-based) of ``stream`` lives inside a job folder."""
    return job_dir / "streams" / stream / f"{chunk:06d}.chunk"


def _atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file, fsync, rename; the temporary file is removed if anything fails."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class JobStore:
    """All jobs under one folder; safe to use from the I/O thread and the worker thread.

    A full disk never takes the server down: writes raise :class:`DiskFull` for the job that
    needed the space. A small reserve file (``.space-reserve``) is given up to write a job's last
    state when nothing else fits; a state that still cannot be written is kept in memory
    (:meth:`finish`) and written by :meth:`flush_unsaved` once space is back. Job folders that
    cannot be read are listed in :attr:`damaged` with the reason, never skipped silently.
    """

    RESERVE_NAME = ".space-reserve"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._unsaved: set[str] = set()
        self._reserve: SpaceReserve | None = None  # made on the first create (listing a store writes nothing)
        #: job folder name -> why it could not be loaded (``recast4d jobs`` lists these).
        self.damaged: dict[str, str] = {}
        self._load_all()

    # ----------------------------------------------------------------- loading / recovery
    def _load_all(self) -> None:
        for job_dir in sorted(self.root.iterdir()):
            if not job_dir.is_dir() or job_dir.name.startswith("."):
                continue
            try:
                record = self._load_record(job_dir)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
                self.damaged[job_dir.name] = reason  # listed as damaged, never fatal
                log.warning("job folder %s is damaged and was not loaded: %s", job_dir, reason)
                continue
            self._jobs[record.job_id] = record

    @staticmethod
    def _load_record(job_dir: Path) -> JobRecord:
        for name in ("request.json", "state.json"):
            if not (job_dir / name).is_file():
                raise FileNotFoundError(f"{name} is missing")
        request = json.loads((job_dir / "request.json").read_text())
        state = json.loads((job_dir / "state.json").read_text())
        if request["job_id"] != job_dir.name:
            raise ValueError(f"request.json names job {request['job_id']!r}, not {job_dir.name!r}")
        record = JobRecord(
            job_id=request["job_id"],
            kind=request["kind"],
            params=params_from_json(request["params"]),
            inputs={k: InputSpec(v["dtype"], tuple(v["shape"])) for k, v in request["inputs"].items()},
            digest=request["digest"],
            state=state["state"],
            error=state.get("error"),
            created=state.get("created", 0.0),
            updated=state.get("updated", 0.0),
            streams={k: StreamInfo(**v) for k, v in state.get("streams", {}).items()},
            reply=state.get("reply", {}),
            uploads_pending=list(state.get("uploads_pending", [])),
            owner=str(state.get("owner", "")),
            token=str(state.get("token", "")),
        )
        if record.state not in ALL_STATES:
            raise ValueError(f"state.json has an unknown state {record.state!r}")
        return record

    def recover(self, keep: Collection[str] = ()) -> list[str]:
        """Mark jobs a previous server left queued/running as failed (retryable); return their ids.

        ``keep``: ids an executor found still running elsewhere (a cluster worker); left as they are.
        """
        recovered = []
        with self._lock:
            for record in self._jobs.values():
                if record.state in (QUEUED, RUNNING) and record.job_id not in keep:
                    error = {"code": "server_restarted", "retryable": True,
                             "message": "the server stopped before this job finished; submit it again"}
                    self._commit(record, FAILED, error, must_persist=False)
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

    def _input_path(self, job_id: str, name: str) -> Path:
        return self.job_dir(job_id) / "inputs" / f"{name}.npy"

    # ----------------------------------------------------------------- create / query
    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[JobRecord]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda r: (r.created, r.job_id))

    def create(
        self, job_id: str, kind: str, params: dict[str, Any], inputs: dict[str, InputSpec], *,
        owner: str = "", token: str = "",
    ) -> tuple[JobRecord, bool]:
        """Create a job folder, or return the existing job for an identical request.

        Returns ``(record, created)``. Raises :class:`JobIdConflict` when ``job_id`` exists with a
        different kind/params/inputs, :class:`DiskFull` when the folder cannot be written (nothing
        is left behind). A folder of that name that holds no loadable job (damaged, or left over)
        is removed first, so the new job starts clean. ``owner`` (client session) and ``token``: who
        submitted it (see ``backend.server.admission.may_access``).
        """
        validate_job_id(job_id)
        try:
            digest = request_digest(kind, params, inputs)
            stored_params = params_to_json(params)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"job params must be plain data (maps, lists, numbers, strings, arrays): "
                                  f"{exc}") from exc
        with self._lock:
            existing = self._jobs.get(job_id)
            if existing is not None:
                if existing.digest != digest:
                    raise JobIdConflict(
                        f"job id {job_id!r} already exists with different parameters; use a new job id"
                    )
                return existing, False
            if self._reserve is None:
                self._reserve = SpaceReserve(self.root / self.RESERVE_NAME)
            if not self._reserve.restore():
                raise DiskFull(f"the server's disk is full (no room in {self.root} for the state of new jobs); "
                               "free some space on the server and submit again")
            job_dir = self.job_dir(job_id)
            if job_dir.exists():  # damaged or left-over folder: a resubmit starts clean
                shutil.rmtree(job_dir, ignore_errors=True)
                self.damaged.pop(job_id, None)
            now = time.time()
            record = JobRecord(
                job_id=job_id, kind=kind, params=params, inputs=inputs, digest=digest,
                created=now, updated=now, uploads_pending=sorted(inputs), owner=owner, token=token,
            )
            try:
                for sub in ("inputs", "outputs", "streams"):
                    (job_dir / sub).mkdir(parents=True, exist_ok=True)
                _atomic_write_json(
                    job_dir / "request.json",
                    {"job_id": job_id, "kind": kind, "params": stored_params, "digest": digest,
                     "inputs": {k: v.to_dict() for k, v in inputs.items()}},
                )
                self._write_state(record)
            except OSError as exc:
                shutil.rmtree(job_dir, ignore_errors=True)
                if is_disk_full(exc):
                    raise disk_full_error(f"the folder of job {job_id!r}", exc) from None
                raise
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
            streams = record.streams
            record.streams = {}
            try:
                self._commit(record, QUEUED, None)
            except DiskFull:
                record.streams = streams
                raise
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
        """Move a job to ``to_state`` if it is in one of ``from_states`` (default: any non-terminal).

        The new state is written to ``state.json`` first and only then taken in memory, so disk and
        memory agree; a state that cannot be written raises :class:`DiskFull` and changes nothing.
        """
        if to_state not in ALL_STATES:
            raise ValueError(f"unknown job state {to_state!r}")
        with self._lock:
            record = self._require(job_id)
            allowed = from_states if from_states is not None else {QUEUED, RUNNING}
            if record.state not in allowed:
                return False
            self._commit(record, to_state, error)
        self.log(job_id, f"state -> {to_state}" + (f" ({error.get('code')}: {error.get('message')})" if error else ""))
        return True

    def finish(
        self, job_id: str, to_state: str, *, from_states: frozenset[str] | set[str] | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """:meth:`transition` to a terminal state that happens even when the disk is full.

        The job has ended whatever the disk says, so its subscribers must hear it: if
        ``state.json`` cannot be written, the state is kept in memory and written by
        :meth:`flush_unsaved` later; on a restart before that, the job is recovered as failed
        (retryable).
        """
        try:
            return self.transition(job_id, to_state, from_states=from_states, error=error)
        except DiskFull as exc:
            with self._lock:
                record = self._require(job_id)
                allowed = from_states if from_states is not None else {QUEUED, RUNNING}
                if record.state not in allowed:
                    return False
                if to_state == FAILED and not error:
                    error = {"code": exc.code, "message": exc.message, "retryable": True}
                self._commit(record, to_state, error, must_persist=False)
            log.error("job %s ended (%s) but its state could not be written: %s", job_id, to_state, exc.message)
            return True

    def flush_unsaved(self) -> list[str]:
        """Write states kept only in memory (disk was full); returns the jobs still unsaved."""
        with self._lock:
            for job_id in sorted(self._unsaved):
                record = self._jobs.get(job_id)
                if record is None:
                    self._unsaved.discard(job_id)
                    continue
                try:
                    self._save_state(record)
                except DiskFull:
                    break
            return sorted(self._unsaved)

    def _commit(self, record: JobRecord, state: str, error: dict[str, Any] | None, *,
                must_persist: bool = True) -> None:
        """Take ``state``/``error`` after writing them; with ``must_persist=False`` keep them in memory
        (for :meth:`flush_unsaved`) when the disk refuses."""
        old = (record.state, record.error)
        record.state, record.error = state, error
        try:
            self._save_state(record)
        except DiskFull:
            if must_persist:
                record.state, record.error = old
                raise
            self._unsaved.add(record.job_id)

    def _require(self, job_id: str) -> JobRecord:
        record = self._jobs.get(job_id)
        if record is None:
            raise ValidationError(f"no job with id {job_id!r}", code="unknown_job")
        return record

    def _write_state(self, record: JobRecord) -> None:
        record.updated = time.time()
        _atomic_write_json(
            self.job_dir(record.job_id) / "state.json",
            {
                "job_id": record.job_id, "state": record.state, "error": record.error,
                "created": record.created, "updated": record.updated,
                "streams": {k: asdict(v) for k, v in record.streams.items()},
                "reply": record.reply, "uploads_pending": record.uploads_pending,
                "owner": record.owner, "token": record.token,
            },
        )

    def _save_state(self, record: JobRecord) -> None:
        """Write ``state.json``; on a full disk give up the space reserve and try once more, then
        raise :class:`DiskFull`."""
        try:
            self._write_state(record)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            if self._reserve is not None and self._reserve.release():
                try:
                    self._write_state(record)
                except OSError as again:
                    if not is_disk_full(again):
                        raise
                    raise disk_full_error(f"the state of job {record.job_id!r}", again) from None
            else:
                raise disk_full_error(f"the state of job {record.job_id!r}", exc) from None
        self._unsaved.discard(record.job_id)

    def log(self, job_id: str, line: str) -> None:
        """Append a timestamped line to the job's ``log.txt`` (skipped when the disk is full)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        try:
            with open(self.job_dir(job_id) / "log.txt", "a") as fh:
                fh.write(f"{stamp} {line}\n")
        except OSError:
            pass

    # ----------------------------------------------------------------- inputs
    def open_input(self, job_id: str, name: str) -> InputFile:
        """Create the ``.npy`` file for a declared input with its space reserved (:class:`DiskFull` if
        it does not fit); chunks are then written with :meth:`InputFile.write_rows`."""
        record = self._require(job_id)
        spec = record.inputs[name]
        return InputFile.create(self._input_path(job_id, name), spec.dtype, spec.shape)

    def input_complete(self, job_id: str, name: str) -> list[str]:
        """Mark input ``name`` uploaded; returns the inputs still pending."""
        with self._lock:
            record = self._require(job_id)
            if name in record.uploads_pending:
                record.uploads_pending.remove(name)
                try:
                    self._save_state(record)
                except DiskFull:
                    record.uploads_pending.append(name)
                    raise
            return list(record.uploads_pending)

    def load_inputs(self, job_id: str) -> dict[str, np.ndarray]:
        """The job's uploaded inputs as read-only arrays (memory-mapped read-only when non-empty)."""
        record = self._require(job_id)
        out: dict[str, np.ndarray] = {}
        for name, spec in record.inputs.items():
            path = self._input_path(job_id, name)
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
            try:
                (self.job_dir(job_id) / "streams" / stream).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if is_disk_full(exc):
                    raise disk_full_error(f"result stream {stream!r} of job {job_id!r}", exc) from None
                raise
            self._save_state(record)

    def append_chunk(self, job_id: str, stream: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> int:
        """Persist the next chunk of ``stream``; returns its index (0-based). :class:`DiskFull` if full."""
        validate_stream_name(stream)
        with self._lock:
            record = self._require(job_id)
            info = record.streams.setdefault(stream, StreamInfo())
            index = info.chunks
            path = self._chunk_path(job_id, stream, index)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            nbytes = write_chunk(path, arrays, meta)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(f"result chunk {index} of stream {stream!r} of job {job_id!r}", exc) from None
            raise
        with self._lock:
            info.chunks = index + 1
            info.bytes += nbytes
            try:
                self._save_state(record)
            except DiskFull:  # the chunk is not recorded: take it back
                info.chunks, info.bytes = index, info.bytes - nbytes
                path.unlink(missing_ok=True)
                raise
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
