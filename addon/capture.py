"""Source frames as arrays: image sequences, movie clips, or "this scene" rendered with depth.

Conventions of the returned arrays (what the backend's ``reshoot`` request expects):
``frames`` uint8 (F, H, W, 3) sRGB, row 0 = top of the image; ``depth`` float32 (F, H, W) planar
depth along the camera's view axis in metres (``depth_kind = "z"``), 0 where nothing was hit.
Blender stores image rows bottom-up, so every read flips them.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Generator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from .deps import protocol_module

_errors = protocol_module("errors")


@dataclass(frozen=True)
class CaptureStep:
    """Progress of a capture, yielded after each frame: ``done`` of ``total`` steps, and what ran."""

    done: int
    total: int
    what: str


#: A capture as steps: yields :class:`CaptureStep` after each frame, returns its arrays.
Capture = Generator[CaptureStep, None, object]


def run_capture(capture: Capture):
    """Run a stepwise capture to its end (``blender -b``, tests) and return its result."""
    while True:
        try:
            next(capture)
        except StopIteration as stop:
            return stop.value


def _render_failed(what: str, exc: Exception) -> Exception:
    """One readable error for a render that raised (Blender's message without its traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in reversed(lines) if not line.startswith(("File ", "Traceback"))), "")
    detail = detail.removeprefix("Error: ").strip() or type(exc).__name__
    return _errors.Recast4DError(f"rendering {what} failed: {detail}", code="render_failed")


def image_pixels(image: bpy.types.Image) -> np.ndarray:
    """``(H, W, 4)`` float32 pixels of a loaded image, row 0 = top."""
    width, height = image.size[:]
    if width == 0 or height == 0:
        raise _errors.ValidationError(f"image {image.name!r} could not be read ({image.filepath})")
    buffer = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(buffer)
    return buffer.reshape(height, width, 4)[::-1]


def read_image_file(path: str | Path) -> np.ndarray:
    """``(H, W, 4)`` float32 pixels of an image file (loaded and freed again), row 0 = top."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        return image_pixels(image)
    finally:
        bpy.data.images.remove(image)


def to_uint8_rgb(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in 0..1 (display-referred, as PNG/JPEG load) -> uint8 RGB."""
    return (np.clip(pixels[..., :3], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def sequence_files(first_file: str | Path) -> list[Path]:
    """All files of the numbered sequence ``first_file`` belongs to, sorted by frame number."""
    path = Path(first_file)
    match = re.match(r"^(.*?)(\d+)$", path.stem)
    if match is None:
        return [path]
    prefix = match.group(1)
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+){re.escape(path.suffix)}$")
    numbered = [(int(m.group(1)), p) for p in path.parent.iterdir() if (m := pattern.match(p.name))]
    return [p for _, p in sorted(numbered)]


def image_sequence_frames(image: bpy.types.Image, count: int) -> np.ndarray:
    """The first ``count`` frames of an image-sequence datablock as uint8 (F, H, W, 3)."""
    return run_capture(iter_image_sequence_frames(image, count))


def iter_image_sequence_frames(image: bpy.types.Image, count: int) -> Capture:
    """:func:`image_sequence_frames` as steps (one per file read)."""
    files = sequence_files(bpy.path.abspath(image.filepath))
    if len(files) < count:
        raise _errors.ValidationError(f"image sequence {image.name!r} has {len(files)} frames, the shot needs {count}")
    return (yield from _read_files(files[:count], f"image sequence {image.name!r}"))


def _read_files(files: list[Path], what: str) -> Capture:
    frames = []
    for i, path in enumerate(files):
        frames.append(to_uint8_rgb(read_image_file(path)))
        yield CaptureStep(i + 1, len(files), f"reading {what}: frame {i + 1}/{len(files)}")
    return np.stack(frames)


def movie_clip_frames(scene: bpy.types.Scene, clip: bpy.types.MovieClip, count: int, first: int = 0) -> np.ndarray:
    """``count`` frames of a Movie Clip from its frame index ``first`` (0-based) as uint8 (F, H, W, 3).

    Videos are decoded by Blender's own video strip: a temporary scene renders the clip through
    the sequencer to PNG (no 3D rendering), which is then read back.
    """
    return run_capture(iter_movie_clip_frames(scene, clip, count, first))


def iter_movie_clip_frames(scene: bpy.types.Scene, clip: bpy.types.MovieClip, count: int,
                           first: int = 0) -> Capture:
    """:func:`movie_clip_frames` as steps (one per decoded frame); closing it mid-way removes the
    temporary scene."""
    path = bpy.path.abspath(clip.filepath)
    if clip.source == "SEQUENCE":
        files = sequence_files(path)
        if len(files) < first + count:
            raise _errors.ValidationError(
                f"clip {clip.name!r} has {len(files)} frames, the shot needs frames {first + 1}-{first + count}")
        return (yield from _read_files(files[first:first + count], f"clip {clip.name!r}"))
    if clip.frame_duration < first + count:
        raise _errors.ValidationError(
            f"clip {clip.name!r} has {clip.frame_duration} frames, the shot needs frames {first + 1}-{first + count}")
    width, height = clip.size[:]
    temp_scene = bpy.data.scenes.new("Recast4D clip decode")
    try:
        editor = temp_scene.sequence_editor_create()
        strips = editor.strips if hasattr(editor, "strips") else editor.sequences
        strips.new_movie("clip", path, channel=1, frame_start=1)
        render = temp_scene.render
        render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
        render.use_sequencer = True
        render.image_settings.file_format = "PNG"
        render.image_settings.color_mode = "RGB"
        temp_scene.view_settings.view_transform = "Standard"
        frames = []
        with tempfile.TemporaryDirectory(prefix="recast4d_clip_") as tmp:
            for i in range(count):
                temp_scene.frame_set(first + i + 1)
                render.filepath = str(Path(tmp) / f"{i:05d}.png")
                _render_still_or_fail(temp_scene, f"clip {clip.name!r} frame {first + i + 1}")
                frames.append(to_uint8_rgb(read_image_file(render.filepath)))
                yield CaptureStep(i + 1, count, f"decoding clip {clip.name!r}: frame {i + 1}/{count}")
    finally:
        bpy.data.scenes.remove(temp_scene)
    return np.stack(frames)


def render_still(scene: bpy.types.Scene) -> None:
    """Render ``scene`` at its own current frame to ``render.filepath``.

    ``bpy.ops.render.render(scene=...)`` renders at the *context* scene's frame, so the scene is
    made the context scene instead.
    """
    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render(write_still=True)


def _render_still_or_fail(scene: bpy.types.Scene, what: str) -> None:
    """:func:`render_still`, with a failed render turned into one readable ``Recast4DError``."""
    try:
        render_still(scene)
    except (RuntimeError, OSError) as exc:
        raise _render_failed(what, exc) from None


def depth_material() -> bpy.types.Material:
    """Emission material whose colour is the planar view depth (Camera Data > View Z Depth), metres."""
    material = bpy.data.materials.get("Recast4D Depth")
    if material is not None:
        return material
    material = bpy.data.materials.new("Recast4D Depth")
    if material.node_tree is None:  # Blender < 5.0
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    camera_data = nodes.new("ShaderNodeCameraData")
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(camera_data.outputs["View Z Depth"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return material


@contextmanager
def _temporarily(obj, **values):
    saved = {name: getattr(obj, name) for name in values}
    try:
        for name, value in values.items():
            setattr(obj, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(obj, name, value)


def render_scene_source(scene: bpy.types.Scene, camera: bpy.types.Object,
                        frames: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Render ``frames`` of ``scene`` through ``camera``: colour with the scene's engine, then depth.

    Depth is a second Cycles pass with a material override emitting the planar view depth
    (1 sample, so edges never blend two depths; transparent film, so empty pixels read 0).
    All render settings are restored afterwards.
    """
    return run_capture(iter_render_scene_source(scene, camera, frames))


def iter_render_scene_source(scene: bpy.types.Scene, camera: bpy.types.Object, frames: list[int]) -> Capture:
    """:func:`render_scene_source` as steps: one per rendered image (colour, then depth), 2 x F in
    all. Closing the generator mid-way (Esc) restores every render setting it changed."""
    total = 2 * len(frames)
    render = scene.render
    view_layer = scene.view_layers[0]
    colour, depth = [], []
    with tempfile.TemporaryDirectory(prefix="recast4d_scene_") as tmp, ExitStack() as stack:
        stack.enter_context(_temporarily(scene, camera=camera, frame_current=scene.frame_current))
        stack.enter_context(_temporarily(render, filepath=render.filepath, film_transparent=render.film_transparent))
        settings = render.image_settings
        stack.enter_context(_temporarily(settings, file_format=settings.file_format, color_mode=settings.color_mode,
                                         color_depth=settings.color_depth))
        for frame in frames:
            scene.frame_set(frame)
            settings.file_format, settings.color_mode, render.film_transparent = "PNG", "RGB", False
            render.filepath = str(Path(tmp) / f"rgb_{frame:05d}.png")
            _render_still_or_fail(scene, f"source frame {frame}")
            colour.append(to_uint8_rgb(read_image_file(render.filepath)))
            yield CaptureStep(len(colour), total, f"rendering source frame {frame} ({len(colour)}/{len(frames)})")
        cycles = scene.cycles
        stack.enter_context(_temporarily(render, engine=render.engine))
        render.engine = "CYCLES"
        stack.enter_context(_temporarily(cycles, samples=cycles.samples, use_denoising=cycles.use_denoising,
                                         filter_width=cycles.filter_width))
        stack.enter_context(_temporarily(view_layer, material_override=view_layer.material_override))
        vs = scene.view_settings
        stack.enter_context(_temporarily(vs, view_transform=vs.view_transform, look=vs.look,
                                         exposure=vs.exposure, gamma=vs.gamma))
        cycles.samples, cycles.use_denoising, cycles.filter_width = 1, False, 0.01
        view_layer.material_override = depth_material()
        vs.view_transform, vs.look, vs.exposure, vs.gamma = "Standard", "None", 0.0, 1.0
        settings.file_format, render.film_transparent = "OPEN_EXR", True
        settings.color_mode, settings.color_depth = "RGB", "32"
        for frame in frames:
            scene.frame_set(frame)
            render.filepath = str(Path(tmp) / f"depth_{frame:05d}.exr")
            _render_still_or_fail(scene, f"the depth of source frame {frame}")
            depth.append(read_image_file(render.filepath)[..., 0].astype(np.float32))
            yield CaptureStep(len(frames) + len(depth), total,
                              f"rendering depth of frame {frame} ({len(depth)}/{len(frames)})")
    return np.stack(colour), np.ascontiguousarray(np.stack(depth))
