"""``recast4d tune``: tune a per-video inpainting LoRA from the command line (no server needed).

    recast4d tune --video IN.mp4 [--depth DEPTH_DIR] --out RUN_DIR [--lora-id my-shot] [--prompt TEXT]

Without ``--depth`` the depth is estimated from the video by ``--depth-engine`` (default
``depth-anything``), exactly as ``recast4d run`` does; ``--camera`` (a camera-path file, a
transforms.json or a COLMAP model) gives it the source cameras to put the depth into their scale.

The LoRA lands in ``RUN_DIR/lora`` (diffusers format) and, unless ``--no-register``, in
``<models>/loras/<lora-id>`` (default id: the name of ``RUN_DIR``), so that
``recast4d run ... --engine wan-vace --lora <lora-id>`` uses it. Running the same command again
resumes from the newest checkpoint in ``RUN_DIR`` (``--restart`` starts over).
``--config FILE`` takes a JSON map of tuning options (rank, steps, angles, width, height,
num_frames, samples_per_round, ...); the flags below override it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import ValidationError


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tune", help="tune a per-video inpainting LoRA (video [+ depth] -> LoRA id)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, required=True, help="source video (mp4/mov/webm) or image-sequence folder")
    p.add_argument("--depth", type=Path, default=None,
                   help="depth maps: folder of EXR/PNG16/NPY, or .npy/.npz (metres); default: estimated")
    p.add_argument("--depth-engine", default=None,
                   help="depth engine when --depth is missing (default depth-anything; see `recast4d doctor`)")
    p.add_argument("--out", type=Path, required=True, help="run folder (data, checkpoints, previews, LoRA)")
    p.add_argument("--depth-kind", choices=["z", "ray"], default="z", help="planar z (default) or ray distance")
    p.add_argument("--camera", type=Path, help="source camera(s): a camera-path file (nerfstudio JSON, ...), a "
                                               "transforms.json (nerfstudio / instant-ngp) or a COLMAP text model folder")
    p.add_argument("--fov", type=float, default=None, help="horizontal field of view guess when --camera is missing")
    p.add_argument("--prompt", default=None, help="text describing the video")
    p.add_argument("--models", default=None, help="folder holding model weights (default: $RECAST4D_MODELS)")
    p.add_argument("--lora-id", default=None, help="id to register the LoRA under (default: the --out folder name)")
    p.add_argument("--no-register", action="store_true", help="do not copy the LoRA into <models>/loras")
    p.add_argument("--config", type=Path, default=None, help="JSON file with tuning options")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps over all rounds (default 2000)")
    p.add_argument("--rank", type=int, default=None, help="LoRA rank (default 128)")
    p.add_argument("--angles", default=None, help="round angle limits in degrees, e.g. 30,45,60,75")
    p.add_argument("--size", default=None, help="training WIDTHxHEIGHT, multiples of 16 (default 512x512)")
    p.add_argument("--frames", type=int, default=None, help="clip length 4k+1 (default 81)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--fps", type=float, default=None, help="override the video's frame rate")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--restart", action="store_true", help="ignore checkpoints in --out and start over")
    p.set_defaults(func=run_command)


def tune_options(args: argparse.Namespace) -> dict[str, Any]:
    """Tuning options from ``--config`` with the command-line flags applied on top."""
    options: dict[str, Any] = {}
    if args.config is not None:
        try:
            options = json.loads(args.config.read_text())
        except FileNotFoundError as exc:
            raise ValidationError(f"config file not found: {args.config}") from exc
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{args.config} is not valid JSON: {exc}") from exc
        if not isinstance(options, dict):
            raise ValidationError(f"{args.config} must hold a JSON map of tuning options")
    for key, value in (("steps", args.steps), ("rank", args.rank), ("num_frames", args.frames),
                       ("seed", args.seed), ("device", args.device)):
        if value is not None:
            options[key] = value
    if args.angles:
        try:
            options["angles"] = [float(a) for a in args.angles.split(",") if a.strip()]
        except ValueError as exc:
            raise ValidationError(f"--angles must be numbers separated by commas, got {args.angles!r}") from exc
    if args.size:
        try:
            width, height = (int(v) for v in args.size.lower().split("x"))
        except ValueError as exc:
            raise ValidationError(f"--size must look like 512x512, got {args.size!r}") from exc
        options["width"], options["height"] = width, height
    return options


def run_command(args: argparse.Namespace) -> int:
    from backend.engines.depth import load_depth_sequence
    from backend.media import read_frames

    from ..cli_support import ProgressBars, safe_name, source_camera_dicts
    from .pipeline import run_tune
    from .request import TuneRequest

    video = read_frames(args.video, fps=args.fps)
    inputs: dict[str, np.ndarray] = {"frames": video.frames}
    params: dict[str, Any] = {"fps": video.fps, "depth_kind": args.depth_kind, "tune": tune_options(args),
                              "resume": not args.restart}
    if args.depth is not None:
        inputs["depth"] = load_depth_sequence(args.depth)
        if args.depth_engine is not None:
            raise ValidationError("give either --depth (depth maps) or --depth-engine (estimate them), not both")
    else:
        params["depth_engine"] = args.depth_engine or "depth-anything"
    if args.camera is not None:
        num_frames, height, width = video.frames.shape[:3]
        params["cameras"] = source_camera_dicts(args.camera, num_frames, width, height)
    elif args.fov is not None:
        params["fov_deg"] = args.fov
    if args.prompt is not None:
        params["prompt"] = args.prompt
    if args.models is not None:
        params["models_dir"] = args.models
    if not args.no_register:
        params["lora_id"] = args.lora_id or safe_name(args.out.resolve().name, 0)
    request = TuneRequest.from_params(params, inputs)
    printed = list(request.warnings)
    for warning in printed:
        print(f"warning: {warning}", file=sys.stderr)
    with ProgressBars() as bars:
        result = run_tune(request, args.out, progress=bars.update)
    for note in request.warnings:
        if note not in printed:
            print(f"warning: {note}", file=sys.stderr)
    print(f"wrote {result.lora_dir} after {len(result.history)} steps "
          f"(final loss {result.report['final_loss'] or float('nan'):.4f}) in {result.report['wall_seconds']:.1f} s")
    if result.registered is not None:
        print(f"registered as LoRA id {request.lora_id!r} ({result.registered}); use it with "
              f"`recast4d run ... --engine wan-vace --lora {request.lora_id}`")
    return 0
