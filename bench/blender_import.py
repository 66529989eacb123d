"""Import an animated point cloud / Gaussian sequence into Blender: our USD path vs Blender's PLY importer.

Same data both ways: ``--frames`` frames x ``--points`` points (positions in metres, RGB colours,
per-point radius). Preparing the files on disk is not timed.

- ours: one time-sampled ``UsdGeom.Points`` in ``scene.usdc``, imported with
  ``addon.results.import_usd_result`` (Blender's USD importer -> one POINTCLOUD object with a Mesh
  Sequence Cache modifier + our Cycles material); frames stream from disk on frame change.
- baseline: one binary PLY per frame, each imported with ``bpy.ops.wm.ply_import`` (81 mesh objects).

Also measured: the time of a frame change with the imported USD result (``scene.frame_set`` +
depsgraph evaluation of the point cloud), median over several frames, and, because the USD path
reads frames lazily, import plus evaluating every frame once (``ours_plus_all_frames_s``).

Native splats (Blender 5.3, when ``--blender53-python`` names the ``.venv-blender53`` interpreter;
default: that folder of this checkout if it exists): the same number of frames x Gaussians written
by the backend's own writers (``scene.usdc`` from ``UsdSceneWriter`` with the splat prim, one 3DGS
PLY per frame from ``write_gaussian_ply``), measured by ``bench/blender_import_splats.py`` in a 5.3
subprocess: our import as ONE animated native splat cloud (with the add-on's per-frame check of
scales and quaternions) and its frame change, against Blender's own PLY import of every frame.
When it runs, the JSON ``value``/``baseline``/``ratio`` are the native-splat figures
(``"headline": "native_splats"``) and the point-cloud ones move to ``points_*`` keys.

Prints the times, and as its LAST line one JSON object, ``ratio = ours / baseline`` (goal <= 1.0).
Quick run: ``python bench/blender_import.py --frames 8 --points 20000``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def write_usd(path: Path, frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]], fps: float) -> None:
    """Time-sampled UsdGeom.Points (metres, Z up): points, widths = 2 x radius, displayColor."""
    from pxr import Sdf, Usd, UsdGeom, Vt

    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetStartTimeCode(1)
    stage.SetEndTimeCode(len(frames))
    stage.SetTimeCodesPerSecond(fps)
    UsdGeom.Xform.Define(stage, "/Recast4D")
    prim = UsdGeom.Points.Define(stage, "/Recast4D/points")
    color = UsdGeom.PrimvarsAPI(prim).CreatePrimvar("displayColor", Sdf.ValueTypeNames.Color3fArray,
                                                    UsdGeom.Tokens.vertex)
    for i, (xyz, rgb, radius) in enumerate(frames):
        t = i + 1
        prim.GetPointsAttr().Set(Vt.Vec3fArray.FromNumpy(xyz), t)
        prim.GetWidthsAttr().Set(Vt.FloatArray.FromNumpy(2.0 * radius), t)
        color.Set(Vt.Vec3fArray.FromNumpy(rgb.astype(np.float32) / 255.0), t)
    stage.GetRootLayer().Save()


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, radius: np.ndarray) -> None:
    """Binary little-endian PLY: x y z (float), red green blue (uchar), radius (float)."""
    n = len(xyz)
    record = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                       ("blue", "u1"), ("radius", "<f4")])
    data = np.empty(n, record)
    data["x"], data["y"], data["z"] = xyz.T
    data["red"], data["green"], data["blue"] = rgb.T
    data["radius"] = radius
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {n}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\n"
              "property float radius\nend_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(data.tobytes())


def make_frames(n_frames: int, n_points: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_points, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(n_points, 3), dtype=np.uint8)
    radius = np.full(n_points, 0.005, np.float32)
    for i in range(n_frames):
        yield np.ascontiguousarray(base + np.float32(0.01 * i)), rgb, radius


def write_gaussian_files(folder: Path, n_frames: int, n_gaussians: int, seed: int = 1) -> None:
    """``scene.usdc`` + ``gaussians_0000i.ply`` with the backend's writers: anisotropic, rotated,
    semi-transparent Gaussians drifting 1 cm per frame (metres, Z up)."""
    import torch

    from backend.export.ply import write_gaussian_ply
    from backend.export.usd_writer import UsdSceneWriter
    from backend.gaussians.gaussian_set import GaussianSet

    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.normal(size=(n_gaussians, 3)).astype(np.float32))
    quats = torch.from_numpy(rng.normal(size=(n_gaussians, 4)).astype(np.float32))
    log_scales = torch.from_numpy(np.log(rng.uniform(0.002, 0.02, (n_gaussians, 3))).astype(np.float32))
    logits = torch.from_numpy(rng.normal(size=n_gaussians).astype(np.float32))
    sh = torch.from_numpy(rng.normal(size=(n_gaussians, 1, 3)).astype(np.float32))
    with UsdSceneWriter(folder / "scene.usdc", fps=24.0, start_frame=1) as writer:
        for i in range(n_frames):
            gaussians = GaussianSet(means=base + 0.01 * i, log_scales=log_scales, quats=quats,
                                    logit_opacities=logits, sh=sh)
            writer.add_gaussian_frame(i, gaussians)
            write_gaussian_ply(folder / f"gaussians_{i:05d}.ply", gaussians)


def measure_native_splats(python: str, n_frames: int, n_gaussians: int, frame_changes: int) -> dict:
    """Write the Gaussian files here, measure them in the Blender 5.3 subprocess; its figures."""
    with tempfile.TemporaryDirectory(prefix="recast4d_bench_splats_") as tmp:
        write_gaussian_files(Path(tmp), n_frames, n_gaussians)
        done = subprocess.run([python, str(REPO_ROOT / "bench" / "blender_import_splats.py"), tmp,
                               "--frames", str(n_frames), "--gaussians", str(n_gaussians),
                               "--frame-changes", str(frame_changes)],
                              capture_output=True, text=True, timeout=1800, cwd=REPO_ROOT)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the Blender 5.3 measurement failed: {(done.stdout + done.stderr)[-3000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--points", type=int, default=262_144)
    parser.add_argument("--frame-changes", type=int, default=10)
    default_53 = REPO_ROOT / ".venv-blender53" / "bin" / "python"
    parser.add_argument("--blender53-python", default=str(default_53) if default_53.exists() else None,
                        help="Python of the bpy 5.3 environment for the native-splat figures (make venv-blender53)")
    args = parser.parse_args(argv)

    import bpy

    from addon import results

    with tempfile.TemporaryDirectory(prefix="recast4d_bench_") as tmp:
        folder = Path(tmp)
        frames = list(make_frames(args.frames, args.points))
        first_point = frames[0][0][0].copy()
        usd_path = folder / "scene.usdc"
        write_usd(usd_path, frames, fps=24.0)
        ply_paths = []
        for i, (xyz, rgb, radius) in enumerate(frames):
            ply_paths.append(folder / f"frame_{i + 1:04d}.ply")
            write_ply(ply_paths[-1], xyz, rgb, radius)
        del frames

        bpy.ops.wm.read_factory_settings(use_empty=True)
        t0 = time.perf_counter()
        imported = results.import_usd_result(bpy.context, usd_path)
        ours_s = time.perf_counter() - t0
        obj = imported.objects[0]

        scene = bpy.context.scene
        changes = []
        step = max(1, args.frames // max(1, args.frame_changes))
        for frame in list(range(1, args.frames + 1, step))[: args.frame_changes]:
            t0 = time.perf_counter()
            scene.frame_set(frame)
            evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
            count = len(evaluated.data.points)
            first = np.zeros(3, np.float32)
            first[:] = evaluated.data.attributes["position"].data[0].vector
            changes.append(time.perf_counter() - t0)
            assert count == args.points, (frame, count)
            assert np.allclose(first, first_point + 0.01 * (frame - 1), atol=1e-5), (frame, first)
        frame_change_ms = 1000.0 * statistics.median(changes)
        # USD streams frames lazily: also time reading every frame once (import + visit all frames)
        t0 = time.perf_counter()
        for frame in range(1, args.frames + 1):
            scene.frame_set(frame)
            obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        visit_all_s = time.perf_counter() - t0

        bpy.ops.wm.read_factory_settings(use_empty=True)
        t0 = time.perf_counter()
        for path in ply_paths:
            bpy.ops.wm.ply_import(filepath=str(path), import_colors="SRGB", import_attributes=True)
        baseline_s = time.perf_counter() - t0
        assert len(bpy.data.objects) == args.frames

    print(f"ours (USD importer, {args.frames} x {args.points} points): {ours_s:.3f} s")
    print(f"baseline (PLY importer per frame): {baseline_s:.3f} s")
    print(f"frame change with the USD result (median of {len(changes)}): {frame_change_ms:.2f} ms")
    print(f"ours + evaluating every frame once: {ours_s + visit_all_s:.3f} s")
    result = {
        "bench": "blender_import", "unit": "s", "value": round(ours_s, 4), "baseline": round(baseline_s, 4),
        "ratio": round(ours_s / baseline_s, 4), "device": "cpu", "goal": "<= 1.0", "headline": "points",
        "frames": args.frames, "points": args.points, "frame_change_ms": round(frame_change_ms, 2),
        "ours_plus_all_frames_s": round(ours_s + visit_all_s, 4),
        "blender": bpy.app.version_string,
    }
    if args.blender53_python:
        splat = measure_native_splats(args.blender53_python, args.frames, args.points, args.frame_changes)
        print(f"native splats, ours (USD -> one animated GAUSSIAN_SPLAT cloud, {args.frames} x {args.points}, "
              f"frames checked): {splat['value']:.3f} s (importer only {splat['importer_only_s']:.3f} s)")
        print(f"native splats, baseline (Blender {splat['blender']} PLY importer per frame): {splat['baseline']:.3f} s")
        print(f"native splats, frame change (median of {splat['frame_changes']}): {splat['frame_change_ms']:.2f} ms")
        result = {**{k: v for k, v in result.items() if k not in ("value", "baseline", "ratio", "frame_change_ms",
                                                                  "ours_plus_all_frames_s", "blender", "headline")},
                  "value": splat["value"], "baseline": splat["baseline"], "ratio": splat["ratio"],
                  "headline": "native_splats", "gaussians": args.points,
                  "importer_only_s": splat["importer_only_s"], "frame_change_ms": splat["frame_change_ms"],
                  "blender": splat["blender"], "points_value": result["value"], "points_baseline": result["baseline"],
                  "points_ratio": result["ratio"], "points_frame_change_ms": result["frame_change_ms"],
                  "points_plus_all_frames_s": result["ours_plus_all_frames_s"], "points_blender": result["blender"]}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
