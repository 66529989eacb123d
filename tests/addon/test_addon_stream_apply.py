"""Applying result chunks in the timer tick: several per tick within budget, superseded previews skipped."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.blender


def _chunk_event(job_id: str, stream: str, index: int, arrays: dict, meta: dict | None = None):
    from protocol import messages as m
    from protocol.client.core import Event

    message = m.ResultChunk(job_id=job_id, stream=stream, chunk=index, frame_idx=index, arrays=arrays)
    return Event(type=message.TYPE, job_id=job_id, stream=stream, chunk=index, message=message, meta=meta or {})


class CreditRecorder:
    def __init__(self) -> None:
        self.credits: list[tuple[str, int]] = []

    def poll_events(self, max_items: int, time_budget_s: float) -> list:
        return []

    def consumed(self, job_id: str, stream: str, chunk: int) -> None:
        self.credits.append((stream, chunk + 1))

    def close(self) -> None:
        pass


def _job(bpy, tmp_path):
    job = bpy.context.scene.recast4d.jobs.add()
    job.name, job.job_id, job.state = "apply", "job-apply", "RUNNING"
    job.result_dir = str(tmp_path / "results")
    return job


def test_one_tick_applies_every_cheap_file_piece(registered_addon, tmp_path):
    import bpy

    from addon import results_stream, session
    from protocol import messages as m

    job = _job(bpy, tmp_path)
    client = CreditRecorder()
    session.attach_client(client, start_timer=False)
    try:
        data = np.arange(40 * 1000, dtype=np.int64).astype(np.uint8)
        results_stream.apply_event("result.begin", m.ResultBegin(job_id=job.job_id, stream="file.a.bin", chunks=40,
                                                                 meta={"filename": "a.bin"}), session.state().status)
        for i in range(40):
            session.state().pending_chunks.append(
                _chunk_event(job.job_id, "file.a.bin", i, {"data": data[i * 1000:(i + 1) * 1000]}))
        delay = session.tick()
        assert [ack for _, ack in client.credits] == list(range(1, 41))  # all 40 in one tick, in order
        assert not session.state().pending_chunks
        assert delay == session.ACTIVE_INTERVAL_S  # nothing left waiting: back to the normal cadence
    finally:
        session.detach_client()


def test_a_preview_frame_with_a_newer_one_waiting_is_counted_not_drawn(registered_addon, tmp_path, monkeypatch):
    import bpy

    from addon import results_stream, session

    job = _job(bpy, tmp_path)
    drawn: list[float] = []
    real_update = results_stream.update_preview

    def spy(scene, job_, xyz, rgb):
        drawn.append(float(xyz[0, 0]))
        return real_update(scene, job_, xyz, rgb)

    monkeypatch.setattr(results_stream, "update_preview", spy)
    client = CreditRecorder()
    session.attach_client(client, start_timer=False)
    try:
        for i in range(5):
            xyz = np.full((100, 3), float(i), np.float32)
            session.state().pending_chunks.append(
                _chunk_event(job.job_id, "points", i, {"xyz": xyz, "rgb": np.zeros((100, 3), np.uint8)}))
        while session.state().pending_chunks:
            session.apply_one_chunk()
        assert drawn == [4.0]  # only the newest frame is built; 0-3 were superseded while waiting
        assert job.frames_received == 5
        assert [ack for _, ack in client.credits] == [1, 2, 3, 4, 5]
        preview = bpy.data.objects[f"{job.name}{results_stream.PREVIEW_SUFFIX}"]
        assert np.allclose(np.array([v.co[:] for v in preview.data.vertices]), 4.0)
    finally:
        session.detach_client()
