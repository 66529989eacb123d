"""Generation > Tune LoRA for a Movie Clip or an image sequence: the add-on sends the frames without depth
and asks the backend's depth stage to estimate it (the request passes the backend's own validator)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.blender

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _textured_frames(count: int = 5, height: int = 16, width: int = 24) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([np.stack([(cols * 10 + 7 * i) % 256, rows * 15, (rows + cols) * 5], -1)
                     for i in range(count)]).astype(np.uint8)


def _source_camera(bpy, scene, frames: int) -> None:
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 24, 16, 100
    scene.frame_start, scene.frame_end = 1, frames
    cam = bpy.data.objects.new("source", bpy.data.cameras.new("source"))
    scene.collection.objects.link(cam)
    cam.rotation_euler = (math.pi / 2, 0, 0)
    scene.camera = cam


@pytest.mark.parametrize("kind", ["IMAGES", "CLIP"])
def test_tune_from_a_clip_or_image_sequence_sends_no_depth(registered_addon, recording_client, tmp_path, kind):
    import bpy

    from backend.media import write_mp4, write_png_sequence
    from backend.pipelines.tune.request import TuneRequest

    client = recording_client
    scene = bpy.context.scene
    _source_camera(bpy, scene, 5)
    source = scene.recast4d.source
    source.kind = kind
    with pytest.raises(RuntimeError, match="Pick a"):  # poll: the clip / images are not chosen yet
        bpy.ops.recast4d.tune_lora()
    frames = _textured_frames()
    if kind == "IMAGES":
        image = bpy.data.images.load(str(write_png_sequence(tmp_path / "seq", frames)[0]))
        image.source = "SEQUENCE"
        source.image = image
    else:
        source.clip = bpy.data.movieclips.load(str(write_mp4(tmp_path / "shot.mp4", frames, fps=24.0)))
        source.clip.frame_start = 1
    assert bpy.ops.recast4d.tune_lora() == {"FINISHED"}
    (_, job_kind, params, inputs), = client.submitted
    assert job_kind == "tune" and set(inputs) == {"frames"} and inputs["frames"].shape == (5, 16, 24, 3)
    assert params["depth_engine"] == "depth-anything"
    request = TuneRequest.from_params(params, inputs)  # the backend's own validation accepts it
    assert request.depth is None and request.depth_engine == "depth-anything" and len(request.cameras) == 5


def test_tune_from_footage_needs_the_backends_depth_engine(registered_addon, recording_client, tmp_path):
    """Footage goes without depth: a backend whose Depth Anything cannot run disables Tune LoRA, saying why."""
    import bpy

    from addon import session
    from backend.media import write_mp4

    client = recording_client
    scene = bpy.context.scene
    _source_camera(bpy, scene, 5)
    scene.recast4d.source.kind = "CLIP"
    scene.recast4d.source.clip = bpy.data.movieclips.load(str(write_mp4(tmp_path / "s.mp4", _textured_frames(), fps=24.0)))
    session.state().status["engines"] = [
        {"kind": "inpaint", "name": "wan-vace", "usable": True, "reason": "", "hint": ""},
        {"kind": "depth", "name": "depth-anything", "usable": False, "reason": "no weights folder", "hint": ""}]
    with pytest.raises(RuntimeError, match="depth.*no weights folder"):
        bpy.ops.recast4d.tune_lora()
    assert client.submitted == []
