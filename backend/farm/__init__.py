"""Render-farm templates: Open Job Description (the format AWS Deadline Cloud runs) for each job kind.

Each template takes a job file (``backend/executors/job_file.py``), the folder for its outputs and
the worker's models folder, asks for a GPU host, and runs ``recast4d run --job JOB --out DIR``.
``docs/farm.md`` says how a studio submits them, and how the same job file goes to Flamenco.
"""

from __future__ import annotations

from pathlib import Path

from protocol.errors import ValidationError

TEMPLATE_DIR = Path(__file__).resolve().parent
FARM_KINDS = ("reshoot", "tune", "generate")


def template_path(kind: str) -> Path:
    """The Open Job Description template of job kind ``kind`` (reshoot, tune, generate)."""
    if kind not in FARM_KINDS:
        raise ValidationError(f"there is no farm template for job kind {kind!r}; kinds: {', '.join(FARM_KINDS)}")
    return TEMPLATE_DIR / f"recast4d-{kind}.yaml"
