"""Helpers for tests that need a real server: in-process or as a ``recast4d serve`` subprocess."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jobkinds_for_tests  # noqa: F401  (registers test.points in this process)
import msgpack
import zmq

from backend.server import Server, ServerConfig
from protocol.client import BlockingClient
from protocol.connection import ConnectionInfo, secure_client_socket
from protocol.messages import Pong, parse
from protocol.wire import PROTOCOL_TAG, Codec, Message

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


class RawPeer:
    """A DEALER that sends hand-made frames and decodes the server's replies."""

    def __init__(self, info, context: zmq.Context) -> None:
        self.key = info.key_bytes
        self.session = uuid.uuid4().hex
        self.seq = 0
        self.codec = Codec(self.key)  # decodes server messages
        self.sock = context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        secure_client_socket(self.sock, info)
        self.sock.connect(info.endpoint)

    def forge(self, msg_type: str, content: bytes | dict, buffers: tuple[bytes, ...] = (), *,
              key: bytes | None = None, seq: int | None = None, buf_lens: list[int] | None = None) -> list[bytes]:
        if isinstance(content, dict):
            content = msgpack.packb(content, use_bin_type=True)
        if seq is None:
            self.seq += 1
            seq = self.seq
        header = msgpack.packb({
            "v": "1.0", "type": msg_type, "msg_id": uuid.uuid4().hex, "session": self.session, "seq": seq,
            "ts": time.time(), "buf_lens": buf_lens if buf_lens is not None else [len(b) for b in buffers],
        })
        signature = hmac.new(self.key if key is None else key, header + content, hashlib.sha256).digest()
        return [PROTOCOL_TAG, signature, header, content, *buffers]

    def reply(self, frames: list[bytes], timeout_s: float = 5.0) -> Message:
        self.sock.send_multipart(frames)
        assert self.sock.poll(int(timeout_s * 1000)), "server did not answer"
        return self.codec.decode(self.sock.recv_multipart())

    def ping_ok(self) -> None:
        reply = parse(self.reply(self.forge("ping", {})))
        assert isinstance(reply, Pong)


@contextmanager
def raw_peer(server: Server) -> Iterator[RawPeer]:
    """A :class:`RawPeer` connected to an in-process ``server``; closed afterwards."""
    context = zmq.Context()
    peer = RawPeer(server.connection, context)
    try:
        yield peer
    finally:
        peer.sock.close(0)
        context.term()


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

    def __init__(self, jobs_dir: Path, conn_file: Path, *, max_open_files: int | None = None) -> None:
        """``max_open_files``: ``RLIMIT_NOFILE`` set in the server process (descriptor-exhaustion tests)."""
        self.jobs_dir, self.conn_file = jobs_dir, conn_file
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]), RECAST4D_GPU_PROBE="0")

        def limit_files() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "serve", "--jobs-dir", str(jobs_dir), "--connection-file",
             str(conn_file), "--job-kinds", "jobkinds_for_tests"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO,
            preexec_fn=limit_files if max_open_files else None,
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


@contextmanager
def small_tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted at ``path`` (a real full disk); skips the test where mounting is
    not allowed (not root, no CAP_SYS_ADMIN)."""
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
