"""One prepared GPU check (``make gpu-check``): every CUDA path of Recast 4D measured in <= 8 minutes.

Checks, each in its own process (so peak-memory figures and failures stay separate, and each
imports only what it needs), under one wall-clock budget (``--budget-s``, default 450 s):

- ``attention``: diffusers' attention backends at the Wan2.1-1.3B 512x512x81 shape (batch 2,
  21,504 tokens, 12 heads x 128, bf16), each checked against native SDPA on the same inputs,
  fastest usable one reported (``backend.engines.attention``);
- ``inpaint``: ``bench/inpaint.py`` - full-size VACE-1.3B + Wan VAE with random weights, 512x512x81,
  30 steps + CFG: diffusers defaults vs the wan-vace engine (s/clip, peak VRAM), and the 4-step
  fast preset;
- ``tune``: ``bench/tune.py`` - rank-128 LoRA training steps at 512x512x81 (a few steps,
  extrapolated to 2000), peak VRAM;
- ``gsplat``: gsplat's first-use CUDA kernel build (started in the background at the beginning
  and timed on its own), agreement with the pure-torch reference rasteriser on the same scene, and
  fitting iterations/s at 512x512 with the default 200k Gaussians;
- ``geometry``: the CUDA lift + render path, frames/s at 512x512 (81 frames, ``bench/geometry.py``);
- ``gpu_tests``: the ``gpu``-marked tests (after the gsplat build).

The last line printed is one JSON summary (also written to ``$OUT/gpu_check.json`` when ``OUT`` is
set, with every check's output in ``$OUT/gpu_check.log``). Without CUDA it prints a ``skipped``
summary and exits 0. ``--smoke`` runs the same checks with tiny models on the CPU (what
``make test`` runs); exit status 1 when a check failed.

Usage: python bench/gpu_check.py [--smoke] [--budget-s 450] [--only inpaint,tune] [--out DIR]
The GPU machine has no diffusers or gsplat: ``make gpu-wheels`` downloads them beforehand into
``.whl/`` and ``make gpu-check`` installs them there with ``pip install --no-index --target``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOG_LOCK = threading.Lock()
BENCH = ROOT / "bench"
CHECK_ORDER = ("attention", "inpaint", "tune", "gsplat", "geometry", "gpu_tests")
#: Upper limits (s) per check on an H100/H200; the remaining budget caps each one further.
CHECK_LIMIT_S = {"attention": 60, "inpaint": 240, "tune": 130, "gsplat": 150, "geometry": 60, "gpu_tests": 120}
GSPLAT_BUILD_LIMIT_S = 330
GOAL = "every check passes within 480 s on one H100/H200"
GOALS = {"inpaint_s_per_clip": "<= 30", "inpaint_peak_vram_gb": "<= 20", "fast_s_per_clip": "<= 6",
         "tune_2000_steps_min": "<= 30", "geometry_frames_per_s": ">= 500", "gsplat_fit_its_per_s": "report"}


def last_json_line(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


# --------------------------------------------------------------------------- checks run in a child process
def check_attention(smoke: bool) -> dict:
    from backend.engines.attention import AttentionShape, choose_attention_backend, measure_attention_backends

    if smoke:
        shape, device, dtype = AttentionShape(2, 128, 2, 16), "cpu", "float32"
    else:
        shape, device, dtype = AttentionShape.for_wan(frames=81, height=512, width=512), "cuda", "bfloat16"
    results = measure_attention_backends(shape, device=device, dtype=dtype, repeats=2 if smoke else 10)
    chosen = choose_attention_backend(results)
    native = next(r for r in results if r.name == "native")
    best = next(r for r in results if r.name == chosen)
    return {"ok": native.usable, "chosen": chosen, "shape": vars(shape), "dtype": dtype,
            "native_ms": native.ms_per_call, "chosen_ms": best.ms_per_call,
            "speedup_vs_native": round(native.ms_per_call / best.ms_per_call, 3) if best.ms_per_call else None,
            "backends": [r.to_dict() for r in results]}


def _load_bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_geometry(smoke: bool) -> dict:
    import torch

    geometry = _load_bench_module("geometry")
    frames, size = (5, 64) if smoke else (81, 512)
    device = "cpu" if smoke else "cuda"
    video, depth, K = geometry.make_scene(frames, size)
    targets = geometry.orbit_path(frames)
    start = time.perf_counter()
    geometry.numpy_baseline(video[:3], depth[:3], K, targets[:3])
    baseline_fps = 3 / (time.perf_counter() - start)
    by_chunk = {}
    for chunk in (3, 27):
        fps, holes = geometry.time_torch(video, depth, K, targets, device, min(chunk, frames), 1 if smoke else 3)
        by_chunk[chunk] = round(fps, 1)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    best = max(by_chunk.values())
    return {"ok": best > 0 and 0.0 <= holes < 1.0, "frames_per_s": best, "frames_per_s_by_chunk": by_chunk,
            "numpy_baseline_frames_per_s": round(baseline_fps, 2), "hole_fraction": round(holes, 4),
            "clip": f"{size}x{size}x{frames}", "device": device, "peak_vram_gb": round(peak, 2)}


def _gaussian_scene(torch, n: int, size: int, device: str, seed: int = 0):
    """A random scene of ``n`` Gaussians in front of a ``size`` x ``size`` camera, and its target render."""
    import numpy as np

    from backend.gaussians import FitView, gaussians_from_points, rasterize
    from protocol.camera import Camera

    rng = np.random.default_rng(seed)
    points = np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(2.5, 4.0, n)], 1)
    camera = Camera.from_fov(50.0, size, size)
    footprint = 3.0 / camera.fx * max(1.0, (size * size / n) ** 0.5)
    truth = gaussians_from_points(points, rng.uniform(0, 1, (n, 3)), np.full(n, footprint), opacity=0.9,
                                  device=device)
    target = rasterize(truth, camera).rgb.detach()
    init = gaussians_from_points(points, np.full((n, 3), 0.5), np.full(n, footprint * 0.8), opacity=0.5,
                                 device=device)
    return init, [FitView(target, camera)], truth, camera


def check_gsplat(smoke: bool) -> dict:
    import torch

    from backend.gaussians import FitConfig, fit_frame, gsplat_status, rasterize

    start = time.perf_counter()
    usable, reason = gsplat_status()  # loads (or JIT-builds) the CUDA kernels
    load_s = time.perf_counter() - start
    result: dict = {"gsplat_usable": usable, "gsplat_reason": reason, "kernel_load_s": round(load_s, 2)}
    if not usable and not smoke:
        return dict(result, ok=False)
    # agreement: the same random anisotropic scene through both rasterisers
    n, size = (300, 32) if smoke else (20_000, 128)
    _, _, truth, camera = _gaussian_scene(torch, n, size, "cpu", seed=1)
    reference = rasterize(truth, camera, background=(0.1, 0.2, 0.3), backend="torch")
    if usable:
        fast = rasterize(truth.to("cuda"), camera, background=(0.1, 0.2, 0.3), backend="gsplat")
        rgb_error = float((fast.rgb.cpu() - reference.rgb).abs().mean())
        alpha_error = float((fast.alpha.cpu() - reference.alpha).abs().mean())
        result.update(agreement_scene=f"{size}x{size}, {n} Gaussians", rgb_mean_abs_error=rgb_error,
                      alpha_mean_abs_error=alpha_error, agrees=rgb_error < 2e-3 and alpha_error < 2e-3)
    # fitting speed (the default Gaussian count on CUDA; the reference rasteriser on the CPU in smoke mode)
    device = "cuda" if usable else "cpu"
    n_fit, size_fit, iterations = (200_000, 512, 100) if usable else (300, 32, 3)
    init, views, _, _ = _gaussian_scene(torch, n_fit, size_fit, device)
    fit_frame(init, views, FitConfig(iterations=2, prune_interval=0))
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fit_frame(init, views, FitConfig(iterations=iterations, prune_interval=0))
    if device == "cuda":
        torch.cuda.synchronize()
    its = iterations / (time.perf_counter() - start)
    result.update(fit_its_per_s=round(its, 2), fit_scene=f"{size_fit}x{size_fit}, {n_fit} Gaussians, {device}",
                  fit_peak_vram_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else 0.0)
    result["ok"] = its > 0 and result.get("agrees", True)
    return result


CHILD_CHECKS = {"attention": check_attention, "geometry": check_geometry, "gsplat": check_gsplat}


# --------------------------------------------------------------------------- the runner
def gpu_test_files() -> list[str]:
    files = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        text = path.read_text(errors="replace")
        if "pytest.mark.gpu" in text:
            files.append(str(path.relative_to(ROOT)))
    return files


def command_for(name: str, smoke: bool) -> list[str]:
    python = sys.executable
    flag = ["--smoke"] if smoke else []
    if name == "inpaint":
        return [python, str(BENCH / "inpaint.py"), *flag]
    if name == "tune":
        return [python, str(BENCH / "tune.py"), *flag, "--steps", "3", "--warmup", "1", "--baseline-steps", "2"]
    if name == "gpu_tests":
        return [python, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *gpu_test_files()]
    return [python, str(Path(__file__).resolve()), "--child", name, *flag]


def run_check(name: str, smoke: bool, limit_s: float, log) -> dict:
    """Run one check in a child process; its status, seconds and last JSON line (or the error)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command_for(name, smoke), cwd=ROOT, env=child_env(), capture_output=True, text=True,
                              timeout=max(1.0, limit_s))
    except subprocess.TimeoutExpired as timeout:
        stdout, stderr = (_text(timeout.stdout), _text(timeout.stderr))  # bytes, whatever text= says
        with LOG_LOCK:
            log.write(f"\n===== {name} (timeout after {limit_s:.0f} s)\n{stdout}\n{stderr}\n")
        # what the check printed before it ran out of time (e.g. the baseline's figures) still comes back
        return {"status": "timeout", "seconds": round(time.perf_counter() - start, 1),
                "partial_output": stdout.strip().splitlines()[-12:]}
    seconds = round(time.perf_counter() - start, 1)
    with LOG_LOCK:
        log.write(f"\n===== {name} (exit {done.returncode}, {seconds} s)\n{done.stdout}\n{done.stderr}\n")
        log.flush()
    if name == "gpu_tests":
        tail = (done.stdout.strip().splitlines() or [""])[-1]
        ok = done.returncode == 0 or (smoke and done.returncode == 5)
        return {"status": "ok" if ok else "failed", "seconds": seconds, "result": {"summary": tail,
                                                                                    "files": gpu_test_files()}}
    result = last_json_line(done.stdout)
    if done.returncode != 0 or result is None:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "seconds": seconds, "error": error[:400]}
    if result.get("skipped"):
        return {"status": "skipped", "seconds": seconds, "result": result}
    ok = result.get("ok", True)
    return {"status": "ok" if ok else "failed", "seconds": seconds, "result": result}


def start_gsplat_build(log_path: Path):
    """Start gsplat's first-use kernel build in the background (CPU work, overlaps the GPU checks)."""
    code = ("import time; t = time.perf_counter()\n"
            "from backend.gaussians import gsplat_status\n"
            "ok, reason = gsplat_status()\n"
            "import json; print(json.dumps({'ok': ok, 'reason': reason, 'build_s': round(time.perf_counter() - t, 1)}))")
    import torch

    env = child_env()
    env.setdefault("MAX_JOBS", "12")  # of the machine's 16 cores; the GPU checks need little CPU meanwhile
    major, minor = torch.cuda.get_device_capability(0)
    env.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")  # build for this card only (9.0 on H100/H200)
    if "CUDA_HOME" not in env and Path("/usr/local/cuda/bin/nvcc").is_file():
        env["CUDA_HOME"] = "/usr/local/cuda"
        env["PATH"] = f"/usr/local/cuda/bin{os.pathsep}{env.get('PATH', '')}"
    log = open(log_path, "w")  # noqa: SIM115 - closed by finish_gsplat_build
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
                               text=True)
    return process, log, time.perf_counter(), log_path


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def finish_gsplat_build(build, limit_s: float) -> dict:
    process, log, started, log_path = build
    try:
        stdout, _ = process.communicate(timeout=max(1.0, limit_s))
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        log.close()
        return {"status": "timeout", "seconds": round(time.perf_counter() - started, 1), "log_tail": _log_tail(log_path)}
    log.close()
    result = last_json_line(stdout or "") or {"ok": False, "reason": "no output"}
    outcome = {"status": "ok" if result.get("ok") else "failed", "seconds": round(time.perf_counter() - started, 1),
               "result": result}
    if not result.get("ok"):
        outcome["log_tail"] = _log_tail(log_path)
    return outcome


def run_side_by_side(names: list[str], args: argparse.Namespace, log, checks: dict) -> None:
    """Smoke mode only: run the checks ``args.jobs`` at a time (each is a child process)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {name: pool.submit(run_check, name, True, 3 * CHECK_LIMIT_S[name], log) for name in names}
        for name in names:
            checks[name] = futures[name].result()
            print(f"gpu_check: {name}: {checks[name]['status']} in {checks[name]['seconds']} s", flush=True)


def headline(checks: dict) -> dict:
    """The figures the README's benchmark table wants, pulled out of the checks' results."""
    def get(check: str, key: str):
        return (checks.get(check, {}).get("result") or {}).get(key)

    figures = {
        "inpaint_s_per_clip": get("inpaint", "engine_s_per_clip"),
        "inpaint_baseline_s_per_clip": get("inpaint", "baseline_s_per_clip"),
        "inpaint_peak_vram_gb": get("inpaint", "engine_peak_vram_gb"),
        "inpaint_estimated_peak_gb": get("inpaint", "engine_estimated_peak_gb"),
        "fast_s_per_clip": get("inpaint", "fast_s_per_clip"),
        "tune_s_per_step": get("tune", "value"),
        "tune_steps_per_s": round(1.0 / get("tune", "value"), 3) if get("tune", "value") else None,
        "tune_2000_steps_min": get("tune", "projected_2000_steps_min"),
        "tune_peak_vram_gb": get("tune", "peak_vram_gib"),
        "attention_backend": get("attention", "chosen"), "attention_speedup": get("attention", "speedup_vs_native"),
        "gsplat_build_s": get("gsplat_build", "build_s"), "gsplat_fit_its_per_s": get("gsplat", "fit_its_per_s"),
        "gsplat_rgb_mean_abs_error": get("gsplat", "rgb_mean_abs_error"),
        "geometry_frames_per_s": get("geometry", "frames_per_s"),
    }
    return {k: v for k, v in figures.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU (the same code paths)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of the whole check")
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(CHECK_ORDER))
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check.json/.log ($OUT)")
    parser.add_argument("--jobs", type=int, default=2, help="with --smoke: checks run side by side (default 2)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(CHILD_CHECKS[args.child](args.smoke), default=str))
        return 0

    import torch

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    base = {"bench": "gpu_check", "unit": "checks passed", "device": device, "goal": GOAL}
    if not cuda and not args.smoke:
        print("gpu_check: skipped (no CUDA device; --smoke runs the same code paths with tiny models on the CPU)")
        print(json.dumps(dict(base, skipped=True, value=None, baseline=None, ratio=None, reason="no CUDA device")))
        return 0
    wanted = [name for name in CHECK_ORDER if not args.only or name in args.only.split(",")]
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    log_path = (out / "gpu_check.log") if out is not None else Path(os.devnull)
    started = time.perf_counter()
    checks: dict[str, dict] = {}
    environment = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
                   "smoke": args.smoke, "budget_s": args.budget_s}
    if cuda:
        free, total = torch.cuda.mem_get_info()
        environment.update(free_vram_gb=round(free / 2**30, 1), total_vram_gb=round(total / 2**30, 1))
    for package in ("diffusers", "transformers", "peft", "gsplat"):
        environment[package] = _version(package)
    build = None
    if cuda and "gsplat" in wanted and environment["gsplat"]:
        build = start_gsplat_build((out if out is not None else Path(tempfile.mkdtemp())) / "gsplat_build.log")
    with open(log_path, "a") as log:
        if args.smoke and args.jobs > 1:  # CPU smoke run: no timings to protect, run the checks side by side
            run_side_by_side(wanted, args, log, checks)
        for name in [] if args.smoke and args.jobs > 1 else wanted:
            if name in ("gsplat", "gpu_tests") and build is not None:
                remaining = args.budget_s - (time.perf_counter() - started)
                checks["gsplat_build"] = finish_gsplat_build(build, min(GSPLAT_BUILD_LIMIT_S, remaining))
                build = None
            remaining = args.budget_s - (time.perf_counter() - started)
            if remaining < 5:
                checks[name] = {"status": "skipped", "seconds": 0.0, "reason": "time budget spent"}
                continue
            checks[name] = run_check(name, args.smoke, min(CHECK_LIMIT_S[name], remaining), log)
            print(f"gpu_check: {name}: {checks[name]['status']} in {checks[name]['seconds']} s", flush=True)
    passed = sum(1 for c in checks.values() if c["status"] == "ok")
    failed = [name for name, c in checks.items() if c["status"] in ("failed", "timeout")]
    out_of_time = [name for name, c in checks.items() if c.get("reason") == "time budget spent"]
    summary = dict(base, value=passed, baseline=len(checks), ratio=round(passed / max(1, len(checks)), 3),
                   wall_s=round(time.perf_counter() - started, 1), failed=failed, skipped_for_time=out_of_time,
                   goals=GOALS,
                   figures=headline(checks), environment=environment, checks=checks)
    text = json.dumps(summary, default=str)
    if out is not None:
        (out / "gpu_check.json").write_text(json.dumps(summary, indent=1, default=str))
    print(text)
    return 1 if failed else 0


def _version(package: str) -> str | None:
    try:
        import importlib.metadata

        return importlib.metadata.version(package)
    except Exception:  # noqa: BLE001 - not installed
        return None


if __name__ == "__main__":
    sys.exit(main())
