"""On-disk format of one persisted result chunk (a few numpy arrays plus a small meta dict).

A chunk file is written once (to a temporary name, then renamed) and read back whenever the
chunk is streamed, so a restarted server can re-send byte-identical data. Layout::

    b"R4DCHNK1"                 8 bytes magic
    header length               4 bytes, little-endian uint32
    header                      msgpack map {meta, arrays: [{name, dtype, shape, offset, nbytes}]}
    padding + array bytes       each array C-contiguous, starting at a 64-byte aligned offset

Only numpy dtypes from :data:`ALLOWED_DTYPES` (little-endian numeric) are stored; no pickle.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from protocol.errors import ValidationError

MAGIC = b"R4DCHNK1"
_ALIGN = 64
ALLOWED_DTYPES = frozenset({"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<f2", "<f4", "<f8", "|b1"})


@dataclass(frozen=True)
class StoredChunk:
    """A chunk read back from disk: ``arrays`` are read-only views into one buffer; ``nbytes`` sums them."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    nbytes: int


def normalise_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return C-contiguous little-endian copies/views of ``arrays``; raise ValidationError otherwise."""
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise ValidationError(f"array names must be non-empty strings, got {name!r}")
        arr = np.asarray(value)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        if arr.dtype.str not in ALLOWED_DTYPES:
            raise ValidationError(
                f"array {name!r} has dtype {arr.dtype.str}; allowed: {', '.join(sorted(ALLOWED_DTYPES))}"
            )
        out[name] = np.ascontiguousarray(arr)
    return out


def write_chunk(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> int:
    """Write one chunk atomically to ``path``; returns the number of array bytes stored."""
    arrays = normalise_arrays(arrays)
    entries = []
    offset = 0
    for name, arr in arrays.items():
        offset = -(-offset // _ALIGN) * _ALIGN
        entries.append(
            {"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset, "nbytes": arr.nbytes}
        )
        offset += arr.nbytes
    header = msgpack.packb({"meta": meta, "arrays": entries}, use_bin_type=True)
    prefix = MAGIC + struct.pack("<I", len(header)) + header
    data_start = -(-len(prefix) // _ALIGN) * _ALIGN
    tmp = path.with_name(path.name + ".tmp")
    try:  # ordinary writes: a full disk is an OSError (ENOSPC), never a SIGBUS
        with open(tmp, "wb") as fh:
            fh.write(prefix)
            fh.write(b"\0" * (data_start - len(prefix)))
            written = 0
            for entry, arr in zip(entries, arrays.values()):
                pad = entry["offset"] - written
                if pad:
                    fh.write(b"\0" * pad)
                fh.write(memoryview(arr).cast("B") if arr.nbytes else b"")
                written = entry["offset"] + entry["nbytes"]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sum(arr.nbytes for arr in arrays.values())


def read_chunk(path: Path) -> StoredChunk:
    """Read a chunk written by :func:`write_chunk`; arrays are read-only views of a memory map.

    Mapping instead of reading saves a copy: the server hands these views to ZeroMQ zero-copy,
    so the bytes go from the page cache straight to the socket. The map stays alive as long as
    any array (or a ZeroMQ frame still being sent) refers to it.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 12:
            raise OSError(f"result chunk {path} is damaged (truncated)")
        if hasattr(mmap, "MAP_POPULATE"):  # Linux: fault the pages in one go, not one by one while sending
            mapped = mmap.mmap(fh.fileno(), size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
        else:
            mapped = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ)
    buf = memoryview(mapped)
    if bytes(buf[:8]) != MAGIC:
        raise OSError(f"result chunk {path} is damaged (bad magic)")
    (hlen,) = struct.unpack_from("<I", buf, 8)
    header = msgpack.unpackb(bytes(buf[12 : 12 + hlen]), raw=False)
    data_start = -(-(12 + hlen) // _ALIGN) * _ALIGN
    arrays: dict[str, np.ndarray] = {}
    total = 0
    for entry in header["arrays"]:
        start = data_start + int(entry["offset"])
        nbytes = int(entry["nbytes"])
        if start + nbytes > size:
            raise OSError(f"result chunk {path} is truncated")
        dtype = np.dtype(entry["dtype"])
        if nbytes == 0:
            arr = np.empty(entry["shape"], dtype=dtype)
        else:
            arr = np.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize, offset=start)
            arr = arr.reshape(entry["shape"])
        arr.flags.writeable = False
        arrays[entry["name"]] = arr
        total += nbytes
    return StoredChunk(meta=dict(header.get("meta") or {}), arrays=arrays, nbytes=total)
