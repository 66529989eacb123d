"""Where the add-on finds the shared ``protocol`` package.

One rule, two layouts:
- installed extension: ``backend/addon_build.py`` (``make addon``) copies ``protocol/`` into the extension package, so it
  is importable as ``<extension package>.protocol`` (``bl_ext.<repo>.recast4d.protocol``);
- development checkout: the add-on is the top-level ``addon`` package and ``protocol`` is its sibling
  top-level package on ``sys.path``.

Every add-on module imports protocol code through this module only, e.g.
``from .deps import protocol_module``; never ``import protocol`` directly.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

if importlib.util.find_spec(f"{__package__}.protocol") is not None:  # bundled copy (installed extension)
    protocol = importlib.import_module(f"{__package__}.protocol")
else:  # development checkout: the top-level package next to addon/
    import protocol

PROTOCOL_PACKAGE = protocol.__name__


def protocol_module(name: str) -> ModuleType:
    """Import ``protocol.<name>`` from whichever copy is in use (e.g. ``"camera"``, ``"paths.presets"``)."""
    return importlib.import_module(f"{PROTOCOL_PACKAGE}.{name}")

