"""Disk writes that survive a full disk: ordinary writes and reserved space, never written mmaps.

A write into a memory-mapped file whose blocks cannot be allocated kills the process with SIGBUS;
an ordinary ``write``/``pwrite`` fails with ``ENOSPC`` instead, which becomes a typed
:class:`protocol.errors.DiskFull` for the one job that needed the space.

- :class:`InputFile`: a job input (``inputs/<name>.npy``). The ``.npy`` header is written and the
  data area reserved with ``posix_fallocate`` when the upload starts (a full disk is noticed
  before any chunk is accepted); chunks are written with ``pwrite`` at their row offset, opening
  the file only for the write (no descriptor is held between chunks).
- :class:`SpaceReserve`: a small pre-allocated file in the jobs folder, given up when a state file
  cannot be written, so a job's final state still reaches the disk when everything else is full.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protocol.errors import DiskFull

#: errno values that mean "no space" (a full file system, or the user's quota).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def is_disk_full(exc: BaseException) -> bool:
    """True for an ``OSError`` that says the file system (or quota) is full."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_error(what: str, exc: OSError) -> DiskFull:
    """The typed error for a failed write of ``what`` (names the file, says what to do)."""
    return DiskFull(f"the server's disk is full: could not write {what} ({exc.strerror}); free some space on "
                    "the server (or point --jobs-dir elsewhere) and submit the job again")


def reserve_space(fd: int, offset: int, length: int) -> None:
    """Allocate ``length`` bytes at ``offset`` of an open file (``posix_fallocate`` where available).

    Elsewhere the file is only extended (sparse); the later ``pwrite`` then reports a full disk.
    """
    if length <= 0:
        return
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, offset, length)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                raise
    os.ftruncate(fd, offset + length)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        if hasattr(os, "pwrite"):
            written = os.pwrite(fd, data, offset)
        else:  # Windows
            os.lseek(fd, offset, os.SEEK_SET)
            written = os.write(fd, data)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        data, offset = data[written:], offset + written


@dataclass(frozen=True)
class InputFile:
    """A declared input stored as a C-order ``.npy`` file, filled row block by row block (axis 0).

    ``data_offset`` is where the array bytes start (after the ``.npy`` header, 64-byte aligned).
    """

    path: Path
    dtype: np.dtype
    shape: tuple[int, ...]
    data_offset: int

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (one frame) along axis 0."""
        return int(np.prod(self.shape[1:], dtype=object)) * self.dtype.itemsize if self.shape else 0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize

    @classmethod
    def create(cls, path: Path, dtype: str, shape: tuple[int, ...]) -> InputFile:
        """Write the header and reserve the data area; raises :class:`DiskFull` (file removed) if full."""
        dt = np.dtype(dtype)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
            try:
                with os.fdopen(os.dup(fd), "wb", closefd=True) as fh:
                    np.lib.format.write_array_header_1_0(
                        fh, {"descr": dt.str, "fortran_order": False, "shape": tuple(shape)})
                    fh.flush()
                    offset = fh.tell()
                nbytes = int(np.prod(shape, dtype=object)) * dt.itemsize
                reserve_space(fd, offset, nbytes)
            finally:
                os.close(fd)
        except OSError as exc:
            path.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise disk_full_error(f"input {path.stem!r} ({path})", exc) from None
            raise
        return cls(path=path, dtype=dt, shape=tuple(shape), data_offset=offset)

    def write_rows(self, start: int, data: np.ndarray) -> None:
        """Write ``data`` (C-contiguous, this dtype) as rows ``start, start+1, ...``; DiskFull if full."""
        view = memoryview(np.ascontiguousarray(data)).cast("B")
        try:
            fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_BINARY", 0))
            try:
                _pwrite_all(fd, view, self.data_offset + start * self.row_bytes)
            finally:
                os.close(fd)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(f"input {self.path.stem!r} ({self.path})", exc) from None
            raise

    def sync(self) -> None:
        """Flush the file to stable storage (called once the upload is complete)."""
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class SpaceReserve:
    """A pre-allocated file (``size`` bytes) that is deleted to make room for a job's last state.

    :meth:`release` frees the space (returns whether there was any to free); :meth:`restore`
    allocates it again and returns False when the disk is still full.
    """

    def __init__(self, path: Path, size: int = 1 << 20) -> None:
        self.path = path
        self.size = size
        self.restore()

    @property
    def held(self) -> bool:
        return self.path.exists()

    def restore(self) -> bool:
        if self.held:
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
            try:
                reserve_space(fd, 0, self.size)
                if not hasattr(os, "posix_fallocate"):  # ftruncate left it sparse: fill it
                    _pwrite_all(fd, memoryview(bytes(self.size)), 0)
            finally:
                os.close(fd)
        except OSError:
            self.path.unlink(missing_ok=True)
            return False
        return True

    def release(self) -> bool:
        if not self.held:
            return False
        self.path.unlink(missing_ok=True)
        return True
