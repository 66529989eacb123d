"""The demo's native-splat render: Blender 5.3 opens the demo's shot, imports the result, renders it.

Runs in the Blender 5.3 environment (``.venv-blender53``: bpy 5.3.0 on Python 3.13, no torch)
as a subprocess of ``bench/demo.py``, the way an artist on Blender 5.3 would continue the shot:
open the saved ``.blend`` (the demo scene, the target camera and the finished job in the add-on's
job list), Jobs > **Import Result** with the point-cloud layer off (the Gaussians arrive as one
animated native ``GAUSSIAN_SPLAT`` cloud), Set Up Render (the add-on's splat settings), then render
the shot's frames through the target camera with a transparent film into ``--out`` as RGBA PNGs
(straight alpha). The last line printed is a JSON object with what was imported and the timings.

    .venv-blender53/bin/python bench/demo_native.py --blend shot.blend --job-id ID --camera NAME --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import bpy  # noqa: E402  (the bpy 5.3 wheel)

#: Cycles samples of the native render by default: the floor the add-on's splat PLY import sets
#: (``addon.splats.SPLAT_MIN_SAMPLES``); Blender's own default is 4096 with adaptive sampling. On the demo's seen
#: pixels 8 / 16 / 32 samples gave 24.09 / 24.41 / 24.63 dB and SSIM 0.830 / 0.845 / 0.854.
NATIVE_SAMPLES = 32
ADAPTIVE_THRESHOLD = 0.03
ADAPTIVE_MIN_SAMPLES = 8


def render_native_splats(blend: Path, job_id: str, camera_name: str, out_dir: Path, *, samples: int,
                         threads: int, denoise: bool) -> dict:
    """Open ``blend``, import job ``job_id``'s result as native splats, render every frame of the
    scene range through ``camera_name`` into ``out_dir`` (``frame_0001.png`` ...); returns figures."""
    import addon
    from addon import splats

    if not splats.native_splats_supported():
        raise SystemExit(f"Blender {bpy.app.version_string} has no native Gaussian splats (needs 5.3)")
    addon.register()
    try:
        bpy.ops.wm.open_mainfile(filepath=str(blend))
        scene = bpy.context.scene
        jobs = scene.recast4d.jobs
        index = next((i for i, job in enumerate(jobs) if job.job_id == job_id), None)
        if index is None:
            raise SystemExit(f"job {job_id} is not in {blend.name}'s job list")
        scene.recast4d.active_job_index = index
        started = time.perf_counter()
        before = set(bpy.data.objects)
        bpy.ops.recast4d.import_result(import_points=False)
        import_s = time.perf_counter() - started
        clouds = [obj for obj in bpy.data.objects if obj not in before and splats.is_native_splat(obj)]
        if not clouds:
            raise SystemExit("Import Result brought no native splat cloud (does the result have Gaussians?)")
        camera = bpy.data.objects[camera_name]
        scene.camera = camera
        scene.cycles.samples = samples
        scene.cycles.use_denoising = denoise
        # adaptive sampling stops converged pixels early (here: 46 s instead of 51-56 s for 25 frames
        # at 32 samples, 24.61 vs 24.63 dB, SSIM 0.853 vs 0.854 on the demo's seen pixels)
        scene.cycles.use_adaptive_sampling = True
        scene.cycles.adaptive_threshold, scene.cycles.adaptive_min_samples = ADAPTIVE_THRESHOLD, ADAPTIVE_MIN_SAMPLES
        scene.render.threads_mode, scene.render.threads = "FIXED", threads
        for obj in bpy.data.objects:
            if obj.type != "CAMERA":
                obj.hide_render = obj not in clouds
        scene.render.film_transparent = True
        settings = scene.render.image_settings
        settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGBA", "8"
        out_dir.mkdir(parents=True, exist_ok=True)
        scene.render.filepath = str(out_dir / "frame_")
        started = time.perf_counter()
        bpy.ops.render.render(animation=True)
        render_s = time.perf_counter() - started
        scene.frame_set(scene.frame_start)
        splat_count = len(clouds[0].evaluated_get(bpy.context.evaluated_depsgraph_get()).data.points)
        return {"blender": bpy.app.version_string, "splat_objects": len(clouds), "splats_first_frame": splat_count,
                "frames": scene.frame_end - scene.frame_start + 1, "import_s": round(import_s, 3),
                "render_s": round(render_s, 3), "samples": samples, "denoise": denoise,
                "view_transform": scene.view_settings.view_transform}
    finally:
        addon.unregister()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blend", type=Path, required=True)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--camera", required=True, help="name of the target camera object")
    parser.add_argument("--out", type=Path, required=True, help="folder for the rendered RGBA PNG frames")
    parser.add_argument("--samples", type=int, default=NATIVE_SAMPLES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-denoise", dest="denoise", action="store_false")
    args = parser.parse_args(argv)
    figures = render_native_splats(args.blend, args.job_id, args.camera, args.out, samples=args.samples,
                                   threads=args.threads, denoise=args.denoise)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
