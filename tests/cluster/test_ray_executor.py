"""The Ray executor against a real local Ray: concurrency, streaming, cancel, a killed worker, a
server restart while a job runs on the cluster, engines kept loaded. Every wait is bounded; zero
jobs may be lost."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from clusterkit import ray_options, start_ray_server, worker_actor
from jobkinds_for_tests import frame_arrays
from serverkit import connect, running_server

from backend.jobs import CANCELLED, DONE, FAILED, RUNNING
from protocol.messages import Cancelled, ErrorMessage, ResultChunk

pytestmark = pytest.mark.slow
TIMEOUT_S = 60.0
POINTS = 16


def collect_chunks(client, job_ids: set[str]) -> list[tuple[str, int, dict]]:
    """``(job_id, chunk, arrays)`` of the ``points`` streams in arrival order, until every job ended."""
    chunks, ended = [], set()
    deadline = time.monotonic() + TIMEOUT_S
    while ended != job_ids:
        assert time.monotonic() < deadline, f"jobs {job_ids - ended} did not finish in {TIMEOUT_S} s"
        event = client.next_event(timeout_s=1.0)
        if event is None or event.job_id not in job_ids:
            continue
        if isinstance(event.message, ResultChunk):
            chunks.append((event.job_id, event.message.chunk, event.message.arrays))
            client.consumed(event.job_id, event.message.stream, event.message.chunk)
        if event.type == "result.end" or isinstance(event.message, ErrorMessage | Cancelled):
            ended.add(event.job_id)
    return chunks


def wait_chunks(server, job_id: str, at_least: int = 1, stream: str = "points") -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        record = server.store.get(job_id)
        if record is not None and stream in record.streams and record.streams[stream].chunks >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} wrote fewer than {at_least} chunks within {TIMEOUT_S} s")


def assert_frames(arrays_by_frame: dict[int, dict], frames: int, seed: int) -> None:
    assert sorted(arrays_by_frame) == list(range(frames))
    for frame in range(frames):
        expected = frame_arrays(seed, frame, POINTS)
        np.testing.assert_array_equal(arrays_by_frame[frame]["xyz"], expected["xyz"])
        np.testing.assert_array_equal(arrays_by_frame[frame]["rgb"], expected["rgb"])


def test_two_jobs_run_at_once_and_both_stream_to_the_client(ray_cluster, tmp_path):
    with running_server(tmp_path, executor=ray_options(2)) as server:
        ray_cluster.get([worker_actor(ray_cluster, i).pid.remote() for i in (0, 1)])  # both workers are up
        client = connect(tmp_path / "server.json", timeout_s=TIMEOUT_S)
        params = {"frames": 4, "points": POINTS, "delay_s": 0.3}
        client.submit("a", "test.points", dict(params, seed=1))
        client.submit("b", "test.points", dict(params, seed=2))
        chunks = collect_chunks(client, {"a", "b"})
        order = [(job, k) for job, k, _ in chunks]
        assert sorted(order) == [(job, k) for job in "ab" for k in range(4)]
        # Both streamed while the other ran: each job's first chunk arrived before the other's last.
        assert order.index(("a", 0)) < order.index(("b", 3)) and order.index(("b", 0)) < order.index(("a", 3))
        for job_id, seed in (("a", 1), ("b", 2)):
            assert server.store.get(job_id).state == DONE
            assert_frames({k: arrays for job, k, arrays in chunks if job == job_id}, 4, seed)
        client.close()


def test_cancel_reaches_the_job_on_its_ray_worker(ray_cluster, tmp_path):
    with running_server(tmp_path, executor=ray_options(1)) as server:
        client = connect(tmp_path / "server.json", timeout_s=TIMEOUT_S)
        client.submit("long", "test.points", {"frames": 200, "points": POINTS, "delay_s": 0.2})
        wait_chunks(server, "long")
        actor = worker_actor(ray_cluster)
        pid = ray_cluster.get(actor.pid.remote())
        client.cancel("long")
        result = client.wait_job("long", timeout_s=TIMEOUT_S)
        assert result.state == CANCELLED
        # The job stopped on its worker at its next cancel check (well before the 10 s after which
        # the executor would kill the worker instead): it ends there and the server releases it.
        deadline = time.monotonic() + 5.0
        while ray_cluster.get(actor.status.remote()):
            assert time.monotonic() < deadline, "the cancelled job kept running on its Ray worker"
            time.sleep(0.1)
        assert ray_cluster.get(actor.pid.remote()) == pid  # stopped by its cancel flag, not killed
        assert server.store.get("long").streams["points"].chunks < 200
        # The worker is free again: the next job runs to the end.
        client.submit("after", "test.points", {"frames": 2, "points": POINTS, "seed": 5})
        assert client.wait_job("after", timeout_s=TIMEOUT_S).state == DONE
        client.close()


def test_a_killed_worker_fails_its_job_retryable_and_a_resubmit_completes(ray_cluster, tmp_path):
    with running_server(tmp_path, executor=ray_options(1)) as server:
        client = connect(tmp_path / "server.json", timeout_s=TIMEOUT_S)
        params = {"frames": 6, "points": POINTS, "delay_s": 0.3, "seed": 7}
        client.submit("victim", "test.points", params)
        wait_chunks(server, "victim")
        os.kill(ray_cluster.get(worker_actor(ray_cluster).pid.remote()), signal.SIGKILL)
        result = client.wait_job("victim", timeout_s=TIMEOUT_S)
        assert result.state == FAILED
        assert result.error.code == "worker_died" and result.error.retryable
        # Ray restarts the actor; the same submit runs the job again, to the end.
        client.submit("victim", "test.points", params)
        result = client.wait_job("victim", timeout_s=TIMEOUT_S)
        assert result.state == DONE, result.error
        assert_frames(dict(enumerate(result.streams["points"].ordered())), 6, 7)
        assert server.store.get("victim").state == DONE
        client.close()


def test_a_server_restart_finds_the_job_still_running_on_the_cluster(ray_cluster, tmp_path):
    params = {"frames": 8, "points": POINTS, "delay_s": 0.3, "seed": 11}
    with running_server(tmp_path, executor=ray_options(1)) as first:
        client = connect(tmp_path / "server.json", timeout_s=TIMEOUT_S)
        client.submit("shot", "test.points", params)
        wait_chunks(first, "shot", at_least=2)
    # The first server is gone; the job kept running on its (detached) worker.
    with running_server(tmp_path, executor=ray_options(1)) as second:
        assert "shot" not in second.recovered
        assert second.store.get("shot").state in (RUNNING, DONE)
        client.reconnect(second.connection, resume_jobs=["shot"])
        result = client.wait_job("shot", timeout_s=TIMEOUT_S)
        assert result.state == DONE, result.error
        assert_frames(dict(enumerate(result.streams["points"].ordered())), 8, 11)
        record = second.store.get("shot")
        assert record.state == DONE and record.streams["points"].chunks == 8
        runs = (tmp_path / "jobs" / "shot" / "runs.txt").read_text().count("run")
        assert runs == 1  # followed again, not run again
        client.close()


def test_a_killed_server_process_leaves_its_job_running_and_the_next_one_adopts_it(ray_cluster, tmp_path):
    """``recast4d serve --executor ray --ray-address``: SIGKILL the server mid-job, start another."""
    address = ray_cluster.get_runtime_context().gcs_address
    jobs_dir, conn_file = tmp_path / "jobs", tmp_path / "server.json"
    first = start_ray_server(jobs_dir, conn_file, address)
    try:
        client = connect(conn_file, timeout_s=TIMEOUT_S)
        client.submit("crash", "test.points", {"frames": 10, "points": POINTS, "delay_s": 0.3, "seed": 13})
        deadline = time.monotonic() + TIMEOUT_S
        while len(list((jobs_dir / "crash" / "streams" / "points").glob("*.chunk"))) < 2:
            assert time.monotonic() < deadline, "the job wrote no chunks"
            time.sleep(0.05)
    finally:
        first.kill()
        first.wait(10)
    second = start_ray_server(jobs_dir, conn_file, address)
    try:
        client.reconnect(resume_jobs=["crash"])
        result = client.wait_job("crash", timeout_s=TIMEOUT_S)
        assert result.state == DONE, result.error
        assert_frames(dict(enumerate(result.streams["points"].ordered())), 10, 13)
        assert (jobs_dir / "crash" / "runs.txt").read_text().count("run") == 1  # adopted, not run again
        client.close()
    finally:
        second.terminate()
        second.wait(20)


def test_the_second_job_on_a_worker_does_not_reload_its_engine(ray_cluster, tmp_path):
    with running_server(tmp_path, executor=ray_options(1)) as server:
        client = connect(tmp_path / "server.json", timeout_s=TIMEOUT_S)
        actor = worker_actor(ray_cluster)
        infos = []
        for job_id in ("load-1", "load-2"):
            client.submit(job_id, "test.engine", {})
            result = client.wait_job(job_id, timeout_s=TIMEOUT_S)
            assert result.state == DONE, result.error
            infos.append(result.streams["info"].arrays[0])
        assert infos[0]["pid"][0] == infos[1]["pid"][0]  # the same long-lived worker process
        assert infos[1]["builds"][0] == infos[0]["builds"][0]  # ... that built the engine only once
        builds = ray_cluster.get(actor.engine_builds.remote())
        client.submit("load-other", "test.engine", {"options": {"variant": 2}})  # other options: a new engine
        assert client.wait_job("load-other", timeout_s=TIMEOUT_S).state == DONE
        assert ray_cluster.get(actor.engine_builds.remote()) == builds + 1
        assert server.store.get("load-2").state == DONE
        client.close()
