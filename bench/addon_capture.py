"""How long Blender stops redrawing while *Re-film Shot* captures "This Scene" (colour + depth).

Same scene, same frames both ways (the bpy wheel, in-process, Cycles on the CPU):

- baseline: the capture in one call (``addon.capture.render_scene_source``), as ``execute()`` used
  to run it: Blender draws nothing for the whole time.
- ours: the stepwise capture the modal operator runs (``addon.submit.start_reshoot_capture``), one
  step per ``TIMER`` event; between two steps Blender redraws and handles input (Esc). The figure
  is the longest single step, i.e. the longest time the interface does not answer.

Prints both, and as its LAST line one JSON object, ``ratio = longest step / blocking capture``
(goal <= 0.1: the longest stall is at most a tenth of the old freeze). Also reported: the total time
of the stepwise capture (its overhead over the one-call capture). The issue's case is
``--frames 40 --width 320 --height 180 --samples 8`` (slow on 2 shared cores); the default is smaller.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def build_scene(bpy, frames: int, width: int, height: int, samples: int):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    import addon

    addon.register()
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.use_denoising = samples, False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.frame_start, scene.frame_end = 1, frames
    scene.world = bpy.data.worlds.new("world")
    bpy.ops.mesh.primitive_plane_add(size=8, location=(0, 6, 0), rotation=(math.pi / 2, 0, 0))
    for i in range(5):
        bpy.ops.mesh.primitive_uv_sphere_add(radius=0.4, location=(-1.6 + 0.8 * i, 4, 0.2 * i))
    cam = bpy.data.objects.new("Shot Cam", bpy.data.cameras.new("Shot Cam"))
    scene.collection.objects.link(cam)
    cam.rotation_euler = (math.pi / 2, 0, 0)
    cam.keyframe_insert("location", frame=1)
    cam.location = (0.5, 0.0, 0.2)
    cam.keyframe_insert("location", frame=frames)
    scene.camera = cam
    scene.recast4d.source.kind = "SCENE"
    from addon import targets

    targets.add_camera_path(bpy.context, "orbit:left:20", pivot_depth=4.0)
    return scene, cam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=90)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
    import bpy

    from addon import capture, capture_task, submit

    scene, cam = build_scene(bpy, args.frames, args.width, args.height, args.samples)
    frames = list(range(1, args.frames + 1))
    started = time.perf_counter()
    capture.render_scene_source(scene, cam, frames)
    blocking_s = time.perf_counter() - started

    task = submit.start_reshoot_capture(scene)
    steps: list[float] = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        finished = task.advance()
        steps.append(time.perf_counter() - t0)
        if finished:
            break
    stepwise_s = time.perf_counter() - started
    capture_task.stop(task)
    if task.error:
        raise SystemExit(f"capture failed: {task.error}")
    longest = max(steps)
    print(f"blocking capture: {blocking_s:.2f} s without a redraw; stepwise: {len(steps)} steps, longest "
          f"{longest:.3f} s, total {stepwise_s:.2f} s")
    print(json.dumps({
        "bench": "addon_capture", "unit": "s", "value": round(longest, 4), "baseline": round(blocking_s, 4),
        "ratio": round(longest / blocking_s, 4), "device": "cpu", "goal": "<= 0.1",
        "frames": args.frames, "size": [args.width, args.height], "samples": args.samples,
        "steps": len(steps), "stepwise_total_s": round(stepwise_s, 3),
        "stepwise_overhead": round(stepwise_s / blocking_s, 3),
    }))


if __name__ == "__main__":
    main()
