"""Executor options and failures that need no Ray instance: typed errors that say what to do."""

from __future__ import annotations

import sys

import pytest

from backend.cli import build_parser, executor_options
from backend.executors import ExecutorOptions, make_executor
from backend.executors.engine_cache import (
    EngineCache,
    active_engine_cache,
    disable_engine_cache,
    enable_engine_cache,
)
from backend.jobs import JobStore
from protocol.errors import Recast4DError, ValidationError


@pytest.mark.parametrize("kwargs, field", [({"kind": "slurm"}, "executor"), ({"kind": "ray", "workers": 0}, "ray-workers"),
                                           ({"kind": "ray", "gpus_per_worker": -1}, "ray-gpus-per-worker")])
def test_bad_executor_options_are_refused_by_name(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        ExecutorOptions(**kwargs)


def test_serve_flags_become_executor_options():
    args = build_parser(builtin_only=True).parse_args(
        ["serve", "--executor", "ray", "--ray-address", "10.0.0.5:6379", "--ray-workers", "3",
         "--ray-gpus-per-worker", "0.5"])
    options = executor_options(args)
    assert (options.kind, options.ray_address, options.workers, options.gpus_per_worker) == \
        ("ray", "10.0.0.5:6379", 3, 0.5)
    assert executor_options(build_parser(builtin_only=True).parse_args(["serve"])).kind == "inprocess"


def test_without_ray_installed_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(Recast4DError, match=r"pip install 'recast4d\[cluster\]'") as info:
        make_executor(ExecutorOptions(kind="ray"), JobStore(tmp_path / "jobs"))
    assert info.value.code == "missing_package"


def test_the_engine_cache_builds_once_per_key_and_only_when_enabled():
    from backend.engines import get_inpaint_engine

    disable_engine_cache()
    try:
        assert active_engine_cache() is None
        first, second = get_inpaint_engine("classical"), get_inpaint_engine("classical")
        assert first is not second  # default: one engine per job, as before
        cache = enable_engine_cache(capacity=1)
        first, second = get_inpaint_engine("classical"), get_inpaint_engine("classical")
        assert first is second and cache.builds == 1 and cache.hits == 1
        assert EngineCache.key("inpaint", "x", "/m", {"fn": object()}) is None  # not plain data: not cached
    finally:
        disable_engine_cache()
