"""Drive the Recast 4D add-on headless, the way a user clicks through its sidebar.

Enable it (registered from this checkout, as the add-on tests do), choose "This Scene" as the
source, add an orbit camera path with the add-on's operator, connect to the backend, re-film the
shot, wait with progress (the add-on's blocking path: timers never fire in background Blender) and
import the result with the add-on's import operator.

One step bypasses an operator: the Re-film button (``recast4d.submit_job``) asks only for the USD,
videos and cameras, and the demo also needs the job's hole masks and lossless frames to score the
result. So the demo calls the two functions that button calls (``build_reshoot_request`` and
``submit_request``) and adds ``masks`` and ``png`` to the requested outputs in between.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import bpy

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

FINAL_STATES = ("DONE", "FAILED", "CANCELLED")


class DemoStepError(RuntimeError):
    """A step of the add-on walk-through did not do what a user would expect (message says which)."""


def enable_addon() -> ModuleType:
    """Register the add-on from the checkout (the ``addon`` package) and return it."""
    import addon

    addon.register()
    if not hasattr(bpy.types.Scene, "recast4d"):
        raise DemoStepError("the add-on registered but the scene has no recast4d settings")
    return addon


def disable_addon(addon: ModuleType) -> None:
    """Unregister the add-on (closes its client thread and sockets)."""
    addon.unregister()


def choose_scene_source(scene: bpy.types.Scene, camera: bpy.types.Object) -> None:
    """Source section: "This Scene" rendered through ``camera`` over the scene's frame range."""
    source = scene.recast4d.source
    source.kind = "SCENE"
    source.camera = camera
    source.use_scene_range = True


def add_camera_path(spec_text: str, pivot_depth: float) -> bpy.types.Object:
    """Targets > Add Camera Path with ``spec_text`` (e.g. ``orbit:left:20``); returns the new camera."""
    settings = bpy.context.scene.recast4d
    before = len(settings.targets)
    result = bpy.ops.recast4d.add_camera_path(spec_text=spec_text, pivot_depth=pivot_depth)
    if "FINISHED" not in result or len(settings.targets) != before + 1:
        raise DemoStepError(f"Add Camera Path {spec_text!r} did not add a target camera ({result})")
    return settings.targets[-1].camera


def connect(connection_file: Path):
    """Backend section: connect through the server's connection file (no timer in background mode)."""
    from addon import connection
    from addon.prefs import PreferenceValues

    return connection.connect_backend(PreferenceValues(connection_file=str(connection_file)), start_timer=False)


def submit(engine: str, *, engine_options: dict | None = None,
           fit_gaussians: bool = False, gaussian_iterations: int | None = None):
    """Generation settings + Re-film: renders the source (colour + depth), sends the job.

    Returns ``(job, request)``: the add-on's job entry and the request it sent (source frames in
    ``request.inputs["frames"]``). ``engine_options`` (engine-specific extras) go into the request's
    ``engine`` options (the weights folder is the backend's own: ``start_backend(models_dir=...)``), and ``gaussian_iterations`` (fitting steps per frame)
    into its ``gaussians`` options: the add-on's panel exposes neither.
    """
    from addon import submit as addon_submit

    generation = bpy.context.scene.recast4d.generation
    generation.engine = engine
    generation.fit_gaussians = fit_gaussians
    request = addon_submit.build_reshoot_request(bpy.context)
    request.params["outputs"] = sorted(set(request.params["outputs"]) | {"masks", "png"})
    if engine_options:
        request.params["engine"]["options"] = dict(engine_options)
    if gaussian_iterations is not None:
        request.params.setdefault("gaussians", {})["iterations"] = int(gaussian_iterations)
    job = addon_submit.submit_request(bpy.context, request)
    return job, request


def wait_for_job(job, *, timeout_s: float, report: Callable[[str], None] = print) -> None:
    """Handle the job's events (progress, streamed points and files) until it ends and every result
    chunk is applied; ``report`` gets one line per progress change. Raises if it fails or times out."""
    from addon import session

    last: list[str] = [""]
    started = time.monotonic()

    def finished() -> bool:
        line = f"{job.state.lower()}: {job.current_stage}"
        stage = job.stages.get(job.current_stage) if job.current_stage else None
        if stage is not None:
            line += f" {stage.step}/{stage.total} {stage.message}"
        if line != last[0]:
            last[0] = line
            report(f"  [{time.monotonic() - started:6.1f} s] {line}")
        return job.state in FINAL_STATES and not session.state().pending_chunks

    if not session.drain_blocking(finished, timeout_s=timeout_s, poll_s=0.1):
        raise DemoStepError(f"the job did not finish within {timeout_s:.0f} s (state {job.state})")
    if job.state != "DONE":
        raise DemoStepError(f"the job ended {job.state}: {job.error or 'no error text'}")


def import_result():
    """Jobs > Import Result on the finished job (the active one); returns the point-cloud objects."""
    before = set(bpy.data.objects)
    result = bpy.ops.recast4d.import_result()
    if "FINISHED" not in result:
        raise DemoStepError(f"Import Result failed ({result})")
    clouds = [obj for obj in bpy.data.objects if obj not in before and obj.type == "POINTCLOUD"]
    if not clouds:
        raise DemoStepError("Import Result created no point-cloud object")
    return clouds


def disconnect() -> None:
    from addon import session

    session.detach_client()
