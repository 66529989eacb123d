"""Every option combination ``recast4d generate`` accepts runs to the end (tiny sizes).

The walk: every source (video + depth, + masks, video + depth engine, text, image) at the CLI
defaults (``--engine`` is a pass-through to the engine registry: ``wan-vace`` samples at ~512x512
whatever the clip, ~50 s on 2 cores even with one step, so only ``classical`` runs here; the VACE
refinement has its own test); every pair of (background, foreground) iteration
settings (default, 0, 1) on the cheapest source; the remaining options in one run. The last test
checks that the walk names every option the parser has, so a new option without a run fails here.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from backend.pipelines.reshoot.synthetic import sliding_square_scene

ONE_RING = ["--rings", "[[[0, 20]], [[10, -20]]]"]
USED_OPTIONS: set[str] = {"--out"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_clip")
    from backend.media import write_png_sequence

    scene = sliding_square_scene(num_frames=3, width=32, height=32)
    write_png_sequence(root / "frames", scene.frames)
    np.save(root / "depth.npy", scene.depth)
    np.save(root / "masks.npy", scene.foreground)
    write_png_sequence(root / "image", scene.frames[:1])
    return root


def _run(args: list[str], out) -> dict:
    from backend.cli import main

    USED_OPTIONS.update(a for a in args if a.startswith("--"))
    assert main(["generate", *args, "--out", str(out)]) == 0
    return json.loads((out / "report.json").read_text())


def _source_args(kind: str, clip, models) -> list[str]:
    video = ["--video", str(clip / "frames")]
    if kind == "video+depth":
        return [*video, "--depth", str(clip / "depth.npy")]
    if kind == "video+depth+masks":
        return [*video, "--depth", str(clip / "depth.npy"), "--masks", str(clip / "masks.npy")]
    if kind == "video+depth-engine":
        return [*video, "--depth-engine", "depth-anything", "--models", str(models)]
    generated = ["--prompt", "a red fox in snow", "--frames", "5", "--size", "32x32", "--models", str(models)]
    if kind == "text":
        return [*generated, "--video-engine", "wan-t2v"]
    return [*generated, "--image", str(next((clip / "image").glob("*.png")))]


@pytest.mark.parametrize("source", ["video+depth", "video+depth+masks", "video+depth-engine", "text", "image"])
def test_every_source(source, clip, generate_models_dir, tmp_path) -> None:
    report = _run([*_source_args(source, clip, generate_models_dir), "--engine", "classical", *ONE_RING],
                  tmp_path / "out")
    assert report["engine"]["inpaint"] == "classical"
    assert len(report["foreground"]["gaussians_per_frame"]) == report["frames"]
    assert report["split"]["kind"] == ("mask" if "masks" in source else "motion")


@pytest.mark.parametrize(("fit", "gaussian"), list(itertools.product([None, "0", "1"], repeat=2)))
def test_every_iteration_setting(fit, gaussian, clip, tmp_path) -> None:
    """``--fit-iterations 0`` alone crashed in fit_foreground (None <= 0); every pair must run."""
    args = [*_source_args("video+depth", clip, None), *ONE_RING]
    if fit is not None:
        args += ["--fit-iterations", fit]
    if gaussian is not None:
        args += ["--gaussian-iterations", gaussian]
    report = _run(args, tmp_path / "out")
    assert report["outpaint"]["fit_iterations"] == (3 if fit is None else int(fit))  # CPU default
    from backend.pipelines.reshoot.request import CPU_FIT_ITERATIONS  # the foreground follows reshoot's rule

    assert report["foreground"]["iterations"] == (CPU_FIT_ITERATIONS if gaussian is None else int(gaussian))


def test_the_remaining_options_together(clip, tmp_path) -> None:
    args = [*_source_args("video+depth", clip, None), "--rings", "[[[0, 25]]]", "--strength", "0.5",
            "--fit-iterations", "1", "--fit-scale", "0.5", "--gaussian-iterations", "1", "--animation-iterations", "2",
            "--compose", "ranges", "--seed", "3",
            "--steps", "2", "--fps", "12", "--fov", "50", "--device", "cpu"]
    report = _run(args, tmp_path / "out")
    assert (report["fps"], report["engine"]["seed"], report["outpaint"]["strength"]) == (12.0, 3, 0.5)
    assert report["outpaint"]["fit_scale"] == 0.5 and report["device"] == "cpu"
    assert report["animation"]["iterations"] == 2 and report["compose"]["method"] == "ranges"


def test_the_walk_covers_every_option() -> None:
    """Runs last in this module: every option of the parser was used by a run above."""
    import argparse

    from backend.pipelines.generate.cli import add_command

    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers())
    generate = parser._subparsers._group_actions[0].choices["generate"]  # noqa: SLF001
    options = {s for action in generate._actions for s in action.option_strings if s.startswith("--")}  # noqa: SLF001
    assert options - {"--help"} - USED_OPTIONS == set()
