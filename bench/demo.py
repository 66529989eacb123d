"""`make demo`: re-film a small Blender scene along an orbit with Recast 4D and score the result.

1. build a dynamic scene with bpy (moving objects over textured ground, procedural textures) and
   use it as the add-on's "This Scene" source (Cycles colour + exact planar depth per frame);
2. start the backend (``recast4d serve`` subprocess, temporary jobs folder + connection file);
3. drive the add-on headless: enable it, choose the source, Add Camera Path (an orbit preset),
   re-film (submit, Gaussians on), wait with progress, save the shot (.blend);
4. the new shot on Blender 5.3 (the headline): a ``.venv-blender53`` subprocess
   (``bench/demo_native.py``) opens the shot, Import Result brings the Gaussians in as native
   splats, Cycles renders them through the target camera;
5. the fallback of Blender 4.2-5.2, here (bpy 5.0.1): Import Result, then Cycles renders of the
   point cloud and of the sphere splats through the target camera; and the original scene through
   the same camera (the ground truth);
6. write ``--out``: source.mp4, novel_view.mp4, ground_truth.mp4, side_by_side.png, report.json and
   report.md (PSNR/SSIM against the ground truth on seen and on filled pixels, hole ratios before
   and after static accumulation, the job's and the demo's stage timings).

Baseline, same run: the source frame shown as if it were the new view (no re-filming), scored on
the same pixels. The last line printed is one JSON object (``bench/`` convention); its ``value`` is
the native-splat render's PSNR on seen pixels (the point-cloud fallback's when no Blender 5.3 is
available, ``"novel_view_render"`` says which).

    .venv/bin/python bench/demo.py --out demo_out [--blender53-python .venv-blender53/bin/python]
                                   [--engine wan-vace --models DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

try:
    import bpy  # the bpy wheel: the demo drives Blender in this process
except ImportError:
    sys.exit("the demo needs the bpy wheel (bpy==5.0.1 on Python 3.11): run `make venv`, "
             "or `.venv/bin/pip install bpy==5.0.1`")

import demo_addon  # noqa: E402
import demo_backend  # noqa: E402
import demo_metrics  # noqa: E402
import demo_report  # noqa: E402
import demo_scene  # noqa: E402


@dataclass
class DemoConfig:
    """Everything that shapes a demo run (sizes in pixels, angles in degrees, times in seconds)."""

    scene: demo_scene.SceneConfig = field(default_factory=demo_scene.SceneConfig)
    path_spec: str = "orbit:left:20"
    engine: str = "classical"
    models_dir: str | None = None
    engine_options: dict = field(default_factory=dict)  # engine-specific extras, e.g. {"offload": "model"}
    fit_gaussians: bool = True
    gaussian_iterations: int | None = None  # fitting steps per frame; None = the backend's default for its device
    job_timeout_s: float = 540.0
    keep_work: bool = False
    point_radius_scale: float = 1.0  # diagnostic: enlarge the imported points' radius before rendering
    blender53_python: str | None = None  # Python of the bpy 5.3 environment; None: no native-splat render
    fallback_sphere_splats: bool = False  # also render the 5.0.1 sphere splats (30 s more at the default size)
    native_denoise: bool = True  # Cycles denoiser on the native-splat render (the add-on's Set Up Render default)
    # Cycles samples of the native-splat render: the add-on's splat floor (bench/demo_native.py NATIVE_SAMPLES)
    native_samples: int = 32


@dataclass
class DemoRun:
    """What a run produced: the report (also written as report.json) and the output folder."""

    out_dir: Path
    report: dict
    summary: dict


class StageTimer:
    """Wall-clock seconds per named demo stage, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, log: Callable[[str], None]) -> Iterator[None]:
        log(f"[demo] {name} ...")
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)
            log(f"[demo] {name}: {self.seconds[name]:.1f} s")


def read_png_stack(folder: Path) -> np.ndarray:
    """``(F, H, W, 3)`` uint8 from the PNG files of ``folder`` in name order."""
    files = sorted(folder.glob("*.png"))
    if not files:
        raise demo_addon.DemoStepError(f"no PNG files in {folder}")
    return np.stack([iio.imread(f)[..., :3] for f in files])


def point_colour_view_transform(usd_path: Path, source_frames: np.ndarray) -> str:
    """How to render the imported points so their pixels come out as the source's sRGB values.

    The point colours (``displayColor``) are emitted unlit. If they hold the sRGB-encoded source
    values, the render must not encode them again ("Raw"); if they hold linear values, the standard
    sRGB view transform is right. Decided by which reading of frame 1's colours matches the source.
    """
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(usd_path))
    points = next((UsdGeom.Points(p) for p in stage.Traverse() if p.IsA(UsdGeom.Points)), None)
    if points is None:
        raise demo_addon.DemoStepError(f"{usd_path.name} holds no UsdGeom.Points")
    colours = np.asarray(points.GetDisplayColorAttr().Get(stage.GetStartTimeCode()), np.float64)
    srgb = source_frames[0].reshape(-1, 3).astype(np.float64) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    as_srgb = abs(colours.mean() - srgb.mean())
    as_linear = abs(colours.mean() - linear.mean())
    return "Raw" if as_srgb < as_linear else "Standard"


def default_blender53_python() -> str | None:
    """The ``make venv-blender53`` interpreter of this checkout, if it exists."""
    candidate = HERE.parent / ".venv-blender53" / "bin" / "python"
    return str(candidate) if candidate.exists() else None


def render_native_splats(python: str, blend: Path, job_id: str, camera: str, out_dir: Path,
                         config: DemoConfig, log: Callable[[str], None]) -> tuple[np.ndarray, dict]:
    """Run ``bench/demo_native.py`` in the Blender 5.3 environment; ``(F, H, W, 4)`` RGBA frames
    (straight alpha) and its figures. Raises ``DemoStepError`` with the subprocess's output tail."""
    command = [python, str(HERE / "demo_native.py"), "--blend", str(blend), "--job-id", job_id, "--camera", camera,
               "--out", str(out_dir), "--samples", str(config.native_samples), "--threads", str(config.scene.threads)]
    if not config.native_denoise:
        command.append("--no-denoise")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=HERE.parent)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise demo_addon.DemoStepError(f"the Blender 5.3 render failed ({done.returncode}): "
                                       f"{(done.stdout + done.stderr)[-3000:]}")
    figures = json.loads(lines[-1])
    log(f"  Blender {figures['blender']}: {figures['splats_first_frame']} native splats in frame 1, "
        f"import {figures['import_s']:.2f} s, render {figures['render_s']:.1f} s")
    files = sorted(out_dir.glob("frame_*.png"))
    return np.stack([iio.imread(f)[..., :4] for f in files]), figures


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    from backend.media import write_mp4 as backend_write_mp4

    backend_write_mp4(path, frames, fps)


def run_demo(out_dir: Path, config: DemoConfig, log: Callable[[str], None] = print) -> DemoRun:
    """Run the whole demo into ``out_dir`` and return its report (see the module docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()
    started = time.perf_counter()
    work_dir = Path(tempfile.mkdtemp(prefix="recast4d_demo_work_"))
    addon = backend = None
    failed = False
    try:
        with timer.stage("build_scene", log):
            scene = demo_scene.build_scene(config.scene)
            source_camera = scene.camera
        with timer.stage("start_backend", log):
            backend = demo_backend.start_backend(work_dir, models_dir=config.models_dir,
                                                 threads=config.scene.threads)
            addon = demo_addon.enable_addon()
            demo_addon.choose_scene_source(scene, source_camera)
            target = demo_addon.add_camera_path(config.path_spec, demo_scene.CAMERA_DISTANCE)
            demo_addon.connect(backend.connection_file)
        with timer.stage("render_source_and_submit", log):
            job, request = demo_addon.submit(config.engine,
                                             engine_options=config.engine_options,
                                             fit_gaussians=config.fit_gaussians,
                                             gaussian_iterations=config.gaussian_iterations)
            source = request.inputs["frames"]
            depth = request.inputs["depth"]
        with timer.stage("backend_job", log):
            demo_addon.wait_for_job(job, timeout_s=config.job_timeout_s, report=log)
        job_id, job_dir = job.job_id, Path(job.result_dir)  # plain copies: the job entry goes with the add-on
        usd_path, trajectory = job.result_usd, job.trajectories.split(",")[0]
        job_report = json.loads((job_dir / "report.json").read_text())
        holes = read_png_stack(job_dir / trajectory / "masks")[..., 0] > 127
        backend_video = read_png_stack(job_dir / trajectory / "frames")
        native_rgba, native_figures = None, None
        if config.blender53_python:
            with timer.stage("render_native_splats_blender53", log):
                blend = work_dir / "shot.blend"
                bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
                native_rgba, native_figures = render_native_splats(
                    config.blender53_python, blend, job_id, target.name, work_dir / "native_frames", config, log)
        with timer.stage("import_result", log):
            clouds = demo_addon.import_result()
            demo_addon.disconnect()
            view_transform = point_colour_view_transform(usd_path, source)
            sphere_splats = [c for c in clouds if any(m.type == "NODES" for m in c.modifiers)]
            points = [c for c in clouds if c not in sphere_splats]
            if config.point_radius_scale != 1.0:
                for cloud in points:
                    demo_scene.scale_point_radius(cloud, config.point_radius_scale)
            demo_scene.configure_render(scene, config.scene)  # the same Cycles settings for every render
        with timer.stage("render_fallback_points", log):
            points_rgba = demo_scene.render_animation(scene, target, points, view_transform=view_transform,
                                                      transparent=True)
        spheres_rgba = None
        if sphere_splats and config.fallback_sphere_splats:
            with timer.stage("render_fallback_sphere_splats", log):
                spheres_rgba = demo_scene.render_animation(scene, target, sphere_splats, transparent=True)
        with timer.stage("render_ground_truth", log):
            truth = demo_scene.render_animation(scene, target, demo_scene.scene_objects())
        if config.keep_work:
            shutil.copytree(job_dir, out_dir / "job", dirs_exist_ok=True)
    except BaseException:
        failed = True  # keep the server log and the job folder (its log.txt) to see why
        log(f"[demo] failed; the backend log and job folders are kept in {work_dir}")
        raise
    finally:
        if addon is not None:
            demo_addon.disable_addon(addon)
        if backend is not None:
            backend.stop()
        if not failed:
            shutil.rmtree(work_dir, ignore_errors=True)

    with timer.stage("score_and_write", log):
        seen = ~holes
        headline_rgba = native_rgba if native_rgba is not None else points_rgba
        novel = demo_metrics.over_black(headline_rgba)
        covered = headline_rgba[..., 3] > 127  # a splat / point of the 4D result covers the pixel
        scores = {
            "novel_view": demo_metrics.quality(novel, truth, seen),
            "fallback_points": demo_metrics.quality(demo_metrics.over_black(points_rgba), truth, seen),
            "fallback_sphere_splats": (demo_metrics.quality(demo_metrics.over_black(spheres_rgba), truth, seen)
                                       if spheres_rgba is not None else None),
            "backend_video": demo_metrics.quality(backend_video, truth, seen),
            "baseline_source_as_new_view": demo_metrics.quality(source, truth, seen),
        }
        fps = config.scene.fps
        write_mp4(out_dir / "source.mp4", source, fps)
        write_mp4(out_dir / "novel_view.mp4", novel, fps)
        write_mp4(out_dir / "ground_truth.mp4", truth, fps)
        middle = len(source) // 2
        label = "native splats, Cycles 5.3" if native_rgba is not None else "points, Cycles"
        picture = demo_metrics.side_by_side([("source", source[middle]), (f"new view ({label})", novel[middle]),
                                             ("ground truth", truth[middle])])
        iio.imwrite(out_dir / "side_by_side.png", picture)
        if config.keep_work:  # every compared image, lossless, for looking into a score
            np.savez_compressed(out_dir / "frames.npz", source=source, truth=truth, novel=novel, seen=seen,
                                native_rgba=native_rgba if native_rgba is not None else np.zeros(0, np.uint8),
                                points_rgba=points_rgba, backend_video=backend_video)
    timer.seconds["total"] = round(time.perf_counter() - started, 3)
    trajectory_report = job_report["trajectories"][0]
    report = {
        "demo": "recast4d",
        "config": {**asdict(config), "path_spec": config.path_spec},
        "frames": int(source.shape[0]), "width": int(source.shape[2]), "height": int(source.shape[1]),
        "source_depth_m": {"min": round(float(depth[depth > 0].min()), 3), "max": round(float(depth.max()), 3)},
        "trajectory": trajectory,
        "novel_view_render": {"kind": "native_splats" if native_rgba is not None else "fallback_points",
                              "native": native_figures, "view_transform": view_transform,
                              "point_objects": len(points), "sphere_splat_objects": len(sphere_splats),
                              "point_radius_scale": config.point_radius_scale,
                              "coverage": round(float(covered.mean()), 5),
                              "coverage_seen": round(float(covered[seen].mean()), 5) if seen.any() else None,
                              "coverage_filled": round(float(covered[~seen].mean()), 5) if (~seen).any() else None},
        "quality": scores,
        "hole_ratio": {"before_static_accumulation": trajectory_report["hole_ratio_render"],
                       "after_static_accumulation": trajectory_report["hole_ratio_after_accumulation"]},
        "job": {"id": job_id, "device": job_report.get("device"), "engine": job_report.get("engine"),
                "stages_s": {s["stage"]: s["seconds"] for s in job_report.get("stages", [])}, "wall_s": job_report.get("wall_seconds"),
                "points": job_report.get("points"),
                "gaussian_iterations": (job_report.get("gaussians") or {}).get("iterations")},
        "demo_stages_s": timer.seconds,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(demo_report.markdown(report))
    novel_scores, base_scores = scores["novel_view"], scores["baseline_source_as_new_view"]
    value, baseline = novel_scores["psnr_seen"], base_scores["psnr_seen"]
    summary = {
        "bench": "demo", "unit": "dB", "value": value, "baseline": baseline,
        "ratio": round(value / baseline, 3) if value and baseline else None,
        "device": str(job_report.get("device", "cpu")),
        "goal": "value >= backend_video_psnr_seen - 1 dB, ssim_seen >= 0.85",
        "novel_view_render": report["novel_view_render"]["kind"],
        "psnr_filled": novel_scores["psnr_filled"], "ssim_seen": novel_scores["ssim_seen"],
        "ssim_filled": novel_scores["ssim_filled"], "baseline_ssim_seen": base_scores["ssim_seen"],
        "backend_video_psnr_seen": scores["backend_video"]["psnr_seen"],
        "fallback_points_psnr_seen": scores["fallback_points"]["psnr_seen"],
        "fallback_sphere_splats_psnr_seen": (scores["fallback_sphere_splats"] or {}).get("psnr_seen"),
        "hole_ratio_before": report["hole_ratio"]["before_static_accumulation"],
        "hole_ratio_after": report["hole_ratio"]["after_static_accumulation"],
        "novel_view_coverage": report["novel_view_render"]["coverage"],
        "gaussian_iterations": report["job"]["gaussian_iterations"],
        "engine": config.engine, "frames": report["frames"], "size": f"{report['width']}x{report['height']}",
        "total_s": timer.seconds["total"],
    }
    return DemoRun(out_dir, report, summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--engine", default="classical", choices=["classical", "wan-vace"],
                        help="hole-filling engine (wan-vace needs weights and a GPU)")
    parser.add_argument("--models", default=None, help="folder with local model folders (default $RECAST4D_MODELS)")
    parser.add_argument("--engine-options", type=json.loads, default={}, metavar="JSON",
                        help='engine extras as JSON, e.g. \'{"offload": "model"}\' for wan-vace')
    parser.add_argument("--path", default="orbit:left:20", help="camera path spec (default orbit:left:20)")
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--height", type=int, default=108)
    parser.add_argument("--frames", type=int, default=25, help="source frames (4k + 1 suits wan-vace)")
    parser.add_argument("--samples", type=int, default=8, help="Cycles samples per pixel")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for Cycles and torch")
    parser.add_argument("--no-gaussians", dest="gaussians", action="store_false",
                        help="no Gaussians (points only; the native-splat render is then skipped)")
    parser.add_argument("--gaussian-iterations", type=int, default=None,
                        help="Gaussian fitting steps per frame (default: the backend's for its device; 0 = unfitted)")
    parser.add_argument("--blender53-python", default=default_blender53_python(),
                        help="Python of the bpy 5.3 environment for the native-splat render "
                             "(default .venv-blender53/bin/python if present; make venv-blender53)")
    parser.add_argument("--fallback-sphere-splats", action="store_true",
                        help="also render the sphere splats of Blender 4.2-5.2 (slow: ~30 s at the default size)")
    parser.add_argument("--native-samples", type=int, default=DemoConfig.native_samples,
                        help="Cycles samples of the native-splat render (default 32, the add-on's splat floor; "
                             "--samples sets every other render)")
    parser.add_argument("--no-native-denoise", dest="native_denoise", action="store_false",
                        help="render the native splats without the Cycles denoiser")
    parser.add_argument("--job-timeout", type=float, default=DemoConfig.job_timeout_s,
                        help="seconds to wait for the backend job (default 540; raise it on a loaded machine)")
    parser.add_argument("--keep-work", action="store_true", help="copy the job's output folder to OUT/job and every compared frame (lossless) to OUT/frames.npz")
    parser.add_argument("--point-radius-scale", type=float, default=1.0,
                        help="diagnostic: multiply the imported points' radius before the Cycles render (1 = as imported)")
    args = parser.parse_args(argv)
    config = DemoConfig(
        scene=demo_scene.SceneConfig(width=args.width, height=args.height, frames=args.frames,
                                     samples=args.samples, threads=args.threads),
        path_spec=args.path, engine=args.engine, models_dir=args.models, engine_options=args.engine_options,
        fit_gaussians=args.gaussians, gaussian_iterations=args.gaussian_iterations,
        blender53_python=args.blender53_python if args.gaussians else None,
        native_denoise=args.native_denoise, native_samples=args.native_samples, fallback_sphere_splats=args.fallback_sphere_splats,
        keep_work=args.keep_work, point_radius_scale=args.point_radius_scale, job_timeout_s=args.job_timeout,
    )
    run = run_demo(args.out, config, log=lambda line: print(line, flush=True))
    print(f"[demo] wrote {run.out_dir}/: source.mp4 novel_view.mp4 ground_truth.mp4 side_by_side.png "
          "report.md report.json", flush=True)
    print(json.dumps(run.summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
