"""numpy arrays inside msgpack content: descriptors, the dtype allow-list, checks before allocation.

An array in message content is replaced on the wire by a descriptor map::

    {"__nd__": True, "dtype": "<f4", "shape": [250000, 3], "buf": 0}      # bytes in buffer frame 0
    {"__nd__": True, "dtype": "|u1", "shape": [4, 4], "data": <bin>}      # bytes inline (small arrays)

``"__nd__"`` is the marker; content dicts of the application must not use that key. Bytes are
C-order and little-endian. Only the dtypes in :data:`ALLOWED_DTYPES` travel; everything else
(object, structured/void, big-endian, complex, datetime, unicode, int64) is refused on both ends.

The receiver checks a descriptor completely (dtype, ndim, every dim a non-negative ``int``, and
``prod(shape) * itemsize == len(bytes)`` computed with Python integers, so no overflow) before it
builds anything; arrays come back as read-only ``np.frombuffer`` views over the received bytes
(no copy, no allocation of the declared size).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from protocol.errors import ProtocolError, ValidationError

ND_MARKER = "__nd__"

#: dtype strings (numpy ``dtype.str``) that may cross the wire.
ALLOWED_DTYPES: frozenset[str] = frozenset(
    {"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<f2", "<f4", "<f8", "|b1"}
)

#: Upper bound on prod(non-zero dims) * itemsize, so numpy can represent any accepted shape
#: (including zero-size arrays such as (0, 2**62)).
MAX_EXTENT_BYTES = 1 << 48

_DESCRIPTOR_KEYS = frozenset({ND_MARKER, "dtype", "shape", "buf", "data"})


def wire_dtype(dtype: np.dtype) -> np.dtype:
    """The little-endian dtype ``dtype`` is sent as; raises ValidationError if it cannot travel.

    Big-endian variants of allowed dtypes are byte-swapped by the sender (a copy).
    """
    dtype = np.dtype(dtype)
    little = dtype.newbyteorder("<") if dtype.str.startswith(">") else dtype
    if little.str not in ALLOWED_DTYPES:
        raise ValidationError(
            f"arrays of dtype {dtype.str!r} cannot be sent; allowed: {sorted(ALLOWED_DTYPES)} "
            "(cast int64 to int32, float64 to float32 where that is exact enough)",
            code="bad_dtype",
        )
    return little


def contiguous_wire_array(array: np.ndarray) -> np.ndarray:
    """``array`` as a C-contiguous, little-endian array (no copy when it already is one)."""
    target = wire_dtype(array.dtype)
    if array.dtype != target:
        array = array.astype(target)
    # Not np.ascontiguousarray: it turns 0-d arrays into shape (1,).
    return array if array.flags.c_contiguous else array.copy(order="C")


def byte_view(array: np.ndarray) -> memoryview:
    """A flat ``memoryview`` of a C-contiguous array's bytes (zero-copy; ``len`` = ``nbytes``)."""
    return memoryview(array.reshape(-1).view(np.uint8))


def encode_array(array: np.ndarray, buffers: list[memoryview], inline_threshold: int) -> dict[str, Any]:
    """Descriptor for ``array``; appends a zero-copy buffer to ``buffers`` unless it goes inline.

    Arrays with ``nbytes < inline_threshold`` go inline as msgpack ``bin`` (one copy, cheaper than
    a zmq frame for small payloads); bigger ones become buffer frames.
    """
    wire = contiguous_wire_array(array)
    descriptor: dict[str, Any] = {ND_MARKER: True, "dtype": wire.dtype.str, "shape": list(wire.shape)}
    if wire.nbytes < inline_threshold:
        descriptor["data"] = wire.tobytes()
    else:
        descriptor["buf"] = len(buffers)
        buffers.append(byte_view(wire))
    return descriptor


def _bad(message: str) -> ProtocolError:
    return ProtocolError(message, code="bad_array")


def _checked_shape(shape: Any, max_ndim: int) -> tuple[int, ...]:
    if not isinstance(shape, list):
        raise _bad(f"array shape must be a list of ints, got {type(shape).__name__}")
    if len(shape) > max_ndim:
        raise _bad(f"array has {len(shape)} dimensions; at most {max_ndim} are allowed")
    for dim in shape:
        # bool is an int subclass: refuse it explicitly.
        if type(dim) is not int:
            raise _bad(f"array shape entries must be ints, got {type(dim).__name__} in {shape!r}")
        if dim < 0:
            raise _bad(f"array shape entries must be >= 0, got {shape!r}")
    return tuple(shape)


def checked_dtype(dtype: Any) -> np.dtype:
    """Parse a dtype string from the wire against the allow-list (never ``np.dtype`` on raw input)."""
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        shown = dtype if isinstance(dtype, str) else type(dtype).__name__
        raise ProtocolError(
            f"array dtype {str(shown)[:40]!r} is not allowed; allowed: {sorted(ALLOWED_DTYPES)}",
            code="bad_dtype",
        )
    return np.dtype(dtype)


def expected_nbytes(shape: Sequence[int], itemsize: int) -> int:
    """``prod(shape) * itemsize`` in exact (arbitrary-precision) integer arithmetic."""
    total = itemsize
    for dim in shape:
        total *= dim
    return total


def decode_array(
    descriptor: dict[str, Any],
    buffers: Sequence[memoryview],
    used: list[bool],
    max_ndim: int,
) -> np.ndarray:
    """Check a descriptor and return a read-only array view over its bytes (no allocation).

    ``used[i]`` records which buffer frames are claimed so a buffer cannot back two arrays.
    """
    if descriptor.get(ND_MARKER) is not True:
        raise _bad("array descriptor marker must be true")
    unknown = set(descriptor) - _DESCRIPTOR_KEYS
    if unknown:
        raise _bad(f"array descriptor has unknown keys {sorted(unknown)}")
    dtype = checked_dtype(descriptor.get("dtype"))
    shape = _checked_shape(descriptor.get("shape"), max_ndim)
    has_buf, has_data = "buf" in descriptor, "data" in descriptor
    if has_buf == has_data:
        raise _bad("array descriptor needs exactly one of 'buf' (frame index) or 'data' (inline bytes)")
    if has_data:
        data = descriptor["data"]
        if not isinstance(data, bytes):
            raise _bad(f"inline array data must be msgpack bin, got {type(data).__name__}")
        raw: memoryview = memoryview(data)
    else:
        index = descriptor["buf"]
        if type(index) is not int or not 0 <= index < len(buffers):
            raise _bad(f"array buffer index {index!r} is out of range (message has {len(buffers)} buffers)")
        if used[index]:
            raise _bad(f"buffer {index} is used by two arrays")
        used[index] = True
        raw = buffers[index]
    extent = expected_nbytes([dim for dim in shape if dim], dtype.itemsize)
    if extent > MAX_EXTENT_BYTES:
        # Zero-size arrays with absurd other dims: numpy cannot even represent the shape.
        raise _bad(f"array shape {list(shape)} is too large to represent")
    nbytes = expected_nbytes(shape, dtype.itemsize)
    if nbytes != raw.nbytes:
        raise _bad(
            f"array of shape {list(shape)} and dtype {dtype.str} needs {nbytes} bytes "
            f"but its buffer holds {raw.nbytes}"
        )
    count = nbytes // dtype.itemsize
    array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
    array.flags.writeable = False
    return array
