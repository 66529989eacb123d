"""Blender 5.3 half of ``bench/blender_import.py``: native-splat import of a Gaussian sequence.

Runs in the Blender 5.3 environment (``.venv-blender53``) on files ``bench/blender_import.py``
wrote with the backend's own writers: ``scene.usdc`` (``UsdSceneWriter``: the Gaussians' Points
prim and the ``ParticleField3DGaussianSplat`` prim, ``--frames`` time samples) and one 3DGS PLY per
frame (``write_gaussian_ply``). Measures, in this process:

- ours: ``addon.results.import_usd_result`` (Blender's USD importer -> ONE animated native
  ``GAUSSIAN_SPLAT`` cloud with a Mesh Sequence Cache modifier), with the add-on's check of every
  frame's scales and quaternions (``value``) and without it (``importer_only_s``);
- frame change: ``scene.frame_set`` + evaluating the splat cloud, median over ``--frame-changes``;
- baseline: Blender's own ``bpy.ops.wm.ply_import`` of every frame's PLY (one splat object per frame).

Prints one JSON object as its last line (read by ``bench/blender_import.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def measure(folder: Path, frames: int, gaussians: int, frame_changes: int) -> dict:
    import bpy

    from addon import results, splats

    if not splats.native_splats_supported():
        raise SystemExit(f"Blender {bpy.app.version_string} has no native Gaussian splats (needs 5.3)")
    usd_path = folder / "scene.usdc"
    timings = {}
    for check in (False, True):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        t0 = time.perf_counter()
        imported = results.import_usd_result(bpy.context, usd_path, import_points=False, check_frames=check)
        timings[check] = time.perf_counter() - t0
    if len(imported.splat_objects) != 1:
        raise SystemExit(f"expected one native splat cloud, got {len(imported.splat_objects)}")
    cloud = imported.splat_objects[0]
    scene = bpy.context.scene
    changes = []
    step = max(1, frames // max(1, frame_changes))
    for frame in list(range(2, frames + 1, step))[:frame_changes]:
        t0 = time.perf_counter()
        scene.frame_set(frame)
        count = len(cloud.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.points)
        changes.append(time.perf_counter() - t0)
        if count != gaussians:
            raise SystemExit(f"frame {frame}: {count} splats, expected {gaussians}")

    bpy.ops.wm.read_factory_settings(use_empty=True)
    plys = sorted(folder.glob("gaussians_*.ply"))
    t0 = time.perf_counter()
    for path in plys:
        bpy.ops.wm.ply_import(filepath=str(path))
    baseline_s = time.perf_counter() - t0
    splat_objects = [obj for obj in bpy.data.objects if splats.is_native_splat(obj)]
    if len(splat_objects) != frames:
        raise SystemExit(f"the PLY importer made {len(splat_objects)} splat objects for {frames} frames")
    return {"blender": bpy.app.version_string, "value": round(timings[True], 4), "baseline": round(baseline_s, 4),
            "ratio": round(timings[True] / baseline_s, 4), "importer_only_s": round(timings[False], 4),
            "frame_change_ms": round(1000.0 * statistics.median(changes), 2), "frame_changes": len(changes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--gaussians", type=int, required=True)
    parser.add_argument("--frame-changes", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.folder, args.frames, args.gaussians, args.frame_changes)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
