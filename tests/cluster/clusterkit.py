"""Helpers of the cluster tests: the shared worker pool's options, a ``serve --executor ray`` subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from backend.executors import ExecutorOptions
from protocol.connection import ConnectionInfo

REPO = Path(__file__).resolve().parents[2]
SERVER_TESTS = REPO / "tests" / "server"

#: Actor name prefix shared by the tests (created once, reused: Ray start-up is the slow part).
POOL = "recast4d-tests"


def ray_options(workers: int, pool: str = POOL) -> ExecutorOptions:
    """A Ray executor on the CPU-only test cluster: ``workers`` actors, no GPUs, half a CPU each (so
    the 2-CPU test cluster also has room for the actor of a ``recast4d serve`` subprocess)."""
    return ExecutorOptions(kind="ray", workers=workers, gpus_per_worker=0, cpus_per_worker=0.5, pool=pool,
                           cancel_grace_s=10.0)


def worker_actor(ray, index: int = 0, pool: str = POOL):
    """The Ray handle of worker ``index`` of ``pool``."""
    return ray.get_actor(f"{pool}-{index}", namespace="recast4d")


def start_ray_server(jobs_dir: Path, conn_file: Path, ray_address: str) -> subprocess.Popen:
    """``recast4d serve --executor ray --ray-address ...`` in a subprocess (test job kinds, 1 CPU worker);
    returns once it wrote its connection file."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SERVER_TESTS), str(REPO)]), RECAST4D_GPU_PROBE="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--jobs-dir", str(jobs_dir), "--connection-file",
         str(conn_file), "--job-kinds", "jobkinds_for_tests", "--executor", "ray", "--ray-address", ray_address,
         "--ray-workers", "1", "--ray-gpus-per-worker", "0"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode()[-3000:]}")
        try:
            if ConnectionInfo.read(conn_file).pid == proc.pid:
                return proc
        except Exception:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the ray server did not write its connection file in time")
