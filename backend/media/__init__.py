"""Reading and writing the videos and image sequences people have (mp4/mov/webm/mkv, PNG/JPEG/EXR folders)."""

from .video import (
    VIDEO_SUFFIXES,
    Mp4Writer,
    Video,
    read_frames,
    read_image_sequence,
    read_video,
    write_mp4,
    write_png_sequence,
)

__all__ = [
    "VIDEO_SUFFIXES",
    "Mp4Writer",
    "Video",
    "read_frames",
    "read_image_sequence",
    "read_video",
    "write_mp4",
    "write_png_sequence",
]
