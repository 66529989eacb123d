"""Job kinds: what a ``job.submit{kind: ...}`` runs.

A pipeline registers itself once, at import time::

    from backend.jobs import JobContext, register_job_kind

    def validate_reshoot(params: dict, inputs: dict[str, np.ndarray]) -> None:
        # Runs on the server's I/O side once inputs are uploaded, before any heavy work.
        # Cheap checks only; raise protocol.errors.ValidationError (or CameraError) with a clear message.
        ...

    def run_reshoot(ctx: JobContext) -> None:
        # Runs in the worker thread. Use ctx.params, ctx.inputs, ctx.output_dir;
        # report ctx.progress(stage, step, total, msg); call ctx.check_cancel() between steps;
        # ctx.emit("points", {"xyz": ..., "rgb": ...}, {"frame": i}) per result chunk.
        ...

    register_job_kind("reshoot", run_reshoot, validate_reshoot, description="re-film along new cameras")

The server imports the modules named in :data:`JOB_KIND_MODULES` at start-up (missing ones are
skipped); add your pipeline module there, or pass ``--job-kinds module`` to ``recast4d serve``.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from protocol.errors import ValidationError

if TYPE_CHECKING:
    from .context import JobContext

log = logging.getLogger(__name__)

RunFn = Callable[["JobContext"], None]
ValidateFn = Callable[[dict[str, Any], dict[str, np.ndarray]], None]

#: Modules imported by the server to register the built-in pipelines (missing modules are skipped).
JOB_KIND_MODULES: list[str] = [
    "backend.pipelines.reshoot",
    "backend.pipelines.tune",
    "backend.pipelines.generate",
]


@dataclass(frozen=True)
class JobKind:
    """A registered job kind: ``run(ctx)`` in the worker, ``validate(params, inputs)`` before it."""

    name: str
    run: RunFn
    validate: ValidateFn | None = None
    description: str = ""


_KINDS: dict[str, JobKind] = {}
_LOCK = threading.Lock()


def register_job_kind(
    name: str, run: RunFn, validate: ValidateFn | None = None, *, description: str = "", replace: bool = False
) -> JobKind:
    """Register ``name``; re-registering the same functions is a no-op, different ones need ``replace``."""
    if not isinstance(name, str) or not name:
        raise ValueError("job kind names are non-empty strings")
    kind = JobKind(name=name, run=run, validate=validate, description=description)
    with _LOCK:
        existing = _KINDS.get(name)
        if existing is not None and not replace and (existing.run, existing.validate) != (run, validate):
            raise ValueError(f"job kind {name!r} is already registered (pass replace=True to override)")
        _KINDS[name] = kind
    return kind


def unregister_job_kind(name: str) -> None:
    """Remove a job kind (tests); unknown names are ignored."""
    with _LOCK:
        _KINDS.pop(name, None)


def get_job_kind(name: object) -> JobKind:
    """Look up a kind; raises ValidationError(code="unknown_kind") listing the known ones."""
    with _LOCK:
        kind = _KINDS.get(name) if isinstance(name, str) else None
        known = sorted(_KINDS)
    if kind is None:
        raise ValidationError(
            f"unknown job kind {name!r}; this server runs: {', '.join(known) or '(none registered)'}",
            code="unknown_kind",
        )
    return kind


def job_kinds() -> list[str]:
    with _LOCK:
        return sorted(_KINDS)


def load_job_kind_modules(modules: Iterable[str] | None = None) -> list[str]:
    """Import pipeline modules so they register their kinds; returns the ones that loaded.

    A module that does not exist is skipped quietly (that pipeline is not installed yet); a module
    that exists but fails to import is logged with its error and skipped.
    """
    loaded = []
    for module in JOB_KIND_MODULES if modules is None else modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            log.warning("job kind module %s failed to import: %s", module, exc)
            continue
        except Exception as exc:  # a broken pipeline must not take the server down
            log.warning("job kind module %s failed to import: %s", module, exc)
            continue
        loaded.append(module)
    return loaded
