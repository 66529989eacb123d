"""Reference-video engines (tiny random Wan T2V / I2V from local folders) and VACE refinement at strength."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engines import get_inpaint_engine, get_video_engine
from backend.generate import refine_video
from backend.generate.video_engines import video_size
from protocol.errors import Cancelled, MissingWeightsError, ValidationError


def test_text_to_video_from_a_local_folder(generate_models_dir) -> None:
    engine = get_video_engine("wan-t2v", generate_models_dir, num_inference_steps=2)
    steps: list[int] = []
    video = engine.generate("a red fox in snow", num_frames=6, height=40, width=36,
                            progress=lambda step, total, message: steps.append(step))
    assert video.shape == (5, 32, 32, 3) and video.dtype == np.uint8  # 4k + 1 frames, multiples of 16
    assert video.std() > 0
    assert steps == [1, 2]
    with pytest.raises(ValidationError, match="takes no image"):
        engine.generate("a fox", num_frames=5, height=32, width=32, image=np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValidationError, match="prompt"):
        engine.generate("  ", num_frames=5, height=32, width=32)
    with pytest.raises(Cancelled):
        engine.generate("a fox", num_frames=5, height=32, width=32, cancel=lambda: True)


def test_image_to_video_needs_and_uses_the_image(generate_models_dir) -> None:
    engine = get_video_engine("wan-i2v", generate_models_dir, num_inference_steps=1)
    image = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    video = engine.generate("a red cube sliding", num_frames=5, height=32, width=32, image=image)
    assert video.shape == (5, 32, 32, 3)
    with pytest.raises(ValidationError, match="needs an image"):
        engine.generate("a red cube sliding", num_frames=5, height=32, width=32)


def test_missing_weights_and_unknown_engines_are_typed_errors(tmp_path) -> None:
    with pytest.raises(MissingWeightsError, match="Wan2.1-T2V-1.3B-Diffusers"):
        get_video_engine("wan-t2v", tmp_path)
    with pytest.raises(ValidationError, match="known video engines"):
        get_video_engine("sora", tmp_path)
    with pytest.raises(ValidationError):
        video_size(0, 32, 32)
    assert video_size(81, 480, 832) == (81, 480, 832)


def test_vace_refinement_at_strength(generate_models_dir) -> None:
    engine = get_inpaint_engine("wan-vace", generate_models_dir, num_inference_steps=2, window_frames=5,
                                vae_tiling=False, overlap_frames=1, feather_px=0.0)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    holes = np.zeros((5, 16, 16), bool)
    holes[:, 4:10, 4:10] = True
    refined = refine_video(engine, frames, holes, "a fox", strength=0.7)
    np.testing.assert_array_equal(refined[~holes], frames[~holes])  # seen pixels come back exactly
    assert np.abs(refined[holes].astype(int) - frames[holes]).mean() > 1.0  # the holes were re-denoised
    np.testing.assert_array_equal(refine_video(engine, frames, holes, "a fox", strength=0.0), frames)
