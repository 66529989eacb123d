"""The generate pipeline end to end: outputs on disk load (pxr, PLY), request validation, CLI, job kind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend.export import read_gaussian_ply
from backend.pipelines.generate import GenerateRequest, run_generate
from backend.pipelines.reshoot.synthetic import sliding_square_scene
from protocol.errors import ValidationError

FAST = {"outpaint": {"rings": [[[0, 30]], [[15, -30]]], "fit_iterations": 1, "fit_scale": 0.5, "views_per_step": 1},
        "gaussians": {"iterations": 1}, "volume": {"enabled": False}}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    scene = sliding_square_scene(num_frames=4, width=32, height=24)
    out = tmp_path_factory.mktemp("generate_out")
    request = GenerateRequest.from_params({"fps": 8.0, "cameras": [scene.camera.to_dict()], **FAST},
                                          {"frames": scene.frames, "depth": scene.depth})
    streamed: list[int] = []
    stages: set[str] = set()
    result = run_generate(request, out, on_frame=lambda i, xyz, rgb: streamed.append(i),
                          progress=lambda stage, step, total, message: stages.add(stage))
    return scene, out, result, streamed, stages


def test_stages_report_and_files(generated) -> None:
    scene, out, result, streamed, stages = generated
    assert stages == {"reference", "depth", "split", "background", "outpaint", "animate", "compose", "volume",
                      "foreground"}
    report = json.loads((out / "report.json").read_text())
    assert report["job"] == "generate" and report["source"] == "video"
    assert [s["stage"] for s in report["stages"]] == ["reference", "depth", "split", "background", "outpaint",
                                                      "animate", "compose", "volume", "foreground"]
    assert report["split"]["kind"] == "motion"
    assert [(v["loop"], v["elevation"], v["azimuth"]) for v in report["outpaint"]["views"]] == [(0, 0, 30),
                                                                                              (1, 15, -30)]
    np.testing.assert_allclose(report["compose"]["scale"], 1.0, rtol=1e-4)  # consistent depth: identity
    assert streamed == [0, 1, 2, 3]
    assert len(list((out / "foreground_masks").glob("*.png"))) == 4
    assert (out / "reference.mp4").stat().st_size > 0
    assert len(list((out / "outpaint").glob("*.mp4"))) == 2
    background = read_gaussian_ply(out / "ply" / "background.ply")
    assert len(background) == len(result.background.gaussians)
    for i in range(4):
        assert len(read_gaussian_ply(out / "ply" / f"foreground_{i:05d}.ply")) == result.foreground_counts[i] > 0


def test_usd_holds_background_foreground_and_preview(generated) -> None:
    from pxr import Usd, UsdGeom

    _, out, result, _, _ = generated
    stage = Usd.Stage.Open(str(out / "scene.usdc"))
    background = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/background"))
    foreground = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/foreground"))
    preview = UsdGeom.Points(stage.GetPrimAtPath("/Recast4D/point_cloud"))
    assert background and foreground and preview
    assert len(background.GetPointsAttr().Get(1)) == len(result.background.gaussians)
    assert background.GetPointsAttr().GetTimeSamples() == [1.0]  # static: one sample holds for all frames
    assert foreground.GetPointsAttr().GetTimeSamples() == [1.0, 2.0, 3.0, 4.0]
    for i, count in enumerate(result.foreground_counts):
        assert len(foreground.GetPointsAttr().Get(i + 1)) == count
    # the foreground stands where the square is: 2 m in front of the camera (wall at 4 m); (its volume has
    # its own test, tests/generate/test_generate_volume.py: it is off here)
    z = np.array(foreground.GetPointsAttr().Get(2))[:, 2]
    assert np.median(z) == pytest.approx(2.0, abs=0.15)
    assert stage.GetEndTimeCode() == 4.0


def test_request_validation_messages() -> None:
    scene = sliding_square_scene(num_frames=2, width=32, height=24)
    with pytest.raises(ValidationError, match="say what to generate"):
        GenerateRequest.from_params({}, {})
    with pytest.raises(ValidationError, match="depth"):
        GenerateRequest.from_params({"engine": {"depth": "given"}}, {"frames": scene.frames})
    with pytest.raises(ValidationError, match="needs an image"):
        GenerateRequest.from_params({"prompt": "a fox", "video_engine": "wan-i2v"}, {})
    with pytest.raises(ValidationError, match="rings"):
        GenerateRequest.from_params({"prompt": "a fox", "outpaint": {"rings": [[[0, 200]]]}}, {})
    with pytest.raises(ValidationError, match="strength"):
        GenerateRequest.from_params({"prompt": "a fox", "outpaint": {"strength": 2}}, {})
    with pytest.raises(ValidationError, match="unknown outpaint"):
        GenerateRequest.from_params({"prompt": "a fox", "outpaint": {"loops": 3}}, {})
    with pytest.raises(ValidationError, match="belong to"):
        GenerateRequest.from_params({"prompt": "a fox"}, {"depth": scene.depth})
    text = GenerateRequest.from_params({"prompt": "a fox", "num_frames": 30, "width": 100, "height": 70}, {})
    assert (text.video_engine, text.num_frames, text.width, text.height) == ("wan-t2v", 29, 96, 64)
    assert text.engine.depth == "depth-anything"
    image = GenerateRequest.from_params({"prompt": "a fox"}, {"image": scene.frames[0]})
    assert image.video_engine == "wan-i2v"


def test_text_to_scene_with_tiny_models(generate_models_dir, tmp_path) -> None:
    """Prompt -> tiny random Wan T2V -> tiny Depth Anything -> classical fill -> composed scene on disk."""
    request = GenerateRequest.from_params(
        {"prompt": "a red fox in snow", "num_frames": 5, "width": 32, "height": 32, "fps": 8.0,
         "video": {"num_inference_steps": 1}, "engine": {"models_dir": str(generate_models_dir)},
         "outputs": ["usd"], **FAST, "gaussians": {"iterations": 0}}, {})
    result = run_generate(request, tmp_path)
    assert result.frames.shape == (5, 32, 32, 3)
    assert result.report["source"] == "wan-t2v" and result.report["engine"]["depth"] == "depth-anything"
    assert (tmp_path / "scene.usdc").exists() and not (tmp_path / "ply").exists()


def test_cli_generate_from_a_video_with_depth(tmp_path) -> None:
    from backend.cli import main
    from backend.media import write_png_sequence

    scene = sliding_square_scene(num_frames=3, width=32, height=24)
    write_png_sequence(tmp_path / "frames", scene.frames)
    np.save(tmp_path / "depth.npy", scene.depth)
    np.save(tmp_path / "masks.npy", scene.foreground)
    code = main(["generate", "--video", str(tmp_path / "frames"), "--depth", str(tmp_path / "depth.npy"),
                 "--masks", str(tmp_path / "masks.npy"), "--rings", "[[[0, 20]]]", "--fit-iterations", "0",
                 "--gaussian-iterations", "0", "--fov", "60", "--out", str(tmp_path / "out")])
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["split"]["kind"] == "mask"
    assert main(["generate", "--out", str(tmp_path / "x")]) != 0  # no prompt, no video: a clear error


def test_job_kind_is_registered() -> None:
    from backend.jobs.registry import get_job_kind

    kind = get_job_kind("generate")
    with pytest.raises(ValidationError):
        kind.validate({}, {})


@pytest.mark.blender
def test_blender_imports_the_generated_scene(generated) -> None:
    import bpy

    _, out, result, _, _ = generated
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.ops.wm.usd_import(filepath=str(out / "scene.usdc")) == {"FINISHED"}
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end) == (1, 4)
    for name in ("background", "foreground", "point_cloud"):
        assert bpy.data.objects[name].type == "POINTCLOUD"
    foreground = bpy.data.objects["foreground"]
    for i, count in enumerate(result.foreground_counts):
        scene.frame_set(1 + i)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        assert len(foreground.evaluated_get(depsgraph).data.points) == count
    scene.frame_set(3)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    background = bpy.data.objects["background"].evaluated_get(depsgraph).data
    assert len(background.points) == len(result.background.gaussians)  # static, held over every frame


def test_a_still_video_gives_a_background_only_scene(tmp_path) -> None:
    scene = sliding_square_scene(num_frames=3, width=24, height=16)
    frames, depth = np.repeat(scene.frames[:1], 3, 0), np.repeat(scene.depth[:1], 3, 0)
    request = GenerateRequest.from_params({"cameras": [scene.camera.to_dict()], "outputs": ["usd", "ply"],
                                           "outpaint": {"rings": [[[0, 20]]], "fit_iterations": 0},
                                           "gaussians": {"iterations": 1}}, {"frames": frames, "depth": depth})
    result = run_generate(request, tmp_path)
    assert result.foreground_counts == [0, 0, 0]
    assert any("no foreground" in w for w in result.report["warnings"])
    assert (tmp_path / "ply" / "background.ply").exists() and not list((tmp_path / "ply").glob("foreground_*"))
