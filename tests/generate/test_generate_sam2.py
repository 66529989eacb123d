"""The SAM2 video engine (tiny random weights from a config): registry/doctor, prompts, and the split it drives."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engines.registry import engine_status, get_segment_engine
from backend.pipelines.generate import GenerateRequest, run_generate
from backend.pipelines.reshoot.synthetic import sliding_square_scene
from protocol.errors import MissingWeightsError, ValidationError


def test_doctor_lists_sam2_and_says_what_is_missing(generate_models_dir, tmp_path) -> None:
    usable = {s.name: s for s in engine_status(generate_models_dir) if s.kind == "segment"}
    assert usable["sam2"].usable
    missing = {s.name: s for s in engine_status(tmp_path) if s.kind == "segment"}["sam2"]
    assert not missing.usable and "sam2.1-hiera-tiny" in missing.reason
    with pytest.raises(MissingWeightsError, match="sam2.1-hiera-tiny"):
        get_segment_engine("sam2", tmp_path)


def test_mask_and_box_prompts_track_every_frame(generate_models_dir) -> None:
    engine = get_segment_engine("sam2", generate_models_dir)
    scene = sliding_square_scene(num_frames=4, width=40, height=32)
    seen: list[int] = []
    masks = engine.segment(scene.frames, prompt_frame=2, mask=scene.foreground[2],
                           progress=lambda step, total, message: seen.append(step))
    assert masks.shape == (4, 32, 40) and masks.dtype == bool and seen == [1, 2, 3, 4]
    assert engine.segment(scene.frames, box=(5, 5, 30, 25)).shape == (4, 32, 40)
    with pytest.raises(ValidationError, match="exactly one prompt"):
        engine.segment(scene.frames)
    with pytest.raises(ValidationError, match="split.box"):
        engine.segment(scene.frames, box=(5, 5, 50, 25))
    with pytest.raises(ValidationError, match="prompt_frame"):
        engine.segment(scene.frames, prompt_frame=9, box=(5, 5, 30, 25))


@pytest.mark.parametrize("split", [{"engine": "sam2"}, {"engine": "sam2", "box": [4, 4, 20, 20], "prompt_frame": 1}])
def test_the_pipeline_splits_with_sam2(split, generate_models_dir, tmp_path) -> None:
    scene = sliding_square_scene(num_frames=3, width=32, height=24)
    request = GenerateRequest.from_params(
        {"cameras": [scene.camera.to_dict()], "outputs": ["usd"], "split": split,
         "engine": {"models_dir": str(generate_models_dir)},
         "outpaint": {"rings": [[[0, 20]]], "fit_iterations": 0}, "gaussians": {"iterations": 0},
         "animation": {"iterations": 0}}, {"frames": scene.frames, "depth": scene.depth})
    report = run_generate(request, tmp_path).report
    assert report["split"]["kind"] == "sam2"
    assert report["split"]["prompt"] == ("box" if "box" in split else "motion")
    if "box" not in split:  # prompted from the frame where the motion cue is largest
        assert report["split"]["prompt_frame"] == int(np.argmax(scene.foreground.sum(axis=(1, 2))))


def test_split_engine_fields_are_checked() -> None:
    scene = sliding_square_scene(num_frames=2, width=16, height=16)
    inputs = {"frames": scene.frames, "depth": scene.depth}
    for bad, match in (({"engine": "grabcut"}, "split.engine"), ({"box": [1, 2, 3]}, "split.box"),
                       ({"box": [0, 0, 4, 4]}, "set split.engine"), ({"engine": "sam2", "prompt_frame": -1},
                                                                      "split.prompt_frame")):
        with pytest.raises(ValidationError, match=match):
            GenerateRequest.from_params({"split": bad}, inputs)
