"""The job store on disk, the job-kind registry and the worker, without sockets."""

from __future__ import annotations

import json
import stat
import threading
import time

import numpy as np
import pytest

from backend.jobs import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    JobIdConflict,
    JobStore,
    Worker,
    get_job_kind,
    load_job_kind_modules,
    parse_input_specs,
    register_job_kind,
    unregister_job_kind,
)
from backend.jobs.chunks import read_chunk, write_chunk
from protocol.errors import ValidationError


def test_chunk_file_round_trip_keeps_bytes_dtypes_and_meta(tmp_path):
    arrays = {
        "xyz": np.arange(30, dtype=np.float32).reshape(10, 3),
        "rgb": np.arange(30, dtype=np.uint8).reshape(10, 3),
        "empty": np.zeros((0, 4), np.float16),
        "big_endian": np.arange(4, dtype=">i4"),
        "strided": np.arange(20, dtype=np.float64)[::2],
    }
    write_chunk(tmp_path / "c.chunk", arrays, {"frame": 3, "name": "x"})
    back = read_chunk(tmp_path / "c.chunk")
    assert back.meta == {"frame": 3, "name": "x"}
    for name, array in arrays.items():
        assert back.arrays[name].dtype.byteorder in ("<", "|", "=")
        np.testing.assert_array_equal(back.arrays[name], array)
        assert not back.arrays[name].flags.writeable
    with pytest.raises(ValidationError):
        write_chunk(tmp_path / "bad.chunk", {"o": np.array([object()])}, {})


def test_create_is_idempotent_and_conflicts_on_different_params(tmp_path):
    store = JobStore(tmp_path)
    record, created = store.create("a", "k", {"x": 1}, {})
    again, created_again = store.create("a", "k", {"x": 1}, {})
    assert created and not created_again and again is record
    with pytest.raises(JobIdConflict) as info:
        store.create("a", "k", {"x": 2}, {})
    assert info.value.code == "job_id_conflict"
    for bad in ("../escape", ".hidden", "", "a/b", "x" * 200):
        with pytest.raises(ValidationError):
            store.create(bad, "k", {}, {})


def test_state_is_json_on_disk_and_restart_marks_interrupted_jobs_failed_retryable(tmp_path):
    store = JobStore(tmp_path)
    store.create("finished", "k", {}, {})
    store.append_chunk("finished", "points", {"xyz": np.ones((4, 3), np.float32)}, {"frame": 0})
    store.transition("finished", DONE)
    store.create("queued", "k", {}, {})
    store.create("running", "k", {}, {})
    store.transition("running", "running")
    state = json.loads((tmp_path / "finished" / "state.json").read_text())
    assert state["state"] == DONE and state["streams"]["points"]["chunks"] == 1

    restarted = JobStore(tmp_path)
    assert sorted(restarted.recover()) == ["queued", "running"]
    for job_id in ("queued", "running"):
        record = restarted.get(job_id)
        assert record.state == FAILED and record.error["retryable"] is True
    assert restarted.get("finished").state == DONE
    np.testing.assert_array_equal(restarted.read_chunk("finished", "points", 0).arrays["xyz"], np.ones((4, 3)))
    assert "server restarted" in (tmp_path / "running" / "log.txt").read_text()


def test_transition_is_compare_and_set(tmp_path):
    store = JobStore(tmp_path)
    store.create("j", "k", {}, {})
    assert store.transition("j", CANCELLED, from_states={QUEUED})
    assert not store.transition("j", DONE, from_states={"running"})
    assert store.get("j").state == CANCELLED


def test_input_specs_are_checked_before_allocation():
    specs = parse_input_specs({"a": {"dtype": "<f4", "shape": [2, 3], "nbytes": 24}}, max_job_bytes=100)
    assert specs["a"].nbytes == 24
    with pytest.raises(ValidationError):
        parse_input_specs({"a": {"dtype": "<f4", "shape": [2**30, 2**30]}}, max_job_bytes=1 << 30)
    with pytest.raises(ValidationError):
        parse_input_specs({"a": {"dtype": "|O", "shape": [1]}}, max_job_bytes=100)
    with pytest.raises(ValidationError):
        parse_input_specs({"a": {"dtype": "<f4", "shape": [2], "nbytes": 9}}, max_job_bytes=100)


def test_registry_unknown_kind_lists_known_ones_and_refuses_silent_replacement():
    def run(ctx):
        pass

    register_job_kind("unit.kind", run)
    try:
        with pytest.raises(ValueError):
            register_job_kind("unit.kind", lambda ctx: None)
        with pytest.raises(ValidationError) as info:
            get_job_kind("unit.nope")
        assert info.value.code == "unknown_kind" and "unit.kind" in str(info.value)
    finally:
        unregister_job_kind("unit.kind")
    assert load_job_kind_modules(["backend.no_such_module_here"]) == []


class _Events:
    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []
        self.progress: list[tuple[str, int]] = []
        self.done = threading.Event()

    def job_progress(self, job_id, stage, step, total, message):
        self.progress.append((stage, step))

    def job_stream(self, job_id, stream, manifest):
        pass

    def job_chunk(self, job_id, stream, chunk):
        pass

    def job_state(self, job_id, state, error):
        self.states.append((job_id, state))
        if state != "running":
            self.done.set()


def test_worker_runs_fifo_with_context_and_reports_failures_typed(tmp_path):
    order = []

    def run(ctx):
        order.append(ctx.job_id)
        progress, cancel = ctx.stage_callbacks("lift")
        progress(1, 2, "half")
        assert not cancel()
        if ctx.params.get("fail"):
            raise ValidationError("bad frames", code="invalid_input")
        if ctx.params.get("crash"):
            raise RuntimeError("boom")
        (ctx.output_dir / "scene.usdc").write_bytes(b"usd")
        ctx.emit("points", {"xyz": np.zeros((2, 3), np.float32)}, {"frame": 0})

    register_job_kind("unit.worker", run)
    store = JobStore(tmp_path)
    events = _Events()
    worker = Worker(store, events)
    worker.start()
    try:
        for job_id, params in (("w1", {}), ("w2", {"fail": True}), ("w3", {"crash": True})):
            store.create(job_id, "unit.worker", params, {})
            worker.enqueue(job_id)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(store.get(j).terminal for j in ("w1", "w2", "w3")):
            time.sleep(0.01)
    finally:
        worker.stop()
        unregister_job_kind("unit.worker")
    assert order == ["w1", "w2", "w3"]
    assert store.get("w1").state == DONE and (tmp_path / "w1" / "outputs" / "scene.usdc").exists()
    assert store.get("w2").error["code"] == "invalid_input"
    assert store.get("w3").error["code"] == "internal" and "boom" in store.get("w3").error["message"]
    assert "Traceback" in (tmp_path / "w3" / "log.txt").read_text()
    assert ("lift", 1) in events.progress


def test_job_folder_permissions_and_files(tmp_path):
    store = JobStore(tmp_path)
    store.create("f", "k", {"p": 1}, parse_input_specs({"a": {"dtype": "|u1", "shape": [4]}}, max_job_bytes=10))
    target = store.open_input("f", "a")
    target.write_rows(0, np.array([1, 2], dtype=np.uint8))
    target.write_rows(2, np.array([3, 4], dtype=np.uint8))
    target.sync()
    assert store.input_complete("f", "a") == []
    np.testing.assert_array_equal(store.load_inputs("f")["a"], [1, 2, 3, 4])
    for name in ("request.json", "state.json", "log.txt", "inputs/a.npy"):
        assert (tmp_path / "f" / name).is_file(), name
    assert stat.S_ISDIR((tmp_path / "f" / "outputs").stat().st_mode)
