"""Connection file: atomic 0600 write, validated read, clear errors, default location."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from protocol.connection import (
    CONNECTION_FILE_ENV,
    ConnectionFileError,
    ConnectionInfo,
    default_connection_dir,
    default_connection_path,
)
from protocol.wire import Codec, Message, generate_key

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def make_info(**override) -> ConnectionInfo:
    values = {"transport": "tcp", "host": "127.0.0.1", "port": 50123, "key": generate_key().hex(),
              "pid": os.getpid(), "server_session": "abc"}
    values.update(override)
    return ConnectionInfo(**values)


@posix_only
def test_write_is_0600_in_0700_dir_and_reads_back(tmp_path: Path) -> None:
    info = make_info()
    path = info.write(tmp_path / "run" / "server.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ConnectionInfo.read(path) == info
    assert [p.name for p in path.parent.iterdir()] == ["server.json"]  # no temp file left behind
    assert info.endpoint == "tcp://127.0.0.1:50123"
    assert info.protocol == "b4d/1.0" and info.signature_scheme == "hmac-sha256"


def test_key_from_file_signs_messages(tmp_path: Path) -> None:
    info = make_info()
    read = ConnectionInfo.read(info.write(tmp_path / "server.json"))
    frames = Codec(info.key_bytes).encode(Message("ping"))
    assert Codec(read.key_bytes).decode(frames).type == "ping"
    assert len(read.key_bytes) == 32


def test_overwrite_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    make_info(port=1000).write(path)
    make_info(port=2000).write(path)
    assert ConnectionInfo.read(path).port == 2000


def test_missing_file_says_to_start_the_server(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFileError) as info:
        ConnectionInfo.read(tmp_path / "nope.json")
    assert "recast4d serve" in str(info.value) and info.value.code == "connection_file"
    assert info.value.retryable


@posix_only
def test_group_or_world_readable_file_is_refused(tmp_path: Path) -> None:
    path = make_info().write(tmp_path / "server.json")
    path.chmod(0o644)
    with pytest.raises(ConnectionFileError, match="chmod 600"):
        ConnectionInfo.read(path)
    assert ConnectionInfo.read(path, check_permissions=False).port == 50123


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[1, 2]", b"{}", json.dumps({"transport": "udp", "host": "h", "port": 1, "key": "00", "pid": 1,
                                                "server_session": "s"}).encode(),
     json.dumps({"transport": "tcp", "host": "h", "port": 70000, "key": "00", "pid": 1,
                 "server_session": "s"}).encode(),
     json.dumps({"transport": "tcp", "host": "h", "port": 1, "key": "zz", "pid": 1, "server_session": "s"}).encode(),
     json.dumps({"transport": "tcp", "host": "h", "port": 1, "key": "00", "pid": 1, "server_session": "s",
                 "signature_scheme": "hmac-md5"}).encode(),
     b" " * (100 << 10)],
    ids=["text", "list", "empty", "transport", "port", "key", "scheme", "huge"],
)
def test_malformed_files_are_clear_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "server.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConnectionFileError):
        ConnectionInfo.read(path)


def test_unknown_keys_ignored_and_ipc_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    data = make_info(transport="ipc", host="/tmp/b4d/1.sock", port=0).to_dict() | {"curve_publickey": "x"}
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    info = ConnectionInfo.read(path)
    assert info.endpoint == "ipc:///tmp/b4d/1.sock"


@posix_only
def test_stale_pid_detection() -> None:
    assert make_info().pid_alive()
    assert not make_info(pid=0).pid_alive()
    assert not make_info(pid=2**22 + 12345).pid_alive()  # above Linux pid_max default


@posix_only
def test_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONNECTION_FILE_ENV, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = default_connection_path()
    assert path == tmp_path / "recast4d" / "server.json"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_connection_dir(create=False) == tmp_path / "home" / ".cache" / "recast4d"
    monkeypatch.setenv(CONNECTION_FILE_ENV, str(tmp_path / "elsewhere.json"))
    assert default_connection_path() == tmp_path / "elsewhere.json"


def test_remove_only_deletes_our_own_file(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    ours = make_info(server_session="old")
    ours.write(path)
    newer = make_info(server_session="new")
    newer.write(path)
    assert not ours.remove(path) and path.exists()
    assert newer.remove(path) and not path.exists()
    assert not newer.remove(path)


def test_curve_server_public_key_roundtrips_and_is_checked(tmp_path: Path) -> None:
    from protocol.connection import curve_keypair

    public, _secret = curve_keypair()
    info = ConnectionInfo(transport="tcp", host="127.0.0.1", port=5000, key=generate_key().hex(), pid=os.getpid(),
                          server_session="s", curve_server_public=public)
    assert ConnectionInfo.read(info.write(tmp_path / "server.json")).curve_server_public == public
    with pytest.raises(ConnectionFileError, match="curve_server_public"):
        ConnectionInfo(transport="tcp", host="127.0.0.1", port=5000, key="", pid=1, server_session="s",
                       curve_server_public="not a key")
