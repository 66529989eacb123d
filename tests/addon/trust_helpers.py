"""Helpers of the issue-14 tests (an add-on an artist can trust): a tiny scene, a recording client,
backend events, and a panel recorder that keeps what the user would read.

Headless Blender (the bpy wheel, ``--background``) has no window and no event loop: modal
operators never get ``TIMER`` or ``ESC`` events and ``bpy.app.timers`` never fire. The tests
drive the same code the events would: a :class:`addon.capture_task.CaptureTask` advanced step by
step (what each ``TIMER`` event does) and cancelled (what ``ESC`` does), and ``session.tick()``
called by hand (what the timer does).
"""

from __future__ import annotations

import math


class RecordingClient:
    """Stands in for the backend's client on the main thread: records what the add-on sends and
    hands out queued events (a test fault injector, not a shipped feature)."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str]] = []
        self.cancelled: list[str] = []
        self.events: list = []

    def submit(self, job_id: str, kind: str, params: dict, inputs: dict) -> None:
        self.submitted.append((job_id, kind))

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def resend(self, job_id: str, stream: str, from_chunk: int = 0) -> None:
        pass

    def poll_events(self, max_items: int, time_budget_s: float) -> list:
        out, self.events = self.events[:max_items], self.events[max_items:]
        return out

    def consumed(self, job_id: str, stream: str, chunk: int) -> None:
        pass

    def close(self) -> None:
        pass


def event(kind: str, message=None, **data):
    """A client ``Event`` as the I/O thread delivers it."""
    from protocol.client.core import Event

    return Event(type=kind, job_id=getattr(message, "job_id", None), message=message, data=dict(data))


def welcome(engines: list[dict] | None, gpu: bool = False):
    from protocol.messages import Welcome
    from protocol.schema import GpuInfo

    return event("welcome", Welcome(server_session="s1", gpu=GpuInfo(name="Test GPU", mem=2**34) if gpu else None),
                 engines=engines)


def connect_fake(session, engines: list[dict] | None = None, gpu: bool = False) -> RecordingClient:
    """Attach a :class:`RecordingClient` and deliver ``welcome`` + ``client.connected``."""
    client = RecordingClient()
    session.attach_client(client, start_timer=False)
    session.process_events([welcome(engines, gpu), event("client.connected")])
    return client


NO_GPU_ENGINES = [
    {"kind": "inpaint", "name": "classical", "usable": True, "reason": "ready", "hint": ""},
    {"kind": "inpaint", "name": "wan-vace", "usable": False,
     "reason": "weights folder 'Wan2.1-VACE-1.3B-diffusers' not found in /models", "hint": "download it"},
    {"kind": "depth", "name": "depth-anything", "usable": False,
     "reason": "weights folder 'Depth-Anything-V2-Small-hf' not found in /models", "hint": ""},
    {"kind": "video", "name": "wan-t2v", "usable": False,
     "reason": "weights folder 'Wan2.1-T2V-1.3B-Diffusers' not found in /models", "hint": ""},
]


def small_scene(bpy, frames: int = 3, size: tuple[int, int] = (24, 16)):
    """A scene with a plane and a cube in front of an animated source camera ``Shot Cam`` (the
    scene camera), Cycles at 1 sample, ``This Scene`` as the source. Returns ``(scene, camera)``."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, frames
    scene.world = bpy.data.worlds.new("world")
    bpy.ops.mesh.primitive_plane_add(size=6, location=(0, 6, 0), rotation=(math.pi / 2, 0, 0))
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.5, 4, 0))
    cam = bpy.data.objects.new("Shot Cam", bpy.data.cameras.new("Shot Cam"))
    scene.collection.objects.link(cam)
    cam.rotation_euler = (math.pi / 2, 0, 0)
    cam.location = (0.0, 0.0, 0.0)
    cam.keyframe_insert("location", frame=1)
    cam.location = (0.3, 0.0, 0.1)
    cam.keyframe_insert("location", frame=frames)
    scene.camera = cam
    scene.recast4d.source.kind = "SCENE"
    return scene, cam


class PanelText:
    """Records what a panel shows (labels, progress texts, operators and their enabled state)."""

    def __init__(self, bpy, log: list | None = None) -> None:
        self._bpy = bpy
        self.log = [] if log is None else log
        self.use_property_split = self.use_property_decorate = False
        self.enabled = self.active = self.alert = True
        self.alignment = "EXPAND"

    def _child(self, *args, **kwargs) -> PanelText:
        return PanelText(self._bpy, self.log)

    row = column = box = split = _child

    def label(self, text: str = "", **kwargs) -> None:
        self.log.append(("label", text))

    def progress(self, text: str = "", factor: float = 0.0, **kwargs) -> None:
        self.log.append(("progress", text))

    def prop(self, data, name: str, **kwargs) -> None:
        self.log.append(("prop", name))

    def operator(self, idname: str, **kwargs):
        module, name = idname.split(".")
        op = getattr(getattr(self._bpy.ops, module), name)
        self.log.append(("operator", idname, op.poll()))
        return _Anything()

    def template_list(self, *args, **kwargs) -> None:
        self.log.append(("list",))

    def template_ID(self, data, name: str, **kwargs) -> None:
        self.log.append(("prop", name))

    def separator(self, **kwargs) -> None:
        pass

    def labels(self) -> list[str]:
        return [entry[1] for entry in self.log if entry[0] in ("label", "progress")]

    def text(self) -> str:
        return " ".join(self.labels())

    def enabled_operator(self, idname: str) -> bool:
        return any(e[0] == "operator" and e[1] == idname and e[2] for e in self.log)


class _Anything:
    def __setattr__(self, name: str, value) -> None:
        pass


def draw_panel(bpy, panel_class) -> PanelText:
    """Run a panel's ``draw`` against a :class:`PanelText` and return it."""
    layout = PanelText(bpy)
    stand_in = type("PanelStandIn", (), {"layout": layout})()
    panel_class.draw(stand_in, bpy.context)
    return layout
