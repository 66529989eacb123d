"""Shared pytest set-up: offline hub, one torch thread, marker skips (gpu without CUDA, blender without bpy)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Test tensors are tiny: one intra-op thread avoids OpenMP spin-waiting when the cores are shared
# with the server and Blender subprocesses the tests start (measured: a 2.7 s fit took 38 s with 2).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Shared test helpers (``tiny_models``: the tiny random model recipes) import from any test folder.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_bpy = importlib.util.find_spec("bpy") is not None
    cuda = None
    for item in items:
        if "gpu" in item.keywords:
            if cuda is None:
                cuda = _has_cuda()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "blender" in item.keywords and not has_bpy:
            item.add_marker(pytest.mark.skip(reason="needs the bpy wheel (pip install bpy==5.0.1)"))


@pytest.fixture
def bpy_clean():
    """A fresh, empty factory scene; returns the ``bpy`` module (skips without the bpy wheel)."""
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy


@pytest.fixture
def registered_addon(bpy_clean):
    """The add-on registered in-process (the checkout's ``addon`` package), unregistered afterwards."""
    import addon

    addon.register()
    try:
        yield addon
    finally:
        addon.unregister()


class RecordingClient:
    """Stands in for the add-on's threaded client: records what is submitted, hands out no events
    (a test double for the backend connection, not a shipped feature)."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str, dict, dict]] = []

    def submit(self, job_id: str, kind: str, params: dict, inputs: dict) -> None:
        self.submitted.append((job_id, kind, params, inputs))

    def poll_events(self, max_items: int, time_budget_s: float) -> list:
        return []

    def consumed(self, job_id: str, stream: str, chunk: int) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def recording_client(registered_addon):
    """A :class:`RecordingClient` attached to the add-on's session as a connected backend."""
    from addon import session

    client = RecordingClient()
    session.attach_client(client, start_timer=False)
    session.state().status["connected"] = True  # the backend answered (welcome)
    yield client
    session.detach_client()
