"""One real local Ray instance for the cluster tests (head on loopback, 2 CPUs, no GPU).

Ray takes seconds to start on two shared cores, so the tests share one instance (session fixture)
and one pool of worker actors (``POOL``); the fixture shuts Ray down, which stops every process it
started. The worker pool is ``clusterkit.POOL``. The worker actors import the test job kinds, so this folder and ``tests/server`` are put
on the PYTHONPATH the workers inherit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SERVER_TESTS = HERE.parent / "server"
REPO = HERE.parent.parent
for folder in (str(HERE), str(SERVER_TESTS)):
    if folder not in sys.path:
        sys.path.insert(0, folder)

@pytest.fixture(scope="session")
def ray_cluster():
    """``ray`` initialised on a private local instance for this test session; shut down afterwards."""
    ray = pytest.importorskip("ray", reason="the cluster tests need Ray: pip install 'recast4d[cluster]'")
    import cluster_kinds  # noqa: F401  (register the kinds before the first pool takes their modules)
    import jobkinds_for_tests  # noqa: F401

    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(SERVER_TESTS), str(REPO),
                                                os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    os.environ.setdefault("RECAST4D_GPU_PROBE", "0")
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, namespace="recast4d", log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        yield ray
    finally:
        ray.shutdown()
