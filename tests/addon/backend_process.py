"""A real ``recast4d serve`` subprocess for the add-on's end-to-end tests.

The backend runs from the backend's environment: ``$RECAST4D_BACKEND_PYTHON`` if set (the Blender
5.3 test run uses Python 3.13 without torch, so ``make test`` points this at the main ``.venv``),
else this interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


BACKEND_PYTHON_VARIABLE = "RECAST4D_BACKEND_PYTHON"


def backend_python() -> str:
    """The Python that runs the backend (``$RECAST4D_BACKEND_PYTHON``, else this interpreter)."""
    return os.environ.get(BACKEND_PYTHON_VARIABLE) or sys.executable


def start_backend(tmp_path: Path, job_kinds: str) -> tuple[subprocess.Popen, Path]:
    """Start a server registering ``job_kinds`` (a module: a pipeline or a test kind in this folder);
    returns the process and its connection file once the file exists."""
    conn_file = tmp_path / "server.json"
    path = os.pathsep.join([str(HERE), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [backend_python(), "-m", "backend.cli", "serve", "--port", "0", "--jobs-dir", str(tmp_path / "jobs"),
         "--connection-file", str(conn_file), "--job-kinds", job_kinds],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not conn_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"backend did not start: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.05)
    return proc, conn_file


def stop_backend(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
