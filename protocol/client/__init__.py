"""Clients of the Recast 4D backend (numpy, msgpack, pyzmq only; the Blender add-on bundles this).

- :class:`BlockingClient`: everything on the caller's thread (tests, CLI, ``blender -b``).
- :class:`ThreadedClient`: one I/O thread owns the socket; the caller sends commands and drains
  events with ``poll_events(max_items, time_budget_s)`` without ever blocking (Blender timers).
"""

from .blocking import BlockingClient, JobRejectedError, JobResult, ServerTimeout, StreamResult
from .core import Connection, Event
from .threaded import ThreadedClient

__all__ = ["BlockingClient", "Connection", "Event", "JobRejectedError", "JobResult", "ServerTimeout",
           "StreamResult", "ThreadedClient"]
