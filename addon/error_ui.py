"""Readable errors: the full message wrapped to the sidebar width, a popup, and *Copy Error*.

Blender cuts a label at the region's width, so a long backend error (with its fix at the end)
would show as ``weights folder '... that holds 'Wan2.``. :func:`wrap_text` breaks the text into
lines that fit (measured with the UI font, ``blf``), :func:`draw_error_box` draws all of it in an
alert box with *Copy Error* and *Show Error* (a popup as wide as the text needs).
"""

from __future__ import annotations

import re

import blf
import bpy

from .panel import scene_settings

#: Default width of the 3D Viewport sidebar in pixels at UI scale 1 (Blender's
#: ``UI_SIDEBAR_PANEL_WIDTH``) and the part of it a sub-panel's content can use.
SIDEBAR_WIDTH_PX = 220
CONTENT_MARGIN_PX = 44
UI_FONT_SIZE = 11
ICON_WIDTH_PX = 22
POPUP_WIDTH_PX = 520
#: Where a line may break: after spaces, and after path / name separators inside long words.
_BREAK_AFTER = re.compile(r"(?<=[ /\\_.-])")


def text_width_px(text: str) -> float:
    """Width of ``text`` in pixels in Blender's UI font at UI scale 1."""
    blf.size(0, UI_FONT_SIZE)
    return float(blf.dimensions(0, text)[0])


def content_width_px(context: bpy.types.Context | None) -> float:
    """Pixels a sidebar sub-panel's content can use (the current region's width, else the default)."""
    region = getattr(context, "region", None) if context is not None else None
    scale = context.preferences.system.ui_scale if context is not None else 1.0
    width = region.width / max(scale, 0.1) if region is not None and region.width > 1 else SIDEBAR_WIDTH_PX
    return max(80.0, width - CONTENT_MARGIN_PX)


def wrap_text(text: str, width_px: float) -> list[str]:
    """``text`` broken into lines no wider than ``width_px``, at spaces, or after ``/``, ``-``, ``_``
    and ``.`` inside long words such as paths (a piece longer than a line is split). Keeps the
    text's own line breaks and every character (only spaces at the breaks are dropped)."""
    lines: list[str] = []
    for paragraph in str(text).splitlines() or [""]:
        line = ""
        for token in _BREAK_AFTER.split(paragraph):
            if not token:
                continue
            if text_width_px((line + token).rstrip()) <= width_px:
                line += token
                continue
            if line.strip():
                lines.append(line.rstrip())
            line = token.lstrip()
            while text_width_px(line.rstrip()) > width_px and len(line) > 1:  # one piece wider than a line
                cut = max(1, max(i for i in range(1, len(line) + 1) if text_width_px(line[:i]) <= width_px or i == 1))
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line.rstrip())
    return lines


def draw_wrapped(layout: bpy.types.UILayout, context: bpy.types.Context, text: str, *, icon: str = "NONE",
                 indent: bool = False) -> None:
    """Draw ``text`` as labels wrapped to the panel width (the first line carries ``icon``)."""
    width = content_width_px(context) - (ICON_WIDTH_PX if icon != "NONE" or indent else 0)
    col = layout.column(align=True)
    for i, line in enumerate(wrap_text(text, width)):
        col.label(text=line, icon=icon if i == 0 else ("BLANK1" if icon != "NONE" or indent else "NONE"))


def error_text(context: bpy.types.Context, source: str) -> str:
    """The error shown in the UI for ``source``: ``"backend"`` (connection status) or ``"job"`` (the
    selected job), with the error code when there is one."""
    if source == "backend":
        from . import session

        return str(session.state().status.get("error") or "")
    settings = scene_settings(context)
    if not 0 <= settings.active_job_index < len(settings.jobs):
        return ""
    job = settings.jobs[settings.active_job_index]
    if not job.error:
        return ""
    return f"{job.error} [{job.error_code}]" if job.error_code and job.error_code not in job.error else job.error


ERROR_SOURCES = [("job", "Job", "The selected job's error"), ("backend", "Backend", "The connection's last error")]


class RECAST4D_OT_copy_error(bpy.types.Operator):
    """Copy the full error text to the clipboard (to paste it into a bug report or a search)"""

    bl_idname = "recast4d.copy_error"
    bl_label = "Copy Error"

    source: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Error", items=ERROR_SOURCES, default="job", description="Which error to copy")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not (error_text(context, "job") or error_text(context, "backend")):
            cls.poll_message_set("There is no error to copy")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        text = error_text(context, self.source)
        if not text:
            self.report({"WARNING"}, "There is no error to copy")
            return {"CANCELLED"}
        context.window_manager.clipboard = text
        self.report({"INFO"}, f"Copied the error ({len(text)} characters)")
        return {"FINISHED"}


class RECAST4D_OT_show_error(bpy.types.Operator):
    """Show the full error text in a popup"""

    bl_idname = "recast4d.show_error"
    bl_label = "Show Error"

    source: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Error", items=ERROR_SOURCES, default="job", description="Which error to show")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return RECAST4D_OT_copy_error.poll(context)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_popup(self, width=POPUP_WIDTH_PX)

    def draw(self, context: bpy.types.Context) -> None:
        col = self.layout.column(align=True)
        for i, line in enumerate(wrap_text(error_text(context, self.source), POPUP_WIDTH_PX - 40)):
            col.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        self.layout.operator(RECAST4D_OT_copy_error.bl_idname, icon="COPYDOWN").source = self.source

    def execute(self, context: bpy.types.Context) -> set[str]:
        text = error_text(context, self.source)
        if text:
            self.report({"ERROR"}, text)
        return {"FINISHED"}


def draw_error_box(layout: bpy.types.UILayout, context: bpy.types.Context, text: str, source: str) -> None:
    """An alert box with all of ``text`` wrapped, plus *Copy Error* and *Show Error*."""
    box = layout.box()
    col = box.column(align=True)
    col.alert = True
    draw_wrapped(col, context, text, icon="ERROR")
    row = box.row(align=True)
    row.operator(RECAST4D_OT_copy_error.bl_idname, text="Copy", icon="COPYDOWN").source = source
    row.operator(RECAST4D_OT_show_error.bl_idname, text="Show", icon="WINDOW").source = source


PROPERTY_CLASSES = ()
CLASSES = (RECAST4D_OT_copy_error, RECAST4D_OT_show_error)
