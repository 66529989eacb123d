"""Progress and cancellation, the two callbacks every stage takes.

A stage is a plain function ``stage(inputs..., *, progress=None, cancel=None) -> outputs``:
- ``progress(step, total, message)`` reports ``step`` of ``total`` units of work done (cheap to
  call often; the server coalesces it to at most ~10 messages/s).
- ``cancel()`` returns True when the job's owner asked to stop; stages call
  :func:`check_cancel` at step boundaries (frames, diffusion steps, optimiser iterations), which
  raises :class:`protocol.errors.Cancelled`.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.errors import Cancelled

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]


def no_progress(step: int, total: int, message: str = "") -> None:
    """A progress callback that ignores everything (the default)."""


def never_cancel() -> bool:
    return False


def check_cancel(cancel: CancelFn | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` says the job should stop."""
    if cancel is not None and cancel():
        raise Cancelled("job cancelled")
