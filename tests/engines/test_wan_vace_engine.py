"""The wan-vace engine on a tiny random VACE model loaded from a local folder (CPU, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.engines.inpaint_types import FirstFrameEdit, InpaintContext, feather_weights
from backend.engines.registry import get_inpaint_engine
from protocol.errors import Cancelled, ValidationError

SIZE = 32
TINY = dict(num_inference_steps=2, window_frames=9, overlap_frames=4, max_pixels=SIZE * SIZE, feather_px=3.0,
            max_sequence_length=16)


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path):
    torch.set_num_threads(2)
    return get_inpaint_engine("wan-vace", tiny_models_dir, **TINY)


def clip(num_frames: int = 9, height: int = SIZE, width: int = SIZE, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    holes = np.zeros((num_frames, height, width), bool)
    holes[:, height // 4: height // 2, width // 4: width // 2] = True
    return frames, holes


def far_from_holes(holes: np.ndarray, feather_px: float) -> np.ndarray:
    return feather_weights(holes, feather_px) == 0


def test_full_fill_call(engine) -> None:
    frames, holes = clip()
    steps: list[tuple[int, int]] = []
    out = engine.fill(frames, holes, "a street with a car", progress=lambda s, t, m: steps.append((s, t)))
    assert out.shape == frames.shape and out.dtype == np.uint8
    keep = far_from_holes(holes, TINY["feather_px"])
    assert np.array_equal(out[keep], frames[keep])  # seen pixels stay as given
    assert not np.array_equal(out[holes], frames[holes])  # holes were generated
    assert steps[-1] == (2, 2)
    again = engine.fill(frames, holes, "a street with a car")
    assert np.array_equal(out, again)  # seeded: deterministic


def test_prompt_embeddings_cached_and_text_encoder_released(engine) -> None:
    first = engine.prompt_embeddings("a red house")
    assert engine._text_encoder is None  # released after encoding
    assert engine.prompt_embeddings("a red house")[0] is first[0]  # cached, not recomputed
    other = engine.prompt_embeddings("a blue car")  # reloads the encoder from the folder on demand
    assert other[0].shape == first[0].shape and not torch.equal(other[0], first[0])


def test_long_clip_runs_in_overlapping_windows(engine, monkeypatch: pytest.MonkeyPatch) -> None:
    frames, holes = clip(num_frames=13)
    steps: list[tuple[int, int]] = []
    window_holes: list[np.ndarray] = []
    sample_window = engine.sample_window

    def recording_sample_window(frames_in, holes_in, prompt, **kwargs):
        window_holes.append(holes_in.copy())
        return sample_window(frames_in, holes_in, prompt, **kwargs)

    monkeypatch.setattr(engine, "sample_window", recording_sample_window)
    out = engine.fill(frames, holes, "a street", progress=lambda s, t, m: steps.append((s, t)))
    assert [len(h) for h in window_holes] == [9, 9]
    # Window 2 = frames 4..12: frames 4..8 were filled by window 1 and now condition it as known pixels.
    assert not window_holes[1][:5].any() and window_holes[1][5:].any()
    assert out.shape == frames.shape
    assert steps[-1] == (4, 4)  # two windows (sharing >= 4 frames) x two steps
    keep = far_from_holes(holes, TINY["feather_px"])
    assert np.array_equal(out[keep], frames[keep])


def test_any_aspect_and_frame_count(engine) -> None:
    frames, holes = clip(num_frames=6, height=24, width=40)
    out = engine.fill(frames, holes, "a street")
    assert out.shape == frames.shape
    keep = far_from_holes(holes, TINY["feather_px"])
    assert np.array_equal(out[keep], frames[keep])


def test_temporal_packing_context_unchanged_and_only_difference(engine) -> None:
    frames, holes = clip()
    context_frames = clip(num_frames=3, seed=5)[0]
    plain = engine.sample_window(frames, holes, "a street")
    packed = engine.sample_window(frames, holes, "a street", context_frames=context_frames)
    # Context comes back exactly as encoded, and is not part of the output.
    assert packed.context_latents_out is not None
    assert torch.equal(packed.context_latents_out, packed.context_latents_in)
    assert packed.context_latents_in.shape[2] == 3
    assert packed.frames.shape == plain.frames.shape == frames.shape
    # The clip's own inputs (initial noise and control latents) are identical with and without packing,
    # so the packed run differs from the unpacked one only through the context tokens ...
    assert torch.equal(packed.clip_noise, plain.clip_noise)
    assert torch.equal(packed.clip_control, plain.clip_control)
    # ... and the context does reach the clip.
    assert not np.array_equal(packed.frames, plain.frames)


def test_fill_with_context_picks_top_k_and_keeps_length(engine) -> None:
    frames, holes = clip()
    others = clip(num_frames=6, seed=9)[0]
    repaired = np.zeros((6, SIZE, SIZE), bool)
    for index in range(6):
        repaired[index, :index * 4] = True
    context = InpaintContext(others, repaired, np.arange(6) + 100)
    assert context.top_k(2).ids.tolist() == [104, 105]
    out = engine.fill(frames, holes, "a street", context=context)
    assert out.shape == frames.shape
    keep = far_from_holes(holes, TINY["feather_px"])
    assert np.array_equal(out[keep], frames[keep])


def test_first_frame_edit(engine) -> None:
    frames, holes = clip()
    edited = frames[0].copy()
    edited[4:12, 4:12] = (255, 0, 0)
    region = np.zeros(holes.shape, bool)
    region[:, 4:12, 4:12] = True
    out = engine.fill(frames, holes, "a red sky", edit=FirstFrameEdit(edited, region))
    assert np.array_equal(out[0], edited)  # frame 0 is the given edited frame
    assert out.shape == frames.shape


def test_cancel_and_bad_options(engine, tiny_models_dir: Path) -> None:
    frames, holes = clip()
    with pytest.raises(Cancelled):
        engine.fill(frames, holes, "a street", cancel=lambda: True)
    with pytest.raises(ValidationError, match="unknown wan-vace options"):
        get_inpaint_engine("wan-vace", tiny_models_dir, steps=3)
    with pytest.raises(ValidationError, match="4k"):
        get_inpaint_engine("wan-vace", tiny_models_dir, window_frames=10)


def test_unknown_attention_backend_is_a_typed_error(tiny_models_dir: Path) -> None:
    with pytest.raises(ValidationError, match="attention backend"):
        get_inpaint_engine("wan-vace", tiny_models_dir, attention_backend="no-such-kernel", **TINY)


def test_prompt_embeddings_disk_cache(tiny_models_dir: Path, tmp_path: Path) -> None:
    options = dict(TINY, embeddings_cache_dir=str(tmp_path / "embeddings"))
    first = get_inpaint_engine("wan-vace", tiny_models_dir, **options)
    computed = first.prompt_embeddings("a green tree")
    assert len(list((tmp_path / "embeddings").glob("*.safetensors"))) == 1
    second = get_inpaint_engine("wan-vace", tiny_models_dir, **options)
    second._text_encoder = None
    second.folder = tiny_models_dir / "Wan2.1-VACE-1.3B-diffusers"
    second._load_text_encoder = None  # would fail if called: the embeddings must come from disk
    cached = second.prompt_embeddings("a green tree")
    assert torch.equal(cached[0], computed[0]) and torch.equal(cached[1], computed[1])
