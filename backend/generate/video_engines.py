"""Reference-video engines for ``generate``: Wan2.1 text-to-video and image-to-video from local folders.

- ``wan-t2v``: ``Wan2.1-T2V-1.3B-Diffusers`` with diffusers ``WanPipeline`` (prompt -> video);
- ``wan-i2v``: ``Wan2.1-I2V-14B-480P-Diffusers`` with ``WanImageToVideoPipeline`` (image + prompt -> video,
  the image is the first frame).

Both return ``(F, H, W, 3)`` uint8 RGB; ``F`` is rounded to ``4k + 1`` and ``H``/``W`` to multiples of
16 (what the Wan VAE and patching need). The transformer runs in bf16 on CUDA (fp32 on CPU), the VAE
always in fp32. Progress and cancel are checked after every denoising step.

The engines are registered with kind ``"video"`` in :mod:`backend.engines.registry` (so ``recast4d
doctor`` lists them); build one with ``backend.engines.get_video_engine(name, models_dir, **options)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from backend.engines.registry import WAN_I2V_14B_480P, WAN_T2V_1_3B, require_weights
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.errors import ValidationError

VIDEO_KIND = "video"

DEFAULT_NEGATIVE_PROMPT = (
    "blurry, low quality, distorted, deformed, flickering, artifacts, watermark, text, oversaturated, "
    "overexposed, jpeg artifacts, camera shake, camera motion"
)

@dataclass
class VideoEngineOptions:
    """What a reference-video engine can be told (all optional)."""

    device: str | None = None  # default "cuda" when available, else "cpu"
    dtype: str | None = None  # transformer dtype; bfloat16 on CUDA, float32 on CPU
    num_inference_steps: int = 30
    guidance_scale: float = 5.0
    flow_shift: float = 3.0
    scheduler: str = "unipc"  # "unipc" / "dpm" in flow mode, or "saved" (the folder's own)
    seed: int = 0
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    max_sequence_length: int = 512

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> VideoEngineOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValidationError(f"unknown video engine options: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        opts = cls(**options)
        if opts.num_inference_steps < 1:
            raise ValidationError("video engine needs num_inference_steps >= 1")
        if opts.scheduler not in ("unipc", "dpm", "saved"):
            raise ValidationError(f"scheduler must be unipc/dpm/saved, got {opts.scheduler!r}")
        return opts


def video_size(num_frames: int, height: int, width: int) -> tuple[int, int, int]:
    """``(F, H, W)`` the Wan models accept: F rounded down to ``4k + 1`` (>= 5), H/W down to multiples of 16."""
    if num_frames < 1 or height < 16 or width < 16:
        raise ValidationError(f"a generated video needs >= 1 frame and >= 16x16 pixels, got {num_frames} "
                              f"frames of {width}x{height}")
    frames = max(5, (int(num_frames) - 1) // 4 * 4 + 1)
    return frames, int(height) // 16 * 16, int(width) // 16 * 16


class WanVideoEngine:
    """Wan2.1 T2V or I2V (see the module docstring); ``generate`` makes one reference video."""

    def __init__(self, pipe: Any, options: VideoEngineOptions, *, name: str) -> None:
        import torch

        self.name = name
        self.options = options
        self.device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = getattr(torch, options.dtype or ("bfloat16" if self.device.type == "cuda" else "float32"))
        if options.scheduler != "saved":
            from backend.engines.wan_vace import make_flow_scheduler

            pipe.scheduler = make_flow_scheduler(options.scheduler, options.flow_shift, pipe.scheduler)
        if pipe.transformer.dtype != self.dtype:  # from_pretrained already keeps norms etc. in fp32
            pipe.transformer.to(self.dtype)
        pipe.transformer.to(self.device)
        if pipe.vae.dtype != torch.float32:
            pipe.vae.to(torch.float32)
        pipe.vae.to(self.device)
        for part in ("text_encoder", "image_encoder"):
            module = getattr(pipe, part, None)
            if module is not None:
                module.to(self.device)
        self.pipe = pipe
        self.needs_image = type(pipe).__name__ == "WanImageToVideoPipeline"

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], *, image_to_video: bool, **options: Any) -> WanVideoEngine:
        """Load a local diffusers folder (``local_files_only``: nothing is downloaded)."""
        import torch
        from diffusers import AutoencoderKLWan, WanImageToVideoPipeline, WanPipeline

        opts = VideoEngineOptions.from_kwargs(options)
        cuda = (opts.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        dtype = getattr(torch, opts.dtype or ("bfloat16" if cuda else "float32"))
        vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32,
                                               local_files_only=True)
        pipeline_class = WanImageToVideoPipeline if image_to_video else WanPipeline
        pipe = pipeline_class.from_pretrained(folder, vae=vae, torch_dtype=dtype, local_files_only=True)
        return cls(pipe, opts, name="wan-i2v" if image_to_video else "wan-t2v")

    @classmethod
    def from_pipeline(cls, pipe: Any, **options: Any) -> WanVideoEngine:
        """Wrap an already built ``WanPipeline`` / ``WanImageToVideoPipeline`` (tests, benchmarks)."""
        i2v = type(pipe).__name__ == "WanImageToVideoPipeline"
        return cls(pipe, VideoEngineOptions.from_kwargs(options), name="wan-i2v" if i2v else "wan-t2v")

    @classmethod
    def from_models_dir_t2v(cls, models_dir: Path, **options: Any) -> WanVideoEngine:
        return cls.from_folder(require_weights(WAN_T2V_1_3B, models_dir), image_to_video=False, **options)

    @classmethod
    def from_models_dir_i2v(cls, models_dir: Path, **options: Any) -> WanVideoEngine:
        return cls.from_folder(require_weights(WAN_I2V_14B_480P, models_dir), image_to_video=True, **options)

    def generate(self, prompt: str, *, num_frames: int = 81, height: int = 480, width: int = 832,
                 image: np.ndarray | None = None, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None) -> np.ndarray:
        """One reference video ``(F, H, W, 3)`` uint8 (sizes as :func:`video_size` rounds them).

        ``image`` (H, W, 3) uint8 is required for image-to-video (resized to the video size) and
        refused for text-to-video.
        """
        import torch

        if not prompt or not prompt.strip():
            raise ValidationError("a prompt is needed to generate the reference video")
        frames, height, width = video_size(num_frames, height, width)
        opts = self.options
        extra: dict[str, Any] = {}
        if self.needs_image:
            if image is None:
                raise ValidationError("the image-to-video engine needs an image (the first frame)")
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
                raise ValidationError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
            from PIL import Image

            extra["image"] = Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC)
        elif image is not None:
            raise ValidationError("the text-to-video engine takes no image; use the wan-i2v engine for image + prompt")
        check_cancel(cancel)
        steps = opts.num_inference_steps

        def on_step(_pipe: Any, index: int, _t: Any, callback_kwargs: dict) -> dict:
            check_cancel(cancel)
            if progress is not None:
                progress(index + 1, steps, f"{self.name}: denoising step {index + 1}/{steps}")
            return callback_kwargs

        generator = torch.Generator(device="cpu").manual_seed(int(opts.seed))
        with torch.no_grad():
            output = self.pipe(prompt=prompt, negative_prompt=opts.negative_prompt, height=height, width=width,
                               num_frames=frames, num_inference_steps=steps, guidance_scale=opts.guidance_scale,
                               generator=generator, output_type="np", callback_on_step_end=on_step,
                               max_sequence_length=opts.max_sequence_length, **extra)
        video = np.asarray(output.frames[0], dtype=np.float32)  # (F, H, W, 3) in [0, 1]
        return np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)
