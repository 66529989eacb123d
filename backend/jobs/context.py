"""What a running job sees: :class:`JobContext` (params, inputs, progress, cancel, emit)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from backend.progress import CancelFn, ProgressFn
from protocol.errors import Cancelled

from .store import JobStore


class JobEvents(Protocol):
    """Where a context reports to (the server's I/O loop, or nothing when run from the CLI)."""

    def job_progress(self, job_id: str, stage: str, step: int, total: int, message: str) -> None: ...

    def job_stream(self, job_id: str, stream: str, manifest: dict[str, Any]) -> None: ...

    def job_chunk(self, job_id: str, stream: str, chunk: int) -> None: ...


class NullEvents:
    """Events sink that drops everything (CLI runs, tests of a kind's ``run`` alone)."""

    def job_progress(self, job_id: str, stage: str, step: int, total: int, message: str) -> None:
        pass

    def job_stream(self, job_id: str, stream: str, manifest: dict[str, Any]) -> None:
        pass

    def job_chunk(self, job_id: str, stream: str, chunk: int) -> None:
        pass


@dataclass
class JobContext:
    """Handed to ``run(ctx)`` of a job kind, in the worker thread.

    - ``params``: the submitted params (plain data); ``inputs``: uploaded arrays, read-only.
    - ``output_dir``: a folder for files the job writes (kept with the job).
    - ``progress(stage, step, total, message)``: cheap, call often (coalesced to ~10/s on the wire).
    - ``cancel()`` / ``check_cancel()``: poll at step boundaries; ``check_cancel`` raises Cancelled.
    - ``emit(stream, arrays, meta)``: persist one result chunk; it then streams to the client
      under credit flow control. Arrays must be little-endian numeric; they are copied to disk
      before ``emit`` returns, so the caller may reuse them.
    """

    job_id: str
    job_dir: Path
    params: dict[str, Any]
    inputs: dict[str, np.ndarray]
    store: JobStore
    events: JobEvents = field(default_factory=NullEvents)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def output_dir(self) -> Path:
        path = self.job_dir / "outputs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, line: str) -> None:
        """Append a line to the job's ``log.txt``."""
        self.store.log(self.job_id, line)

    def progress(self, stage: str, step: int, total: int, message: str = "") -> None:
        self.events.job_progress(self.job_id, stage, int(step), int(total), str(message))

    def cancel(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("job cancelled")

    def stage_callbacks(self, stage: str) -> tuple[ProgressFn, CancelFn]:
        """``(progress, cancel)`` in the ``backend.progress`` stage convention, labelled ``stage``."""

        def progress(step: int, total: int, message: str = "") -> None:
            self.progress(stage, step, total, message)

        return progress, self.cancel

    def declare_stream(self, stream: str, manifest: dict[str, Any] | None = None) -> None:
        """Announce a stream before its first chunk (optional; ``emit`` declares it with ``{}`` otherwise).

        Manifest keys ``chunks``, ``frames``, ``total_bytes`` (ints) and ``layout`` (map) fill the
        same fields of ``result.begin`` so the client can pre-allocate; every other key (e.g.
        ``filename``) and the contents of ``meta`` go into ``result.begin.meta``.
        """
        self.store.declare_stream(self.job_id, stream, manifest or {})
        self.events.job_stream(self.job_id, stream, manifest or {})

    def emit(self, stream: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> int:
        """Persist the next result chunk of ``stream`` and let the server stream it; returns its index."""
        self.check_cancel()
        record = self.store.get(self.job_id)
        if record is not None and stream not in record.streams:
            self.declare_stream(stream, {})
        index = self.store.append_chunk(self.job_id, stream, arrays, meta or {})
        self.events.job_chunk(self.job_id, stream, index)
        return index


def make_context(
    store: JobStore, job_id: str, events: JobEvents | None = None, cancel_event: threading.Event | None = None
) -> JobContext:
    """Build the context for a stored job (inputs loaded read-only from its folder)."""
    record = store.get(job_id)
    if record is None:
        raise KeyError(job_id)
    return JobContext(
        job_id=job_id,
        job_dir=store.job_dir(job_id),
        params=record.params,
        inputs=store.load_inputs(job_id),
        store=store,
        events=events or NullEvents(),
        cancel_event=cancel_event or threading.Event(),
    )

