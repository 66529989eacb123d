"""Video and image-sequence I/O: round trips, ordering, odd sizes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from backend.media import (
    Mp4Writer,
    read_frames,
    read_image_sequence,
    read_video,
    write_mp4,
    write_png_sequence,
)
from protocol.errors import ValidationError


def _gradient_frames(n: int, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, ..., 0] = x * 200 // max(w - 1, 1) + 5 * i  # smooth, no wrap-around
        frames[i, ..., 1] = y * 255 // max(h - 1, 1)
        frames[i, ..., 2] = 128
    return frames


def test_mp4_round_trip_keeps_count_size_fps_and_colours(tmp_path):
    frames = _gradient_frames(7, 48, 64)
    write_mp4(tmp_path / "a.mp4", frames, fps=12)
    video = read_video(tmp_path / "a.mp4")
    assert video.frames.shape == frames.shape
    assert video.fps == pytest.approx(12.0)
    # Lossy codec: smooth gradients come back within a few grey levels on average.
    assert np.abs(video.frames.astype(int) - frames).mean() < 4.0


def test_odd_sizes_are_padded_for_h264(tmp_path):
    frames = _gradient_frames(3, 31, 45)
    write_mp4(tmp_path / "odd.mp4", frames, fps=24)
    video = read_video(tmp_path / "odd.mp4")
    assert video.frames.shape == (3, 32, 46, 3)
    assert np.abs(video.frames[:, :31, :45].astype(int) - frames).mean() < 4.0


def test_png_sequence_round_trip_is_lossless_and_ordered_by_number(tmp_path):
    frames = _gradient_frames(12, 16, 20)
    write_png_sequence(tmp_path / "seq", frames)
    # Numeric, not lexical, order: rename to unpadded numbers.
    for p in sorted((tmp_path / "seq").iterdir()):
        p.rename(p.with_name(f"shot_{int(p.stem.split('_')[1])}.png"))
    video = read_image_sequence(tmp_path / "seq", fps=30)
    np.testing.assert_array_equal(video.frames, frames)
    assert video.fps == 30.0
    assert read_frames(str(tmp_path / "seq" / "shot_*.png")).num_frames == 12


def test_float_frames_are_quantised(tmp_path):
    frames = np.full((2, 8, 8, 3), 0.5, np.float32)
    write_png_sequence(tmp_path, frames)
    assert read_image_sequence(tmp_path).frames[0, 0, 0, 0] == 128


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "not found"),
        (lambda d: _write(d / "junk.mp4", b"not a video at all"), "cannot"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no images"),
    ],
)
def test_bad_sources_give_clear_errors(tmp_path, make, message):
    with pytest.raises(ValidationError, match=message):
        read_frames(make(tmp_path))


def test_frame_limit_is_enforced_while_decoding(tmp_path):
    write_mp4(tmp_path / "long.mp4", _gradient_frames(6, 16, 16), fps=10)
    with pytest.raises(ValidationError, match="more than 4 frames"):
        read_video(tmp_path / "long.mp4", max_frames=4)


def test_mixed_image_sizes_are_rejected(tmp_path):
    write_png_sequence(tmp_path, _gradient_frames(1, 8, 8), prefix="a_")
    write_png_sequence(tmp_path, _gradient_frames(1, 9, 8), prefix="b_")
    with pytest.raises(ValidationError, match="one size"):
        read_image_sequence(tmp_path)


def test_streaming_writer_rejects_size_change_and_bad_shapes(tmp_path):
    with Mp4Writer(tmp_path / "s.mp4", fps=8) as writer:
        writer.write(_gradient_frames(1, 16, 16)[0])
        with pytest.raises(ValidationError, match="size changed"):
            writer.write(_gradient_frames(1, 8, 16)[0])
    assert writer.frames_written == 1
    with pytest.raises(ValidationError, match=r"\(F, H, W, 3\)"):
        write_mp4(tmp_path / "x.mp4", np.zeros((4, 4)), fps=8)
    with pytest.raises(ValidationError, match="fps"):
        write_mp4(tmp_path / "y.mp4", _gradient_frames(1, 8, 8), fps=0)
