"""What a job is made of, checked before any record exists: ids, names, declared inputs, params.

- :func:`validate_job_id` / :func:`validate_stream_name`: job ids name folders, stream and input
  names name files, so both follow one ASCII pattern with a length cap.
- :func:`check_input_specs`: declared input extents (dimensions, bytes per frame, bytes per job)
  against the server's limits; run at submit, before the job folder is made.
- :func:`params_to_json` / :func:`params_from_json`: ``params`` may hold small (inline) numpy
  arrays (``docs/protocol.md`` §7.1); ``request.json`` stores them as
  ``{"__nd__": true, "dtype", "shape", "data": <base64>}`` and loading gives the arrays back.
- :func:`request_digest`: a stable hash of kind, params (arrays by dtype, shape and bytes) and
  inputs, for idempotent submit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocol.errors import ValidationError

from .chunks import ALLOWED_DTYPES

JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
#: One ASCII pattern (and length cap) for every name that becomes a file name: streams, inputs,
#: trajectories. Same as ``protocol.schema.NAME_PATTERN``.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", re.ASCII)
#: Largest single dimension of a declared input (a frame count or a pixel count, never more).
MAX_INPUT_DIM = 1 << 31
_ND = "__nd__"


@dataclass(frozen=True)
class InputSpec:
    """A declared input array: little-endian numeric ``dtype`` string, ``shape``, byte size."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return self.frame_bytes * (self.shape[0] if self.shape else 1)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame (one row along axis 0); exact integer arithmetic."""
        size = np.dtype(self.dtype).itemsize
        for dim in self.shape[1:]:
            size *= int(dim)
        return size

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape), "nbytes": self.nbytes}


def validate_job_id(job_id: object) -> str:
    """Job ids name folders: 1-128 chars of ``[A-Za-z0-9_.-]``, not starting with a dot or dash."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise ValidationError(
            f"job id {str(job_id)[:80]!r} is not usable: use 1-128 letters, digits, '_', '.', '-' "
            "(not starting with '.' or '-')",
            code="bad_job_id",
        )
    return job_id


def validate_name(name: object, field: str) -> str:
    """A name that becomes a file name (``field`` says which): 1-64 ASCII ``[A-Za-z0-9_.-]``, no leading
    ``.``/``-``; ValidationError naming ``field`` otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValidationError(f"{field} {str(name)[:80]!r} is not usable: use 1-64 ASCII letters, digits, '_', "
                              "'.', '-' (not starting with '.' or '-')")
    return name


def validate_stream_name(stream: object) -> str:
    return validate_name(stream, "stream name")


def check_input_specs(specs: dict[str, InputSpec], *, max_job_bytes: int, max_frame_bytes: int) -> None:
    """Refuse declared inputs that could never be uploaded, before any record is made.

    Each input needs at least one dimension, every dimension ``<= 2**31``, every dimension after
    the first ``> 0`` (a frame holds bytes), one frame ``<= max_frame_bytes`` (a frame travels
    in one upload chunk) and all inputs together ``<= max_job_bytes``. Errors name the input.
    """
    total = 0
    for name, spec in specs.items():
        validate_name(name, "input name")
        field = f"inputs.{name}"
        if not spec.shape:
            raise ValidationError(f"{field} has no dimension: send scalars in params")
        if any(dim > MAX_INPUT_DIM for dim in spec.shape):
            raise ValidationError(f"{field} has shape {list(spec.shape)}: a dimension above {MAX_INPUT_DIM}",
                                  code="too_large")
        if any(dim == 0 for dim in spec.shape[1:]):
            raise ValidationError(f"{field} has shape {list(spec.shape)}: only the frame count (first dimension) "
                                  "may be 0")
        if spec.frame_bytes > max_frame_bytes:
            raise ValidationError(
                f"{field}: one frame of shape {list(spec.shape[1:])} {spec.dtype} is {spec.frame_bytes} bytes; "
                f"this server takes frames of at most {max_frame_bytes} bytes (max_frame_bytes): "
                "send a smaller resolution or split the frame", code="too_large")
        total += spec.nbytes
        if total > max_job_bytes:
            raise ValidationError(f"inputs add up to more than the per-job limit of {max_job_bytes} bytes "
                                  f"(at {field})", code="too_large")


def parse_input_specs(inputs: object, *, max_job_bytes: int, max_frame_bytes: int = 1 << 62) -> dict[str, InputSpec]:
    """Check declared inputs ``{name: {dtype, shape, ...}}`` (plain data) before anything is allocated."""
    if inputs is None:
        return {}
    if not isinstance(inputs, dict):
        raise ValidationError("inputs must be a map {name: {dtype, shape, nbytes}}")
    specs: dict[str, InputSpec] = {}
    for name, desc in inputs.items():
        validate_name(name, "input name")
        if not isinstance(desc, dict):
            raise ValidationError(f"input {name!r} must be described as {{dtype, shape, nbytes}}")
        dtype = desc.get("dtype")
        shape = desc.get("shape")
        if dtype not in ALLOWED_DTYPES:
            raise ValidationError(f"input {name!r} has dtype {dtype!r}; allowed: {', '.join(sorted(ALLOWED_DTYPES))}")
        if (
            not isinstance(shape, list | tuple)
            or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise ValidationError(f"input {name!r} has an unusable shape {shape!r} (up to 8 non-negative ints)")
        spec = InputSpec(dtype=dtype, shape=tuple(shape))
        if "nbytes" in desc and desc["nbytes"] != spec.nbytes:
            raise ValidationError(f"input {name!r} declares {desc['nbytes']} bytes but shape x itemsize = {spec.nbytes}")
        specs[name] = spec
    check_input_specs(specs, max_job_bytes=max_job_bytes, max_frame_bytes=max_frame_bytes)
    return specs


# --------------------------------------------------------------------------- params with arrays
def params_to_json(value: Any, where: str = "params") -> Any:
    """``params`` as JSON-able data: numpy arrays become ``{"__nd__": true, dtype, shape, data: base64}``.

    Raises ValidationError naming the path of a value that is not plain data.
    """
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        if arr.dtype.str not in ALLOWED_DTYPES:
            raise ValidationError(f"{where} is an array of dtype {arr.dtype.str}; allowed: {sorted(ALLOWED_DTYPES)}")
        return {_ND: True, "dtype": arr.dtype.str, "shape": list(arr.shape),
                "data": base64.b64encode(arr.tobytes()).decode("ascii")}
    if isinstance(value, dict):
        if _ND in value:
            raise ValidationError(f"{where} uses the reserved key {_ND!r}")
        return {str(k): params_to_json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [params_to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, bytes):
        raise ValidationError(f"{where} is raw bytes; send an array (|u1) or a string instead")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ValidationError(f"{where} is a {type(value).__name__}; params hold maps, lists, numbers, strings, arrays")


def params_from_json(value: Any) -> Any:
    """Inverse of :func:`params_to_json` (arrays come back read-only)."""
    if isinstance(value, dict):
        if value.get(_ND) is True:
            dtype = value["dtype"]
            if dtype not in ALLOWED_DTYPES:
                raise ValueError(f"stored array dtype {dtype!r} is not allowed")
            arr = np.frombuffer(base64.b64decode(value["data"]), dtype=np.dtype(dtype)).reshape(value["shape"])
            return arr
        return {k: params_from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [params_from_json(v) for v in value]
    return value


def request_digest(kind: str, params: dict[str, Any], inputs: dict[str, InputSpec]) -> str:
    """A stable hash of what was asked (kind, params, declared inputs) for idempotent submit."""
    canonical = json.dumps(
        {"kind": kind, "params": params_to_json(params), "inputs": {k: v.to_dict() for k, v in sorted(inputs.items())}},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
