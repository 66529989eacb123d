"""Build the extension zip and install it into bpy 5.0.1 through the extensions API.

Runs in a subprocess with ``BLENDER_USER_RESOURCES`` pointing at a temporary folder, so the
install touches no real user configuration and the in-process tests keep their own bpy state.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.blender

REPO_ROOT = Path(__file__).resolve().parents[2]

INSTALL_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    import bpy

    zip_path = sys.argv[1]
    report = {}
    threads_before = {t.ident for t in threading.enumerate()}
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True)
    report["install"] = sorted(result)
    module = "bl_ext.user_default.recast4d"
    report["enabled"] = module in bpy.context.preferences.addons
    package = sys.modules[module]
    report["protocol_module"] = package.deps.protocol.__name__
    report["scene_props"] = hasattr(bpy.types.Scene, "recast4d")
    report["panel"] = hasattr(bpy.types, "RECAST4D_PT_main")
    report["prefs"] = bpy.context.preferences.addons[module].preferences is not None
    site = bpy.utils.user_resource("EXTENSIONS", path=".local")
    import glob
    report["wheels_installed"] = sorted({p.split("/")[-1] for p in glob.glob(site + "/lib/python*/site-packages/*")
                                         if p.endswith((".dist-info",))})
    session = sys.modules.get(module + ".session")
    # connect the installed add-on's real client (its I/O thread and sockets) to a port nobody serves
    conn = sys.modules[module + ".deps"].protocol_module("connection")
    conn_file = sys.argv[2]
    conn.ConnectionInfo(transport="tcp", host="127.0.0.1", port=9, key="00" * 32, pid=0,
                        server_session="none").write(conn_file)
    prefs = sys.modules[module + ".prefs"].PreferenceValues(connection_file=conn_file)
    client = sys.modules[module + ".connection"].connect_backend(prefs)
    report["client_thread_started"] = client._thread.is_alive()
    report["timer_while_connected"] = bpy.app.timers.is_registered(session.tick)
    bpy.ops.preferences.addon_disable(module=module)
    report["disabled"] = module not in bpy.context.preferences.addons
    report["left_types"] = [n for n in dir(bpy.types) if n.startswith("RECAST4D_")]
    report["left_scene_props"] = hasattr(bpy.types.Scene, "recast4d")
    report["left_threads"] = [t.name for t in threading.enumerate() if t.ident not in threads_before]
    report["left_timers"] = bool(session and bpy.app.timers.is_registered(session.tick))
    report["left_client"] = bool(session and session.current_client() is not None)
    print("REPORT " + json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    from backend import addon_build as build_addon

    out = tmp_path_factory.mktemp("dist")
    try:
        result = build_addon.build_extension(out)
    except build_addon.BuildError as exc:  # no PyPI and no wheel cache on this machine
        pytest.skip(f"cannot fetch the pyzmq/msgpack wheels: {exc}")
    return result.zip_path


def test_zip_layout(built_zip):
    import tomllib

    with zipfile.ZipFile(built_zip) as zf:
        names = set(zf.namelist())
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
        bundled_sources = [zf.read(n).decode() for n in names if n.startswith("protocol/") and n.endswith(".py")]
    assert {"__init__.py", "deps.py", "protocol/__init__.py", "protocol/camera.py"} <= names
    assert manifest["id"] == "recast4d" and manifest["schema_version"] == "1.0.0"
    assert manifest["blender_version_min"] == "4.2.0" and manifest["type"] == "add-on"
    assert set(manifest["permissions"]) == {"network", "files", "clipboard"}  # clipboard: Copy Error
    wheels = manifest["wheels"]
    assert all(w.startswith("./wheels/") and w[2:] in names for w in wheels)
    for package in ("pyzmq", "msgpack"):
        for marker in ("win_amd64", "manylinux", "macosx"):
            assert any(package in w and marker in w for w in wheels), (package, marker)
    assert any("cp311-cp311" in w for w in wheels) and any("abi3" in w or "cp313" in w for w in wheels)
    assert not any("torch" in n or "numpy" in n for n in names)
    assert not any("__pycache__" in n for n in names)
    # the bundled protocol copy never reaches for a top-level `protocol` package
    absolute = re.compile(r"^\s*(from|import)\s+protocol\b", re.MULTILINE)
    assert not any(absolute.search(src) for src in bundled_sources)


def test_blender_validates_the_zip(built_zip):
    """Blender's own extension validator (``blender --command extension validate``) accepts the zip."""
    bpy = pytest.importorskip("bpy")

    script = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    assert script.is_file(), script
    proc = subprocess.run([sys.executable, str(script), "validate", str(built_zip)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_install_enable_disable_leaves_nothing(built_zip, tmp_path):
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    proc = subprocess.run([sys.executable, "-c", INSTALL_SCRIPT, str(built_zip), str(tmp_path / "conn.json")], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])
    assert report["install"] == ["FINISHED"]
    assert report["enabled"] and report["scene_props"] and report["panel"] and report["prefs"]
    assert report["protocol_module"] == "bl_ext.user_default.recast4d.protocol"
    assert any(name.startswith("pyzmq") for name in report["wheels_installed"])
    assert any(name.startswith("msgpack") for name in report["wheels_installed"])
    assert report["client_thread_started"] and report["timer_while_connected"]
    assert report["disabled"]
    assert report["left_types"] == [] and not report["left_scene_props"]
    assert report["left_threads"] == [] and not report["left_timers"] and not report["left_client"]
