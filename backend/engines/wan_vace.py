"""The ``wan-vace`` inpainting engine: Wan2.1 VACE (diffusers ``WanVACEPipeline``) from a local folder.

Defaults follow EasyCreator's inference: DPM-solver (flow prediction, ``flow_shift`` 3.0), 30 steps,
guidance 6.5, LoRA weight 0.7. Transformer in bf16 on CUDA (fp32 on CPU), VAE always fp32 with
spatial tiling. Prompt embeddings are computed once per prompt and cached; the text encoder
(UMT5-XXL, ~11 GB) is released after encoding and reloaded only if a new prompt arrives.

Frames of any size are resized (aspect kept) to about ``max_pixels`` and reflect-padded to a
multiple of 16; clips of any length run in windows of ``window_frames`` (4k + 1) frames that share
``overlap_frames`` frames: shared frames are already filled when a window runs and condition it as
known pixels. The result is resized back and composited into the source frames with a feather of
``feather_px`` pixels around the holes (pixels farther from every hole come back exactly as given).
VACE masks: white (1) = generate, black (0) = keep.

Speed and memory levers: ``preset="fast"`` (:mod:`backend.engines.fast_preset`: a step-distillation
LoRA stacked with the shot's LoRA, 4-8 Euler steps on the distilled schedule, guidance 1);
``offload="auto"`` (default) picks, from the free VRAM (capped by ``vram_budget_gb``), the fastest
of everything on the GPU, model CPU offload, group offload and sequential offload
(:mod:`backend.engines.vram`); ``attention_backend="auto"`` (default) measures diffusers'
attention backends at the clip's shape on CUDA and keeps the fastest that matches SDPA
(:mod:`backend.engines.attention`; native SDPA on the CPU). :meth:`WanVaceEngine.runtime_report`
says what was chosen (it goes into the job report).

Deliberately not offered: FirstBlockCache / MagCache (block-skipping caches). On the VACE
transformer the control hints are added between blocks, so a cached residual already holds them
and a skipped step adds them twice (wrong output, see reference/models.md section 5).
With ``compile=True`` and LoRA switching, load the LoRA before compiling (done here at construction).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from backend.engines.fast_preset import FAST, distilled_base_sigmas
from backend.engines.inpaint_types import (
    FirstFrameEdit,
    InpaintContext,
    apply_first_frame_edit,
    composite_fill,
    validate_fill_inputs,
)
from backend.engines.lora import load_lora_stack
from backend.engines.registry import WAN_VACE_1_3B, WAN_VACE_14B, require_weights
from backend.engines.vace_geometry import ModelFrameLayout, pad_window, plan_windows
from backend.engines.vram import free_vram_bytes
from backend.engines.wan_runtime import apply_placement, lora_stack, plan_for, set_attention
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.errors import ValidationError

DEFAULT_NEGATIVE_PROMPT = (
    "blurry, low quality, distorted, deformed, flickering, static, artifacts, watermark, text, "
    "oversaturated, overexposed, jpeg artifacts"
)


@dataclass
class WanVaceOptions:
    """Everything the ``wan-vace`` engine can be told (all optional)."""

    device: str | None = None  # default "cuda" when available, else "cpu"
    dtype: str | None = None  # transformer dtype; default bfloat16 on CUDA, float32 on CPU
    num_inference_steps: int = 30
    guidance_scale: float = 6.5
    scheduler: str = "dpm"  # "dpm" (DPM-solver++ flow), "unipc" (flow), "distilled" (Euler, fixed list), "saved"
    flow_shift: float = 3.0  # 3.0 for ~480p/512^2, 5.0 for 720p (the fast preset: 5.0)
    preset: str = "quality"  # "quality" (the settings above) or "fast" (step-distillation LoRA, 4-8 steps)
    distill_lora: str | None = None  # fast preset: LoRA path or id in <models>/loras (default: by model size)
    distill_lora_weight: float = FAST.lora_weight
    conditioning_scale: float = 1.0
    window_frames: int = 81
    overlap_frames: int = 8
    max_pixels: int = 512 * 512
    context_top_k: int = 4
    feather_px: float = 4.0
    seed: int = 0
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    max_sequence_length: int = 512
    lora: str | None = None  # path to a LoRA file/folder or an id in <models>/loras
    lora_weight: float = 0.7
    lora_mode: str = "adapter"  # "adapter" (set_adapters) or "fuse" (fuse_lora + unload)
    attention_backend: str | None = "auto"  # "auto" (measured), None/"native", "flash", "_flash_3", "sage", ...
    compile: bool = False  # torch.compile the repeated transformer blocks (regional compilation)
    offload: str = "auto"  # "auto" (from free VRAM), "none", "model", "group" (block-level), "sequential"
    vram_budget_gb: float | None = None  # plan "auto" offload within this many GiB (e.g. beside Blender)
    vae_tiling: bool = True
    release_text_encoder: bool = True
    embeddings_cache_dir: str | None = None  # also keep prompt embeddings on disk (safetensors), across runs
    batch_cfg: bool = True  # run cond + uncond as one batch of 2
    context_parallel: dict | None = None  # {"ring": R, "ulysses": U}: one job on R x U GPUs (torchrun); unmeasured

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> WanVaceOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValidationError(f"unknown wan-vace options: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        opts = cls(**options)
        if opts.preset not in ("quality", "fast"):
            raise ValidationError(f"wan-vace preset must be 'quality' or 'fast', got {opts.preset!r}")
        if opts.preset == "fast":
            requested = options.get("num_inference_steps")
            if requested is not None and not 1 <= int(requested) <= FAST.max_steps:
                raise ValidationError(f"the fast preset runs 1 to {FAST.max_steps} distilled steps, got "
                                      f"num_inference_steps={requested}; leave it out for {FAST.default_steps}")
            opts.num_inference_steps = FAST.steps_for(requested)
            for name, value in (("guidance_scale", FAST.guidance_scale), ("scheduler", "distilled"),
                                ("flow_shift", FAST.shift), ("lora_mode", FAST.lora_mode)):
                if name not in options:
                    setattr(opts, name, value)
        if opts.num_inference_steps < 1 or opts.window_frames < 5 or (opts.window_frames - 1) % 4:
            raise ValidationError("wan-vace needs num_inference_steps >= 1 and window_frames = 4k + 1 >= 5")
        if opts.offload not in ("auto", "none", "model", "group", "sequential"):
            raise ValidationError(f"offload must be auto/none/model/group/sequential, got {opts.offload!r}")
        if opts.scheduler not in ("dpm", "unipc", "distilled", "saved"):
            raise ValidationError(f"scheduler must be dpm/unipc/distilled/saved, got {opts.scheduler!r}")
        if opts.vram_budget_gb is not None and opts.vram_budget_gb <= 0:
            raise ValidationError(f"vram_budget_gb must be > 0 GiB, got {opts.vram_budget_gb}")
        if opts.context_parallel is not None:
            from backend.engines.context_parallel import ContextParallelOptions

            ContextParallelOptions.from_option(opts.context_parallel)
        return opts

    def sampling_sigmas(self) -> list[float] | None:
        """Explicit (unshifted) sigmas for the distilled schedule; None lets the scheduler space the steps."""
        return distilled_base_sigmas(self.num_inference_steps) if self.scheduler == "distilled" else None


def make_flow_scheduler(kind: str, flow_shift: float, saved: Any) -> Any:
    """The sampler's scheduler: DPM-solver++ or UniPC in flow-prediction mode, the distilled Euler, or the folder's."""
    from diffusers import (
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    if kind == "saved":
        return saved
    if kind == "distilled":
        return FlowMatchEulerDiscreteScheduler(shift=float(flow_shift), num_train_timesteps=1000)
    scheduler_class = DPMSolverMultistepScheduler if kind == "dpm" else UniPCMultistepScheduler
    return scheduler_class(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=float(flow_shift),
                           num_train_timesteps=1000)


class WanVaceEngine:
    """Wan2.1 VACE video inpainting; see the module docstring. Build with a weights folder and options."""

    name = "wan-vace"

    def __init__(self, folder: str | os.PathLike[str], *, models_dir: Path | None = None, **options: Any) -> None:
        import torch
        from diffusers import AutoencoderKLWan, WanVACEPipeline

        opts = WanVaceOptions.from_kwargs(options)
        device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = getattr(torch, opts.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
        vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32,
                                               local_files_only=True)
        pipe = WanVACEPipeline.from_pretrained(folder, vae=vae, torch_dtype=dtype, local_files_only=True)
        self._setup(pipe, opts, Path(folder), models_dir)

    @classmethod
    def from_pipeline(cls, pipe: Any, *, folder: str | os.PathLike[str] | None = None,
                      models_dir: Path | None = None, **options: Any) -> WanVaceEngine:
        """Wrap an already built ``WanVACEPipeline`` (e.g. random weights in a benchmark) with ``options``.

        The transformer is cast to the engine dtype and the VAE to fp32. Without ``folder`` the text
        encoder cannot be reloaded once released, so pass prompt embeddings via
        :meth:`set_prompt_embeddings` or keep the pipeline's text encoder.
        """
        engine = cls.__new__(cls)
        engine._setup(pipe, WanVaceOptions.from_kwargs(options), None if folder is None else Path(folder),
                      models_dir)
        return engine

    def _setup(self, pipe: Any, opts: WanVaceOptions, folder: Path | None, models_dir: Path | None) -> None:
        import torch

        self.options = opts
        self.folder = folder
        self.device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = getattr(torch, opts.dtype or ("bfloat16" if self.device.type == "cuda" else "float32"))
        if pipe.transformer.dtype != self.dtype:  # from_pretrained already keeps norms etc. in fp32
            pipe.transformer.to(self.dtype)
        if pipe.vae.dtype != torch.float32:
            pipe.vae.to(torch.float32)
        pipe.scheduler = make_flow_scheduler(opts.scheduler, opts.flow_shift, pipe.scheduler)
        self._text_encoder = pipe.text_encoder
        pipe.text_encoder = None  # kept aside: loaded on demand, released after encoding
        self.pipe = pipe
        self._embeddings: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.loras = lora_stack(opts, models_dir, pipe.transformer.config)
        load_lora_stack(pipe, self.loras, mode=opts.lora_mode)  # type: ignore[arg-type]
        if opts.vae_tiling:
            pipe.vae.enable_tiling()
        self.attention_backend, self.attention_measurements = set_attention(pipe, opts, self.device, self.dtype)
        if opts.context_parallel is not None:  # several GPUs in one job (backend/engines/context_parallel.py)
            from backend.engines.context_parallel import ContextParallelOptions, enable_context_parallel

            enable_context_parallel(pipe.transformer, ContextParallelOptions.from_option(opts.context_parallel),
                                    attention_backend=self.attention_backend)
        free = free_vram_bytes(self.device) if self.device.type == "cuda" else None
        self.placement = plan_for(pipe, opts, self.device, self.dtype, None if free is None else free[0])
        apply_placement(pipe, self.placement.placement, self.device)
        logging.getLogger(__name__).info("wan-vace on %s: placement %s; attention %s; preset %s", self.device,
                                         self.placement.reason, self.attention_backend, opts.preset)
        if opts.compile:
            pipe.transformer.compile_repeated_blocks(fullgraph=True)

    def runtime_report(self) -> dict[str, Any]:
        """What this engine chose here (preset, schedule, LoRAs, placement, attention kernel), for the job report."""
        opts = self.options
        return {
            "preset": opts.preset, "steps": opts.num_inference_steps, "guidance": opts.guidance_scale,
            "scheduler": opts.scheduler, "flow_shift": opts.flow_shift, "sigmas": opts.sampling_sigmas(),
            "loras": [{"adapter": layer.adapter_name, "path": str(layer.path), "weight": layer.weight}
                      for layer in self.loras],
            "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
            "placement": self.placement.to_dict(), "attention_backend": self.attention_backend,
            "attention_measurements": self.attention_measurements,
        }

    @classmethod
    def from_models_dir(cls, models_dir: Path, **options: Any) -> WanVaceEngine:
        return cls(require_weights(WAN_VACE_1_3B, models_dir), models_dir=models_dir, **options)

    @classmethod
    def from_models_dir_14b(cls, models_dir: Path, **options: Any) -> WanVaceEngine:
        return cls(require_weights(WAN_VACE_14B, models_dir), models_dir=models_dir, **options)

    # ---- prompts -------------------------------------------------------------------------------

    def _load_text_encoder(self) -> Any:
        import torch
        from transformers import UMT5EncoderModel

        if self._text_encoder is None:
            if self.folder is None:
                raise ValidationError("the text encoder was released and this engine has no weights folder to "
                                      "reload it from; set the prompt embeddings first")
            self._text_encoder = UMT5EncoderModel.from_pretrained(self.folder, subfolder="text_encoder",
                                                                  torch_dtype=self.dtype, local_files_only=True)
        encode_device = self.device if self.placement.text_encoder_on_gpu else torch.device("cpu")
        return self._text_encoder.to(encode_device).eval()

    def set_prompt_embeddings(self, prompt: str, prompt_embeds: Any, negative_embeds: Any = None) -> None:
        """Put precomputed embeddings (1, L, text_dim) for ``prompt`` (and the negative prompt) in the cache."""
        key = (prompt, self.options.negative_prompt, self.options.max_sequence_length)
        self._embeddings[key] = (prompt_embeds.cpu(), None if negative_embeds is None else negative_embeds.cpu())

    def prompt_embeddings(self, prompt: str) -> tuple[Any, Any]:
        """(prompt_embeds, negative_embeds or None) for ``prompt``, computed once and cached on the CPU."""
        import torch

        opts = self.options
        key = (prompt, opts.negative_prompt, opts.max_sequence_length)
        if key not in self._embeddings and self._disk_cache_path(key) is not None:
            self._read_disk_cache(key)
        if key not in self._embeddings:
            text_encoder = self._load_text_encoder()
            self.pipe.text_encoder = text_encoder
            try:
                with torch.no_grad():
                    positive, negative = self.pipe.encode_prompt(
                        prompt=prompt, negative_prompt=opts.negative_prompt,
                        do_classifier_free_guidance=opts.guidance_scale > 1.0,
                        max_sequence_length=opts.max_sequence_length, device=text_encoder.device,
                    )
            finally:
                self.pipe.text_encoder = None
            self._embeddings[key] = (positive.cpu(), None if negative is None else negative.cpu())
            self._write_disk_cache(key)
            if opts.release_text_encoder:
                self._text_encoder = None
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            else:
                text_encoder.to("cpu")
        return self._embeddings[key]

    def _disk_cache_path(self, key: tuple[str, str, int]) -> Path | None:
        if not self.options.embeddings_cache_dir:
            return None
        model = self.folder.name if self.folder is not None else "in-memory-pipeline"
        digest = hashlib.sha256("\x00".join([model, key[0], key[1], str(key[2])]).encode()).hexdigest()
        return Path(self.options.embeddings_cache_dir).expanduser() / f"{digest}.safetensors"

    def _read_disk_cache(self, key: tuple[str, str, int]) -> None:
        from safetensors.torch import load_file

        path = self._disk_cache_path(key)
        if path is not None and path.is_file():
            tensors = load_file(path)
            self._embeddings[key] = (tensors["prompt_embeds"], tensors.get("negative_embeds"))

    def _write_disk_cache(self, key: tuple[str, str, int]) -> None:
        from safetensors.torch import save_file

        path = self._disk_cache_path(key)
        if path is None:
            return
        positive, negative = self._embeddings[key]
        tensors = {"prompt_embeds": positive.contiguous()}
        if negative is not None:
            tensors["negative_embeds"] = negative.contiguous()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path))

    # ---- filling -------------------------------------------------------------------------------

    def sample_window(self, frames: np.ndarray, holes: np.ndarray, prompt: str, *,
                      context_frames: np.ndarray | None = None, on_step: Any = None) -> Any:
        """One VACE run at model resolution (H, W multiples of 16; F = 4k + 1); returns a SampleResult."""
        from backend.engines.vace_sampler import SamplingSettings, sample_vace_window

        opts = self.options
        settings = SamplingSettings(opts.num_inference_steps, opts.guidance_scale, opts.conditioning_scale,
                                    opts.seed, opts.batch_cfg, opts.sampling_sigmas())
        positive, negative = self.prompt_embeddings(prompt)
        return sample_vace_window(self.pipe, frames, holes, positive, negative, settings, device=self.device,
                                  dtype=self.dtype, context_frames=context_frames, on_step=on_step)

    def fill(self, frames: np.ndarray, holes: np.ndarray, prompt: str = "", *,
             context: InpaintContext | None = None, edit: FirstFrameEdit | None = None,
             progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> np.ndarray:
        """Fill ``holes`` (True = fill) in ``frames`` (F, H, W, 3) uint8 guided by ``prompt``.

        ``context``: frames of other trajectories; the top ``context_top_k`` by repaired area are
        packed as temporal context and are not part of the output. ``edit``: first-frame guidance.
        """
        frames, holes = validate_fill_inputs(frames, holes)
        frames, holes = apply_first_frame_edit(frames, holes, edit)
        if not holes.any():
            return frames.copy()
        opts = self.options
        layout = ModelFrameLayout.plan(frames.shape[1], frames.shape[2], max_pixels=opts.max_pixels)
        model_frames = layout.frames_to_model(frames)
        model_holes = layout.holes_to_model(holes)
        context_frames = self._context_at_model_size(context, layout)
        windows = plan_windows(frames.shape[0], opts.window_frames, opts.overlap_frames)
        total = len(windows) * opts.num_inference_steps
        remaining = model_holes.copy()
        check_cancel(cancel)
        for window_index, (start, end) in enumerate(windows):
            if not remaining[start:end].any():
                continue
            window_frames, window_holes = pad_window(model_frames[start:end], remaining[start:end])

            def on_step(step: int, steps: int, window_index: int = window_index) -> None:
                check_cancel(cancel)
                if progress is not None:
                    progress(window_index * steps + step, total, f"wan-vace window {window_index + 1}/{len(windows)}")

            result = self.sample_window(window_frames, window_holes, prompt, context_frames=context_frames,
                                        on_step=on_step)
            generated = result.frames[: end - start]
            hole_now = remaining[start:end]
            model_frames[start:end] = np.where(hole_now[..., None], generated, model_frames[start:end])
            remaining[start:end] = False
        filled = layout.frames_from_model(model_frames)
        return composite_fill(frames, filled, holes, opts.feather_px)

    def _context_at_model_size(self, context: InpaintContext | None, layout: ModelFrameLayout) -> np.ndarray | None:
        import cv2

        if context is None or len(context) == 0 or self.options.context_top_k <= 0:
            return None
        chosen = context.top_k(self.options.context_top_k)
        if chosen.frames.shape[1:3] == (layout.height, layout.width):
            return layout.frames_to_model(chosen.frames)
        size = (layout.model_width, layout.model_height)
        return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in chosen.frames])
