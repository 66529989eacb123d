"""Server settings and the bind-address policy (loopback unless explicitly allowed)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path

from backend.executors import ExecutorOptions
from protocol.errors import Recast4DError


class BindRefused(Recast4DError):
    """The server was asked to listen on a non-loopback address without ``allow_remote``."""

    code = "bind_refused"


@dataclass
class ServerConfig:
    """How to run the server.

    ``host``/``port``: TCP bind address (port 0 = a free port picked by the OS).
    ``jobs_dir``: the job store folder. ``connection_file``: where to write the connection info
    (None = ``protocol.connection.default_connection_path()``).
    ``progress_interval_s``: minimum time between two progress messages of a job (coalesced).
    ``client_ttl_s``: a client silent this long (and unreachable) is forgotten; its jobs keep running.
    ``max_jobs_per_client``: unfinished jobs one client may have.
    ``poll_interval_ms``: longest idle sleep of the I/O loop (requests and worker events wake it at
    once; this only paces progress flushing and housekeeping).
    ``executor``: where jobs run (``backend.executors``: the in-process worker by default, or Ray).
    ``upload_idle_timeout_s``: an upload that received nothing for this long fails its job
    (``upload_timeout``, retryable). ``max_open_uploads``: inputs being uploaded at once, all
    clients together (a submit beyond it gets ``too_many_uploads``, retryable).
    ``curve``: encrypt and authenticate the socket with CurveZMQ (keys made per start, carried in
    the connection file); ``False`` only for tests of the plain transport, never with ``allow_remote``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    jobs_dir: Path = field(default_factory=lambda: Path("recast4d-jobs"))
    allow_remote: bool = False
    connection_file: Path | None = None
    write_connection_file: bool = True
    progress_interval_s: float = 0.1
    client_ttl_s: float = 600.0
    max_jobs_per_client: int = 4
    upload_chunk_bytes: int = 8 << 20
    poll_interval_ms: int = 50
    key: bytes | None = None
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    upload_idle_timeout_s: float = 300.0
    max_open_uploads: int = 256
    curve: bool = True


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to loopback (``localhost``)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_bind(host: str, allow_remote: bool) -> bool:
    """Raise :class:`BindRefused` for a non-loopback ``host`` unless ``allow_remote``; True if remote."""
    if is_loopback(host):
        return False
    if not allow_remote:
        raise BindRefused(
            f"refusing to listen on {host!r}: it is not a loopback address, so other machines could reach the "
            "server. Use --host 127.0.0.1, or pass --allow-remote if you really mean it."
        )
    return True
