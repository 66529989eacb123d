"""Video segmentation engine for the foreground split: SAM2 (transformers ``Sam2VideoModel``) from a local folder.

``sam2``: the ``sam2.1-hiera-tiny`` weights in the transformers layout (``config.json`` +
``model.safetensors``, e.g. ``facebook/sam2.1-hiera-tiny``), loaded with ``local_files_only``.
One object is tracked through the whole clip from a prompt on one frame:

- a **mask** (``(H,W)`` bool; e.g. the motion split's mask of the frame where the object is most
  clearly moving, or a user's mask), given to SAM2 as its bounding box plus its most interior pixel
  as a positive point (SAM2's point prompt for the same object; the transformers mask-prompt path
  needs its processor), or
- a **box** ``(x0, y0, x1, y1)`` in pixels of the video (the user's box).

Frames are resized to the model's square input (``config.image_size``) and normalised with the
ImageNet mean/std, as SAM2's processor does; we build the inputs ourselves because the transformers
processor classes need torchvision, which this project does not install. Masks come back at the
video's size: the model's low-resolution logits upsampled bilinearly, foreground where > 0.
Registered with kind ``"segment"`` in :mod:`backend.engines.registry` (``recast4d doctor`` lists it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from backend.engines.registry import SAM2_TINY, require_weights
from backend.progress import CancelFn, ProgressFn, check_cancel
from protocol.errors import ValidationError

SEGMENT_KIND = "segment"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class Sam2VideoEngine:
    """SAM2 video tracking of one object (module docstring); ``segment`` returns ``(F,H,W)`` bool masks."""

    name = "sam2"

    def __init__(self, model: Any, *, device: str | None = None) -> None:
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.image_size = int(model.config.image_size)
    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], *, device: str | None = None) -> Sam2VideoEngine:
        from transformers import Sam2VideoModel

        return cls(Sam2VideoModel.from_pretrained(folder, local_files_only=True), device=device)

    @classmethod
    def from_models_dir(cls, models_dir: Path, **options: Any) -> Sam2VideoEngine:
        unknown = sorted(set(options) - {"device"})
        if unknown:
            raise ValidationError(f"unknown sam2 engine options: {', '.join(unknown)}; known: device")
        return cls.from_folder(require_weights(SAM2_TINY, models_dir), **options)

    def _pixels(self, frames: np.ndarray) -> Any:
        import cv2
        import torch

        size = self.image_size
        resized = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in frames])
        normalised = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return torch.from_numpy(normalised).permute(0, 3, 1, 2).contiguous()

    def segment(self, frames: np.ndarray, *, prompt_frame: int = 0, mask: np.ndarray | None = None,
                box: tuple[float, float, float, float] | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> np.ndarray:
        """Track the prompted object through ``frames (F,H,W,3)`` uint8; ``(F,H,W)`` bool, True = object."""
        import torch
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValidationError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        num_frames, height, width = frames.shape[:3]
        if not 0 <= prompt_frame < num_frames:
            raise ValidationError(f"split.prompt_frame must be in [0, {num_frames}), got {prompt_frame}")
        if (mask is None) == (box is None):
            raise ValidationError("the sam2 split needs exactly one prompt: a mask or a box")
        session = Sam2VideoInferenceSession(video=self._pixels(frames), video_height=height, video_width=width,
                                            inference_device=self.device, inference_state_device=self.device,
                                            video_storage_device=self.device, dtype=torch.float32)
        obj_idx = session.obj_id_to_idx(1)
        size = self.image_size
        points: list[tuple[float, float]] = []
        if mask is not None:  # a mask prompt becomes its bounding box plus its most interior pixel
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (height, width) or not mask.any():
                raise ValidationError(f"the sam2 prompt mask must be a non-empty ({height}, {width}) mask")
            box, interior = _mask_prompt(mask)
            points.append(interior)
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValidationError(f"split.box must be [x0, y0, x1, y1] inside the {width}x{height} frame, got {list(box)}")
        sx, sy = size / width, size / height
        coords = [[x0 * sx, y0 * sy], [x1 * sx, y1 * sy]] + [[x * sx, y * sy] for x, y in points]
        labels = [2, 3] + [1] * len(points)  # 2/3: box corners, 1: a positive point
        session.add_point_inputs(obj_idx, prompt_frame, {
            "point_coords": torch.tensor([[coords]], dtype=torch.float32, device=self.device),
            "point_labels": torch.tensor([[labels]], dtype=torch.int32, device=self.device)})
        session.obj_with_new_inputs = [1]
        out = np.zeros((num_frames, height, width), dtype=bool)
        forward = range(prompt_frame, num_frames)
        backward = range(prompt_frame - 1, -1, -1)
        with torch.no_grad():
            for done, (frame_index, reverse) in enumerate([(t, False) for t in forward] + [(t, True) for t in backward]):
                check_cancel(cancel)
                output = self.model(inference_session=session, frame_idx=frame_index, reverse=reverse)
                _flatten_object_pointers(session)
                logits = torch.nn.functional.interpolate(output.pred_masks[:1].float(), size=(height, width),
                                                         mode="bilinear", align_corners=False)
                out[frame_index] = (logits[0, 0] > 0).cpu().numpy()
                if progress is not None:
                    progress(done + 1, num_frames, f"sam2: tracked frame {frame_index}")
        return out


def _mask_prompt(mask: np.ndarray) -> tuple[tuple[float, float, float, float], tuple[float, float]]:
    """A mask's bounding box ``(x0, y0, x1, y1)`` (pixel edges) and its most interior pixel centre ``(x, y)``."""
    import cv2

    ys, xs = np.nonzero(mask)
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), mask.shape)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)), (x + 0.5, y + 0.5)


def _flatten_object_pointers(session: Any) -> None:
    """Stored object pointers as ``(1, C)``: transformers 5.x keeps the multimask pick as ``(1, 1, C)`` and the
    next frame's memory attention then fails to concatenate them with the ``(HW, 1, C)`` mask memories (we drive
    the frames ourselves, as ``propagate_in_video_iterator`` does, to fix them up between frames)."""
    for per_object in session.output_dict_per_obj.values():
        for outputs in per_object.values():
            for stored in outputs.values():
                pointer = stored.get("object_pointer") if isinstance(stored, dict) else None
                if pointer is not None and pointer.dim() == 3:
                    stored["object_pointer"] = pointer.reshape(-1, pointer.shape[-1])[:1]
