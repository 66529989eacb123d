"""Recast 4D: re-film a video along new camera paths and render the 4D result in Cycles.

The extension's package. This module only registers; features live in their own modules, each
keeping its properties, operators and panel together (Molecular Nodes style):

- :mod:`.connection` backend connection, status, "Start Local Backend" (+ :mod:`.session`, the
  client thread and the ``bpy.app.timers`` tick that drains its events);
- :mod:`.source`, :mod:`.targets`, :mod:`.generation`, :mod:`.jobs` the sidebar sections;
  :mod:`.job_ledger` keeps the job list out of undo; :mod:`.capture_task` runs source captures a
  frame at a time (status-bar progress, Esc cancels);
- :mod:`.results` / :mod:`.materials` / :mod:`.splats` USD import, Cycles materials, native splats
  (Blender >= 5.3); :mod:`.splat_import` File > Import of a 3DGS PLY; :mod:`.render_setup` Set Up
  Render / Render Shot / Restore;
- :mod:`.backend_info` the backend's engines and GPU (for polls); :mod:`.error_ui` full errors;
- :mod:`.camera_io` File > Import/Export of camera paths.

``protocol`` is reached through :mod:`.deps` (bundled copy when installed, the top-level package in
a development checkout).
"""

from __future__ import annotations

import bpy

from . import (
    camera_io,
    capture_task,
    connection,
    error_ui,
    generation,
    job_ledger,
    jobs,
    outputs,
    panel,
    prefs,
    props,
    render_setup,
    session,
    source,
    splat_import,
    submit,
    targets,
    text_to_4d,
    tuning,
)

# PropertyGroups first (nested before the groups that point at them), then the scene namespace,
# preferences, and operators/lists/panels (parent panel before its sections).
_FEATURES = (connection, source, targets, generation, outputs, tuning, text_to_4d, jobs, submit, render_setup,
             error_ui, camera_io, splat_import)
_PROPERTY_CLASSES = tuple(cls for module in _FEATURES for cls in module.PROPERTY_CLASSES)
_UI_CLASSES = tuple(cls for module in _FEATURES for cls in module.CLASSES)

_MENUS = (
    (bpy.types.TOPBAR_MT_file_import, jobs.menu_import),
    (bpy.types.TOPBAR_MT_file_import, splat_import.menu_import),
    (bpy.types.TOPBAR_MT_file_import, camera_io.menu_import),
    (bpy.types.TOPBAR_MT_file_export, camera_io.menu_export),
)
_registered = False


def register() -> None:
    """Register everything; a second call without ``unregister`` is a no-op."""
    global _registered
    if _registered:
        return
    for cls in _PROPERTY_CLASSES:
        bpy.utils.register_class(cls)
    props.register()
    prefs.register()
    panel.register()
    for cls in _UI_CLASSES:
        bpy.utils.register_class(cls)
    for menu, draw in _MENUS:
        menu.append(draw)
    job_ledger.register()  # undo/redo never lose a job
    capture_task.register()  # capture progress in the status bar
    _registered = True


def unregister() -> None:
    """Undo :func:`register` completely: menus, classes, the scene namespace."""
    global _registered
    if not _registered:
        return
    session.shutdown()  # timer, client thread, sockets, half-written result files
    capture_task.unregister()
    job_ledger.unregister()
    tuning.stop_timer()
    connection.stop_started_backend()
    for menu, draw in _MENUS:
        menu.remove(draw)
    for cls in reversed(_UI_CLASSES):
        bpy.utils.unregister_class(cls)
    panel.unregister()
    prefs.unregister()
    props.unregister()
    for cls in reversed(_PROPERTY_CLASSES):
        bpy.utils.unregister_class(cls)
    _registered = False
