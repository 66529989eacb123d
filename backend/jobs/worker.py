"""The worker: one thread that runs queued jobs in FIFO order, never on the I/O loop."""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from protocol.errors import Cancelled, Recast4DError

from .context import JobContext, JobEvents, NullEvents, make_context
from .disk import disk_full_error, is_disk_full
from .registry import get_job_kind
from .store import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobStore

log = logging.getLogger(__name__)


class WorkerEvents(JobEvents, Protocol):
    """Job events plus state changes, reported from the worker thread."""

    def job_state(self, job_id: str, state: str, error: dict[str, Any] | None) -> None: ...


class _NullWorkerEvents(NullEvents):
    def job_state(self, job_id: str, state: str, error: dict[str, Any] | None) -> None:
        pass


class Worker:
    """Runs jobs from a FIFO queue in one thread; cancel flags are set from any thread."""

    def __init__(self, store: JobStore, events: WorkerEvents | None = None) -> None:
        self.store = store
        self.events: WorkerEvents = events or _NullWorkerEvents()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="recast4d-worker", daemon=True)
        self.current_job: str | None = None
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the running job to stop, then join the thread (up to ``timeout`` s)."""
        self._stopping = True
        with self._lock:
            for event in self._cancel.values():
                event.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def enqueue(self, job_id: str) -> int:
        """Queue a job; returns its position (0 = next to run)."""
        with self._lock:
            self._cancel.setdefault(job_id, threading.Event())
        position = self._queue.qsize()
        self._queue.put(job_id)
        return position

    def queue_length(self) -> int:
        return self._queue.qsize()

    def recover(self) -> list[str]:
        """At start-up: jobs a previous server left queued/running cannot resume in this process, so
        they are marked failed (retryable); returns their ids."""
        return self.store.recover()

    def request_cancel(self, job_id: str) -> None:
        """Set the job's cancel flag (seen by ``ctx.cancel()`` at its next check).

        Only jobs handed to :meth:`enqueue` have a flag; a job that never reached the worker (e.g.
        cancelled while its inputs were uploading) is stopped by its state alone, and no flag is
        kept for it forever.
        """
        with self._lock:
            event = self._cancel.get(job_id)
        if event is not None:
            event.set()

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping:
                return
            try:
                self._run_one(job_id)
            except Exception:  # the worker thread must survive anything
                log.exception("worker failed on job %s", job_id)
            finally:
                with self._lock:
                    self._cancel.pop(job_id, None)
                self.current_job = None

    def _run_one(self, job_id: str) -> None:
        with self._lock:
            cancel_event = self._cancel.setdefault(job_id, threading.Event())
        try:
            started = not cancel_event.is_set() and self.store.transition(job_id, RUNNING, from_states={QUEUED})
        except Recast4DError as exc:  # disk full: the job cannot even be marked running
            if self.store.finish(job_id, FAILED, from_states={QUEUED}, error=_error(exc)):
                self.events.job_state(job_id, FAILED, self.store.get(job_id).error)
            return
        if not started:
            return  # cancelled (or otherwise finished) while queued
        self.current_job = job_id
        self.events.job_state(job_id, RUNNING, None)
        record = self.store.get(job_id)
        assert record is not None
        state, error = run_job_kind(record.kind, lambda: make_context(self.store, job_id, self.events, cancel_event))
        if state == CANCELLED and self._stopping:
            state, error = FAILED, {
                "code": "shutting_down", "message": "the server shut down while this job ran", "retryable": True,
            }
        # finish(): the terminal state reaches the subscribers even when state.json cannot be written
        if self.store.finish(job_id, state, from_states={RUNNING}, error=error):
            record = self.store.get(job_id)
            if record is not None:
                state, error = record.state, record.error
            self.events.job_state(job_id, state, error)


def run_job_kind(kind_name: str, make_ctx: Callable[[], JobContext]) -> tuple[str, dict[str, Any] | None]:
    """Run a job of kind ``kind_name`` to its end; returns ``(state, error)`` (done, failed or cancelled).

    The one place that turns what a job raised into its final state and wire error, used by the
    in-process worker and by cluster workers (``backend.executors``) alike: a full disk becomes a
    retryable ``disk_full``; unexpected errors are written to the job's ``log.txt`` with their traceback.
    """
    ctx: JobContext | None = None
    try:
        kind = get_job_kind(kind_name)
        ctx = make_ctx()
        kind.run(ctx)
        if ctx.cancel():
            raise Cancelled("job cancelled")
    except Cancelled:
        return CANCELLED, None
    except Recast4DError as exc:
        return FAILED, _error(exc)
    except MemoryError:
        return FAILED, {"code": "out_of_memory", "message": "the job ran out of memory", "retryable": True}
    except OSError as exc:
        if not is_disk_full(exc):
            return FAILED, _unexpected(ctx, exc)
        full = disk_full_error("the job's outputs", exc)
        return FAILED, {"code": full.code, "message": full.message, "retryable": True}
    except Exception as exc:
        return FAILED, _unexpected(ctx, exc)
    return DONE, None


def _error(exc: Recast4DError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "retryable": exc.retryable}


def _unexpected(ctx: JobContext | None, exc: BaseException) -> dict[str, Any]:
    if ctx is not None:
        ctx.log("unexpected error:\n" + traceback.format_exc())
    return {"code": "internal", "retryable": False,
            "message": f"the job failed unexpectedly: {type(exc).__name__}: {exc} (see the job's log.txt)"}
