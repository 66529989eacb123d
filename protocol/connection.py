"""The connection file: how the add-on finds and authenticates to a running backend server.

The server picks its own port, then writes a small JSON file (mode 0600, written atomically) in
the user runtime directory; the add-on reads it. Like a Jupyter kernel connection file::

    {"transport": "tcp", "host": "127.0.0.1", "port": 50123, "key": "<64 hex chars>",
     "signature_scheme": "hmac-sha256", "protocol": "b4d/1.0", "pid": 4242,
     "server_session": "<uuid hex>", "curve_server_public": "<40 Z85 chars>"}

For ``transport == "ipc"`` the ``host`` field holds the socket path and ``port`` is 0.

``curve_server_public`` is the server's CurveZMQ public key (made per server start): a client
that does not know it cannot complete the handshake, so it never delivers a single message.
:func:`secure_client_socket` / :func:`secure_server_socket` apply the keys to a pyzmq socket
(the client makes its own short-lived key pair per socket); benchmarks use the same calls.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import zmq

from protocol.errors import Recast4DError
from protocol.wire import PROTOCOL_VERSION, SIGNATURE_SCHEME

CONNECTION_FILE_NAME = "server.json"
#: Environment variable that overrides the connection file location (tests, several servers).
CONNECTION_FILE_ENV = "RECAST4D_CONNECTION_FILE"
PROTOCOL_NAME = f"b4d/{PROTOCOL_VERSION}"
_MAX_FILE_BYTES = 64 << 10
#: A CurveZMQ key in Z85 text form: 40 characters.
Z85_KEY = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
#: ZAP domain of the server socket (``ZMQ_ZAP_DOMAIN``).
ZAP_DOMAIN = "recast4d"


class ConnectionFileError(Recast4DError):
    """The connection file is missing, unreadable, insecure or malformed."""

    code = "connection_file"


def default_connection_dir(create: bool = True) -> Path:
    """``$XDG_RUNTIME_DIR/recast4d`` if that runtime dir exists, else ``~/.cache/recast4d``.

    With ``create`` the directory is made with mode 0700 (and tightened to 0700 if it exists).
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path.home() / ".cache"
    directory = base / "recast4d"
    if create:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.name == "posix" and stat.S_IMODE(directory.stat().st_mode) != 0o700:
            directory.chmod(0o700)
    return directory


def default_connection_path(create_dir: bool = True) -> Path:
    """Where the server writes and the add-on looks for the connection file.

    ``$RECAST4D_CONNECTION_FILE`` if set, else ``default_connection_dir() / "server.json"``.
    """
    override = os.environ.get(CONNECTION_FILE_ENV)
    if override:
        return Path(override)
    return default_connection_dir(create=create_dir) / CONNECTION_FILE_NAME


@dataclass(frozen=True)
class ConnectionInfo:
    """Everything a client needs to reach and authenticate to one server instance.

    ``key`` is the hex form of the 32-byte HMAC key (empty = unsigned, tests only).
    """

    transport: str
    host: str
    port: int
    key: str
    pid: int
    server_session: str
    protocol: str = PROTOCOL_NAME
    signature_scheme: str = SIGNATURE_SCHEME
    curve_server_public: str = ""  # Z85; "" = plain transport (tests only)

    def __post_init__(self) -> None:
        problems = []
        if self.transport not in ("tcp", "ipc"):
            problems.append(f"transport must be 'tcp' or 'ipc', got {self.transport!r}")
        if not isinstance(self.host, str) or not self.host:
            problems.append("host must be a non-empty string")
        if type(self.port) is not int or not 0 <= self.port <= 65535 or (self.transport == "tcp" and not self.port):
            problems.append(f"port must be 1..65535 for tcp, got {self.port!r}")
        if not isinstance(self.key, str):
            problems.append("key must be a hex string")
        else:
            try:
                bytes.fromhex(self.key)
            except ValueError:
                problems.append("key is not valid hex")
        if type(self.pid) is not int or self.pid < 0:
            problems.append(f"pid must be a non-negative int, got {self.pid!r}")
        if not isinstance(self.server_session, str):
            problems.append("server_session must be a string")
        if self.signature_scheme != SIGNATURE_SCHEME:
            problems.append(f"signature_scheme {self.signature_scheme!r} is not supported ({SIGNATURE_SCHEME})")
        if not isinstance(self.protocol, str) or not self.protocol.startswith("b4d/"):
            problems.append(f"protocol must look like 'b4d/1.0', got {self.protocol!r}")
        if not isinstance(self.curve_server_public, str) or (
                self.curve_server_public and not Z85_KEY.fullmatch(self.curve_server_public)):
            problems.append("curve_server_public must be a 40-character Z85 key (or empty)")
        if problems:
            raise ConnectionFileError("bad connection info: " + "; ".join(problems))

    @property
    def key_bytes(self) -> bytes:
        """The raw signing key for :class:`protocol.wire.Codec`."""
        return bytes.fromhex(self.key)

    @property
    def endpoint(self) -> str:
        """ZeroMQ endpoint, e.g. ``tcp://127.0.0.1:50123`` or ``ipc:///run/user/1000/recast4d/1.sock``."""
        if self.transport == "ipc":
            return f"ipc://{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    def pid_alive(self) -> bool:
        """Whether the server process named in the file still exists (stale-file check, POSIX)."""
        if self.pid <= 0:
            return False
        if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by someone else
            return True
        except OSError:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConnectionInfo:
        """Build from parsed JSON; unknown keys ignored, missing required keys -> ConnectionFileError."""
        if not isinstance(data, dict):
            raise ConnectionFileError("connection file must hold a JSON object")
        known = {item.name for item in fields(cls)}
        required = {"transport", "host", "port", "key", "pid", "server_session"}
        missing = sorted(required - set(data))
        if missing:
            raise ConnectionFileError(f"connection file lacks {missing}")
        return cls(**{name: value for name, value in data.items() if name in known})

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + rename in the same dir) with mode 0600; returns the path.

        The parent directory is created with mode 0700 if missing.
        """
        target = Path(path)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = json.dumps(self.to_dict(), indent=2, sort_keys=True).encode()
        fd, tmp_name = tempfile.mkstemp(prefix=".server-", suffix=".tmp", dir=target.parent)
        try:
            # mkstemp creates the file with mode 0600 (owner read/write only).
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return target

    def remove(self, path: str | os.PathLike[str]) -> bool:
        """Delete the connection file at ``path`` if it still describes this server instance.

        A file rewritten by a newer server (another ``server_session``) is left alone. Returns
        whether a file was removed.
        """
        target = Path(path)
        try:
            current = ConnectionInfo.read(target, check_permissions=False)
        except ConnectionFileError:
            return False
        if current.server_session != self.server_session:
            return False
        target.unlink(missing_ok=True)
        return True

    @classmethod
    def read(cls, path: str | os.PathLike[str], check_permissions: bool = True) -> ConnectionInfo:
        """Read and validate a connection file.

        Raises ConnectionFileError (code ``connection_file``) when it is missing ("is the server
        running?"), readable by other users (POSIX, unless ``check_permissions`` is False),
        too big, not JSON, or has bad values.
        """
        source = Path(path)
        try:
            info = source.stat()
        except FileNotFoundError:
            raise ConnectionFileError(f"no connection file at {source}: is the Recast 4D server running? "
                                      "Start it with 'recast4d serve'.", retryable=True) from None
        except OSError as exc:
            raise ConnectionFileError(f"cannot access connection file {source}: {exc.strerror}") from None
        if check_permissions and os.name == "posix" and stat.S_IMODE(info.st_mode) & 0o077:
            raise ConnectionFileError(
                f"connection file {source} has mode {oct(stat.S_IMODE(info.st_mode))}; it holds a secret key "
                "and must be readable only by you (chmod 600), restart the server to rewrite it")
        if info.st_size > _MAX_FILE_BYTES:
            raise ConnectionFileError(f"connection file {source} is {info.st_size} bytes; not a connection file")
        try:
            data = json.loads(source.read_bytes())
        except OSError as exc:
            raise ConnectionFileError(f"cannot read connection file {source}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConnectionFileError(f"connection file {source} is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def curve_keypair() -> tuple[str, str]:
    """A new CurveZMQ key pair ``(public, secret)`` in Z85 text (``zmq.curve_keypair``)."""
    if not zmq.has("curve"):
        raise Recast4DError("this pyzmq/libzmq was built without CURVE (libsodium); install a pyzmq wheel from PyPI",
                            code="curve_unavailable")
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")


def secure_server_socket(sock: zmq.Socket, public: str, secret: str) -> None:
    """Make ``sock`` (before ``bind``) a CURVE server with this key pair, in the ZAP domain ``recast4d``."""
    sock.curve_secretkey = secret.encode("ascii")
    sock.curve_publickey = public.encode("ascii")
    sock.curve_server = True
    sock.zap_domain = ZAP_DOMAIN.encode("ascii")


def secure_client_socket(sock: zmq.Socket, info: ConnectionInfo) -> None:
    """Before ``connect``: a CURVE client of ``info``'s server (own fresh key pair); no-op for plain servers."""
    if not info.curve_server_public:
        return
    public, secret = curve_keypair()
    sock.curve_serverkey = info.curve_server_public.encode("ascii")
    sock.curve_publickey = public.encode("ascii")
    sock.curve_secretkey = secret.encode("ascii")
