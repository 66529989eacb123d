"""The ``recast4d`` command line: jobs listing, doctor table, serve's bind policy and shutdown."""

from __future__ import annotations

import os
import stat

import pytest
from serverkit import ServerProcess, connect

from backend.cli import build_parser, main
from backend.doctor import format_table, run_checks
from backend.jobs import DONE, JobStore
from backend.server import BindRefused, ServerConfig, check_bind, is_loopback
from backend.server.app import Server
from protocol.connection import ConnectionInfo


def test_jobs_lists_the_store(tmp_path, capsys):
    store = JobStore(tmp_path / "jobs")
    store.create("listed-job", "test.points", {}, {})
    store.transition("listed-job", DONE)
    assert main(["jobs", "--jobs-dir", str(tmp_path / "jobs")]) == 0
    out = capsys.readouterr().out
    assert "listed-job" in out and "done" in out
    assert main(["jobs", "--jobs-dir", str(tmp_path / "nothing")]) == 0
    assert "no jobs" in capsys.readouterr().out


def test_doctor_prints_a_table_with_hints(capsys):
    rows = run_checks()
    names = {row.name for row in rows}
    assert {"python", "torch", "cuda/gpu", "gsplat", "bpy", "usd-core"} <= names
    table = format_table(rows)
    assert table.splitlines()[0].split() == ["component", "status", "detail"]
    assert all(row.hint for row in rows if not row.ok and row.name in ("cuda/gpu", "gsplat"))
    assert main(["doctor"]) == 0
    assert "python" in capsys.readouterr().out


def test_subcommands_are_registered():
    parser = build_parser()
    args = parser.parse_args(["serve", "--port", "0", "--allow-remote"])
    assert args.command == "serve" and args.allow_remote and callable(args.func)


def test_bind_policy_refuses_non_loopback_without_flag(tmp_path, capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    with pytest.raises(BindRefused):
        check_bind("0.0.0.0", allow_remote=False)
    assert check_bind("0.0.0.0", allow_remote=True) is True
    with pytest.raises(BindRefused):
        Server(ServerConfig(host="0.0.0.0", jobs_dir=tmp_path / "jobs"))
    code = main(["serve", "--host", "0.0.0.0", "--jobs-dir", str(tmp_path / "jobs"),
                 "--connection-file", str(tmp_path / "c.json")])
    assert code == 2 and "--allow-remote" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


def test_serve_writes_private_connection_file_and_stops_cleanly_on_sigterm(tmp_path):
    server = ServerProcess(tmp_path / "jobs", tmp_path / "server.json")
    info = ConnectionInfo.read(tmp_path / "server.json")
    assert stat.S_IMODE(os.stat(tmp_path / "server.json").st_mode) == 0o600
    assert info.host == "127.0.0.1" and info.port > 0 and len(info.key_bytes) == 32
    client = connect(tmp_path / "server.json")
    try:
        assert client.ping().server_session == info.server_session
        assert server.terminate() == 0
        event = client.next_event(5)  # the server says goodbye before exiting
        assert event is not None and event.message.code == "shutting_down"
    finally:
        client.close()
    assert not (tmp_path / "server.json").exists()


def test_two_servers_never_share_a_jobs_folder(tmp_path):
    from protocol.errors import Recast4DError

    first = Server(ServerConfig(jobs_dir=tmp_path / "jobs", write_connection_file=False))
    first.start()
    try:
        with pytest.raises(Recast4DError) as info:
            Server(ServerConfig(jobs_dir=tmp_path / "jobs", write_connection_file=False))
        assert info.value.code == "jobs_dir_in_use" and str(os.getpid()) in str(info.value)
    finally:
        first.stop()
    second = Server(ServerConfig(jobs_dir=tmp_path / "jobs", write_connection_file=False))
    second.start()
    second.stop()
