"""The default executor: jobs run in the server process, FIFO, one at a time (nothing to install).

It is :class:`backend.jobs.worker.Worker`, the server's worker thread; named here so that both
executors live side by side (``backend.executors.make_executor``).
"""

from backend.jobs.worker import Worker as InProcessExecutor

__all__ = ["InProcessExecutor"]
