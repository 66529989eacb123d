"""Job files: one shot as JSON, the same request the server takes, with inputs named by file.

    {"kind": "reshoot",                      # or "tune", "generate", any registered kind (default reshoot)
     "job_id": "sh010-orbit",               # optional; default: the file name + a digest of its content
     "params": {...},                        # exactly the job.submit params of that kind
     "inputs": {"frames": "plate.mp4",       # a video file or an image folder
                "depth": "depth/",           # a folder/.npy/.npz of depth maps (metres)
                "image": "first.png",        # an image (generate, image-to-video)
                "offsets": "x.npy"},         # any other input: a .npy file
     "out": "renders/sh010"}                 # optional: where the job's output files are copied

Relative paths are resolved against the job file's folder. ``recast4d run --job``, ``recast4d
batch`` and the farm templates (``backend/farm/``) all read this format.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import ValidationError

JOB_KINDS = ("reshoot", "tune", "generate")


@dataclass
class JobFile:
    """A parsed job file: ``inputs`` maps input names to resolved file paths (read by :meth:`read_inputs`)."""

    path: Path
    kind: str
    job_id: str
    params: dict[str, Any]
    inputs: dict[str, Path] = field(default_factory=dict)
    out: Path | None = None

    def read_inputs(self) -> dict[str, np.ndarray]:
        """The input arrays (videos decoded, depth maps loaded); ``params["fps"]`` set from a video."""
        from backend.engines.depth import load_depth_sequence
        from backend.media import read_frames

        arrays: dict[str, np.ndarray] = {}
        for name, path in self.inputs.items():
            if not path.exists() and not any(ch in str(path) for ch in "*?["):
                raise ValidationError(f"{self.path}: input {name!r}: file not found: {path}")
            if name == "frames":
                video = read_frames(path, fps=self.params.get("fps"))
                arrays[name] = video.frames
                self.params.setdefault("fps", video.fps)
            elif name == "depth":
                arrays[name] = load_depth_sequence(path)
            elif path.suffix.lower() == ".npy":
                arrays[name] = np.load(path, allow_pickle=False)
            elif name == "image":
                import imageio.v3 as iio

                image = np.asarray(iio.imread(path))
                image = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
                arrays[name] = np.ascontiguousarray(image).astype(np.uint8)
            elif name == "foreground":
                arrays[name] = read_frames(path).frames.max(axis=-1) > 127
            else:
                raise ValidationError(f"{self.path}: input {name!r} must be a .npy file (got {path.name})")
        return arrays


def read_job_file(path: str | os.PathLike[str]) -> JobFile:
    """Parse a job file (not its inputs); ValidationError naming the file and the field otherwise."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ValidationError(f"job file not found: {path}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
        raise ValidationError(f"{path} must be a map with 'params' (and 'inputs' naming files)")
    kind = doc.get("kind", "reshoot")
    if not isinstance(kind, str) or not kind:
        raise ValidationError(f"{path}: 'kind' must be a job kind such as {', '.join(JOB_KINDS)}, got {kind!r}")
    inputs = doc.get("inputs") or {}
    if not isinstance(inputs, dict) or not all(isinstance(v, str) for v in inputs.values()):
        raise ValidationError(f"{path}: 'inputs' must map input names to file paths")
    base = path.parent
    job_id = doc.get("job_id")
    if job_id is None:
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in path.stem).strip("_") or "job"
        job_id = f"{stem[:100]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    from backend.jobs import validate_job_id

    try:
        validate_job_id(job_id)
    except ValidationError as exc:
        raise ValidationError(f"{path}: 'job_id': {exc.message}") from exc
    out = doc.get("out")
    return JobFile(
        path=path, kind=kind, job_id=job_id, params=doc["params"],
        inputs={name: (base / os.path.expanduser(value)).resolve() for name, value in inputs.items()},
        out=(base / os.path.expanduser(str(out))).resolve() if out else None,
    )
