"""Job bookkeeping that undo and redo cannot lose.

The job list lives on the scene (``Scene.recast4d.jobs``) so that it is saved with the .blend,
which also makes it undoable ID data: one Ctrl+Z after *Re-film Shot* used to delete the running
job (its id, so its results) while the backend went on computing. A job is not something an undo
can take back, so the list is kept out of undo:

- ``undo_pre`` / ``redo_pre`` take a snapshot of every scene's jobs (all their properties, stages
  included) into this runtime ledger, which undo does not touch;
- ``undo_post`` / ``redo_post`` put the snapshot back: jobs the undo removed come back, jobs the
  undo rolled back get their newest state again;
- the backend's job list (``pong``: this client's jobs and their states) is the truth:
  :func:`reconcile_with_backend` re-adds a job the backend still knows that is missing from the
  panel (from its ledger snapshot).

Removing a job from the list is the user's explicit choice (*Remove Job* asks first) and is
remembered here, so reconciling never brings a removed job back.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import bpy
from bpy.app.handlers import persistent

#: Job properties not copied by value (collections are handled separately).
_SKIPPED = {"rna_type", "stages"}


@dataclass
class JobSnapshot:
    """A plain copy of one job entry: its property values and its stages, in list order."""

    scene: str
    values: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return str(self.values.get("job_id", ""))


@dataclass
class Ledger:
    """Runtime only (never saved): the last snapshot per job id and the ids the user removed."""

    jobs: dict[str, JobSnapshot] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)  # scene name -> job ids in list order
    active: dict[str, int] = field(default_factory=dict)  # scene name -> active_job_index
    removed: set[str] = field(default_factory=set)
    #: scene name -> the Tune LoRA list (``tune.tuned_loras``: LoRA id, tune job id, offered), which
    #: belongs to the jobs and is kept out of undo the same way
    tuned_loras: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


_LEDGER = Ledger()


def ledger() -> Ledger:
    """The process-wide ledger (for tests)."""
    return _LEDGER


def _plain(value: Any) -> Any:
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    try:
        return list(value)  # vectors, enum sets
    except TypeError:
        return value


def _copy_props(item: bpy.types.PropertyGroup, skip: set[str]) -> dict[str, Any]:
    return {prop.identifier: _plain(getattr(item, prop.identifier)) for prop in item.bl_rna.properties
            if prop.identifier not in skip and not prop.is_readonly}


def snapshot_job(scene: bpy.types.Scene, job) -> JobSnapshot:
    """A plain copy of ``job`` (an entry of ``scene.recast4d.jobs``)."""
    return JobSnapshot(scene.name, _copy_props(job, _SKIPPED), [_copy_props(s, {"rna_type"}) for s in job.stages])


def write_snapshot(job, snapshot: JobSnapshot) -> None:
    """Set ``job``'s properties and stages to ``snapshot``."""
    for name, value in snapshot.values.items():
        # a property the add-on no longer has, or an ID reference that died with the undo: skip it
        with contextlib.suppress(TypeError, AttributeError, ValueError, ReferenceError):
            if getattr(job, name, value) != value:
                setattr(job, name, value)
    if [s.name for s in job.stages] != [s.get("name") for s in snapshot.stages]:
        job.stages.clear()
        for _ in snapshot.stages:
            job.stages.add()
    for stage, values in zip(job.stages, snapshot.stages):
        for name, value in values.items():
            if getattr(stage, name) != value:
                setattr(stage, name, value)


def _scenes_with_jobs():
    return [scene for scene in bpy.data.scenes if getattr(scene, "recast4d", None) is not None]


def record_all() -> None:
    """Snapshot every scene's jobs into the ledger (what the job list is right now)."""
    for scene in _scenes_with_jobs():
        settings = scene.recast4d
        ids = []
        for job in settings.jobs:
            if job.job_id:
                _LEDGER.jobs[job.job_id] = snapshot_job(scene, job)
                ids.append(job.job_id)
        _LEDGER.order[scene.name] = ids
        _LEDGER.active[scene.name] = settings.active_job_index
        _LEDGER.tuned_loras[scene.name] = [_copy_props(e, {"rna_type"}) for e in settings.tune.tuned_loras]


def record_job(scene: bpy.types.Scene, job) -> None:
    """Snapshot one job (e.g. right after it was submitted), keeping the scene's list order."""
    if not job.job_id:
        return
    _LEDGER.jobs[job.job_id] = snapshot_job(scene, job)
    _LEDGER.order[scene.name] = [j.job_id for j in scene.recast4d.jobs if j.job_id]
    _LEDGER.active[scene.name] = scene.recast4d.active_job_index
    _LEDGER.removed.discard(job.job_id)


def forget_job(job_id: str) -> None:
    """The user removed ``job_id`` from the list: never bring it back."""
    _LEDGER.jobs.pop(job_id, None)
    _LEDGER.removed.add(job_id)
    for ids in _LEDGER.order.values():
        if job_id in ids:
            ids.remove(job_id)


def restore_all() -> int:
    """Put the ledger's jobs back into their scenes (after an undo/redo). Returns how many jobs
    were missing and re-added."""
    added = 0
    for scene in _scenes_with_jobs():
        settings = scene.recast4d
        for index in reversed(range(len(settings.jobs))):  # the user removed these: an undo keeps them out
            if settings.jobs[index].job_id in _LEDGER.removed:
                settings.jobs.remove(index)
        ids = [i for i in _LEDGER.order.get(scene.name, []) if i in _LEDGER.jobs]
        present = {job.job_id: job for job in settings.jobs if job.job_id}
        for job_id in ids:
            job = present.get(job_id)
            if job is None:
                job = settings.jobs.add()
                added += 1
            write_snapshot(job, _LEDGER.jobs[job_id])
        _reorder(settings, ids)
        active = _LEDGER.active.get(scene.name)
        if active is not None and 0 <= active < len(settings.jobs):
            settings.active_job_index = active
        _restore_tuned_loras(settings.tune.tuned_loras, _LEDGER.tuned_loras.get(scene.name))
    return added


def _restore_tuned_loras(entries, recorded: list[dict[str, Any]] | None) -> None:
    """Give the Tune LoRA list its recorded entries back (an undo must not forget a tuning job)."""
    if recorded is None:
        return
    if [(e.name, e.job_id) for e in entries] == [(r.get("name"), r.get("job_id")) for r in recorded]:
        for entry, values in zip(entries, recorded):
            entry.offered = bool(values.get("offered", entry.offered))
        return
    entries.clear()
    for values in recorded:
        entry = entries.add()
        for name, value in values.items():
            with contextlib.suppress(TypeError, AttributeError, ValueError):
                setattr(entry, name, value)


def _reorder(settings, ids: list[str]) -> None:
    """Move the jobs in ``ids`` to the list order the ledger recorded (others stay after them)."""
    for target, job_id in enumerate(ids):
        current = next((i for i, job in enumerate(settings.jobs) if job.job_id == job_id), None)
        if current is not None and current != target:
            settings.jobs.move(current, target)


def reconcile_with_backend(backend_jobs: dict[str, str]) -> list[str]:
    """Make the panel agree with the backend's list of this client's jobs (``job_id -> state``).

    A job the backend still runs or holds that no scene lists any more (and that the user did not
    remove) is put back from its ledger snapshot, in its own scene. Jobs of another .blend (the
    ledger is cleared when a file is opened) are left alone. Returns the ids re-added; states
    themselves are applied by the event handling (:mod:`.results_stream`).
    """
    listed = {job.job_id for s in _scenes_with_jobs() for job in s.recast4d.jobs}
    added = []
    for job_id in backend_jobs:
        snapshot = _LEDGER.jobs.get(job_id)
        if snapshot is None or job_id in listed or job_id in _LEDGER.removed:
            continue
        home = bpy.data.scenes.get(snapshot.scene)
        if home is None or getattr(home, "recast4d", None) is None:
            continue
        job = home.recast4d.jobs.add()
        write_snapshot(job, snapshot)
        record_job(home, job)
        added.append(job_id)
    return added


def clear() -> None:
    """Forget everything (another .blend was opened: its jobs are its own)."""
    _LEDGER.jobs.clear()
    _LEDGER.order.clear()
    _LEDGER.active.clear()
    _LEDGER.removed.clear()
    _LEDGER.tuned_loras.clear()


@persistent
def _before_undo(*_args) -> None:
    with contextlib.suppress(ReferenceError, AttributeError):
        record_all()


@persistent
def _after_undo(*_args) -> None:
    with contextlib.suppress(ReferenceError, AttributeError):
        restore_all()


@persistent
def _after_load(*_args) -> None:
    clear()


_HANDLERS = (
    (bpy.app.handlers.undo_pre, _before_undo), (bpy.app.handlers.redo_pre, _before_undo),
    (bpy.app.handlers.undo_post, _after_undo), (bpy.app.handlers.redo_post, _after_undo),
    (bpy.app.handlers.load_post, _after_load),
)


def register() -> None:
    for handlers, function in _HANDLERS:
        if function not in handlers:
            handlers.append(function)


def unregister() -> None:
    for handlers, function in _HANDLERS:
        if function in handlers:
            handlers.remove(function)
    clear()
