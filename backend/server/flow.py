"""Per-client flow-control state: result streams sent under credit, uploads received under credit.

Credit is counted in chunks. For a result stream the client grants ``(ack, window)``: it has
consumed chunks ``0 .. ack-1`` and the server may send chunk ``k`` only while ``k < ack + window``.
Acks are cumulative, so duplicate or stale credits are no-ops. Uploads use the same rule with the
roles swapped: the server grants ``upload.credit{ack, window}`` as it writes chunks to disk.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.jobs.disk import InputFile


@dataclass
class StreamSender:
    """Sending state of one result stream of one job to one client."""

    job_id: str
    stream: str
    window: int
    next_chunk: int = 0
    ack: int = 0
    begun: bool = False
    ended: bool = False

    def may_send(self, persisted_chunks: int) -> bool:
        """True if chunk ``next_chunk`` exists on disk and fits in the granted window."""
        return (
            not self.ended and self.next_chunk < persisted_chunks and self.next_chunk < self.ack + self.window
        )

    def grant(self, ack: int, window: int, max_window: int) -> None:
        """Apply a cumulative credit; acks beyond what was sent are clamped, stale ones ignored."""
        self.ack = max(self.ack, min(int(ack), self.next_chunk))
        self.window = max(1, min(int(window), max_window))

    def restart_from(self, chunk: int) -> None:
        """Resend from ``chunk`` (after a reconnect): chunks before it count as consumed."""
        self.next_chunk = self.ack = max(0, int(chunk))
        self.begun = False
        self.ended = False


@dataclass
class UploadReceiver:
    """Receiving state of one declared input, uploaded as consecutive frame ranges along axis 0.

    Bytes go straight into the job's ``.npy`` file with ordinary writes (no RAM proportional to the
    input, no descriptor held between chunks, a full disk is a typed ``disk_full``).
    ``last_activity`` (monotonic seconds) is when the upload started or last received a chunk.
    """

    job_id: str
    name: str
    target: InputFile
    window: int
    owner: bytes = b""  # routing id of the client that uploads (its session may reconnect)
    session: str = ""  # the owning client session
    received: int = 0  # chunks written
    frames: int = 0  # frames (rows along axis 0) written
    last_activity: float = field(default_factory=time.monotonic)

    @property
    def total_frames(self) -> int:
        return int(self.target.shape[0]) if self.target.ndim else 1

    @property
    def complete(self) -> bool:
        return self.frames >= self.total_frames

    def write(self, chunk: int, frame_range: tuple[int, int], arrays: dict[str, np.ndarray]) -> bool:
        """Write chunk ``chunk`` holding frames ``[start, stop)``; raises ValueError with a reason.

        Returns False for a duplicate of a chunk already written (a client resending after a
        reconnect): it is ignored. Raises :class:`protocol.errors.DiskFull` when the disk is full.
        """
        self.last_activity = time.monotonic()
        if chunk < self.received:
            return False
        if chunk != self.received:
            raise ValueError(f"upload chunk {chunk} of {self.name!r} arrived, expected chunk {self.received}")
        start, stop = frame_range
        if start != self.frames or stop > self.total_frames or stop <= start:
            raise ValueError(f"upload chunk {chunk} of {self.name!r} covers frames [{start}, {stop}); expected "
                             f"frames from {self.frames} up to {self.total_frames}")
        if len(arrays) != 1:
            raise ValueError(f"upload chunk {chunk} of {self.name!r} must carry exactly one array")
        (data,) = arrays.values()
        expected_shape = (stop - start, *self.target.shape[1:])
        if data.dtype != self.target.dtype or tuple(data.shape) != expected_shape:
            raise ValueError(f"upload chunk {chunk} of {self.name!r} is {data.dtype.str} {list(data.shape)}; "
                             f"expected {self.target.dtype.str} {list(expected_shape)}")
        self.target.write_rows(start, data)
        self.frames = stop
        self.received += 1
        return True


@dataclass
class ClientState:
    """A connected client (one DEALER routing id)."""

    identity: bytes
    session: str = ""
    name: str = ""
    last_seen: float = field(default_factory=time.monotonic)
    jobs: set[str] = field(default_factory=set)
    senders: dict[tuple[str, str], StreamSender] = field(default_factory=dict)
    outbox: deque[Any] = field(default_factory=deque)
    welcomed: bool = False

    def senders_for(self, job_id: str) -> list[StreamSender]:
        return [s for (j, _), s in self.senders.items() if j == job_id]
