"""Video and image-sequence I/O with limits checked before decoding everything.

Frames are always ``(F, H, W, 3)`` uint8 RGB, row 0 at the top. Videos decode through PyAV
(FFmpeg), image sequences through OpenCV, sorted by the frame number in their names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protocol.errors import ValidationError

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".bmp", ".webp")
MAX_FRAMES = 1024
MAX_SIDE = 4096


@dataclass
class Video:
    """Decoded frames ``(F, H, W, 3)`` uint8 RGB at ``fps`` frames per second."""

    frames: np.ndarray
    fps: float
    source: str

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


def read_frames(path: str | Path, *, fps: float | None = None, max_frames: int = MAX_FRAMES) -> Video:
    """Read a video file or an image sequence (a folder, or a glob such as ``shots/a_*.png``)."""
    p = Path(path)
    if p.is_dir() or any(ch in str(path) for ch in "*?["):
        return read_image_sequence(path, fps=fps or 24.0, max_frames=max_frames)
    if not p.exists():
        raise ValidationError(f"video not found: {p}")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return read_image_sequence([p], fps=fps or 24.0, max_frames=max_frames)
    video = read_video(p, max_frames=max_frames)
    if fps is not None:
        video.fps = float(fps)
    return video


def read_video(path: str | Path, *, max_frames: int = MAX_FRAMES, max_side: int = MAX_SIDE) -> Video:
    """Decode every frame of a video file (mp4, mov, webm, ...) to RGB uint8."""
    import av

    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"video not found: {p}")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError) as exc:
        raise ValidationError(f"cannot open {p.name} as a video: {exc}") from exc
    with container:
        if not container.streams.video:
            raise ValidationError(f"{p.name} has no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width > max_side or height > max_side:
            raise ValidationError(f"{p.name} is {width}x{height}; the limit is {max_side} pixels per side")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 24.0
        frames: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                if len(frames) >= max_frames:
                    raise ValidationError(
                        f"{p.name} has more than {max_frames} frames; trim it or raise the limit"
                    )
                frames.append(frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as exc:
            if not frames:
                raise ValidationError(f"cannot decode {p.name}: {exc}") from exc
            # A truncated file: keep what decoded (the usual behaviour of players).
    if not frames:
        raise ValidationError(f"{p.name} contains no frames")
    return Video(np.stack(frames), fps, str(p))


_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _frame_number(path: Path) -> tuple[int, str]:
    match = _NUMBER.search(path.stem)
    return (int(match.group(1)) if match else -1, path.name)


def read_image_sequence(
    source: str | Path | Sequence[str | Path], *, fps: float = 24.0, max_frames: int = MAX_FRAMES
) -> Video:
    """Read images from a folder, a glob pattern or an explicit list, ordered by frame number."""
    import cv2

    if isinstance(source, (str, Path)):
        s = Path(source)
        if s.is_dir():
            paths = [q for q in s.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES]
        else:
            paths = [q for q in s.parent.glob(s.name) if q.suffix.lower() in IMAGE_SUFFIXES]
        label = str(s)
    else:
        paths = [Path(q) for q in source]
        label = str(paths[0].parent) if paths else "<empty list>"
    paths.sort(key=_frame_number)
    if not paths:
        raise ValidationError(f"no images found in {label}")
    if len(paths) > max_frames:
        raise ValidationError(f"{label} has {len(paths)} images; the limit is {max_frames}")
    frames = []
    for q in paths:
        image = cv2.imread(str(q), cv2.IMREAD_COLOR)
        if image is None:
            raise ValidationError(f"cannot read image {q}")
        if frames and image.shape != frames[0].shape:
            raise ValidationError(
                f"{q.name} is {image.shape[1]}x{image.shape[0]} but the first image is "
                f"{frames[0].shape[1]}x{frames[0].shape[0]}; all frames must have one size"
            )
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return Video(np.stack(frames), float(fps), label)


def _as_rgb_uint8(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValidationError(f"frames must be (F, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        if not np.issubdtype(frames.dtype, np.floating):
            raise ValidationError(f"frames must be uint8 or float in [0, 1], got {frames.dtype}")
        frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return frames


class Mp4Writer:
    """Streaming H.264 writer: frames are encoded as they arrive, so a crash keeps what was written.

    H.264 in yuv420p needs even sizes: odd widths/heights are padded by one replicated pixel.
    """

    def __init__(self, path: str | Path, fps: float, *, crf: int = 18) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=_fps_fraction(fps))
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf)}
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        frame = _as_rgb_uint8(np.asarray(frame)[None])[0]
        h, w = frame.shape[:2]
        if self._size is None:
            self._size = (w, h)
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
        elif self._size != (w, h):
            raise ValidationError(f"frame size changed from {self._size} to {(w, h)} in {self.path.name}")
        if w % 2 or h % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            return
        if self._size is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fps_fraction(fps: float):
    from fractions import Fraction

    if not np.isfinite(fps) or fps <= 0:
        raise ValidationError(f"fps must be a positive number, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write ``(F, H, W, 3)`` frames (uint8, or float in [0, 1]) as an H.264 mp4."""
    frames = _as_rgb_uint8(frames)
    with Mp4Writer(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def write_png_sequence(folder: str | Path, frames: np.ndarray, *, prefix: str = "frame_") -> list[Path]:
    """Write frames as ``<prefix>00000.png ...`` (lossless); returns the paths."""
    import cv2

    frames = _as_rgb_uint8(frames)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        q = out / f"{prefix}{i:05d}.png"
        if not cv2.imwrite(str(q), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {q}")
        paths.append(q)
    return paths
