"""``reshoot``: re-film a video along new camera paths (EasyCreator inference).

Importing this package registers the ``reshoot`` job kind with the server's job registry.
"""

from backend.jobs import register_job_kind

from .job import run_reshoot_job, validate_reshoot
from .pipeline import ReshootResult, TrajectoryResult, run_reshoot
from .request import EngineOptions, GaussianOptions, ReshootRequest, Trajectory

register_job_kind("reshoot", run_reshoot_job, validate_reshoot,
                  description="re-film a video along new camera paths (video + depth -> 4D scene)")

__all__ = [
    "EngineOptions",
    "GaussianOptions",
    "ReshootRequest",
    "ReshootResult",
    "Trajectory",
    "TrajectoryResult",
    "run_reshoot",
]
