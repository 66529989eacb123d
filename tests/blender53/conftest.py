"""Fixtures for the Blender 5.3 tests (native Gaussian splats), also collected by the main suite.

``make test`` runs this folder a second time in ``.venv-blender53`` (bpy 5.3.0 on Python 3.13, no
torch) with ``RECAST4D_BACKEND_PYTHON`` naming the backend's interpreter: files the backend writes
come from :mod:`backend_fixtures` run by that interpreter, as a real add-on gets them from a
backend process. In the main environment (bpy 5.0.1) the native-splat tests skip and the
fallback/bad-input tests run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
for _path in (REPO_ROOT, HERE, REPO_ROOT / "tests" / "addon"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from backend_process import backend_python  # noqa: E402  (tests/addon helper; needs the path above)


@pytest.fixture
def native_splats(registered_addon):
    """Skip unless this Blender renders native Gaussian splats (Blender >= 5.3)."""
    from addon import splats

    if not splats.native_splats_supported():
        pytest.skip("needs native Gaussian splats (bpy 5.3: make venv-blender53)")
    return splats


@pytest.fixture(scope="session")
def backend_files_root(tmp_path_factory) -> Path:
    """Every kind of ``backend_fixtures.py`` written once per session by the backend's own code,
    run by the backend's interpreter (one subprocess: torch starts once); skips if there is none."""
    out_dir = tmp_path_factory.mktemp("backend_files")
    try:
        done = subprocess.run([backend_python(), str(HERE / "backend_fixtures.py"), "all", str(out_dir)],
                              capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    except FileNotFoundError:
        pytest.skip(f"no backend interpreter at {backend_python()} (set RECAST4D_BACKEND_PYTHON)")
    if done.returncode != 0 and "No module named 'torch'" in done.stderr:
        pytest.skip("the backend fixtures need torch: set RECAST4D_BACKEND_PYTHON to the backend's Python")
    assert done.returncode == 0, done.stderr[-4000:]
    return out_dir


@pytest.fixture
def backend_files(backend_files_root, tmp_path):
    """``backend_files(kind)``: a private copy (the test may change it) of the folder of ``kind``."""
    def copy(kind: str) -> Path:
        return Path(shutil.copytree(backend_files_root / kind, tmp_path / kind))

    return copy
