"""The Ray executor (server side): jobs run on a Ray cluster, everything the add-on sees stays the same.

``recast4d serve --executor ray [--ray-address ADDR]``. The server keeps its protocol, job store,
progress coalescing, result streaming, resume and cancel; only *where* ``run(ctx)`` executes
changes. The executor starts ``workers`` long-lived :class:`~backend.executors.ray_worker.JobRunner`
actors (``num_gpus=1`` each on a GPU cluster, so Ray places one per GPU) and one *lane* thread per
actor. A lane takes the next queued job, starts it on its actor and follows it: chunk and stream
events are counted into the job store (the chunk files are already in the shared job folder), the
latest progress goes to the server's coalescer, the outcome becomes the job's state.

Faults:
- cancel: the job store says cancelled at once (as today); the actor's cancel flag is set right
  away, and an actor whose job has not stopped after ``cancel_grace_s`` is killed (Ray restarts it).
- a worker process that dies: the job fails with ``worker_died`` (retryable); Ray restarts the
  actor (``max_restarts=-1``) and a resubmit of the same job runs it again.
- a server restart: with an external cluster (``--ray-address``) the actors are detached, so jobs
  keep running while no server is up; the next server on the same jobs folder finds them
  (:meth:`RayExecutor.recover`) and follows them from their first event. With a Ray instance the
  server started itself the cluster stops with it; its jobs are marked failed (retryable).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from typing import Any

from backend.jobs import CANCELLED, FAILED, QUEUED, RUNNING, JobStore, WorkerEvents, get_job_kind
from protocol.errors import Recast4DError

from . import ExecutorOptions
from .ray_worker import JobRunner

log = logging.getLogger("recast4d.executors.ray")

NAMESPACE = "recast4d"
FOLLOW_TIMEOUT_S = 0.5
#: How long a lane waits for an answer from its actor before it counts the actor as gone.
CALL_TIMEOUT_S = 60.0


class RayMissing(Recast4DError):
    """Ray is not installed (``pip install 'recast4d[cluster]'``)."""

    code = "missing_package"


class ClusterUnavailable(Recast4DError):
    """The Ray cluster named by ``--ray-address`` cannot be joined (or a local one cannot start)."""

    code = "cluster_unavailable"


def import_ray() -> Any:
    """``import ray``, or a typed error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayMissing("the ray executor needs Ray: pip install 'recast4d[cluster]' (or run without "
                         "--executor ray)") from exc
    return ray


def default_pool_name(store: JobStore) -> str:
    """Actor name prefix for a jobs folder: a restarted server on the same folder finds its actors."""
    return "recast4d-" + hashlib.sha1(str(store.root.resolve()).encode()).hexdigest()[:10]


def _worker_died(detail: str) -> dict[str, Any]:
    return {"code": "worker_died", "message": f"the cluster worker running this job stopped ({detail}); "
            "submit the job again to run it on a live worker", "retryable": True}


class RayExecutor:
    """Runs the server's jobs on Ray actors; the :class:`backend.executors.Executor` interface."""

    def __init__(self, store: JobStore, events: WorkerEvents | None, options: ExecutorOptions) -> None:
        from backend.jobs.worker import _NullWorkerEvents

        self.ray = ray = import_ray()
        self.store = store
        self.events: WorkerEvents = events or _NullWorkerEvents()
        self.options = options
        self.owns_ray = False
        if not ray.is_initialized():
            try:
                if options.ray_address:
                    ray.init(address=options.ray_address, namespace=NAMESPACE, log_to_driver=False)
                else:
                    ray.init(namespace=NAMESPACE, include_dashboard=False, log_to_driver=False)
                    self.owns_ray = True
            except Exception as exc:  # unreachable address, a Ray version mismatch, no permission...
                where = f"the Ray cluster at {options.ray_address}" if options.ray_address else "a local Ray instance"
                raise ClusterUnavailable(f"cannot use {where}: {type(exc).__name__}: {str(exc)[:500]}; check "
                                         "--ray-address (the head's host:port, as printed by `ray start --head`)"
                                         ) from exc
        # Actors outlive this server only on a cluster it did not start.
        self.detached = not self.owns_ray
        resources = ray.cluster_resources()
        gpus = options.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
            if not gpus:
                log.warning("the Ray cluster has no GPUs: workers run on CPU (num_gpus=0)")
        workers = options.workers or max(1, int(resources.get("GPU", 0) // gpus) if gpus else 1)
        self.pool = options.pool or default_pool_name(store)
        runtime_env = {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}} if os.environ.get("PYTHONPATH") else None
        remote_class = ray.remote(JobRunner)
        self.actors = []
        for index in range(workers):
            actor_options: dict[str, Any] = {
                "name": f"{self.pool}-{index}", "namespace": NAMESPACE, "get_if_exists": True,
                "max_restarts": -1, "max_task_retries": 0, "max_concurrency": 8,
                "num_gpus": gpus, "num_cpus": options.cpus_per_worker,
            }
            if self.detached:
                actor_options["lifetime"] = "detached"
            if runtime_env:
                actor_options["runtime_env"] = runtime_env
            self.actors.append(remote_class.options(**actor_options).remote(options.engine_cache))
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}
        self._running: dict[str, int] = {}  # job id -> actor index
        self._adopted: dict[int, str] = {}  # actor index -> job found running there at start-up
        self._stopping = threading.Event()
        self._lanes = [threading.Thread(target=self._lane, args=(i,), name=f"recast4d-ray-lane-{i}", daemon=True)
                       for i in range(workers)]
        log.info("ray executor: %d worker(s) '%s-*' (num_gpus=%s, num_cpus=%s)", workers, self.pool, gpus,
                 options.cpus_per_worker)

    # ------------------------------------------------------------------ the Executor interface
    @property
    def current_job(self) -> str | None:
        with self._lock:
            return next(iter(self._running), None)

    def queue_length(self) -> int:
        return self._queue.qsize()

    def recover(self) -> list[str]:
        """Adopt jobs of this jobs folder still held by the actors; mark the other unfinished ones retryable."""
        root = str(self.store.root.resolve())
        keep: set[str] = set()
        for index, actor in enumerate(self.actors):
            try:
                held = self.ray.get(actor.status.remote(), timeout=CALL_TIMEOUT_S)
            except Exception as exc:
                log.warning("worker %d did not answer at start-up: %s", index, exc)
                continue
            for job in held:
                if job["jobs_root"] != root:
                    continue
                record = self.store.get(job["job_id"])
                if record is not None and record.state == RUNNING and index not in self._adopted:
                    keep.add(job["job_id"])
                    self._adopted[index] = job["job_id"]
                    log.info("job %s is still running on worker %d: following it again", job["job_id"], index)
                else:
                    actor.release.remote(job["job_id"])
        return self.store.recover(keep=keep)

    def start(self) -> None:
        for lane in self._lanes:
            lane.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the lanes. On a cluster the server started, running jobs are cancelled and marked
        failed (retryable) and Ray is shut down; on an external cluster they keep running for the
        next server on this jobs folder."""
        self._stopping.set()
        if not self.detached:
            with self._lock:
                running = dict(self._running)
                for event in self._cancel.values():
                    event.set()
            for job_id, index in running.items():
                self.actors[index].cancel.remote(job_id)
        for _ in self._lanes:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for lane in self._lanes:
            if lane.is_alive():
                lane.join(max(0.0, deadline - time.monotonic()))
        if self.owns_ray:
            self.ray.shutdown()

    def enqueue(self, job_id: str) -> int:
        with self._lock:
            self._cancel.setdefault(job_id, threading.Event())
        position = self._queue.qsize()
        self._queue.put(job_id)
        return position

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            event = self._cancel.get(job_id)
            index = self._running.get(job_id)
        if event is not None:
            event.set()
        if index is not None:
            self.actors[index].cancel.remote(job_id)  # reaches the job at once, not at the next poll

    # ------------------------------------------------------------------ lanes
    def _lane(self, index: int) -> None:
        adopted = self._adopted.pop(index, None)
        if adopted is not None:
            self._guarded(index, adopted, adopt=True)
        while not self._stopping.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            self._guarded(index, job_id, adopt=False)

    def _guarded(self, index: int, job_id: str, *, adopt: bool) -> None:
        try:
            self._run_on(index, job_id, adopt=adopt)
        except Exception:  # a lane must survive anything
            log.exception("ray lane %d failed on job %s", index, job_id)
        finally:
            with self._lock:
                self._running.pop(job_id, None)
                self._cancel.pop(job_id, None)

    def _run_on(self, index: int, job_id: str, *, adopt: bool) -> None:
        with self._lock:
            cancel_event = self._cancel.setdefault(job_id, threading.Event())
        record = self.store.get(job_id)
        if record is None:
            return
        if not adopt:
            if cancel_event.is_set() or not self.store.transition(job_id, RUNNING, from_states={QUEUED}):
                return  # cancelled (or otherwise finished) while queued
            self.events.job_state(job_id, RUNNING, None)
        with self._lock:
            self._running[job_id] = index
        actor = self.actors[index]
        try:
            if not adopt:
                kind_module = get_job_kind(record.kind).run.__module__  # the worker imports it if needed
                self._call(actor.start, str(self.store.root.resolve()), job_id, record.kind, kind_module)
            outcome = self._follow(index, job_id, cancel_event)
        except Exception as exc:
            outcome = self._fault_outcome(exc)
        if outcome is None:
            return  # the server is stopping; the job runs on, the next server follows it
        state, error = outcome
        if state == CANCELLED and self._stopping.is_set():
            state, error = FAILED, {"code": "shutting_down", "message": "the server shut down while this job ran",
                                    "retryable": True}
        # finish(): the terminal state reaches the subscribers even when state.json cannot be written
        if self.store.finish(job_id, state, from_states={RUNNING}, error=error):
            record = self.store.get(job_id)
            if record is not None:
                state, error = record.state, record.error
            self.events.job_state(job_id, state, error)
        actor.release.remote(job_id)

    def _call(self, method: Any, *args: Any) -> Any:
        """``ray.get(method.remote(*args))``, retried while the actor is unreachable or restarting
        (up to ``CALL_TIMEOUT_S``): a restarted actor answers ``follow`` with "unknown job", which
        fails the job; a worker that is only slow to answer keeps its job."""
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            try:
                return self.ray.get(method.remote(*args), timeout=max(0.1, deadline - time.monotonic()))
            except self.ray.exceptions.ActorUnavailableError:
                if time.monotonic() >= deadline or (self._stopping.is_set() and self.detached):
                    raise
                time.sleep(0.2)

    def _fault_outcome(self, exc: Exception) -> tuple[str, dict[str, Any]]:
        ray_exceptions = self.ray.exceptions
        if isinstance(exc, ray_exceptions.RayActorError | ray_exceptions.GetTimeoutError):
            log.warning("ray worker lost: %s", exc)
            return FAILED, _worker_died(type(exc).__name__)
        log.error("ray call failed: %s", exc)
        return FAILED, {"code": "internal", "message": f"the cluster call failed: {type(exc).__name__}: "
                        f"{str(exc)[:500]}", "retryable": True}

    def _follow(self, index: int, job_id: str, cancel_event: threading.Event) -> tuple[str, Any] | None:
        """Apply the actor's events for ``job_id`` until it ends; None when the server stops first."""
        actor = self.actors[index]
        cursor, progress_seq, cancel_sent = 0, 0, None
        while True:
            if self._stopping.is_set() and self.detached:
                return None
            if cancel_event.is_set():
                now = time.monotonic()
                if cancel_sent is None:
                    actor.cancel.remote(job_id)
                    cancel_sent = now
                elif now - cancel_sent > self.options.cancel_grace_s:
                    log.warning("job %s ignored its cancel for %.0f s: restarting its worker", job_id,
                                self.options.cancel_grace_s)
                    self.ray.kill(actor, no_restart=False)
                    return CANCELLED, None
            reply = self._call(actor.follow, job_id, cursor, FOLLOW_TIMEOUT_S)
            if reply.get("unknown"):
                return FAILED, _worker_died("it restarted and no longer holds the job")
            for event in reply["events"]:
                self._apply(job_id, event)
            cursor = reply["cursor"]
            if reply["progress"] is not None and reply["progress_seq"] != progress_seq:
                progress_seq = reply["progress_seq"]
                self.events.job_progress(job_id, *reply["progress"])
            if reply["outcome"] is not None:
                return reply["outcome"]["state"], reply["outcome"]["error"]

    def _apply(self, job_id: str, event: tuple[Any, ...]) -> None:
        if event[0] == "stream":
            _, stream, manifest = event
            self.store.declare_stream(job_id, stream, manifest)
            self.events.job_stream(job_id, stream, manifest)
        elif event[0] == "chunk":
            _, stream, chunk, nbytes = event
            if self.store.record_chunk(job_id, stream, chunk, nbytes):
                self.events.job_chunk(job_id, stream, chunk)
