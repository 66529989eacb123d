"""Stage bookkeeping for pipelines: names, timings, progress with stage labels, cancel checks.

Pipelines are readable top-to-bottom functions (diffusers style). Each stage runs inside
``with clock.stage("name") as progress:`` so that the server, the CLI and the tests see the same
stage names, progress and timings, and ``report.json`` gets per-stage wall times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from backend.progress import CancelFn, ProgressFn, check_cancel

# progress(stage, step, total, message): what pipelines report upwards (server -> `progress` messages).
StageProgressFn = Callable[[str, int, int, str], None]


@dataclass
class StageClock:
    """Times stages and forwards their progress with the stage name attached."""

    report_progress: StageProgressFn | None = None
    cancel: CancelFn | None = None
    timings: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[ProgressFn]:
        """Run one stage: checks cancel before it starts, times it, yields its progress callback."""
        check_cancel(self.cancel)

        def progress(step: int, total: int, message: str = "") -> None:
            if self.report_progress is not None:
                self.report_progress(name, step, total, message)

        progress(0, 1, "started")
        start = time.perf_counter()
        try:
            yield progress
        finally:
            elapsed = time.perf_counter() - start
            self.timings[name] = self.timings.get(name, 0.0) + elapsed
            if name not in self.order:
                self.order.append(name)
        progress(1, 1, "done")

    def summary(self) -> list[dict]:
        """``[{"stage", "seconds", "share"}]`` in execution order; share of the total wall time."""
        total = sum(self.timings.values()) or 1.0
        return [
            {"stage": n, "seconds": round(self.timings[n], 4), "share": round(self.timings[n] / total, 4)}
            for n in self.order
        ]
