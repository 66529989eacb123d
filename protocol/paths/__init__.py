"""Camera paths: presets (``spec``, ``presets``) and file formats (``formats``), numpy only."""

from .presets import CameraPath, build_path, make_path, move_delta, progress_curve, source_frame_map
from .spec import PRESETS, Move, PathSpec, Preset, PresetParam, parse_path_spec, presets_for_ui

__all__ = [
    "PRESETS",
    "CameraPath",
    "Move",
    "PathSpec",
    "Preset",
    "PresetParam",
    "build_path",
    "make_path",
    "move_delta",
    "parse_path_spec",
    "presets_for_ui",
    "progress_curve",
    "source_frame_map",
]
