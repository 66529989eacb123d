"""``tune``: per-video LoRA tuning for the wan-vace engine (EasyCreator training side).

Importing this package registers the ``tune`` job kind with the server's job registry.
"""

from backend.jobs import register_job_kind

from .job import run_tune_job, validate_tune
from .pipeline import run_tune
from .request import TuneRequest

register_job_kind("tune", run_tune_job, validate_tune,
                  description="tune a per-video inpainting LoRA (video [+ depth] -> LoRA id for reshoot)")

__all__ = ["TuneRequest", "run_tune"]
