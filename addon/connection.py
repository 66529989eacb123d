"""Backend section: find and connect to the compute backend, show its status, start a local one.

The connection comes from the server's connection file (``recast4d serve`` writes it; default
location from ``protocol.connection.default_connection_path``), or from host/port/key in the
preferences. The client is ``protocol.client.ThreadedClient``: its own thread owns the socket, and
:mod:`.session` drains its events from a timer. Blender's "Allow Online Access" is required only
for a non-loopback host (the add-on never talks to anything but the backend the user points at).
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import bpy

from . import backend_info, error_ui, session
from .deps import protocol_module
from .panel import SectionPanel, report_errors
from .prefs import PreferenceValues, get_preferences

_errors = protocol_module("errors")
_connection = protocol_module("connection")

#: "Start Local Backend": the started process (runtime only) and its log file.
_started_process: dict[str, object] = {}
START_TIMEOUT_S = 60.0
#: ``blender -b``: how long *Connect* waits for the backend's answer before the script goes on.
CONNECT_WAIT_S = 30.0


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1), and ipc paths."""
    if host in ("localhost", "") or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connection_file_path(prefs: PreferenceValues) -> Path:
    """The connection file to read: the preference if set, else the backend's default location."""
    if prefs.connection_file:
        return Path(bpy.path.abspath(prefs.connection_file))
    return Path(_connection.default_connection_path(create_dir=False))


def connection_info(prefs: PreferenceValues):
    """``ConnectionInfo`` from the manual address in the preferences or from the connection file."""
    if prefs.use_manual_address:
        return _connection.ConnectionInfo(transport="tcp", host=prefs.host, port=int(prefs.port), key=prefs.key,
                                          pid=0, server_session="manual",
                                          curve_server_public=prefs.server_public_key.strip())
    path = connection_file_path(prefs)
    if not path.is_file():
        raise _errors.Recast4DError(
            f"no backend connection file at {path}; start the backend ('recast4d serve') or set the "
            "connection file / a manual address in the add-on preferences", code="connection_file")
    return _connection.ConnectionInfo.read(path)


def _unfinished_job_ids() -> list[str]:
    """Jobs of every open scene that had not finished when the .blend was saved (to resume on connect)."""
    return sorted({job.job_id for scene in bpy.data.scenes if hasattr(scene, "recast4d")
                   for job in scene.recast4d.jobs if job.job_id and job.is_active})


def _job_tokens() -> dict[str, str]:
    """Ownership tokens of the jobs of every open scene (the backend asks for them from a new session)."""
    return {job.job_id: job.token for scene in bpy.data.scenes if hasattr(scene, "recast4d")
            for job in scene.recast4d.jobs if job.job_id and job.token}


def connect_backend(prefs: PreferenceValues | None = None, *, start_timer: bool = True):
    """Create, start and attach a ``ThreadedClient`` (returns it). Raises a typed error if unusable."""
    prefs = prefs or get_preferences()
    client_module = protocol_module("client")
    resume = _unfinished_job_ids()
    if prefs.use_manual_address:
        client = client_module.ThreadedClient(connection_info(prefs), client_name="recast4d-blender",
                                              resume_jobs=resume, job_tokens=_job_tokens())
    else:
        path = connection_file_path(prefs)
        info = connection_info(prefs)  # fail now, with a clear message, if the file is missing or bad
        if not is_loopback_host(info.host) and not bpy.app.online_access:
            raise _errors.Recast4DError(
                f"the connection file {path} names the remote host {info.host}; allow online access "
                "(Preferences > System > Network) to connect to it", code="online_access")
        client = client_module.ThreadedClient(connection_file=path, client_name="recast4d-blender",
                                              resume_jobs=resume, job_tokens=_job_tokens())
    session.attach_client(client, start_timer=start_timer)
    client.start()
    session.state().status.update(connected=False, connecting=True, endpoint=_describe(prefs))
    return client


def wait_until_connected(timeout_s: float = 30.0) -> bool:
    """Blocking (``blender -b`` scripts, tests): handle events until the backend answered the hello.
    True once connected; False after ``timeout_s`` (the client keeps retrying)."""
    return session.drain_blocking(lambda: bool(session.state().status.get("connected")), timeout_s=timeout_s)


def _describe(prefs: PreferenceValues) -> str:
    if prefs.use_manual_address:
        return f"{prefs.host}:{prefs.port}"
    return str(connection_file_path(prefs))


def online_access_problem(prefs: PreferenceValues) -> str | None:
    """Why Blender's online-access setting forbids this connection, or ``None``."""
    if prefs.use_manual_address and not is_loopback_host(prefs.host) and not bpy.app.online_access:
        return "Online access is disabled (Preferences > System > Network); needed for a remote backend"
    return None


class RECAST4D_OT_connect(bpy.types.Operator):
    """Connect to the Recast 4D backend (connection file, or the manual address in the preferences)"""

    bl_idname = "recast4d.connect"
    bl_label = "Connect"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if session.current_client() is not None:
            cls.poll_message_set("Already connected; disconnect first")
            return False
        problem = online_access_problem(get_preferences(context))
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        outcome = report_errors(self, lambda: connect_backend(get_preferences(context)))
        if "FINISHED" in outcome and bpy.app.background and not wait_until_connected(CONNECT_WAIT_S):
            # no timers in `blender -b`: wait here, so the next operator of the script finds a backend
            self.report({"WARNING"}, f"the backend did not answer within {CONNECT_WAIT_S:.0f} s; still trying")
        return outcome


class RECAST4D_OT_disconnect(bpy.types.Operator):
    """Disconnect from the backend (jobs keep running there; reconnect to fetch their results)"""

    bl_idname = "recast4d.disconnect"
    bl_label = "Disconnect"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if session.current_client() is None:
            cls.poll_message_set("Not connected")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        session.detach_client()
        return {"FINISHED"}


def start_local_backend(prefs: PreferenceValues) -> subprocess.Popen:
    """Launch ``<python> -m backend.cli serve`` writing the connection file this add-on reads."""
    python = bpy.path.abspath(prefs.python_path) if prefs.python_path else ""
    if not python or not Path(python).is_file():
        raise _errors.ValidationError(
            "set 'Backend Python' in the add-on preferences to the python of the Recast 4D backend environment")
    conn_file = connection_file_path(prefs)
    try:
        log_dir = Path(bpy.utils.extension_path_user(__package__, path="logs", create=True))
    except (ValueError, KeyError):  # development checkout, not an installed extension
        log_dir = Path(bpy.app.tempdir or "/tmp")
    stale_session = _server_session_in(conn_file)  # a file left by an earlier server is not ours
    cmd = [python, "-m", "backend.cli", "serve", "--connection-file", str(conn_file)]
    creation = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if sys.platform == "win32" else {}
    with open(log_dir / "backend.log", "ab") as log:  # the child keeps its own handle
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **creation)
    _started_process.update(process=process, log=str(log_dir / "backend.log"), conn_file=str(conn_file),
                            stale_session=stale_session)
    return process


def _server_session_in(path: Path) -> str | None:
    """The ``server_session`` named by a readable connection file, else ``None``."""
    try:
        return _connection.ConnectionInfo.read(path).server_session
    except _errors.Recast4DError:
        return None


def started_backend_ready() -> bool:
    """True once the backend started by :func:`start_local_backend` has written its connection file
    (a file that was already there, from an earlier server, does not count)."""
    if "conn_file" not in _started_process:
        return False
    session_now = _server_session_in(Path(str(_started_process["conn_file"])))
    return session_now is not None and session_now != _started_process.get("stale_session")


def stop_started_backend() -> None:
    """Terminate the backend this session started (unregister); leaves other backends alone."""
    process = _started_process.pop("process", None)
    if isinstance(process, subprocess.Popen) and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
    _started_process.clear()


class RECAST4D_OT_start_backend(bpy.types.Operator):
    """Start 'recast4d serve' with the Python set in the preferences, then connect to it"""

    bl_idname = "recast4d.start_backend"
    bl_label = "Start Local Backend"

    _timer = None
    _waited = 0.0

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        prefs = get_preferences(context)
        if not prefs.python_path:
            cls.poll_message_set("Set 'Backend Python' in the add-on preferences first")
            return False
        process = _started_process.get("process")
        if isinstance(process, subprocess.Popen) and process.poll() is None:
            cls.poll_message_set("The local backend is already running")
            return False
        if session.current_client() is not None:
            cls.poll_message_set("Already connected to a backend")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = get_preferences(context)
        try:
            start_local_backend(prefs)
        except (_errors.Recast4DError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if bpy.app.background:
            return {"FINISHED"}
        self._waited = 0.0
        self._timer = context.window_manager.event_timer_add(0.25, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self._waited += 0.25
        process = _started_process.get("process")
        if isinstance(process, subprocess.Popen) and process.poll() is not None:
            self._finish(context)
            self.report({"ERROR"}, f"the backend exited (code {process.returncode}); see {_started_process.get('log')}")
            return {"CANCELLED"}
        if started_backend_ready():
            self._finish(context)
            return report_errors(self, lambda: connect_backend(get_preferences(context)))
        if self._waited > START_TIMEOUT_S:
            self._finish(context)
            self.report({"ERROR"}, f"the backend did not start within {START_TIMEOUT_S:.0f} s")
            return {"CANCELLED"}
        return {"RUNNING_MODAL"}

    def _finish(self, context: bpy.types.Context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None


class RECAST4D_PT_backend(SectionPanel, bpy.types.Panel):
    bl_idname = "RECAST4D_PT_backend"
    bl_label = "Backend"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        status = session.state().status
        client = session.current_client()
        col = layout.column(align=True)
        if client is None:
            col.label(text="Not connected", icon="UNLINKED")
        elif status.get("connected"):
            col.label(text="Connected", icon="LINKED")
            col.label(text=f"GPU: {status.get('gpu', 'unknown')}")
        else:
            col.label(text="Connecting...", icon="TIME")
        if status.get("error"):
            error_ui.draw_error_box(layout, context, str(status["error"]), "backend")
        if client is None:
            layout.operator(RECAST4D_OT_connect.bl_idname, icon="LINKED")
            layout.operator(RECAST4D_OT_start_backend.bl_idname, icon="PLAY")
        else:
            layout.operator(RECAST4D_OT_disconnect.bl_idname, icon="UNLINKED")
        if client is not None and status.get("connected"):
            box = layout.box()
            box.label(text="Engines", icon="SETTINGS")
            backend_info.draw_engines(box, context)


PROPERTY_CLASSES = ()
CLASSES = (RECAST4D_OT_connect, RECAST4D_OT_disconnect, RECAST4D_OT_start_backend, RECAST4D_PT_backend)
