"""Runtime glue between the protocol client thread and Blender's main thread.

Threading rule: the client's own I/O thread owns the ZeroMQ socket and never touches ``bpy``.
The main thread only talks to it through the client's thread-safe methods (``submit``, ``cancel``,
``consumed``, ``poll_events``). A persistent ``bpy.app.timers`` callback, :func:`tick`, drains
events within :data:`TICK_BUDGET_S`, updates job properties, and applies result chunks (preview
geometry or file pieces) while the tick's budget allows one more of the last one's cost (at least
one per tick), granting credit only after each is consumed, so Blender's speed throttles the
backend end to end; while chunks wait it asks to be called again after :data:`PENDING_INTERVAL_S`. :func:`drain_blocking` runs the same event
handling in a loop for ``blender -b`` and tests, where timers never fire.

Nothing here is stored in the .blend: the job list (properties) is; the client is not.
"""

from __future__ import annotations

import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import bpy

from . import results_stream

TICK_BUDGET_S = 0.008
ACTIVE_INTERVAL_S = 0.03
PENDING_INTERVAL_S = 0.002  # chunks are waiting: come back almost at once (the UI still redraws)
IDLE_INTERVAL_S = 0.5
MAX_EVENTS_PER_TICK = 256


class EventClient(Protocol):
    """What the session needs from a client (``protocol.client.ThreadedClient`` provides it)."""

    def poll_events(self, max_items: int, time_budget_s: float) -> list[Any]: ...

    def consumed(self, job_id: str, stream: str, chunk: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class SessionState:
    """Process-wide runtime state (never saved): the client and chunks waiting to be applied."""

    client: Any = None
    pending_chunks: deque = field(default_factory=deque)
    status: dict[str, Any] = field(default_factory=dict)
    last_tick_s: float = 0.0
    max_tick_s: float = 0.0
    ticks: int = 0
    on_event: Callable[[Any], None] | None = None
    #: Jobs the user cancelled while no backend was reachable: sent on the next ``client.connected``.
    pending_cancels: set[str] = field(default_factory=set)
    #: ``(job_id, stream)`` of result streams begun and not yet ended (a job is complete only without any).
    open_streams: set[tuple[str, str]] = field(default_factory=set)


_STATE = SessionState()


def state() -> SessionState:
    """The session's runtime state (for tests and the UI)."""
    return _STATE


def current_client() -> Any:
    """The connected client, or ``None``."""
    return _STATE.client


def attach_client(client: Any, *, start_timer: bool = True) -> None:
    """Make ``client`` the session's client (closing any previous one) and start the timer tick."""
    if _STATE.client is not None and _STATE.client is not client:
        detach_client()
    _STATE.client = client
    _STATE.pending_chunks.clear()
    if start_timer and not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=0.0, persistent=True)


def connection_problem() -> str | None:
    """Why jobs cannot be sent now (poll message of the operators that need the backend), or ``None``.

    Attached is not enough: a client still connecting (or retrying a dead backend) would leave a
    submitted job sitting in *Uploading*.
    """
    if _STATE.client is None:
        return "Connect to the backend first (Backend section)"
    if not _STATE.status.get("connected"):
        detail = _STATE.status.get("error")
        return f"Waiting for the backend to answer ({detail})" if detail else "Still connecting to the backend"
    return None


def queue_cancel(job_id: str) -> None:
    """Send a cancel for ``job_id`` as soon as a backend is connected (see :func:`process_events`)."""
    _STATE.pending_cancels.add(job_id)


def job_streams_open(job_id: str) -> bool:
    """True while some result stream of ``job_id`` has begun and not ended, or chunks wait to be applied."""
    return (any(key[0] == job_id for key in _STATE.open_streams)
            or any(getattr(event, "job_id", None) == job_id for event in _STATE.pending_chunks))


def _track(kind: str, event: Any) -> None:
    """Session bookkeeping for one event: engines, queued cancels, open streams, the backend's job list."""
    message = results_stream.message_of(event)
    if kind == "welcome":
        data = getattr(event, "data", None) or {}
        _STATE.status["engines"] = data.get("engines")
    elif kind == "client.connected" and _STATE.client is not None:
        for job_id in sorted(_STATE.pending_cancels):
            _STATE.client.cancel(job_id)
        _STATE.pending_cancels.clear()
    elif kind == "result.begin":
        _STATE.open_streams.add((message.job_id, message.stream))
    elif kind == "pong":
        from . import job_ledger

        job_ledger.reconcile_with_backend(dict(getattr(message, "jobs", {}) or {}))


def _stream_ended(event: Any) -> None:
    message = results_stream.message_of(event)
    _STATE.open_streams.discard((getattr(message, "job_id", None), getattr(message, "stream", None)))


def detach_client() -> None:
    """Stop the timer, close the client (its thread and sockets) and forget pending chunks."""
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    client, _STATE.client = _STATE.client, None
    _STATE.pending_chunks.clear()
    _STATE.status.clear()
    _STATE.open_streams.clear()
    results_stream.close_all_streams()
    if client is not None:
        client.close()


def _event_type(event: Any) -> str:
    """Message type of a client ``Event`` (``.type``) or of a bare typed message (``.TYPE``)."""
    kind = getattr(event, "type", None)
    return kind if isinstance(kind, str) else str(getattr(event, "TYPE", ""))


def process_events(events: list[Any]) -> bool:
    """Apply cheap events (status, progress, errors) now; queue result chunks. True if any."""
    for event in events:
        kind = _event_type(event)
        if kind != "result.end":
            _track(kind, event)  # first: a pong re-adds a lost job before its state is applied
        if kind in ("result.chunk", "result.end") or (kind == "result.begin" and _STATE.pending_chunks):
            _STATE.pending_chunks.append(event)  # keep stream order: an end closes after its chunks
        else:
            results_stream.apply_event(kind, results_stream.message_of(event), _STATE.status)
        if _STATE.on_event is not None:
            _STATE.on_event(event)
    return bool(events)


def apply_one_chunk() -> bool:
    """Consume the oldest pending result chunk (preview or file piece), then grant its credit."""
    queue = _STATE.pending_chunks
    while queue and _event_type(queue[0]) != "result.chunk":  # stream begin/end markers are cheap
        marker = queue.popleft()
        results_stream.apply_event(_event_type(marker), results_stream.message_of(marker), _STATE.status)
        if _event_type(marker) == "result.end":
            _stream_ended(marker)
    if not queue:
        return False
    event = queue.popleft()
    chunk = results_stream.message_of(event)
    try:
        results_stream.apply_chunk(chunk, getattr(event, "meta", None) or {},
                                   show_preview=not _newer_chunk_pending(chunk))
    except (OSError, ValueError) as exc:  # bad file name from the wire, disk full: the job says so
        results_stream.chunk_failed(chunk, exc)
    client = _STATE.client
    if client is not None:
        client.consumed(chunk.job_id, chunk.stream, chunk.chunk)  # credit only once consumed
    return True


def _newer_chunk_pending(chunk: Any) -> bool:
    """True if a later chunk of the same stream already waits (its preview would replace this one's
    at once, so this frame is counted and acknowledged without rebuilding the preview geometry)."""
    key = (chunk.job_id, chunk.stream)
    for event in _STATE.pending_chunks:
        later = results_stream.message_of(event)
        if _event_type(event) == "result.chunk" and (later.job_id, later.stream) == key:
            return True
    return False


def _redraw_sidebar() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                for region in area.regions:
                    if region.type == "UI":
                        region.tag_redraw()


def tick() -> float | None:
    """The ``bpy.app.timers`` callback: drain events for at most :data:`TICK_BUDGET_S`.

    Returns the delay to the next call (short while things happen, long when idle) or ``None``
    to stop when no client is attached.
    """
    started = time.perf_counter()
    client = _STATE.client
    if client is None:
        return None
    busy = False
    try:
        events = client.poll_events(MAX_EVENTS_PER_TICK, TICK_BUDGET_S * 0.5)
        busy = process_events(events)
        remaining = TICK_BUDGET_S - (time.perf_counter() - started)
        if remaining > 0 and not getattr(bpy.context.window_manager, "is_interface_locked", False):
            busy = apply_chunks_within(started + TICK_BUDGET_S) or busy
        if busy:
            _redraw_sidebar()
    except ReferenceError:  # the scene was freed by a file load; jobs are looked up again next tick
        pass
    except Exception as exc:  # Blender drops a timer that raises: that would end all event handling
        traceback.print_exc()
        _STATE.status["error"] = f"internal: {type(exc).__name__}: {exc}"
        busy = True
    elapsed = time.perf_counter() - started
    _STATE.last_tick_s = elapsed
    _STATE.max_tick_s = max(_STATE.max_tick_s, elapsed)
    _STATE.ticks += 1
    if _STATE.pending_chunks:
        return PENDING_INTERVAL_S
    return ACTIVE_INTERVAL_S if busy else IDLE_INTERVAL_S


def apply_chunks_within(deadline: float) -> bool:
    """Apply pending chunks until the next one (costing about as much as the last) would end after
    ``deadline`` (``time.perf_counter()`` seconds); always at least one. True if any was applied.

    File pieces cost a write each, so a tick takes many; a preview frame may take the whole budget.
    """
    applied = False
    while True:
        begun = time.perf_counter()
        if not apply_one_chunk():
            return applied
        applied = True
        now = time.perf_counter()
        if now + (now - begun) > deadline:
            return applied


def drain_blocking(until: Callable[[], bool], *, timeout_s: float = 60.0, poll_s: float = 0.05) -> bool:
    """Blocking path (``blender -b``, tests): handle events until ``until()`` is true or timeout.

    Applies every pending chunk each round (no UI to keep responsive). A round with nothing to do
    sleeps ``poll_s``: ``poll_events`` never blocks, and spinning on it took a whole core from a
    backend on the same machine (on ``make demo``'s 2 cores its torch threads ran ~4x slower).
    Returns ``until()``.
    """
    client = _STATE.client
    if client is None:
        raise RuntimeError("no backend client attached")
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            return False
        events = client.poll_events(MAX_EVENTS_PER_TICK, poll_s)
        process_events(events)
        applied = False
        while apply_one_chunk():
            applied = True
        if not events and not applied:
            time.sleep(poll_s)
    return True


def shutdown() -> None:
    """For ``unregister()``: stop the timer, close the client, drop runtime state. (Opening another
    .blend keeps the connection: jobs are looked up by id in whatever scenes are open.)"""
    detach_client()
    _STATE.on_event = None
    _STATE.pending_cancels.clear()
