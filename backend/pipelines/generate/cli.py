"""``recast4d generate``: text / image / video -> 4D scene (CoCo4D) from the command line.

    recast4d generate --prompt "a fox trotting in snow" --out OUT                 # Wan2.1 T2V
    recast4d generate --prompt "..." --image first_frame.png --out OUT            # Wan2.1 I2V
    recast4d generate --video clip.mp4 --depth DEPTH_DIR [--masks MASK_DIR] --out OUT

Weights come from ``--models`` / ``$RECAST4D_MODELS`` (Wan2.1-T2V-1.3B-Diffusers,
Wan2.1-I2V-14B-480P-Diffusers, Depth-Anything-V2-Small-hf, Wan2.1-VACE-1.3B-diffusers for
``--engine wan-vace``). Without weights: give a video with its depth and the classical engine.
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
    p = subparsers.add_parser("generate", help="text / image / video -> 4D scene (CoCo4D, no server needed)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", default="", help="what the reference video shows (required unless --video)")
    p.add_argument("--image", type=Path, help="first frame for image-to-video (PNG/JPEG)")
    p.add_argument("--video", type=Path, help="use this video (file or image folder) instead of generating one")
    p.add_argument("--depth", type=Path, help="depth of --video: folder of EXR/PNG16/NPY or .npy/.npz (metres)")
    p.add_argument("--masks", type=Path, help="foreground masks of --video: folder of images or .npy (nonzero = fg)")
    p.add_argument("--depth-engine", default=None, help="depth engine when --depth is missing (depth-anything)")
    p.add_argument("--engine", default=None, help="inpainting engine: classical (default) or wan-vace")
    p.add_argument("--steps", type=int, default=None, help="sampling steps of the wan-vace engine (default 30)")
    p.add_argument("--video-engine", default=None, help="wan-t2v (default) or wan-i2v (default with --image)")
    p.add_argument("--frames", type=int, default=None, help="frames to generate (4k + 1, default 81)")
    p.add_argument("--size", default=None, metavar="WxH", help="generated video size (default 832x480)")
    p.add_argument("--fov", type=float, default=None, help="horizontal field of view of the reference camera")
    p.add_argument("--rings", default=None, help="outpaint rings as JSON, e.g. '[[[0,30],[0,-30]],[[15,30]]]'")
    p.add_argument("--strength", type=float, default=None, help="pseudo-video refinement strength (default 0.7)")
    p.add_argument("--fit-iterations", type=int, default=None,
                   help="background optimisation steps per ring view (default: 50 on CUDA, 3 on a CPU)")
    p.add_argument("--fit-scale", type=float, default=None,
                   help="optimisation view size as a fraction of the frame (default: 1 on CUDA, 0.25 on a CPU)")
    p.add_argument("--animation-iterations", type=int, default=None,
                   help="steps optimising the moving background (default: 300 on CUDA, 6 on a CPU; "
                        "0 keeps the motion projected from the videos)")
    p.add_argument("--gaussian-iterations", type=int, default=None,
                   help="foreground fitting steps per frame (default: 100 on CUDA, 0 on a CPU)")
    p.add_argument("--compose", choices=("band", "ranges"), default=None,
                   help="foreground depth placement: per-frame contact-band fit (default) or CoCo4D's Eq. 8-9")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--fps", type=float, default=None)
    p.add_argument("--models", default=None, help="folder holding model weights (default: $RECAST4D_MODELS)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=generate_command)


def generate_command(args: argparse.Namespace) -> int:
    params, inputs = build_params(args)
    from ..cli_support import ProgressBars
    from .pipeline import run_generate
    from .request import GenerateRequest

    request = GenerateRequest.from_params(params, inputs)
    for warning in request.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    with ProgressBars() as bars:
        result = run_generate(request, args.out, progress=bars.update, device=args.device)
    summary = ", ".join(f"{s['stage']} {s['seconds']:.2f}" for s in result.report["stages"])
    print(f"wrote {args.out} ({result.background.num_points} background points, {len(result.background.views)} "
          f"ring views, {len(result.foreground_counts)} foreground frames) in {result.report['wall_seconds']:.1f} s")
    print(f"stage seconds: {summary}")
    return 0


def build_params(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The request ``(params, inputs)`` the arguments describe (files read here)."""
    from backend.engines.depth import load_depth_sequence
    from backend.media import read_frames

    params: dict[str, Any] = {"prompt": args.prompt or ""}
    inputs: dict[str, np.ndarray] = {}
    engine: dict[str, Any] = {}
    if args.video is not None:
        video = read_frames(args.video, fps=args.fps)
        inputs["frames"] = video.frames
        params["fps"] = video.fps
        if args.depth is not None:
            inputs["depth"] = load_depth_sequence(args.depth)
        if args.masks is not None:
            inputs["foreground"] = _read_masks(args.masks)
    elif args.depth is not None or args.masks is not None:
        raise ValidationError("--depth and --masks belong to a --video")
    if args.image is not None:
        inputs["image"] = _read_image(args.image)
    for key, value in (("inpaint", args.engine), ("depth", args.depth_engine), ("models_dir", args.models),
                       ("seed", args.seed), ("steps", args.steps)):
        if value is not None:
            engine[key] = value
    if engine:
        params["engine"] = engine
    if args.video_engine:
        params["video_engine"] = args.video_engine
    if args.frames is not None:
        params["num_frames"] = args.frames
    if args.size:
        try:
            width, height = (int(v) for v in args.size.lower().split("x"))
        except ValueError as exc:
            raise ValidationError(f"--size must look like 832x480, got {args.size!r}") from exc
        params["width"], params["height"] = width, height
    if args.fov is not None:
        params["fov_deg"] = args.fov
    if args.fps is not None:
        params["fps"] = args.fps
    outpaint: dict[str, Any] = {}
    if args.rings:
        try:
            outpaint["rings"] = json.loads(args.rings)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"--rings must be JSON such as [[[0,30],[0,-30]]]: {exc}") from exc
    if args.strength is not None:
        outpaint["strength"] = args.strength
    if args.fit_iterations is not None:
        outpaint["fit_iterations"] = args.fit_iterations
    if args.fit_scale is not None:
        outpaint["fit_scale"] = args.fit_scale
    if outpaint:
        params["outpaint"] = outpaint
    if args.compose is not None:
        params["compose"] = {"method": args.compose}
    if args.animation_iterations is not None:
        params["animation"] = {"iterations": args.animation_iterations}
    if args.gaussian_iterations is not None:
        params["gaussians"] = {"iterations": args.gaussian_iterations}
    return params, inputs


def _read_image(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    if not path.exists():
        raise ValidationError(f"image not found: {path}")
    image = np.asarray(iio.imread(path))
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _read_masks(path: Path) -> np.ndarray:
    if not path.exists():
        raise ValidationError(f"masks not found: {path}")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False) != 0
    from backend.media import read_frames

    return read_frames(path).frames.max(axis=-1) > 127
