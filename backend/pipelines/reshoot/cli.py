"""``recast4d run``: the reshoot pipeline from the command line (batch and render-farm use).

    recast4d run --video IN.mp4 --depth DEPTH_DIR --camera-path orbit:left:30 --out OUT
    recast4d run --job job.json [--out OUT]

``job.json`` holds the same request the server takes: ``{"params": {...}, "inputs": {name: file}}``
(``"kind": "tune"`` or ``"generate"`` runs those job kinds instead; ``backend/executors/job_file.py``),
where ``frames`` is a video file or an image folder, ``depth`` a folder/.npy/.npz of depth maps and
other inputs ``.npy`` files; relative paths are resolved against the job file's folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import ValidationError

from ..cli_support import ProgressBars, read_camera_file, safe_name, source_camera_dicts


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="re-film a video along new camera paths (no server needed)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", type=Path, help="a job file (params + input files); other inputs are then optional")
    p.add_argument("--video", type=Path, help="source video (mp4/mov/webm) or image-sequence folder")
    p.add_argument("--depth", type=Path, help="depth maps: folder of EXR/PNG16/NPY, or .npy/.npz (metres)")
    p.add_argument("--depth-kind", choices=["z", "ray"], default="z",
                   help="planar z-depth (Blender's Z pass) or distance along the ray (default z)")
    p.add_argument("--depth-engine", default=None, help="depth engine when --depth is missing (default depth-anything; depth-pro also estimates "
                        "the focal length; depth-anything-metric-indoor/-outdoor; see `recast4d doctor`)")
    p.add_argument("--camera", type=Path, help="source camera(s): a camera-path file (nerfstudio JSON, ...), a "
                                               "transforms.json (nerfstudio / instant-ngp) or a COLMAP text model folder")
    p.add_argument("--fov", type=float, default=None, help="horizontal field of view guess when --camera is missing")
    p.add_argument("--camera-path", action="append", default=[], metavar="FILE|PRESET",
                   help="target path: a file (nerfstudio, ReCamMaster, TrajectoryCrafter, ViewCrafter, GEN3C) or "
                        "a preset such as orbit:left:30, dolly:in:0.5, zoom:in:2, bullet:40:orbit:right:30; repeatable")
    p.add_argument("--prompt", default=None, help="text guiding the generated content")
    p.add_argument("--engine", default=None, help="inpainting engine: classical (default) or wan-vace")
    p.add_argument("--models", default=None, help="folder holding model weights (default: $RECAST4D_MODELS)")
    p.add_argument("--lora", default=None, help="LoRA file/folder or id for the wan-vace engine")
    p.add_argument("--fast", action="store_true",
                   help="wan-vace few-step preset: step-distillation LoRA (<models>/loras), 4 steps (or --steps 1-8), "
                        "guidance 1")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--gaussian-iterations", type=int, default=None, help="fitting steps per frame (0 = no fitting)")
    p.add_argument("--fps", type=float, default=None, help="override the video's frame rate")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--out", type=Path, help="output folder (required unless the job file names one)")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    if args.job:
        from backend.executors.job_file import read_job_file

        job = read_job_file(args.job)
        if job.kind != "reshoot":  # tune / generate job files (farm templates) run through their job kind
            from backend.executors.batch import run_job_file

            flags = [f"--{name.replace('_', '-')}" for name in _OVERRIDES if getattr(args, name) is not None]
            return run_job_file(job, args.out, ignored_flags=flags)
        params, inputs, out = job.params, job.read_inputs(), job.out
    else:
        params, inputs, out = _from_arguments(args)
    _apply_overrides(params, args)
    out = args.out or out
    if out is None:
        raise ValidationError("say where to write results with --out DIR")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) > 0:
        # torchrun (context parallelism, backend/engines/context_parallel.py): rank 0 writes the results
        out = Path(tempfile.mkdtemp(prefix=f"recast4d-rank{os.environ['RANK']}-"))

    from .pipeline import run_reshoot
    from .request import ReshootRequest

    request = ReshootRequest.from_params(params, inputs)
    for warning in request.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    with ProgressBars() as bars:
        result = run_reshoot(request, out, progress=bars.update, device=args.device)
    summary = {s["stage"]: s["seconds"] for s in result.report["stages"]}
    print(f"wrote {out} ({result.points.num_points} points over {request.num_frames} frames) in "
          f"{result.report['wall_seconds']:.1f} s")
    print("stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items()))
    return 0


def _from_arguments(args: argparse.Namespace) -> tuple[dict, dict, Path | None]:
    from backend.engines.depth import load_depth_sequence
    from backend.media import read_frames

    if args.video is None:
        raise ValidationError("give the source with --video FILE|FOLDER (or a --job file)")
    if not args.camera_path:
        raise ValidationError("give at least one target path with --camera-path FILE|PRESET")
    video = read_frames(args.video, fps=args.fps)
    inputs: dict[str, np.ndarray] = {"frames": video.frames}
    if args.depth is not None:
        inputs["depth"] = load_depth_sequence(args.depth)
    params: dict[str, Any] = {"fps": video.fps, "depth_kind": args.depth_kind,
                              "trajectories": [_trajectory(spec, i) for i, spec in enumerate(args.camera_path)]}
    if args.camera is not None:
        num_frames, height, width = video.frames.shape[:3]
        params["cameras"] = source_camera_dicts(args.camera, num_frames, width, height)
    if args.depth is None:
        params.setdefault("engine", {})["depth"] = args.depth_engine or "depth-anything"
    return params, inputs, None


def _trajectory(spec: str, index: int) -> dict:
    path = Path(spec)
    if path.suffix.lower() in (".json", ".txt", ".npz") or path.exists():
        data = read_camera_file(path)
        traj: dict[str, Any] = {"name": safe_name(path.stem, index), "cameras": [c.to_dict() for c in data.cameras]}
        if data.source_frames is not None:
            traj["time_map"] = list(data.source_frames)
        return traj
    return {"name": safe_name(spec.split(":")[0] + str(index), index), "preset": spec}


#: The flags that override a reshoot job file's params (see :func:`_apply_overrides`).
_OVERRIDES = ("engine", "models", "lora", "steps", "guidance", "seed", "prompt", "fov", "gaussian_iterations")


def _apply_overrides(params: dict, args: argparse.Namespace) -> None:
    engine = params.setdefault("engine", {})
    for key, value in (("inpaint", args.engine), ("models_dir", args.models), ("lora", args.lora),
                       ("steps", args.steps), ("guidance", args.guidance), ("seed", args.seed)):
        if value is not None:
            engine[key] = value
    if getattr(args, "fast", False):
        engine["fast"] = True
    if args.prompt is not None:
        params["prompt"] = args.prompt
    if args.fov is not None and "cameras" not in params:
        params["fov_deg"] = args.fov
    if args.gaussian_iterations is not None:
        params.setdefault("gaussians", {})["iterations"] = args.gaussian_iterations
