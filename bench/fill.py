"""Fill benchmark: the ``classical`` engine against a flat mean-colour fill on Blender test scenes.

For each scene (the demo set of ``bench/demo_scene.py``: moving cube, bouncing ball, rising box over
a checker ground and a brick wall; one static source camera) and each of three camera moves:

1. Cycles renders the source frames with exact planar depth (the add-on's "This Scene" capture);
2. the frames are lifted to points and rendered into the target cameras of the move with static
   accumulation, as the reshoot pipeline's ``render`` stage does -> render + holes;
3. the holes are filled by the ``classical`` engine and by the flat fill (every hole pixel of a frame
   = the mean colour of that frame's seen pixels);
4. both are scored against Cycles' true render of the same target cameras, on the hole pixels only
   (PSNR pooled over every hole pixel of every frame, SSIM averaged over them; ``demo_metrics``).

The baseline, in the same run, is the flat fill; ``value``/``baseline`` are the mean hole PSNR (dB)
over the moves, ``ratio`` = value / baseline; extra keys give SSIM and per-move figures and the
fill's CPU time per frame. Needs the bpy wheel.

    .venv/bin/python bench/fill.py [--width 96 --height 54 --frames 13]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import demo_metrics  # noqa: E402

#: The three camera moves of the comparison: an orbit, a pedestal/orbit up with a dolly, a truck.
MOVES: tuple[str, ...] = ("orbit:left:25", "orbit:up:12+dolly:in:0.25", "orbit:right:18:direct")


@dataclass
class FillScene:
    """One target shot: ``render`` (F, H, W, 3) uint8 with holes, ``holes`` (F, H, W) bool (True =
    unseen after static accumulation), ``depth`` (F, H, W) float32 planar depth of the render in metres
    (0 in holes), ``truth`` (F, H, W, 3) uint8 Cycles' render of the target cameras."""

    name: str
    render: np.ndarray
    holes: np.ndarray
    depth: np.ndarray
    truth: np.ndarray


def flat_fill(frames: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Every hole pixel of a frame = the mean colour of that frame's seen pixels (grey if none seen)."""
    out = frames.copy()
    for index in range(frames.shape[0]):
        seen = ~holes[index]
        mean = frames[index][seen].mean(axis=0) if seen.any() else np.full(3, 128.0)
        out[index][holes[index]] = np.clip(np.rint(mean), 0, 255).astype(np.uint8)
    return out


def hole_scores(filled: np.ndarray, truth: np.ndarray, holes: np.ndarray) -> dict[str, float]:
    """PSNR (dB) and SSIM of ``filled`` against ``truth`` on the hole pixels."""
    return {"psnr": round(float(demo_metrics.masked_psnr(filled, truth, holes)), 3),
            "ssim": round(float(demo_metrics.masked_ssim(filled, truth, holes)), 4)}


def _target_camera(bpy, scene, cameras: list) -> object:
    """A Blender camera keyed per frame (1..F) to the OpenCV ``cameras`` (``protocol.camera.Camera``)."""
    from protocol.blender_camera import apply_params_to_blender_objects, blender_from_camera

    data = bpy.data.cameras.new("Fill Target")
    obj = bpy.data.objects.new("Fill Target", data)
    scene.collection.objects.link(obj)
    for index, cam in enumerate(cameras):
        apply_params_to_blender_objects(blender_from_camera(cam), obj)
        for path in ("location", "rotation_euler"):
            obj.keyframe_insert(data_path=path, frame=index + 1)
        data.keyframe_insert(data_path="lens", frame=index + 1)
        for path in ("shift_x", "shift_y"):
            data.keyframe_insert(data_path=path, frame=index + 1)
    return obj


def render_fill_scenes(width: int = 64, height: int = 36, frames: int = 9, samples: int = 4,
                       moves: tuple[str, ...] = MOVES, threads: int = 2) -> list[FillScene]:
    """Render the demo set with bpy and build one :class:`FillScene` per camera move (see the module docstring)."""
    import bpy
    import demo_scene
    import torch

    from addon.capture import render_scene_source
    from backend.geometry import accumulate_static, lift_frames, static_point_mask
    from backend.pipelines.reshoot.pipeline import STATIC_WINDOW, default_pivot_depth
    from protocol.blender_camera import camera_from_blender, params_from_blender_objects
    from protocol.camera import stack_cameras
    from protocol.paths import build_path

    config = demo_scene.SceneConfig(width=width, height=height, frames=frames, samples=samples, threads=threads)
    scene = demo_scene.build_scene(config)
    source = scene.camera
    rgb, depth = render_scene_source(scene, source, list(range(1, frames + 1)))
    camera = camera_from_blender(params_from_blender_objects(source, scene))
    sources = [camera] * frames
    K, w2c = stack_cameras(sources)
    depth_t = torch.from_numpy(depth)
    points = lift_frames(rgb, depth_t, K, w2c)
    static = static_point_mask(points, depth=depth_t, K=K, world_to_camera=w2c, window=STATIC_WINDOW)
    pivot = default_pivot_depth(depth_t[0])
    out = []
    for move in moves:
        path = build_path(move, sources, pivot)
        K_t, w2c_t = stack_cameras(path.cameras)
        acc = accumulate_static(points, static, K_t, w2c_t, width, height, window=STATIC_WINDOW,
                                time_map=np.asarray(path.source_frames))
        render = (acc.render.rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
        holes = (~acc.render.mask).numpy()
        target = _target_camera(bpy, scene, path.cameras)
        truth = demo_scene.render_animation(scene, target, demo_scene.scene_objects())
        bpy.data.objects.remove(target)
        depth_render = torch.where(acc.render.mask, acc.render.depth, torch.zeros_like(acc.render.depth))
        out.append(FillScene(move, render, holes, depth_render.numpy().astype(np.float32), truth))
    return out


def compare_fills(scenes: list[FillScene], engine_options: dict | None = None) -> dict:
    """Classical vs flat fill on every scene: hole PSNR/SSIM per scene and the classical fill's seconds per frame."""
    from backend.engines.classical import ClassicalFill

    engine = ClassicalFill(**(engine_options or {}))
    per_scene = []
    seconds, frames = 0.0, 0
    for scene in scenes:
        start = time.perf_counter()
        ours = engine.fill(scene.render, scene.holes, "", depth=scene.depth)  # as the reshoot pipeline calls it
        seconds += time.perf_counter() - start
        frames += scene.render.shape[0]
        flat = flat_fill(scene.render, scene.holes)
        per_scene.append({"scene": scene.name, "hole_fraction": round(float(scene.holes.mean()), 4),
                          "classical": hole_scores(ours, scene.truth, scene.holes),
                          "flat": hole_scores(flat, scene.truth, scene.holes)})
    return {"scenes": per_scene, "classical_seconds_per_frame": round(seconds / max(frames, 1), 5)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--height", type=int, default=54)
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    scenes = render_fill_scenes(args.width, args.height, args.frames, args.samples, threads=args.threads)
    result = compare_fills(scenes)
    for row in result["scenes"]:
        print(f"{row['scene']:>28}: holes {row['hole_fraction']:.1%}  classical {row['classical']['psnr']:.2f} dB "
              f"/ {row['classical']['ssim']:.3f}   flat {row['flat']['psnr']:.2f} dB / {row['flat']['ssim']:.3f}")
    mean = {f"{who}_{metric}": float(np.mean([row[who][metric] for row in result["scenes"]]))
            for who in ("classical", "flat") for metric in ("psnr", "ssim")}
    wins = all(row["classical"]["psnr"] > row["flat"]["psnr"] and row["classical"]["ssim"] > row["flat"]["ssim"]
               for row in result["scenes"])
    print(json.dumps({
        "bench": "fill", "unit": "dB (hole PSNR, mean over moves)", "value": round(mean["classical_psnr"], 3),
        "baseline": round(mean["flat_psnr"], 3), "ratio": round(mean["classical_psnr"] / mean["flat_psnr"], 4),
        "device": "cpu", "goal": "classical > flat on PSNR and SSIM on every move",
        "ssim": round(mean["classical_ssim"], 4), "ssim_baseline": round(mean["flat_ssim"], 4),
        "beats_flat_everywhere": wins, "size": [args.width, args.height, args.frames],
        "classical_seconds_per_frame": result["classical_seconds_per_frame"], "scenes": result["scenes"],
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
