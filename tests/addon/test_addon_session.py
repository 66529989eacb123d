"""The timer tick stays responsive against a slow event stream; events update the job list.

``SlowFakeClient`` behaves like ``protocol.client.ThreadedClient`` from the main thread's side: a
producer thread (the "backend") pushes real protocol message objects into a queue with delays, and
``poll_events(max_items, time_budget_s)`` drains it for at most the budget.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.blender


class SlowFakeClient:
    def __init__(self, events: list, delay_s: float) -> None:
        self._queue: queue.Queue = queue.Queue()
        self.credits: list[tuple[str, str, int]] = []
        self.closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(events, delay_s), daemon=True)
        self._thread.start()

    def _produce(self, events, delay_s) -> None:
        for event in events:
            if self._stop.wait(delay_s):
                return
            self._queue.put(event)

    def poll_events(self, max_items: int, time_budget_s: float) -> list:
        out, deadline = [], time.perf_counter() + time_budget_s
        while len(out) < max_items:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                out.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return out

    def consumed(self, job_id: str, stream: str, chunk: int) -> None:
        self.credits.append((job_id, stream, chunk + 1))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.closed = True


def _wrap(message, meta=None):
    """The client's ``Event`` around a typed message, as the real client thread delivers it."""
    from protocol.client.core import Event

    return Event(type=message.TYPE, job_id=getattr(message, "job_id", None), stream=getattr(message, "stream", None),
                 chunk=getattr(message, "chunk", None), message=message, meta=meta or {})


def _event_stream(job_id: str, frames: int, points: int, usd_bytes: bytes) -> list:
    from protocol import messages as m

    rng = np.random.default_rng(0)
    events = [m.JobAccepted(job_id=job_id), m.JobStatus(job_id=job_id, state="running")]
    for step in range(1, 6):
        events.append(m.Progress(job_id=job_id, stage="depth", step=step, total=5))
    events.append(m.ResultBegin(job_id=job_id, stream="points", chunks=frames, frames=frames))
    for i in range(frames):
        events.append(m.Progress(job_id=job_id, stage="render", step=i + 1, total=frames))
        xyz = rng.normal(size=(points, 3)).astype(np.float32)
        rgb = rng.integers(0, 255, size=(points, 3), dtype=np.uint8)
        events.append(m.ResultChunk(job_id=job_id, stream="points", chunk=i, frame_idx=i,
                                    arrays={"xyz": xyz, "rgb": rgb}))
    events.append(m.ResultEnd(job_id=job_id, stream="points", chunks=frames))
    pieces = [usd_bytes[i:i + 1000] for i in range(0, len(usd_bytes), 1000)]
    events.append(m.ResultBegin(job_id=job_id, stream="usd", chunks=len(pieces), meta={"filename": "scene.usdc"}))
    for i, piece in enumerate(pieces):
        events.append(m.ResultChunk(job_id=job_id, stream="usd", chunk=i,
                                    arrays={"data": np.frombuffer(piece, dtype=np.uint8)}))
    events.append(m.ResultEnd(job_id=job_id, stream="usd", chunks=len(pieces)))
    events.append(m.JobStatus(job_id=job_id, state="done"))
    return [_wrap(e) for e in events]


def test_tick_stays_under_20ms_against_slow_stream(registered_addon, tmp_path):
    import bpy
    from addon_usd_fixtures import write_points_usd

    from addon import session

    usd_bytes = write_points_usd(tmp_path / "src.usdc", [100, 150, 200]).read_bytes()
    job = bpy.context.scene.recast4d.jobs.add()
    job.name, job.job_id, job.state = "slow", "job-slow-1", "PENDING"
    job.result_dir = str(tmp_path / "results")
    client = SlowFakeClient(_event_stream(job.job_id, frames=12, points=20_000, usd_bytes=usd_bytes), delay_s=0.002)
    session.attach_client(client, start_timer=False)
    try:
        wall, cpu = [], []
        deadline = time.monotonic() + 30
        while job.state != "DONE" or session.state().pending_chunks:
            assert time.monotonic() < deadline, "stream did not finish"
            t0, c0 = time.perf_counter(), time.thread_time()
            delay = session.tick()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
            assert delay is not None and delay > 0
        # The 20 ms rule is about the work a tick does on Blender's main thread: its CPU time is
        # checked for every tick (robust on a shared, overloaded CI machine, where the OS may
        # preempt the thread mid-tick); the typical wall time is checked too.
        assert max(cpu) < 0.020, f"slowest tick used {max(cpu) * 1000:.1f} ms of CPU"
        assert float(np.median(wall)) < 0.020, f"median tick took {np.median(wall) * 1000:.1f} ms"
        assert job.frames_received == 12 and job.frames_expected == 12
        assert job.stages["depth"].step == 5 and job.stages["render"].total == 12
        preview = bpy.data.objects[f"{job.name} Preview"]
        assert len(preview.data.vertices) == 20_000
        from addon import results_stream

        big = np.zeros((262_144, 3), np.float32)
        results_stream.update_preview(bpy.context.scene, job, big, np.zeros((262_144, 3), np.uint8))
        assert len(preview.data.vertices) == -(-262_144 // 7) <= results_stream.PREVIEW_MAX_POINTS
        assert (tmp_path / "results" / "scene.usdc").read_bytes() == usd_bytes
        # credit is granted only after each chunk is consumed, in order
        point_credits = [ack for (_, stream, ack) in client.credits if stream == "points"]
        assert point_credits == list(range(1, 13))
        imported = registered_addon.jobs.import_job_result(bpy.context, job, setup_render=False)
        assert len(imported.objects) == 1
    finally:
        session.detach_client()
    assert client.closed and session.current_client() is None


def test_errors_and_cancel_reach_the_job(registered_addon):
    import bpy

    from addon import session
    from protocol import messages as m

    jobs = bpy.context.scene.recast4d.jobs
    failed, cancelled = jobs.add(), jobs.add()
    failed.job_id, cancelled.job_id = "job-f", "job-c"
    cancelled.state = "CANCELLING"
    session.process_events([
        m.JobRejected(job_id="job-f", code="invalid_camera", detail="camera 3 has fx <= 0"),
        m.Cancelled(job_id="job-c"),
        m.ErrorMessage(code="bad_message", msg="signature mismatch"),
    ])
    assert (failed.state, failed.error_code, failed.error) == ("FAILED", "invalid_camera", "camera 3 has fx <= 0")
    assert cancelled.state == "CANCELLED"
    assert "signature mismatch" in session.state().status["error"]


class _IdleClient:
    """A connected client with nothing to say; ``poll_events`` never blocks, as the real one's."""

    def __init__(self) -> None:
        self.polls = 0

    def poll_events(self, max_items: int, time_budget_s: float) -> list:
        self.polls += 1
        return []

    def consumed(self, job_id: str, stream: str, chunk: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_blocking_wait_sleeps_between_empty_rounds_instead_of_spinning(registered_addon):
    # A background-Blender wait (the demo, scripted renders) used to spin on the non-blocking poll
    # and take a whole core from a backend on the same machine.
    from addon import session

    client = _IdleClient()
    session.attach_client(client, start_timer=False)
    try:
        until = time.monotonic() + 0.3
        assert session.drain_blocking(lambda: time.monotonic() > until, timeout_s=10, poll_s=0.05)
    finally:
        session.detach_client()
    assert 1 <= client.polls <= 0.3 / 0.05 + 2, f"{client.polls} polls in 0.3 s"
