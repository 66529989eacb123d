"""Source frames read back from image sequences and movie clips (orientation, size, values)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.blender


def _frames(count: int = 3, height: int = 32, width: int = 48) -> np.ndarray:
    """Smooth frames with a bright top band and a frame-dependent colour (survives mp4 coding)."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, :, :, 0] = 40 + 60 * i
        frames[i, : height // 4, :, 1] = 220  # top band: checks the row order
        frames[i, :, :, 2] = np.linspace(0, 200, width, dtype=np.uint8)[None, :]
    return frames


def test_image_sequence_frames_round_trip(registered_addon, tmp_path):
    import bpy

    from addon import capture
    from backend.media import write_png_sequence

    frames = _frames()
    paths = write_png_sequence(tmp_path / "seq", frames)
    image = bpy.data.images.load(str(paths[0]))
    image.source = "SEQUENCE"
    got = capture.image_sequence_frames(image, 3)
    np.testing.assert_array_equal(got, frames)
    with pytest.raises(Exception, match="has 3 frames"):
        capture.image_sequence_frames(image, 5)


def test_movie_clip_frames_decode_through_blender(registered_addon, tmp_path):
    import bpy

    from addon import capture
    from backend.media import write_mp4

    frames = _frames()
    path = write_mp4(tmp_path / "shot.mp4", frames, fps=24.0)
    clip = bpy.data.movieclips.load(str(path))
    assert tuple(clip.size) == (48, 32)
    got = capture.movie_clip_frames(bpy.context.scene, clip, 3)
    assert got.shape == frames.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - frames.astype(int)).mean() < 8  # lossy h264
    assert got[:, :4, :, 1].mean() > 150 and got[:, -4:, :, 1].mean() < 60  # top band stays on top
    assert len(bpy.data.scenes) == 1  # the temporary decode scene is gone
    later = capture.movie_clip_frames(bpy.context.scene, clip, 2, first=1)
    np.testing.assert_array_equal(later, got[1:])
    with pytest.raises(Exception, match="has 3 frames"):
        capture.movie_clip_frames(bpy.context.scene, clip, 3, first=1)


def test_match_scene_to_source(registered_addon, tmp_path):
    import bpy

    from backend.media import write_mp4, write_png_sequence

    scene = bpy.context.scene
    source = scene.recast4d.source
    assert not bpy.ops.recast4d.use_clip_range.poll()
    source.clip = bpy.data.movieclips.load(str(write_mp4(tmp_path / "a.mp4", _frames(4), fps=24.0)))
    assert bpy.ops.recast4d.use_clip_range() == {"FINISHED"}
    assert (scene.render.resolution_x, scene.render.resolution_y) == (48, 32)
    assert (scene.frame_start, scene.frame_end) == (1, 4)
    source.kind = "IMAGES"
    image = bpy.data.images.load(str(write_png_sequence(tmp_path / "seq", _frames(3, 20, 30))[0]))
    image.source = "SEQUENCE"
    source.image = image
    assert bpy.ops.recast4d.use_clip_range() == {"FINISHED"}
    assert (scene.render.resolution_x, scene.render.resolution_y) == (30, 20)
