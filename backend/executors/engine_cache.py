"""Engines kept loaded between jobs in one process (cluster workers), so a second job does not reload weights.

The registry (:mod:`backend.engines.registry`) asks :func:`active_engine_cache` before it builds an
engine; the cache is off unless a process turns it on with :func:`enable_engine_cache` (the Ray
worker actors do; the in-process server keeps its one-job-one-load behaviour, so GPU memory is
free between jobs on an artist's machine). Engines are keyed by (kind, name, models folder,
options); options that are not plain JSON data are never cached. At most ``capacity`` engines
are kept, least recently used first out.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

_ACTIVE: EngineCache | None = None


class EngineCache:
    """A small LRU of built engines; ``builds`` counts how often an engine had to be built."""

    def __init__(self, capacity: int = 2) -> None:
        if capacity < 1:
            raise ValueError("an engine cache holds at least one engine")
        self.capacity = capacity
        self.builds = 0
        self.hits = 0
        self._engines: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(kind: str, name: str, models_dir: str, options: dict[str, Any]) -> str | None:
        """The cache key, or None when ``options`` are not plain data (then the engine is not cached)."""
        try:
            return json.dumps([kind, name, models_dir, options], sort_keys=True)
        except (TypeError, ValueError):
            return None

    def get_or_build(self, key: str | None, build: Callable[[], Any]) -> Any:
        """The engine cached under ``key``, else ``build()`` (kept when ``key`` is not None)."""
        if key is not None:
            with self._lock:
                if key in self._engines:
                    self._engines.move_to_end(key)
                    self.hits += 1
                    return self._engines[key]
        engine = build()  # outside the lock: loading weights takes seconds
        with self._lock:
            self.builds += 1
            if key is not None:
                self._engines[key] = engine
                while len(self._engines) > self.capacity:
                    self._engines.popitem(last=False)
        return engine

    def clear(self) -> None:
        with self._lock:
            self._engines.clear()


def enable_engine_cache(capacity: int = 2) -> EngineCache:
    """Keep engines loaded in this process from now on; returns the (new or existing) cache."""
    global _ACTIVE
    if _ACTIVE is None or _ACTIVE.capacity != capacity:
        _ACTIVE = EngineCache(capacity)
    return _ACTIVE


def disable_engine_cache() -> None:
    global _ACTIVE
    _ACTIVE = None


def active_engine_cache() -> EngineCache | None:
    """The process's engine cache, or None when engines are built per job (the default)."""
    return _ACTIVE
