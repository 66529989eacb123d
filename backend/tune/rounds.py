"""Self-iterative tuning rounds: build data, train, generate at the next angles, repeat.

Run folder layout (``out_dir``; everything needed to resume is kept)::

    cache/prompt_embeds.pt            prompt + negative prompt embeddings (encoded once)
    checkpoints/step_XXXXXX.pt        LoRA + AdamW + RNG states + step (exact resume)
    round_RR/data/sample_XXXX.pt      cached latents and VACE control of each training sample
    round_RR/data/index.json          what each sample is (pair kind, path, angle, mask kind, clip)
    round_RR/data_preview.png         middle frames: ground truth | model input (holes grey) | holes
    round_RR/generations/gen_GG.npz   (rounds >= 2) videos the previous round's LoRA generated here
    round_RR/lora/                    the LoRA at the end of the round (diffusers format)
    round_RR/loss.json                the round's loss curve
    round_RR/preview_GG.mp4           videos generated with this round's LoRA
    lora/                             the final LoRA (diffusers format) + lora_info.json
    report.json

Round ``r`` (1-based) trains on every sample of rounds ``1..r`` (earlier, smaller angles stay in the
pool). Its new samples are double-reprojection pairs at the round's angles and, from round 2 on,
cycle-back pairs made from the videos the round-``r-1`` LoRA generated at round ``r``'s angles
(``cycle_fraction`` of them). Generation uses the ``wan-vace`` engine with the round's LoRA loaded
the way ``reshoot`` loads one (``lora_weight``, DPM-solver, ``generation_steps``, ``guidance_scale``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.geometry import fill_depth_holes
from backend.pipelines.stages import StageClock, StageProgressFn
from backend.progress import CancelFn, check_cancel
from protocol.errors import ValidationError

from .config import TuneConfig
from .data import (
    TargetPath,
    cycle_back_pair,
    double_reprojection_pair,
    render_along,
    sample_clip,
    sample_target_path,
)
from .model import (
    CachedSample,
    encode_pair,
    encode_prompts,
    load_base_pipeline,
    save_lora,
    training_device_and_dtype,
)
from .preview import write_data_preview, write_preview_video
from .source import TuneSource, clip_length
from .trainer import LoraTrainer, latest_checkpoint

DATA_SEED_STRIDE = 1_000_003


@dataclass
class TuneResult:
    """A finished run: the final LoRA folder, its registered copy (if any), losses and the report."""

    out_dir: Path
    lora_dir: Path
    history: list[dict[str, float]]
    report: dict[str, Any]
    registered: Path | None = None
    round_dirs: list[Path] = field(default_factory=list)


#: Builds the inpainting engine used between rounds: (lora_dir, round_index) -> engine with ``fill``.
EngineFactory = Callable[[Path, int], Any]


def round_dir(out_dir: Path, round_index: int) -> Path:
    return Path(out_dir) / f"round_{round_index + 1:02d}"


def default_engine_factory(pipe: Any, base_folder: Path, config: TuneConfig, prompt: str,
                           embeddings: tuple[torch.Tensor, torch.Tensor], device: torch.device,
                           dtype: torch.dtype, frames: int) -> EngineFactory:
    """``wan-vace`` engines sharing the training VAE, with a fresh base transformer plus the round's LoRA."""

    def build(lora_dir: Path, round_index: int) -> Any:
        from diffusers import WanVACEPipeline, WanVACETransformer3DModel

        from backend.engines.wan_vace import WanVaceEngine

        transformer = WanVACETransformer3DModel.from_pretrained(base_folder, subfolder="transformer",
                                                                dtype=dtype, local_files_only=True)
        engine_pipe = WanVACEPipeline(tokenizer=None, text_encoder=None, vae=pipe.vae, scheduler=pipe.scheduler,
                                      transformer=transformer)
        engine = WanVaceEngine.from_pipeline(
            engine_pipe, device=str(device), dtype=str(dtype).replace("torch.", ""),
            num_inference_steps=config.generation_steps, guidance_scale=config.guidance_scale,
            flow_shift=config.flow_shift, window_frames=frames, overlap_frames=0,
            max_pixels=config.width * config.height, seed=config.seed + round_index, lora=str(lora_dir),
            lora_weight=config.lora_weight, context_top_k=0)
        engine.set_prompt_embeddings(prompt, *embeddings)
        return engine

    return build


def run_tuning(source: TuneSource, config: TuneConfig, base_folder: Path, out_dir: str | Path, *,
               progress: StageProgressFn | None = None, cancel: CancelFn | None = None,
               resume: bool = True, pipe: Any = None, engine_factory: EngineFactory | None = None,
               fps: float = 16.0) -> TuneResult:
    """Tune a LoRA on ``source`` (already at training resolution, see ``prepare_source``).

    ``base_folder`` is the local ``Wan2.1-VACE-1.3B-diffusers`` folder (``pipe``, if given, is that
    folder already loaded). With ``resume`` the newest checkpoint and cached data in ``out_dir`` are
    reused and training continues exactly where it stopped.
    """
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (source.size != (config.width, config.height)):
        raise ValidationError(f"source is {source.size[0]}x{source.size[1]}, config wants "
                              f"{config.width}x{config.height}: call prepare_source first")
    frames = clip_length(source.num_frames, config.num_frames)
    device, dtype = training_device_and_dtype(config)
    clock = StageClock(progress, cancel)

    with clock.stage("load") as stage_progress:
        pipe = pipe if pipe is not None else load_base_pipeline(base_folder, device, dtype)
        pipe.vae.enable_tiling()
        embeddings = _prompt_embeddings(pipe, config.prompt, device, out_dir / "cache" / "prompt_embeds.pt")
        trainer = LoraTrainer(pipe.transformer, config, embeddings[0], device=device, dtype=dtype)
        checkpoint = latest_checkpoint(out_dir / "checkpoints") if resume else None
        if checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
        stage_progress(1, 1, f"{trainer.num_trainable / 1e6:.2f} M LoRA parameters"
                       + (f", resumed at step {trainer.step}" if checkpoint else ""))
    factory = engine_factory or default_engine_factory(pipe, Path(base_folder), config, config.prompt, embeddings,
                                                       device, dtype, frames)
    round_steps = config.round_steps()
    ends = np.cumsum(round_steps).tolist()
    pool: list[CachedSample] = []
    round_dirs = []
    for r in range(config.num_rounds):
        folder = round_dir(out_dir, r)
        round_dirs.append(folder)
        with clock.stage("data") as stage_progress:
            samples = _round_samples(pipe, source, config, r, frames, folder, device, stage_progress, cancel)
            pool.extend(samples)
        if trainer.step < ends[r]:
            with clock.stage("train") as stage_progress:
                trainer.set_pool(pool, round_index=r, consistency_weight=config.consistency_weight if r else 0.0)
                _train_round(trainer, ends[r], out_dir / "checkpoints", config, stage_progress, cancel, r)
                trainer.save_checkpoint(out_dir / "checkpoints")
        _write_loss_curve(folder, trainer.history, r, config)
        lora_dir = folder / "lora"
        if not (lora_dir / "pytorch_lora_weights.safetensors").exists():
            save_lora(trainer.transformer, lora_dir, extra_metadata={"round": r + 1, "step": trainer.step})
        with clock.stage("generate") as stage_progress:
            last = r + 1 == config.num_rounds
            _generate(factory, source, config, r, frames, lora_dir, None if last else round_dir(out_dir, r + 1),
                      folder, device, fps, stage_progress, cancel)

    info = {"kind": "recast4d-tune", "base_model": Path(base_folder).name, "rank": config.rank,
            "alpha": config.lora_alpha, "target_modules": config.target_modules, "steps": trainer.step,
            "angles": config.angles, "prompt": config.prompt, "recommended_weight": config.lora_weight}
    lora_dir = save_lora(trainer.transformer, out_dir / "lora", extra_metadata=info)
    report = {"job": "tune", "device": str(device), "dtype": str(dtype), "frames": frames,
              "width": config.width, "height": config.height, "lora_parameters": trainer.num_trainable,
              "config": config.to_dict(), "rounds": [_round_summary(out_dir, r, trainer.history, config)
                                                     for r in range(config.num_rounds)],
              "final_loss": trainer.history[-1]["loss"] if trainer.history else None,
              "stages": clock.summary(), "wall_seconds": round(time.time() - started, 3)}
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return TuneResult(out_dir, lora_dir, list(trainer.history), report, round_dirs=round_dirs)


def _prompt_embeddings(pipe: Any, prompt: str, device: torch.device,
                       cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if cache.exists():
        data = torch.load(cache, map_location="cpu", weights_only=True)
        if data["prompt"] == prompt:
            return data["positive"], data["negative"]
    positive, negative = encode_prompts(pipe, prompt, device)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"prompt": prompt, "positive": positive, "negative": negative}, cache)
    return positive, negative


def _round_samples(pipe: Any, source: TuneSource, config: TuneConfig, r: int, frames: int, folder: Path,
                   device: torch.device, progress: Any, cancel: CancelFn | None) -> list[CachedSample]:
    """The round's cached samples (built once; read back from ``folder/data`` afterwards)."""
    data_dir = folder / "data"
    index_path = data_dir / "index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
        return [CachedSample.load(data_dir / entry["file"]) for entry in index["samples"]]
    generator = torch.Generator(device="cpu").manual_seed(config.seed * DATA_SEED_STRIDE + r)
    generations = sorted((folder / "generations").glob("gen_*.npz")) if r else []
    if r and not generations:
        raise ValidationError(f"round {r + 1} has no generated videos in {folder / 'generations'}")
    n_cycle = round(config.samples_per_round * config.cycle_fraction) if generations else 0
    data_dir.mkdir(parents=True, exist_ok=True)
    samples, entries, pairs = [], [], []
    clean_latents: dict[int, torch.Tensor] = {}
    loaded = [_load_generation(path) for path in generations]
    for i in range(config.samples_per_round):
        check_cancel(cancel)
        meta: dict[str, Any] = {"round": r + 1, "index": i}
        if i < n_cycle:
            start, path, video, depth = loaded[i % len(loaded)]
            meta["clip_start"] = start
            pair = cycle_back_pair(source.clip(start, frames), path, video, depth, generator,
                                   config.mask_probabilities, device, meta)
        else:
            start, clip = sample_clip(source, frames, generator)
            path = sample_target_path(clip, config.angle_range(r), config.directions, generator)
            meta["clip_start"] = start
            pair = double_reprojection_pair(clip, path, generator, config.mask_probabilities, device, meta)
        name = f"sample_{i:04d}.pt"
        sample = encode_pair(pipe, pair, device, clean_latents.get(meta["clip_start"]))
        clean_latents[meta["clip_start"]] = sample.latents  # one clean encode per clip start
        sample.save(data_dir / name)
        samples.append(CachedSample.load(data_dir / name))  # the stored precision, as a resumed run sees it
        entries.append({"file": name, **pair.meta})
        if len(pairs) < 3:
            pairs.append(pair)
        progress(i + 1, config.samples_per_round, f"round {r + 1}: {pair.meta['pair']} {pair.meta['mask_kind']}")
    write_data_preview(folder / "data_preview.png", pairs)
    index_path.write_text(json.dumps({"round": r + 1, "angle_range": config.angle_range(r),
                                      "samples": entries}, indent=1))
    return samples


def _train_round(trainer: LoraTrainer, end_step: int, checkpoints: Path, config: TuneConfig, progress: Any,
                 cancel: CancelFn | None, r: int) -> None:
    first = trainer.step
    while trainer.step < end_step:
        check_cancel(cancel)
        record = trainer.train_step()
        if trainer.step % config.checkpoint_every == 0:
            trainer.save_checkpoint(checkpoints)
        progress(trainer.step - first, end_step - first,
                 f"round {r + 1} step {trainer.step}/{config.steps} loss {record['loss']:.4f}")


def _generate(factory: EngineFactory, source: TuneSource, config: TuneConfig, r: int, frames: int,
              lora_dir: Path, next_folder: Path | None, folder: Path, device: torch.device, fps: float,
              progress: Any, cancel: CancelFn | None) -> None:
    """Generate with round ``r``'s LoRA: inputs for the next round (at its angles) or, after the last
    round, one preview at the last round's largest angle. Skipped when already on disk."""
    if next_folder is not None:
        target_dir, count, angles = next_folder / "generations", config.generations_per_round, \
            config.angle_range(r + 1)
    else:
        target_dir, count, angles = None, 1, (config.angles[r], config.angles[r])
    done_marker = folder / ("generations_done" if next_folder is not None else "preview_done")
    if done_marker.exists():
        return
    engine = factory(lora_dir, r)
    generator = torch.Generator(device="cpu").manual_seed(config.seed * DATA_SEED_STRIDE + 10_000 + r)
    for g in range(count):
        check_cancel(cancel)
        start, clip = sample_clip(source, frames, generator)
        path = sample_target_path(clip, angles, config.directions, generator)
        render = render_along(clip, path, device)
        filled = engine.fill(render.rgb, render.holes, config.prompt, cancel=cancel)
        depth = fill_depth_holes(render.depth, torch.from_numpy(render.holes).to(render.depth.device))
        write_preview_video(folder / f"preview_{g:02d}.mp4", render.rgb, filled, fps)
        if target_dir is not None:
            target_dir.mkdir(parents=True, exist_ok=True)
            _save_generation(target_dir / f"gen_{g:02d}.npz", start, path, filled, depth)
        progress(g + 1, count, f"round {r + 1}: generated {path.spec}")
    del engine
    if device.type == "cuda":
        torch.cuda.empty_cache()
    done_marker.write_text("ok\n")


def _save_generation(path: Path, start: int, target: TargetPath, video: np.ndarray, depth: torch.Tensor) -> None:
    K = np.stack([c.K for c in target.cameras])
    w2c = np.stack([c.world_to_camera for c in target.cameras])
    np.savez(path, start=start, spec=target.spec, angle=target.angle, pivot=target.pivot_depth, K=K, w2c=w2c,
             video=video, depth=depth.cpu().numpy().astype(np.float32))


def _load_generation(path: Path) -> tuple[int, TargetPath, np.ndarray, torch.Tensor]:
    """(clip start, target path, generated video (F,H,W,3) uint8, planar depth (F,H,W)) of a saved generation."""
    from protocol.camera import Camera

    with np.load(path, allow_pickle=False) as data:
        video = data["video"]
        height, width = video.shape[1:3]
        cameras = [Camera(K, w2c, width, height) for K, w2c in zip(data["K"], data["w2c"])]
        target = TargetPath(str(data["spec"]), float(data["angle"]), cameras, float(data["pivot"]))
        return int(data["start"]), target, video, torch.from_numpy(data["depth"])


def _write_loss_curve(folder: Path, history: list[dict[str, float]], r: int, config: TuneConfig) -> None:
    rows = [h for h in history if h["round"] == r + 1]
    curve = {"round": r + 1, "angle_range": config.angle_range(r), "steps": [h["step"] for h in rows],
             **{key: [h[key] for h in rows] for key in ("loss", "flow_matching", "consistency", "sigma")}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loss.json").write_text(json.dumps(curve))


def _round_summary(out_dir: Path, r: int, history: list[dict[str, float]], config: TuneConfig) -> dict[str, Any]:
    rows = [h["loss"] for h in history if h["round"] == r + 1]
    tail = rows[-max(1, len(rows) // 10):] if rows else []
    return {"round": r + 1, "angle_range": config.angle_range(r), "steps": len(rows),
            "mean_loss_last_10pct": round(float(np.mean(tail)), 6) if tail else None,
            "folder": str(round_dir(out_dir, r).relative_to(out_dir))}
