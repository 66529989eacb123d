"""Dynamic point clouds: one variable-size point set per video frame, stored as flat tensors.

Units and conventions: positions in world metres; colours float32 RGB in [0, 1]; ``radius`` is the
world-space half-width of the square a point stands for (half the size of the source pixel on a
fronto-parallel surface at the point's depth, ``0.5 * z / f``); the optional ``tangent_u`` /
``tangent_v`` (world metres) are half the step to the neighbouring source pixel along image x / y on
the same surface, so a renderer can project each point's true footprint; ``pixel_index`` is ``y * width + x``
of the source pixel in its source frame (``-1`` if a point has none).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from protocol.errors import ValidationError


@dataclass
class PointFrames:
    """Points of ``num_frames`` frames, concatenated frame after frame.

    ``offsets`` has ``num_frames + 1`` entries; the points of frame ``i`` are rows
    ``offsets[i]:offsets[i+1]`` of every per-point tensor. ``frame_index[n]`` repeats that frame id,
    so batched code can group points by frame without Python loops.
    """

    xyz: torch.Tensor  # (N,3) float32, world metres
    rgb: torch.Tensor  # (N,3) float32 in [0,1]
    radius: torch.Tensor  # (N,) float32, world metres
    frame_index: torch.Tensor  # (N,) int64, frame each point belongs to
    pixel_index: torch.Tensor  # (N,) int64, y * source_width + x in the source frame, -1 = none
    offsets: torch.Tensor  # (F+1,) int64, CPU
    source_height: int
    source_width: int
    tangent_u: torch.Tensor | None = None  # (N,3) float32 world metres, half a pixel step along x
    tangent_v: torch.Tensor | None = None  # (N,3) float32 world metres, half a pixel step along y

    def __post_init__(self) -> None:
        n = self.xyz.shape[0]
        if self.xyz.shape != (n, 3) or self.rgb.shape != (n, 3):
            raise ValidationError(f"points need xyz and rgb of shape (N,3), got {tuple(self.xyz.shape)}, "
                                  f"{tuple(self.rgb.shape)}")
        for name in ("radius", "frame_index", "pixel_index"):
            if getattr(self, name).shape != (n,):
                raise ValidationError(f"{name} must have shape ({n},), got {tuple(getattr(self, name).shape)}")
        if (self.tangent_u is None) != (self.tangent_v is None):
            raise ValidationError("give both tangent_u and tangent_v, or neither")
        if self.tangent_u is not None and (self.tangent_u.shape != (n, 3) or self.tangent_v.shape != (n, 3)):
            raise ValidationError(f"tangents must have shape ({n},3)")
        self.offsets = self.offsets.detach().to("cpu", torch.int64)
        if self.offsets.ndim != 1 or self.offsets.numel() < 1 or int(self.offsets[-1]) != n:
            raise ValidationError(f"offsets must run from 0 to the point count {n}")

    @property
    def num_frames(self) -> int:
        return self.offsets.numel() - 1

    @property
    def num_points(self) -> int:
        return self.xyz.shape[0]

    @property
    def device(self) -> torch.device:
        return self.xyz.device

    def counts(self) -> torch.Tensor:
        """Points per frame, ``(F,)`` int64 on the CPU."""
        return self.offsets[1:] - self.offsets[:-1]

    def frame(self, i: int) -> PointFrames:
        """The points of frame ``i`` as a one-frame :class:`PointFrames` (``frame_index`` reset to 0)."""
        if not -self.num_frames <= i < self.num_frames:
            raise IndexError(f"frame {i} out of range for {self.num_frames} frames")
        i %= self.num_frames
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return PointFrames(
            self.xyz[a:b], self.rgb[a:b], self.radius[a:b], torch.zeros_like(self.frame_index[a:b]),
            self.pixel_index[a:b], torch.tensor([0, b - a]), self.source_height, self.source_width,
            *self._tangent_rows(slice(a, b)),
        )

    def _tangent_rows(self, rows: slice | torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.tangent_u is None or self.tangent_v is None:
            return None, None
        return self.tangent_u[rows], self.tangent_v[rows]

    def to(self, device: torch.device | str) -> PointFrames:
        """A copy with every per-point tensor on ``device`` (offsets stay on the CPU)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("xyz", "rgb", "radius", "frame_index", "pixel_index", "tangent_u", "tangent_v"):
            if moved[name] is not None:
                moved[name] = moved[name].to(device)
        return PointFrames(**moved)

    def select(self, keep: torch.Tensor) -> PointFrames:
        """The points where the boolean ``keep (N,)`` is True, frames and order preserved."""
        if keep.shape != (self.num_points,) or keep.dtype != torch.bool:
            raise ValidationError(f"keep must be a bool tensor of shape ({self.num_points},)")
        counts = torch.zeros(self.num_frames, dtype=torch.int64, device=keep.device)
        counts.index_add_(0, self.frame_index, keep.to(torch.int64))
        offsets = torch.zeros(self.num_frames + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(counts.cpu(), 0)
        return PointFrames(
            self.xyz[keep], self.rgb[keep], self.radius[keep], self.frame_index[keep],
            self.pixel_index[keep], offsets, self.source_height, self.source_width, *self._tangent_rows(keep),
        )


def concatenate_frames(parts: list[PointFrames]) -> PointFrames:
    """Stack the frames of several point sets one after another (frame ids renumbered)."""
    if not parts:
        raise ValidationError("need at least one point set to concatenate")
    frame_base = 0
    point_base = 0
    frame_ids, offsets = [], [torch.zeros(1, dtype=torch.int64)]
    for part in parts:
        frame_ids.append(part.frame_index + frame_base)
        offsets.append(part.offsets[1:] + point_base)
        frame_base += part.num_frames
        point_base += part.num_points
    first = parts[0]
    with_tangents = all(p.tangent_u is not None for p in parts)
    return PointFrames(
        torch.cat([p.xyz for p in parts]), torch.cat([p.rgb for p in parts]),
        torch.cat([p.radius for p in parts]), torch.cat(frame_ids),
        torch.cat([p.pixel_index for p in parts]), torch.cat(offsets),
        first.source_height, first.source_width,
        torch.cat([p.tangent_u for p in parts]) if with_tangents else None,
        torch.cat([p.tangent_v for p in parts]) if with_tangents else None,
    )
