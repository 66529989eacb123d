"""Helpers of the cluster tests and ``bench/cluster.py``: the shared worker pool's options."""

from __future__ import annotations

from backend.executors import ExecutorOptions

#: Actor name prefix shared by the tests (created once, reused: Ray start-up is the slow part).
POOL = "recast4d-tests"


def ray_options(workers: int, pool: str = POOL) -> ExecutorOptions:
    """A Ray executor on the CPU-only test cluster: ``workers`` actors, no GPUs."""
    return ExecutorOptions(kind="ray", workers=workers, gpus_per_worker=0, pool=pool, cancel_grace_s=10.0)


def worker_actor(ray, index: int = 0, pool: str = POOL):
    """The Ray handle of worker ``index`` of ``pool``."""
    return ray.get_actor(f"{pool}-{index}", namespace="recast4d")
