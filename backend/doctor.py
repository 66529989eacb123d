"""``recast4d doctor``: what this machine can run, as a table with a hint for each missing piece."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Check:
    """One row of the doctor table: ``ok`` False means the piece is missing or unusable."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, f"{platform.python_version()} ({sys.executable})",
                 "" if ok else "Recast 4D needs Python 3.11 or newer")


def check_torch() -> list[Check]:
    """torch itself, then CUDA and the GPU it sees."""
    try:
        import torch
    except ImportError:
        return [
            Check("torch", False, "not installed", "pip install 'recast4d[backend]' (torch>=2.4)"),
            Check("cuda/gpu", False, "needs torch", "install torch with CUDA support for GPU runs"),
        ]
    rows = [Check("torch", True, torch.__version__)]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        rows.append(Check("cuda/gpu", True,
                          f"CUDA {torch.version.cuda}: {props.name}, {props.total_memory / 2**30:.1f} GiB"))
    else:
        built = torch.version.cuda or "none (CPU build)"
        rows.append(Check("cuda/gpu", False, f"no CUDA device (torch CUDA: {built})",
                          "CPU works for the classical engine and small scenes; for diffusion/gsplat install a "
                          "CUDA build of torch and an NVIDIA driver"))
    return rows


def check_module(name: str, module: str, dist: str, hint: str, *, import_it: bool = True) -> Check:
    """A package is usable if it imports (or, with ``import_it=False``, if it is installed)."""
    version = _version(dist)
    if importlib.util.find_spec(module) is None:
        return Check(name, False, "not installed", hint)
    if import_it:
        try:
            importlib.import_module(module)
        except Exception as exc:  # report, never crash the doctor
            return Check(name, False, f"installed ({version}) but fails to import: {exc}", hint)
    return Check(name, True, version or "installed")


def check_gsplat() -> Check:
    row = check_module("gsplat", "gsplat", "gsplat", "pip install gsplat (needs CUDA)", import_it=False)
    if not row.ok:
        return row
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        return Check("gsplat", False, f"{row.detail}, but no CUDA device",
                     "Gaussian fitting falls back to the pure-torch CPU rasteriser (small scenes only)")
    return row


def check_engines(models_dir: str | None) -> list[Check]:
    """One row per engine from ``backend.engines.registry.engine_status`` (if that module exists)."""
    try:
        from backend.engines.registry import engine_status  # type: ignore[import-not-found]
    except ImportError as exc:
        return [Check("engines", False, f"engine registry unavailable ({exc})",
                      "this build has no engine registry yet; only built-in job kinds run")]
    try:
        statuses = engine_status(models_dir)
    except Exception as exc:
        return [Check("engines", False, f"engine status failed: {exc}", "check RECAST4D_MODELS / --models")]
    rows = []
    for status in statuses:
        rows.append(Check(f"engine {status.kind}:{status.name}", bool(status.usable),
                          str(status.reason or ("ready" if status.usable else "unusable")),
                          "" if status.usable else str(status.hint or "")))
    return rows or [Check("engines", False, "no engines registered", "")]


def check_vram(models_dir: str | None) -> list[Check]:
    """What fits on this machine's GPU: the wan-vace placement per model (``backend.engines.vram``)."""
    try:
        from backend.engines.vram import fit_reports, free_vram_bytes
    except ImportError as exc:
        return [Check("vram", False, f"cannot plan GPU memory ({exc})", "pip install 'recast4d[backend]'")]
    try:
        memory = free_vram_bytes()
    except Exception as exc:  # report, never crash the doctor
        return [Check("vram", False, f"cannot read free GPU memory: {exc}", "check the NVIDIA driver")]
    free, total = memory if memory is not None else (None, None)
    return [Check(r.name, r.ok, r.detail, r.hint) for r in fit_reports(free, total, models_dir)]


def check_fast_preset(models_dir: str | None) -> list[Check]:
    """Whether the step-distillation LoRAs of the wan-vace ``fast`` preset are in ``<models>/loras``."""
    from backend.engines.fast_preset import FAST
    from backend.engines.registry import resolve_lora
    from protocol.errors import MissingWeightsError

    rows = []
    for engine, lora_id, source in (("wan-vace", FAST.lora_id_1_3b, FAST.source_1_3b),
                                    ("wan-vace-14b", FAST.lora_id_14b, FAST.source_14b)):
        try:
            found = resolve_lora(lora_id, models_dir)
            rows.append(Check(f"fast preset {engine}", True, f"step-distillation LoRA {found}"))
        except MissingWeightsError as exc:
            rows.append(Check(f"fast preset {engine}", False, f"no step-distillation LoRA '{lora_id}'",
                              f"{exc}; it is {source}"))
    return rows


def run_checks(models_dir: str | None = None) -> list[Check]:
    """All checks, in table order."""
    rows = [check_python(), *check_torch(), check_gsplat()]
    if importlib.util.find_spec("torch") is not None:
        rows.extend(check_vram(models_dir or os.environ.get("RECAST4D_MODELS")))
    rows.append(check_module("bpy", "bpy", "bpy", "pip install bpy==5.0.1 (Python 3.11) for headless Blender tests",
                             import_it=False))
    rows.append(check_module("usd-core", "pxr", "usd-core", "pip install usd-core (USD export)"))
    rows.append(check_module("opencv", "cv2", "opencv-python-headless", "pip install opencv-python-headless"))
    rows.append(check_module("pyzmq", "zmq", "pyzmq", "pip install pyzmq"))
    rows.append(check_module("msgpack", "msgpack", "msgpack", "pip install msgpack"))
    models = models_dir or os.environ.get("RECAST4D_MODELS")
    if models and not Path(models).is_dir():
        rows.append(Check("models dir", False, f"{models} does not exist",
                          "point RECAST4D_MODELS or --models at the folder holding local model folders"))
    elif models:
        rows.append(Check("models dir", True, str(models)))
    rows.extend(check_engines(models))
    rows.extend(check_fast_preset(models))
    return rows


def format_table(rows: list[Check]) -> str:
    """Render checks as a fixed-width table (component, status, detail), then one hint per missing piece."""
    headers = ("component", "status", "detail")
    cells = [(r.name, "ok" if r.ok else "MISSING", r.detail) for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
    hints = [r for r in rows if not r.ok and r.hint]
    if hints:
        lines.append("")
        lines.append("hints:")
        lines.extend(f"  {r.name}: {r.hint}" for r in hints)
    return "\n".join(lines)


def main(models_dir: str | None = None) -> int:
    """Print the table; exit code 0 (missing optional pieces are not an error)."""
    print(format_table(run_checks(models_dir)))
    return 0
