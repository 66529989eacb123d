"""The ``recast4d`` command line: ``serve``, ``doctor``, ``jobs`` (+ subcommands pipelines add).

Adding a subcommand takes one function ``add_command(subparsers)`` that creates its parser and sets
``func`` (called with the parsed namespace, returns the exit code)::

    def add_command(subparsers: argparse._SubParsersAction) -> None:
        p = subparsers.add_parser("run", help="re-film a video along new camera paths")
        p.add_argument("video")
        p.set_defaults(func=_run)

Put it in your module and add the module name to :data:`COMMAND_MODULES` (missing modules are
skipped), or append the function to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

AddCommand = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

#: Modules that define ``add_command(subparsers)`` for extra subcommands (run, tune, generate...).
COMMAND_MODULES: list[str] = [
    "backend.pipelines.reshoot.cli",
    "backend.pipelines.tune.cli",
    "backend.pipelines.generate.cli",
    "backend.executors.batch",
]


def default_jobs_dir() -> Path:
    """``$RECAST4D_JOBS``, else ``$XDG_DATA_HOME/recast4d/jobs`` (``~/.local/share/recast4d/jobs``)."""
    if os.environ.get("RECAST4D_JOBS"):
        return Path(os.environ["RECAST4D_JOBS"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "recast4d" / "jobs"


# --------------------------------------------------------------------------- serve
def add_serve(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="run the compute backend server (ZeroMQ, loopback by default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default)")
    p.add_argument("--jobs-dir", type=Path, default=None, help=f"job folders (default {default_jobs_dir()})")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow binding a non-loopback address (anyone who can reach it and has the key can submit)")
    p.add_argument("--connection-file", type=Path, default=None,
                   help="where to write the connection file (default: the user runtime dir)")
    p.add_argument("--job-kinds", action="append", default=None, metavar="MODULE",
                   help="module that registers job kinds (repeatable); default: the built-in pipelines")
    add_executor_arguments(p)
    p.add_argument("--models", default=None,
                   help="folder with local model weights and loras/ (default $RECAST4D_MODELS); requests cannot "
                        "choose folders on the server")
    p.set_defaults(func=_serve)


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """``--executor`` and the Ray options (``serve`` and ``batch``); see ``docs/farm.md``."""
    p.add_argument("--executor", choices=["inprocess", "ray"], default="inprocess",
                   help="where jobs run: this process (default) or a Ray cluster (pip install 'recast4d[cluster]')")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (e.g. 10.0.0.5:6379 or auto); default: start a local Ray instance")
    p.add_argument("--ray-workers", type=int, default=None,
                   help="worker actors (default: one per GPU of the cluster, at least 1)")
    p.add_argument("--ray-gpus-per-worker", type=float, default=None,
                   help="GPUs per worker actor (default: 1 on a GPU cluster, 0 without GPUs)")


def executor_options(args: argparse.Namespace) -> Any:
    """The :class:`backend.executors.ExecutorOptions` that ``--executor`` and ``--ray-*`` describe."""
    from backend.executors import ExecutorOptions

    return ExecutorOptions(kind=args.executor, ray_address=args.ray_address, workers=args.ray_workers,
                           gpus_per_worker=args.ray_gpus_per_worker)


def _serve(args: argparse.Namespace) -> int:
    from backend.jobs import load_job_kind_modules
    from backend.server import ServerConfig, serve_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.models:  # the server alone decides where weights live: engines resolve $RECAST4D_MODELS
        os.environ["RECAST4D_MODELS"] = str(Path(args.models).expanduser().resolve())
    if not args.job_kinds:
        load_job_kind_modules()
    else:
        loaded = load_job_kind_modules(args.job_kinds)
        missing = set(args.job_kinds) - set(loaded)
        if missing:
            print(f"error: could not import job kind module(s): {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
    config = ServerConfig(
        host=args.host,
        port=args.port,
        jobs_dir=args.jobs_dir or default_jobs_dir(),
        allow_remote=args.allow_remote,
        connection_file=args.connection_file,
        executor=executor_options(args),
    )
    return serve_forever(config)


# --------------------------------------------------------------------------- doctor
def add_doctor(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="show what this machine can run (torch, GPU, weights...)")
    p.add_argument("--models", default=None, help="folder with local model folders (default $RECAST4D_MODELS)")
    p.set_defaults(func=lambda args: __import__("backend.doctor", fromlist=["main"]).main(args.models))


# --------------------------------------------------------------------------- jobs
def add_jobs(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("jobs", help="list the jobs in the job store")
    p.add_argument("--jobs-dir", type=Path, default=None, help=f"job folders (default {default_jobs_dir()})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_jobs)


def _jobs(args: argparse.Namespace) -> int:
    from backend.jobs import JobStore

    jobs_dir = args.jobs_dir or default_jobs_dir()
    if not jobs_dir.is_dir():
        print(f"no jobs yet ({jobs_dir} does not exist)")
        return 0
    store = JobStore(jobs_dir)
    records = store.list()
    if args.json:
        damaged = [{"job_id": name, "state": "damaged", "error": {"code": "damaged_job", "message": reason}}
                   for name, reason in sorted(store.damaged.items())]
        print(json.dumps([r.summary() for r in records] + damaged, indent=1))
        return 0
    if not records and not store.damaged:
        print(f"no jobs in {jobs_dir}")
        return 0
    rows = [("job_id", "kind", "state", "created (UTC)", "streams", "error")]
    for r in records:
        streams = ", ".join(f"{name}:{s.chunks}" for name, s in r.streams.items()) or "-"
        error = f"{r.error['code']}: {r.error['message']}" if r.error else ""
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.created))
        rows.append((r.job_id, r.kind, r.state, created, streams, error))
    for name, reason in sorted(store.damaged.items()):  # listed, never skipped silently
        rows.append((name, "?", "damaged", "-", "-", f"damaged_job: {reason}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


COMMANDS: list[AddCommand] = [add_serve, add_doctor, add_jobs]


def build_parser(*, builtin_only: bool = False) -> argparse.ArgumentParser:
    """The full parser: built-in subcommands, then those of :data:`COMMAND_MODULES` that import.

    ``builtin_only`` skips the pipeline modules (they import torch, seconds of start-up) when the
    command line asks for a built-in subcommand.
    """
    parser = argparse.ArgumentParser(prog="recast4d", description="Recast 4D compute backend")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    for module_name in [] if builtin_only else COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``recast4d`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    builtin = {"serve", "doctor", "jobs"}
    parser = build_parser(builtin_only=bool(argv) and argv[0] in builtin)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from protocol.errors import Recast4DError

    try:
        return int(args.func(args) or 0)
    except Recast4DError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
