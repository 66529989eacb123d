"""The cluster side of the Ray executor: :class:`JobRunner`, the long-lived actor that runs jobs.

One actor runs one job at a time, in a thread, with the same job-kind code and the same
:func:`backend.jobs.worker.run_job_kind` as the in-process worker. Result chunks, output files and
``log.txt`` are written straight into the job's folder in the *shared* jobs folder (the server's
job store, mounted at the same path on every node); what goes back to the server through Ray is
small: "stream declared", "chunk k written (n bytes)", the latest progress and the outcome. The
server follows a job by long-polling :meth:`JobRunner.follow`; events are kept until the server
calls :meth:`JobRunner.release`, so a restarted server replays them from the start and loses
nothing. Engines stay loaded between jobs (:mod:`backend.executors.engine_cache`).

This module does not import Ray: the executor wraps :class:`JobRunner` with ``ray.remote``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.jobs import JobContext, job_kinds, load_job_kind_modules
from backend.jobs.chunks import write_chunk
from backend.jobs.specs import validate_stream_name
from backend.jobs.store import chunk_path
from backend.jobs.worker import run_job_kind

from .engine_cache import active_engine_cache, enable_engine_cache

#: Longest a progress-only update waits before :meth:`JobRunner.follow` returns it (seconds).
PROGRESS_INTERVAL_S = 0.1


@dataclass
class _StreamCounts:
    """What :meth:`JobContext.emit` asks the store for: the streams declared so far."""

    streams: dict[str, int] = field(default_factory=dict)


class RemoteJobFiles:
    """The job-store and job-events surface a :class:`JobContext` uses, on a cluster worker.

    Chunks go to :func:`backend.jobs.store.chunk_path` inside ``job_dir``; each written chunk and
    each declared stream becomes an event for the server; ``state.json`` is never touched here
    (the server owns it).
    """

    def __init__(self, job: RemoteJob) -> None:
        self.job = job
        self.counts = _StreamCounts()

    # --- the JobStore surface
    def get(self, job_id: str) -> _StreamCounts:
        return self.counts

    def declare_stream(self, job_id: str, stream: str, manifest: dict[str, Any]) -> None:
        validate_stream_name(stream)
        (self.job.job_dir / "streams" / stream).mkdir(parents=True, exist_ok=True)
        self.counts.streams.setdefault(stream, 0)

    def append_chunk(self, job_id: str, stream: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> int:
        validate_stream_name(stream)
        index = self.counts.streams.setdefault(stream, 0)
        path = chunk_path(self.job.job_dir, stream, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        nbytes = write_chunk(path, arrays, meta)
        self.counts.streams[stream] = index + 1
        self.job.add_event(("chunk", stream, index, nbytes))
        return index

    def log(self, job_id: str, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        try:
            with open(self.job.job_dir / "log.txt", "a") as fh:
                fh.write(f"{stamp} [worker pid {os.getpid()}] {line}\n")
        except OSError:
            pass

    # --- the JobEvents surface
    def job_progress(self, job_id: str, stage: str, step: int, total: int, message: str) -> None:
        self.job.set_progress((stage, step, total, message))

    def job_stream(self, job_id: str, stream: str, manifest: dict[str, Any]) -> None:
        self.job.add_event(("stream", stream, dict(manifest)))

    def job_chunk(self, job_id: str, stream: str, chunk: int) -> None:
        pass  # reported by append_chunk, with the chunk's size


@dataclass
class RemoteJob:
    """A job on this worker: its events so far, the latest progress, the outcome once it ended."""

    job_id: str
    jobs_root: str
    cond: threading.Condition
    events: list[tuple[Any, ...]] = field(default_factory=list)
    progress: tuple[str, int, int, str] | None = None
    progress_seq: int = 0
    outcome: dict[str, Any] | None = None
    released: bool = False
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def job_dir(self) -> Path:
        return Path(self.jobs_root) / self.job_id

    def add_event(self, event: tuple[Any, ...]) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def set_progress(self, progress: tuple[str, int, int, str]) -> None:
        with self.cond:
            self.progress = progress
            self.progress_seq += 1
            self.cond.notify_all()


def load_job_context(job: RemoteJob, files: RemoteJobFiles) -> JobContext:
    """The context of a stored job, read from its folder (``request.json`` + ``inputs/*.npy``)."""
    request = json.loads((job.job_dir / "request.json").read_text())
    inputs: dict[str, np.ndarray] = {}
    for name, spec in request["inputs"].items():
        path = job.job_dir / "inputs" / f"{name}.npy"
        inputs[name] = np.load(path, mmap_mode="r") if spec.get("nbytes") else np.load(path)
    return JobContext(job_id=job.job_id, job_dir=job.job_dir, params=request["params"], inputs=inputs,
                      store=files,  # type: ignore[arg-type]  # the JobStore surface a context uses
                      events=files, cancel_event=job.cancel_event)


class JobRunner:
    """A Ray actor (threaded, ``max_concurrency`` > 2) that runs one job at a time and reports events.

    ``engine_cache``: engines kept loaded between jobs. A job kind's module is imported the first
    time a job of that kind arrives, so a worker only pays for the pipelines it runs.
    """

    def __init__(self, engine_cache: int = 2) -> None:
        enable_engine_cache(engine_cache)
        self._cond = threading.Condition()
        self._jobs: dict[str, RemoteJob] = {}

    def pid(self) -> int:
        return os.getpid()

    def engine_builds(self) -> int:
        """How many engines this worker process built (stays put while jobs reuse loaded engines)."""
        cache = active_engine_cache()
        return cache.builds if cache is not None else 0

    def status(self) -> list[dict[str, Any]]:
        """The jobs this worker holds (running, or ended and not yet released by a server)."""
        with self._cond:
            return [{"job_id": j.job_id, "jobs_root": j.jobs_root, "ended": j.outcome is not None}
                    for j in self._jobs.values()]

    def start(self, jobs_root: str, job_id: str, kind: str, kind_module: str) -> None:
        """Start ``job_id`` (stored under ``jobs_root``) in a thread; a repeated start is a no-op.

        ``kind_module`` registers ``kind`` (imported here unless the kind is known already).
        """
        if kind not in job_kinds():
            load_job_kind_modules([kind_module])
        with self._cond:
            if job_id in self._jobs:
                return
            busy = [j.job_id for j in self._jobs.values() if j.outcome is None]
            if busy:
                raise RuntimeError(f"this worker is running job {busy[0]!r}; it runs one job at a time")
            job = self._jobs[job_id] = RemoteJob(job_id=job_id, jobs_root=jobs_root, cond=self._cond)
        threading.Thread(target=self._run, args=(job, kind), name=f"recast4d-job-{job_id}", daemon=True).start()

    def _run(self, job: RemoteJob, kind: str) -> None:
        files = RemoteJobFiles(job)
        try:
            state, error = run_job_kind(kind, lambda: load_job_context(job, files))
        except BaseException as exc:  # run_job_kind maps job errors; this is a last resort
            state, error = "failed", {"code": "internal", "message": f"worker error: {exc!r}", "retryable": True}
        with self._cond:
            job.outcome = {"state": state, "error": error}
            if job.released:
                self._jobs.pop(job.job_id, None)
            self._cond.notify_all()

    def follow(self, job_id: str, cursor: int, timeout_s: float = 0.5) -> dict[str, Any]:
        """Events of ``job_id`` after ``cursor``, waiting up to ``timeout_s`` for something new.

        Returns ``{"events", "cursor", "progress", "progress_seq", "outcome"}``, or
        ``{"unknown": True}`` when this worker does not hold the job (it restarted and lost it).
        """
        start = time.monotonic()
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return {"unknown": True}
            seen_progress = job.progress_seq
            while True:
                now = time.monotonic()
                if len(job.events) > cursor or job.outcome is not None or now - start >= timeout_s:
                    break
                if job.progress_seq != seen_progress and now - start >= PROGRESS_INTERVAL_S:
                    break
                wake = start + (PROGRESS_INTERVAL_S if job.progress_seq != seen_progress else timeout_s)
                self._cond.wait(max(0.001, min(wake, start + timeout_s) - now))
            return {"events": job.events[cursor:], "cursor": len(job.events), "progress": job.progress,
                    "progress_seq": job.progress_seq, "outcome": job.outcome}

    def cancel(self, job_id: str) -> bool:
        """Set the job's cancel flag (its next ``ctx.check_cancel()`` stops it); False if unknown."""
        with self._cond:
            job = self._jobs.get(job_id)
        if job is None:
            return False
        job.cancel_event.set()
        return True

    def release(self, job_id: str) -> None:
        """The server has committed the job's outcome: forget it (a running job is cancelled first)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return
            if job.outcome is None:  # still running: stop it, forget it when it ends
                job.released = True
                job.cancel_event.set()
                return
            del self._jobs[job_id]
