"""Set-up for the add-on tests: bpy in-process (the bpy wheel); the ``bpy_clean`` and
``registered_addon`` fixtures live in ``tests/conftest.py`` (the Blender 5.3 tests use them too).

The add-on is imported as the top-level ``addon`` package of this checkout (its ``deps`` module then
uses the top-level ``protocol`` package); the install test builds and installs the real zip instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for _path in (REPO_ROOT, HERE):  # the checkout's `addon` package; helpers such as addon_usd_fixtures
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
