"""Start and stop the demo's compute backend: ``recast4d serve`` as a subprocess.

The server gets its own jobs folder and connection file (both under the demo's work folder), binds
loopback on a free port, and logs to ``server.log`` next to them. Nothing here imports bpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0


class BackendStartError(RuntimeError):
    """The backend process exited or wrote no connection file in time (the log says why)."""


@dataclass
class BackendProcess:
    """A running ``recast4d serve``: its process, connection file, jobs folder and log file."""

    process: subprocess.Popen
    connection_file: Path
    jobs_dir: Path
    log_file: Path

    def stop(self, timeout_s: float = 15.0) -> None:
        """Terminate the server (it removes its connection file) and wait; kill if it hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_backend(work_dir: Path, *, models_dir: str | None = None, threads: int = 2) -> BackendProcess:
    """Run ``python -m backend.cli serve`` (the ``recast4d serve`` command) on loopback, port 0.

    ``models_dir`` becomes ``RECAST4D_MODELS`` for the server (where engines find local weights);
    ``threads`` caps torch/OpenMP threads. Returns once the connection file exists.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    connection_file = work_dir / "server.json"
    jobs_dir = work_dir / "jobs"
    log_file = work_dir / "server.log"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    if models_dir:
        env["RECAST4D_MODELS"] = str(Path(models_dir).resolve())
    command = [sys.executable, "-m", "backend.cli", "serve", "--port", "0", "--jobs-dir", str(jobs_dir),
               "--connection-file", str(connection_file)]
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    backend = BackendProcess(process, connection_file, jobs_dir, log_file)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not connection_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            backend.stop()
            raise BackendStartError(f"the backend did not start (exit code {process.poll()}):\n{backend.log_tail()}")
        time.sleep(0.05)
    return backend
