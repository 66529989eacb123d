"""Executors: where the server's jobs run.

- ``inprocess`` (default): :class:`backend.jobs.Worker`, one thread in the server process, jobs FIFO
  on this machine's GPU. Nothing to install.
- ``ray``: :class:`backend.executors.ray_cluster.RayExecutor`, jobs run in long-lived Ray actors
  (``num_gpus=1`` each on GPU clusters) that keep engines loaded; results are written by the actor
  into the shared job folder and counted into the server's job store (``docs/farm.md``). Needs
  ``pip install 'recast4d[cluster]'``.

Both offer the same small interface (:class:`Executor`), so the server, its protocol, progress,
streams, resume and cancel do not change with the executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from protocol.errors import ValidationError

if TYPE_CHECKING:
    from backend.jobs import JobStore, WorkerEvents

EXECUTORS = ("inprocess", "ray")


class Executor(Protocol):
    """What the server needs from an executor (all methods are safe to call from the I/O thread)."""

    @property
    def current_job(self) -> str | None:
        """A job running now (None when idle)."""
        ...

    def recover(self) -> list[str]:
        """At start-up, before :meth:`start`: mark jobs a previous server left unfinished that this
        executor cannot resume as failed (retryable); returns their ids."""
        ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...

    def enqueue(self, job_id: str) -> int:
        """Queue a job whose inputs are complete; returns its queue position (0 = next)."""
        ...

    def request_cancel(self, job_id: str) -> None:
        """Ask a queued or running job to stop (the job store already says cancelled)."""
        ...

    def queue_length(self) -> int: ...


@dataclass
class ExecutorOptions:
    """How the server runs jobs (``recast4d serve --executor ...``).

    ``kind``: ``inprocess`` or ``ray``. Ray only: ``ray_address`` of a running cluster (None: start
    a local Ray instance owned by the server, or use the one this process already initialised);
    ``workers``: actors to start (None: one per GPU of the cluster, at least 1); ``gpus_per_worker``
    (None: 1 when the cluster has GPUs, else 0) and ``cpus_per_worker`` are the actors' Ray
    resources; ``pool``: actor name prefix (None: derived from the jobs folder, so a restarted
    server finds its workers); ``cancel_grace_s``: how long a cancelled job may take to stop before
    its actor is killed (and restarted); ``engine_cache``: engines each actor keeps loaded.
    """

    kind: str = "inprocess"
    ray_address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    pool: str | None = None
    cancel_grace_s: float = 30.0
    engine_cache: int = 2

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ValidationError(f"executor {self.kind!r} is unknown; use one of {', '.join(EXECUTORS)}",
                                  code="bad_executor")
        if self.workers is not None and self.workers < 1:
            raise ValidationError(f"--ray-workers must be at least 1, got {self.workers}", code="bad_executor")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ValidationError(f"--ray-gpus-per-worker must be >= 0, got {self.gpus_per_worker}",
                                  code="bad_executor")


def make_executor(options: ExecutorOptions, store: JobStore, events: WorkerEvents | None = None) -> Executor:
    """Build the executor ``options.kind`` over ``store``, reporting to ``events`` (the server)."""
    if options.kind == "ray":
        from .ray_cluster import RayExecutor

        return RayExecutor(store, events, options)
    from .inprocess import InProcessExecutor

    return InProcessExecutor(store, events=events)


__all__ = ["EXECUTORS", "Executor", "ExecutorOptions", "make_executor"]
