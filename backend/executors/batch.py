"""``recast4d batch JOB.json...``: many shots in one go, progress per job, one summary, resumable.

    recast4d batch shots/*.json [--jobs-dir DIR] [--executor ray [--ray-address ADDR]]

Each job file (:mod:`backend.executors.job_file`) becomes a job in a job store (``--jobs-dir``,
default the server's), with a stable id, so running the same command again after an interruption
skips the jobs that are done, re-runs the ones that were interrupted (failed, retryable) and
continues the rest. Jobs run on the chosen executor exactly as the server runs them: the in-process
worker (one at a time) or Ray workers (one per GPU of the cluster, at once). Output files are in
``<jobs-dir>/<job_id>/outputs`` and copied to the job file's ``out`` folder when it names one.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.errors import Recast4DError, ValidationError

from .job_file import JobFile, read_job_file

#: Seconds between two progress lines of one job.
PROGRESS_LINE_INTERVAL_S = 2.0


@dataclass
class BatchOutcome:
    """How one job of a batch ended: ``state`` done/failed/cancelled, ``seconds`` of this run."""

    job_id: str
    kind: str
    state: str
    seconds: float
    detail: str


class BatchEvents:
    """Executor events of a batch: progress lines (throttled per job) and a queue of state changes."""

    def __init__(self, stream: Any = None) -> None:
        self.out = stream or sys.stderr
        self.states: queue.SimpleQueue[tuple[str, str, dict[str, Any] | None]] = queue.SimpleQueue()
        self._last: dict[str, tuple[float, str]] = {}

    def job_progress(self, job_id: str, stage: str, step: int, total: int, message: str) -> None:
        now = time.monotonic()
        last_time, last_stage = self._last.get(job_id, (0.0, ""))
        if stage == last_stage and now - last_time < PROGRESS_LINE_INTERVAL_S and step < total:
            return
        self._last[job_id] = (now, stage)
        print(f"  {job_id}: {stage} {step}/{total} {message}".rstrip(), file=self.out, flush=True)

    def job_stream(self, job_id: str, stream: str, manifest: dict[str, Any]) -> None:
        pass

    def job_chunk(self, job_id: str, stream: str, chunk: int) -> None:
        pass

    def job_state(self, job_id: str, state: str, error: dict[str, Any] | None) -> None:
        self.states.put((job_id, state, error))


def run_batch(job_files: list[JobFile], jobs_dir: Path, executor_options: Any, *, out: Any = None,
              job_kind_modules: list[str] | None = None) -> list[BatchOutcome]:
    """Run ``job_files`` to their end on the executor; returns one outcome per job, in order.

    Jobs already done in ``jobs_dir`` are skipped; interrupted ones (failed, retryable) run again.
    ``job_kind_modules``: modules registering the job kinds (default: the built-in pipelines).
    ``out``: where progress lines go (default stderr).
    """
    from backend.executors import make_executor
    from backend.jobs import DONE, FAILED, QUEUED, TERMINAL_STATES, JobStore
    from backend.jobs import load_job_kind_modules as load_kinds
    from backend.server.app import lock_jobs_dir

    say = out or sys.stderr
    ids = [job.job_id for job in job_files]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValidationError(f"two job files share the job id {dupes[0]!r}; give them different 'job_id's")
    loaded = load_kinds(job_kind_modules)
    if job_kind_modules is not None and len(loaded) != len(job_kind_modules):
        missing = sorted(set(job_kind_modules) - set(loaded))
        raise ValidationError(f"could not import job kind module(s): {', '.join(missing)}")
    lock = lock_jobs_dir(jobs_dir)
    events = BatchEvents(say)
    try:
        store = JobStore(jobs_dir)
        executor = make_executor(executor_options, store, events=events)
        executor.recover()
        executor.start()
        started: dict[str, float] = {}
        outcomes: dict[str, BatchOutcome] = {}
        waiting: set[str] = set()
        for index, job in enumerate(job_files, 1):
            prefix = f"[{index}/{len(job_files)}] {job.job_id} ({job.kind})"
            record = store.get(job.job_id)
            if record is None:
                try:
                    create_job(store, job)
                except Recast4DError as exc:
                    if store.get(job.job_id) is not None:
                        store.transition(job.job_id, FAILED, from_states={QUEUED},
                                         error={"code": exc.code, "message": exc.message, "retryable": False})
                    outcomes[job.job_id] = BatchOutcome(job.job_id, job.kind, FAILED, 0.0, f"{exc.code}: {exc.message}")
                    print(f"{prefix}: refused: {exc.message}", file=say, flush=True)
                    continue
            elif record.state == DONE:
                outcomes[job.job_id] = BatchOutcome(job.job_id, job.kind, DONE, 0.0, "done before (skipped)")
                print(f"{prefix}: done before, skipped", file=say, flush=True)
                continue
            elif record.state == FAILED and store.retry(job.job_id) is not None:
                print(f"{prefix}: interrupted before, running again", file=say, flush=True)
            elif record.terminal:
                error = record.error or {}
                outcomes[job.job_id] = BatchOutcome(job.job_id, job.kind, record.state, 0.0,
                                                    f"{error.get('code', record.state)}: {error.get('message', '')} "
                                                    "(not retryable; give the job a new id to run it again)")
                print(f"{prefix}: {record.state} before, not retryable", file=say, flush=True)
                continue
            started[job.job_id] = time.monotonic()
            waiting.add(job.job_id)
            if store.get(job.job_id).state == QUEUED:
                executor.enqueue(job.job_id)
                print(f"{prefix}: queued", file=say, flush=True)
            else:
                print(f"{prefix}: still running on the cluster, following it", file=say, flush=True)
        try:
            while waiting:
                with contextlib.suppress(queue.Empty):  # wakes on each state change; the store is read below
                    events.states.get(timeout=1.0)
                for pending in list(waiting):  # the store is the truth (an adopted job has no queued event)
                    record = store.get(pending)
                    if record is None or record.state not in TERMINAL_STATES:
                        continue
                    waiting.discard(pending)
                    seconds = time.monotonic() - started[pending]
                    error = record.error or {}
                    detail = str(store.output_dir(pending)) if record.state == DONE else \
                        f"{error.get('code', record.state)}: {error.get('message', '')}"
                    outcomes[pending] = BatchOutcome(pending, record.kind, record.state, seconds, detail)
                    print(f"  {pending}: {record.state} in {seconds:.1f} s", file=say, flush=True)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume (done jobs are kept)", file=say, flush=True)
            for job_id in waiting:
                executor.request_cancel(job_id)
            raise
        finally:
            executor.stop()
        for job in job_files:
            outcome = outcomes[job.job_id]
            if outcome.state == DONE and job.out is not None:
                shutil.copytree(store.output_dir(job.job_id), job.out, dirs_exist_ok=True)
                outcome.detail = str(job.out)
        return [outcomes[job.job_id] for job in job_files]
    finally:
        lock.close()


def create_job(store: Any, job: JobFile) -> None:
    """Read the job file's inputs into a new job of ``store`` and validate it (typed errors)."""
    from backend.jobs import get_job_kind
    from backend.jobs.specs import parse_input_specs

    validate = get_job_kind(job.kind).validate
    arrays = job.read_inputs()
    specs = parse_input_specs({k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()},
                              max_job_bytes=1 << 62)
    store.create(job.job_id, job.kind, job.params, specs)
    for name, array in arrays.items():
        target = store.open_input(job.job_id, name)  # space reserved first: DiskFull if it does not fit
        if array.shape[0]:
            target.write_rows(0, array)
            target.sync()
        store.input_complete(job.job_id, name)
    if validate is not None:
        validate(job.params, store.load_inputs(job.job_id))


def print_summary(outcomes: list[BatchOutcome], stream: Any = None) -> None:
    """One table: job, kind, state, seconds, outputs (or the error)."""
    stream = stream or sys.stdout
    rows = [("job_id", "kind", "state", "seconds", "outputs / error")]
    rows += [(o.job_id, o.kind, o.state, f"{o.seconds:.1f}", o.detail) for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row[:4], widths)) + "  " + row[4], file=stream)
    done = sum(o.state == "done" for o in outcomes)
    print(f"{done}/{len(outcomes)} jobs done", file=stream, flush=True)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    from backend.cli import add_executor_arguments, default_jobs_dir

    p = subparsers.add_parser("batch", help="run many job files (reshoot, tune, generate); resumable",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job_files", nargs="+", type=Path, metavar="JOB.json", help="job files (see docs/farm.md)")
    p.add_argument("--jobs-dir", type=Path, default=None, help=f"job folders (default {default_jobs_dir()})")
    p.add_argument("--job-kinds", action="append", default=None, metavar="MODULE",
                   help="module that registers job kinds (repeatable); default: the built-in pipelines")
    add_executor_arguments(p)
    p.set_defaults(func=batch_command)


def batch_command(args: argparse.Namespace) -> int:
    from backend.cli import default_jobs_dir, executor_options

    job_files = [read_job_file(path) for path in args.job_files]
    outcomes = run_batch(job_files, args.jobs_dir or default_jobs_dir(), executor_options(args),
                         job_kind_modules=args.job_kinds)
    print_summary(outcomes)
    return 0 if all(o.state == "done" for o in outcomes) else 1


def run_job_file(job: JobFile, out: Path | None, *, ignored_flags: list[str] | None = None) -> int:
    """``recast4d run --job`` for the kinds other than reshoot: the job runs in-process through its
    job kind (as on the server), in the default jobs folder; its outputs are copied to ``out``.
    ``ignored_flags``: reshoot override flags given on the command line, refused here."""
    from backend.cli import default_jobs_dir
    from backend.executors import ExecutorOptions

    if ignored_flags:
        raise ValidationError(f"{', '.join(ignored_flags)} only apply to reshoot job files; put them in the "
                              f"'params' of {job.path} ({job.kind} job)")
    job.out = out or job.out
    if job.out is None:
        raise ValidationError(f"say where to write the results of {job.path} with --out DIR (or 'out' in the file)")
    outcomes = run_batch([job], default_jobs_dir(), ExecutorOptions())
    print_summary(outcomes)
    return 0 if outcomes[0].state == "done" else 1
