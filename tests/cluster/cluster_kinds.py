"""Job kind and engine for the cluster tests: ``test.engine`` loads the ``test-counted`` inpaint engine.

The engine counts its constructions in this process (``BUILDS``); a job reports that count and
its worker's pid in one ``info`` chunk, so a test can tell whether a second job on the same
worker rebuilt (reloaded) its engine.
"""

from __future__ import annotations

import os

import numpy as np

from backend.engines import get_inpaint_engine
from backend.engines.registry import EngineSpec, register_engine
from backend.jobs import JobContext, register_job_kind

KIND = "test.engine"
BUILDS = 0


class CountedEngine:
    """Stands for an engine with weights: every construction counts as one weight load."""

    def __init__(self, models_dir: object = None, **options: object) -> None:
        global BUILDS
        BUILDS += 1


def run_engine_job(ctx: JobContext) -> None:
    get_inpaint_engine("test-counted", **ctx.params.get("options", {}))
    ctx.emit("info", {"builds": np.array([BUILDS], dtype=np.int32), "pid": np.array([os.getpid()], dtype=np.int32)})


register_engine(EngineSpec("test-counted", "inpaint", "counts its constructions (tests)",
                           "cluster_kinds:CountedEngine"))
register_job_kind(KIND, run_engine_job, description="load the test-counted engine, report its build count")
