"""Helpers for tests that need a real server: in-process or as a ``recast4d serve`` subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import jobkinds_for_tests  # noqa: F401  (registers test.points in this process)

from backend.server import Server, ServerConfig
from protocol.client import BlockingClient
from protocol.connection import ConnectionInfo

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


@contextmanager
def running_server(tmp_path: Path, **config: object):
    """An in-process server on 127.0.0.1:<random> writing ``tmp_path/server.json``."""
    server = Server(ServerConfig(jobs_dir=tmp_path / "jobs", connection_file=tmp_path / "server.json", **config))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect(conn_file: Path, **kwargs: object) -> BlockingClient:
    client = BlockingClient.from_file(conn_file, timeout_s=kwargs.pop("timeout_s", 10.0), **kwargs)
    client.connect()
    return client


def process_rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class ServerProcess:
    """``python -m backend.cli serve`` in a subprocess with the test job kinds."""

    def __init__(self, jobs_dir: Path, conn_file: Path) -> None:
        self.jobs_dir, self.conn_file = jobs_dir, conn_file
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]), RECAST4D_GPU_PROBE="0")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "serve", "--jobs-dir", str(jobs_dir), "--connection-file",
             str(conn_file), "--job-kinds", "jobkinds_for_tests"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()}")
            try:
                if ConnectionInfo.read(conn_file).pid == self.proc.pid:
                    return
            except Exception:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("server did not write its connection file in time")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        return process_rss_bytes(self.pid)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
        return code
