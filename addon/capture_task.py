"""A source capture that runs a frame at a time, with progress in the status bar and Esc to cancel.

Capturing "This Scene" (colour + depth renders) or decoding a Movie Clip used to run inside one
``execute()``: Blender froze with nothing redrawn for as long as it took. Now a capture is a
generator (:mod:`.capture`: one :class:`~.capture.CaptureStep` per frame) driven by
:class:`CaptureTask`; the modal operator (*Re-film Shot*) advances it by one step per ``TIMER``
event and passes every other event through, so the interface redraws between frames, the status
bar shows a progress bar, and Esc closes the generator (which restores every render setting).

A failed step (a render error, a missing file) ends the task with one readable ``error`` line.
In ``blender -b`` (no window, no events) the same task is simply run to its end.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import bpy

from .capture import Capture, CaptureStep
from .deps import protocol_module

_errors = protocol_module("errors")

#: Seconds between two steps of a running capture (the modal operator's event timer).
STEP_INTERVAL_S = 0.01


@dataclass
class CaptureTask:
    """One running capture: its steps, the last progress, and how it ended."""

    steps: Capture
    title: str
    last: CaptureStep | None = None
    result: object = None
    error: str = ""
    finished: bool = False
    cancelled: bool = False

    @property
    def fraction(self) -> float:
        """Done part in 0..1 (0 before the first step)."""
        return min(1.0, self.last.done / self.last.total) if self.last and self.last.total else 0.0

    @property
    def text(self) -> str:
        """Status-bar text: what runs now and how far it is."""
        return f"{self.title}: {self.last.what}" if self.last else f"{self.title}: starting"

    def advance(self) -> bool:
        """Run one step (one frame). True once the task has finished (result, error or cancel)."""
        if self.finished:
            return True
        try:
            self.last = next(self.steps)
        except StopIteration as stop:
            self.result, self.finished = stop.value, True
        except _errors.Recast4DError as exc:
            self.error, self.finished = str(exc), True
        except Exception as exc:  # an add-on bug: still one line for the user, the traceback in the console
            traceback.print_exc()
            self.error, self.finished = f"{self.title} failed: {type(exc).__name__}: {exc}", True
        return self.finished

    def run_to_end(self) -> None:
        """Advance until finished (``blender -b`` and scripts)."""
        while not self.advance():
            pass

    def cancel(self) -> None:
        """Stop now: closing the generator restores the render settings it changed."""
        if not self.finished:
            self.steps.close()
        self.cancelled = self.finished = True


_ACTIVE: dict[str, CaptureTask] = {}


def active_task() -> CaptureTask | None:
    """The capture running now (there is at most one), or ``None``."""
    task = _ACTIVE.get("task")
    return task if task is not None and not task.finished else None


def start(steps: Capture, title: str) -> CaptureTask:
    """Make a new task the running one (refused while another runs)."""
    if active_task() is not None:
        raise _errors.Recast4DError("a capture is already running; wait for it or press Esc to cancel it",
                                    code="busy")
    task = CaptureTask(steps, title)
    _ACTIVE["task"] = task
    return task


def stop(task: CaptureTask) -> None:
    """Forget ``task`` as the running one (it finished or was cancelled) and redraw the status bar."""
    if _ACTIVE.get("task") is task:
        _ACTIVE.pop("task")
    redraw_status_bar()


def redraw_status_bar() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in wm.windows if wm is not None else ():
        for area in window.screen.areas:
            if area.type in ("STATUSBAR", "VIEW_3D"):
                area.tag_redraw()


def draw_status_bar(self, context: bpy.types.Context) -> None:
    """Appended to the status bar header: the running capture's progress bar."""
    task = active_task()
    if task is None:
        return
    row = self.layout.row(align=True)
    row.progress(factor=task.fraction, type="BAR", text=f"{task.text} (Esc to cancel)")


class ModalCapture:
    """Operator mix-in: capture a frame per ``TIMER`` event, Esc cancels, then finish.

    The operator provides ``start_capture(scene) -> CaptureTask`` (raises a ``Recast4DError`` when
    it cannot start), ``finish_capture(context, task) -> {'FINISHED'} | {'CANCELLED'}`` (submits the
    captured request) and ``execute`` (the blocking path for ``blender -b`` and scripts, used when
    there is no window or the operator has ``wait_until_done`` set).
    """

    _task = None  # the running CaptureTask (set in invoke; runtime only, not an operator property)
    _timer = None
    cancel_message = "Cancelled while capturing the source; nothing was sent"

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.app.background or context.window is None or getattr(self, "wait_until_done", False):
            return self.execute(context)
        try:
            self._task = self.start_capture(context.scene)
        except _errors.Recast4DError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(STEP_INTERVAL_S, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        task = self._task
        if event.type == "ESC":
            task.cancel()
            self.end_capture(context)
            self.report({"WARNING"}, self.cancel_message)
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}  # the interface keeps every other event
        if not task.advance():
            redraw_status_bar()
            return {"RUNNING_MODAL"}
        self.end_capture(context)
        return self.finish_capture(context, task)

    def end_capture(self, context: bpy.types.Context) -> None:
        """Remove the event timer and clear the status bar."""
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if self._task is not None:
            stop(self._task)


def register() -> None:
    bpy.types.STATUSBAR_HT_header.append(draw_status_bar)


def unregister() -> None:
    task = active_task()
    if task is not None:
        task.cancel()
    _ACTIVE.clear()
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)
