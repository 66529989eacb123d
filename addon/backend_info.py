"""What the connected backend can run: its engines (doctor data sent with ``welcome``) and its GPU.

The backend sends ``engines`` with its ``welcome`` reply: one map per registered engine with
``kind`` (``inpaint``, ``depth``, ``video``), ``name``, ``usable``, ``reason`` and ``hint`` (what
``recast4d doctor`` prints). :mod:`.session` keeps it in ``status["engines"]``; operators ask
:func:`engine_problem` / :func:`gpu_problem` in their ``poll()`` so a button that would fail is
disabled with the reason as its tooltip. An older backend that sends no engine list blocks
nothing (its answer is unknown, the job itself then says what is missing).
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy

from . import session
from .error_ui import draw_wrapped


@dataclass(frozen=True)
class EngineInfo:
    """One engine as the backend reported it."""

    kind: str
    name: str
    usable: bool
    reason: str
    hint: str

    @property
    def label(self) -> str:
        """``"inpaint wan-vace"``: kind and name, as the backend's doctor table names it."""
        return f"{self.kind} {self.name}"


def reported_engines(status: dict | None = None) -> list[EngineInfo] | None:
    """The engines of the connected backend, or ``None`` if it has not reported any (not connected
    yet, or a backend that predates the report)."""
    status = session.state().status if status is None else status
    raw = status.get("engines")
    if not isinstance(raw, list):
        return None
    engines = []
    for item in raw:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            engines.append(EngineInfo(str(item.get("kind", "")), item["name"], bool(item.get("usable")),
                                      str(item.get("reason", "")), str(item.get("hint", ""))))
    return engines


def find_engine(kind: str, name: str) -> EngineInfo | None:
    """The reported engine ``kind``/``name``, or ``None`` (unknown or nothing reported)."""
    for engine in reported_engines() or []:
        if engine.kind == kind and engine.name == name:
            return engine
    return None


def engine_problem(kind: str, name: str) -> str | None:
    """Why engine ``kind``/``name`` cannot run on the connected backend, in words, else ``None``."""
    engines = reported_engines()
    if engines is None:
        return None
    engine = find_engine(kind, name)
    if engine is None:
        known = ", ".join(e.name for e in engines if e.kind == kind) or "none"
        return f"The backend has no {kind} engine '{name}' (it has: {known})"
    if not engine.usable:
        return f"The backend cannot run {engine.label}: {engine.reason}"
    return None


def gpu_problem(kind: str, name: str, what: str) -> str | None:
    """``"<what> needs a CUDA GPU ..."`` when the backend reported engine ``kind``/``name`` usable only
    on its CPU, else ``None``.

    The engine report says it (the registry's hint "no CUDA GPU: runs on CPU, very slowly", checked
    when the report is made), not the welcome's ``gpu`` field, which a backend fills in by a probe
    that may still be running when the first client says hello.
    """
    engine = find_engine(kind, name)
    if engine is not None and engine.usable and "no cuda" in engine.hint.lower():
        return (f"{what} needs a CUDA GPU on the backend; this one has none and would run "
                f"{engine.label} on its CPU, very slowly")
    return None


def first_problem(*problems: str | None) -> str | None:
    """The first of ``problems`` that is not ``None``."""
    return next((p for p in problems if p), None)


def poll_with(cls: type[bpy.types.Operator], problem: str | None) -> bool:
    """For ``poll()``: False with ``problem`` as the poll message, True if there is none."""
    if problem:
        cls.poll_message_set(problem)
        return False
    return True


def draw_engines(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The Backend section's engine list: each engine with a check mark or the reason it cannot run."""
    engines = reported_engines()
    if engines is None:
        layout.label(text="Engines: not reported by this backend")
        return
    if not engines:
        layout.label(text="No engines registered", icon="ERROR")
        return
    col = layout.column(align=True)
    for engine in engines:
        col.label(text=engine.label, icon="CHECKMARK" if engine.usable else "CANCEL")
        if not engine.usable:
            sub = col.column(align=True)
            sub.active = False
            draw_wrapped(sub, context, engine.reason, indent=True)


def reshoot_engine_problem(inpaint_engine: str) -> str | None:
    """Why a re-film job with fill engine ``inpaint_engine`` would fail on this backend, or ``None``."""
    return first_problem(engine_problem("inpaint", inpaint_engine),
                         gpu_problem("inpaint", inpaint_engine, "Wan2.1 VACE") if inpaint_engine != "classical" else None)


def tune_engine_problem() -> str | None:
    """Why Tune LoRA would fail here: it trains on Wan2.1 VACE (its weights) on a CUDA GPU."""
    return first_problem(engine_problem("inpaint", "wan-vace"), gpu_problem("inpaint", "wan-vace", "Tune LoRA"))


def generate_engine_problem(*, use_source: bool, has_image: bool, inpaint_engine: str) -> str | None:
    """Why Generate 4D Scene would fail here: its reference-video engine (``wan-t2v``, or ``wan-i2v``
    with an image; none when the source video is the reference), depth (Depth Anything unless the
    source gives depth), the fill engine, and a CUDA GPU for the diffusion models."""
    video = None if use_source else ("wan-i2v" if has_image else "wan-t2v")
    return first_problem(
        engine_problem("video", video) if video else None,
        engine_problem("depth", "depth-anything") if not use_source else None,
        engine_problem("inpaint", inpaint_engine),
        gpu_problem("video", video, "Generate 4D Scene") if video else None,
        gpu_problem("inpaint", inpaint_engine, "Generate 4D Scene") if inpaint_engine != "classical" else None,
    )
