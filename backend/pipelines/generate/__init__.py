"""``generate``: text / image / video -> 4D scene (CoCo4D).

Importing this package registers the ``generate`` job kind with the server's job registry.
"""

from backend.jobs import register_job_kind

from .job import run_generate_job, validate_generate
from .pipeline import GenerateEngines, GenerateResult, run_generate
from .request import GenerateRequest

register_job_kind("generate", run_generate_job, validate_generate,
                  description="text / image (or a video) -> 4D scene: reference video, progressive outpaint, "
                              "composed foreground")

__all__ = ["GenerateEngines", "GenerateRequest", "GenerateResult", "run_generate"]
