"""Fixtures for the add-on tests: bpy in-process (the bpy wheel), a clean factory scene per test.

The add-on is imported as the top-level ``addon`` package of this checkout (its ``deps`` module then
uses the top-level ``protocol`` package); the install test builds and installs the real zip instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for _path in (REPO_ROOT, HERE):  # the checkout's `addon` package; helpers such as addon_usd_fixtures
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@pytest.fixture
def bpy_clean():
    """A fresh, empty factory scene; returns the ``bpy`` module."""
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy


@pytest.fixture
def registered_addon(bpy_clean):
    """The add-on registered in-process (from the checkout), unregistered afterwards."""
    import addon

    addon.register()
    try:
        yield addon
    finally:
        addon.unregister()
