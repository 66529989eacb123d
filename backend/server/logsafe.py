"""Log hygiene: peer-supplied text is sanitised before it reaches a log line, rejections are rate-limited.

A message type or job id comes from the peer; logged raw it could forge log lines (newlines),
carry NUL bytes or terminal escapes. :func:`safe` turns any value into a short printable repr.
:class:`RateLimiter` lets through at most ``burst`` lines per ``period_s`` per key and counts the
rest, so a peer sending garbage cannot fill the disk with INFO lines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


def safe(value: object, limit: int = 80) -> str:
    """A printable, single-line, length-capped rendering of a peer-supplied value (``repr`` escapes)."""
    text = value if isinstance(value, str) else repr(value)
    cleaned = "".join(ch if ch.isprintable() and ch.isascii() else ascii(ch)[1:-1] for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + f"...({len(cleaned)} chars)"


def peer_id(identity: bytes) -> str:
    """The full routing id of a peer in hex (ZeroMQ ids are 5 bytes by default: all of it, no prefix)."""
    return identity.hex()


@dataclass
class RateLimiter:
    """At most ``burst`` events per ``period_s`` per key; :meth:`allow` says whether to log this one."""

    burst: int = 10
    period_s: float = 60.0
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict)
    suppressed: int = 0

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self.period_s:
            start, count = now, 0
        count += 1
        if len(self._windows) > 1024:  # bounded whatever the peers do
            self._windows.clear()
        self._windows[key] = (start, count)
        if count > self.burst:
            self.suppressed += 1
            return False
        return True
