"""First-frame editing (EasyCreator's editing by first-frame guidance), seen from each target camera.

The user edits source frame 0 (``edit_frame``) and marks per source frame where the edit should
appear (``edit_masks (F,H,W)``). Pasting those *source-view* images into a target view is wrong as
soon as the target camera differs from the source, so here the edit is moved into 3-D first:

1. **Edit depth.** Where the edit changed frame 0 (inside ``edit_masks[0]``, colour differing by more
   than ``EDIT_CHANGE_LEVELS``), the source depth no longer describes the surface. With a depth
   engine (the request's ``engine.depth`` is not ``given``) the edited frame's depth is estimated
   and aligned to the source depth outside the changed region (inverse-depth scale/shift fit); with
   given depth and no engine the changed region's depth is inpainted from its surroundings
   (:func:`inpaint_depth_from_rim`: per connected region, a robust plane fitted to the inverse
   depth of a ring of known pixels around it, exact when the edit lies on a planar surface; so the
   edit lies on the surface around it).
2. **Lift.** Frame 0 = the edited frame with the edit depth, frames 1.. = the source frames with
   their depth; each point remembers whether its pixel is in that frame's edit mask.
3. **Render per target.** For target frame ``t`` showing source frame ``s = time_map[t]``, the
   points of frame ``s`` are z-buffer rendered into target camera ``t`` (:func:`render_points`):
   the target's edit region is where the winning point is an edit point. Target frame 0 is the
   edited frame rendered into target camera 0 (where it sees nothing, the ordinary render stays,
   and what neither sees stays a hole for the engine to fill).

So frame 0 of every target shows the edit from that target's camera and the edit region follows
the target view; the fill engines put the region into the holes they regenerate (the composite
mask: point-cloud holes OR edit region), frame 0 kept as given (:func:`apply_first_frame_edit`).
Cameras OpenCV, depth planar z in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.engines import FirstFrameEdit
from backend.geometry import PointFrames, concatenate_frames, fill_depth_holes, lift_frames, render_points
from protocol.errors import ValidationError

#: a pixel of ``edit_masks[0]`` whose colour moved by more than this (any channel, 0-255) was changed
EDIT_CHANGE_LEVELS = 12


@dataclass
class LiftedEdit:
    """The edit in 3-D: points of every source frame (frame 0 = the edited frame) and which are edit points."""

    points: PointFrames
    is_edit: torch.Tensor  # (N,) bool, per row of ``points``
    depth_method: str  # how the changed region got its depth: "kept", "engine:<name>" or "inpainted"
    changed_pixels: int


def changed_region(source_frame: np.ndarray, edit_frame: np.ndarray, edit_mask: np.ndarray) -> np.ndarray:
    """``(H,W)`` bool: inside ``edit_mask`` and more than ``EDIT_CHANGE_LEVELS`` away in some channel."""
    difference = np.abs(edit_frame.astype(np.int16) - source_frame.astype(np.int16)).max(axis=-1)
    return np.asarray(edit_mask, bool) & (difference > EDIT_CHANGE_LEVELS)


def edit_depth(source_depth: torch.Tensor, edit_frame: np.ndarray, changed: np.ndarray,
               depth_engine=None, engine_name: str = "") -> tuple[torch.Tensor, str]:
    """Planar depth ``(H,W)`` of the edited frame: the source depth, re-estimated where ``changed``.

    ``depth_engine`` (optional, the depth engine interface): estimate the edited frame and align it to
    ``source_depth`` outside ``changed``; without one, inpaint the changed region from its surroundings.
    """
    if not changed.any():
        return source_depth, "kept"
    changed_t = torch.from_numpy(changed).to(source_depth.device)
    known = (~changed_t) & (source_depth > 0)
    if depth_engine is not None and int(known.sum()) >= 16:
        estimate = depth_engine.predict(edit_frame[None], reference=source_depth.cpu().numpy()[None],
                                        reference_mask=known.cpu().numpy()[None])[0]
        estimate_t = torch.as_tensor(np.nan_to_num(estimate, nan=0.0), dtype=torch.float32,
                                     device=source_depth.device)
        return torch.where(changed_t & (estimate_t > 0), estimate_t, source_depth), f"engine:{engine_name}"
    filled = inpaint_depth_from_rim(source_depth.cpu().numpy(), changed)
    return torch.as_tensor(filled, dtype=torch.float32, device=source_depth.device), "inpainted"


#: width in pixels of the ring of known depth around an edited region that its depth is fitted to
RIM_PX = 4


def inpaint_depth_from_rim(depth: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``depth (H,W)`` planar z with each connected part of ``region`` filled from its surroundings.

    Per part, ``1/z = a u + b v + c`` (pixel centres ``u, v``; exact for any plane in 3-D) is fitted by
    least squares to the known pixels within ``RIM_PX`` of it, refitted once without the pixels
    farther than 3 median residuals (a foreground object touching the rim); a part with fewer than
    8 known rim pixels falls back to :func:`backend.geometry.fill_depth_holes`.
    """
    import cv2

    out = np.array(depth, dtype=np.float32)
    count, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * RIM_PX + 1, 2 * RIM_PX + 1))
    for label in range(1, count):
        part = labels == label
        rim = cv2.dilate(part.astype(np.uint8), kernel).astype(bool) & ~region & (out > 0)
        rows, cols = np.nonzero(rim)
        if rows.size < 8:
            fallback = fill_depth_holes(torch.from_numpy(out)[None], torch.from_numpy(part)[None])[0]
            out[part] = fallback.numpy()[part]
            continue
        design = np.stack([cols + 0.5, rows + 0.5, np.ones(rows.size)], axis=1)
        target = 1.0 / out[rows, cols].astype(np.float64)
        keep = np.ones(rows.size, bool)
        for _ in range(2):
            coeffs, *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
            residual = np.abs(design @ coeffs - target)
            keep = residual <= max(3.0 * float(np.median(residual)), 1e-12)
        prow, pcol = np.nonzero(part)
        inverse = np.stack([pcol + 0.5, prow + 0.5, np.ones(prow.size)], axis=1) @ coeffs
        floor = float(target[keep].min()) * 0.1  # never behind 10x the farthest rim depth
        out[prow, pcol] = 1.0 / np.maximum(inverse, floor)
    return out


def lift_edit(frames: np.ndarray, depth_z: torch.Tensor, K: np.ndarray, w2c: np.ndarray, edit_frame: np.ndarray,
              edit_masks: np.ndarray, *, depth_engine=None, engine_name: str = "") -> LiftedEdit:
    """Lift the edited frame 0 (with its edit depth) and source frames 1.. with edit flags (module doc)."""
    if edit_masks.shape != depth_z.shape:
        raise ValidationError(f"edit_masks must have shape {tuple(depth_z.shape)} (one mask per frame), "
                              f"got {edit_masks.shape}")
    if edit_frame.shape != frames.shape[1:]:
        raise ValidationError(f"edit_frame must be {frames.shape[2]}x{frames.shape[1]} like the video, "
                              f"got {edit_frame.shape}")
    changed = changed_region(frames[0], edit_frame, edit_masks[0])
    depth0, method = edit_depth(depth_z[0], edit_frame, changed, depth_engine, engine_name)
    edited_frames = frames.copy()
    edited_frames[0] = edit_frame
    depth = depth_z.clone()
    depth[0] = depth0
    points = lift_frames(edited_frames, depth, K, w2c, device=depth_z.device)
    masks = torch.from_numpy(np.ascontiguousarray(edit_masks)).to(depth_z.device).reshape(len(frames), -1)
    is_edit = masks[points.frame_index, points.pixel_index]
    return LiftedEdit(points, is_edit, method, int(changed.sum()))


def target_edit(edit: LiftedEdit, K_t: np.ndarray, w2c_t: np.ndarray, time_map: np.ndarray, render_rgb: np.ndarray,
                holes: np.ndarray) -> FirstFrameEdit:
    """The edit as target trajectory ``(K_t (T,3,3), w2c_t (T,4,4), time_map (T,))`` sees it (module doc).

    ``render_rgb (T,H,W,3)`` uint8 and ``holes (T,H,W)`` bool are the target's render and holes; frame 0
    of the result is the edited frame seen from target camera 0 over that render, ``first_frame_holes``
    what neither covers, ``region`` the edit mask in each target view.
    """
    num, height, width = holes.shape
    per_view = concatenate_frames([edit.points.frame(int(s)) for s in time_map])
    flags = torch.cat([edit.is_edit[edit.points.offsets[int(s)]:edit.points.offsets[int(s) + 1]] for s in time_map])
    render = render_points(per_view, K_t, w2c_t, width, height)
    winner = render.point_index.clamp(min=0)
    region = (render.mask & flags[winner]).cpu().numpy()
    first = render_points(edit.points.frame(0), K_t[:1], w2c_t[:1], width, height)
    seen = first.mask[0].cpu().numpy()
    first_rgb = (first.rgb[0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    first_frame = np.where(seen[..., None], first_rgb, render_rgb[0])
    first_region = (first.mask[0] & edit.is_edit[:int(edit.points.offsets[1])][first.point_index[0].clamp(min=0)])
    region[0] = first_region.cpu().numpy()
    return FirstFrameEdit(first_frame, region, first_frame_holes=holes[0] & ~seen)
