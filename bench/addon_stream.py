"""Add-on receive benchmark: a finished job's results fetched into Blender (bpy wheel), as an artist does.

The job (a real ``backend.server.Server`` in its own process, like ``bench/transport.py``) has a
``points`` stream (81 frames x 262,144 points, the preview) and a 64 MiB ``file.scene.usdc`` stream
in 8 MiB pieces (what a remote backend sends; a local one is read from its folder instead).

Ours: the add-on's own path. A ``ThreadedClient`` attached to ``addon.session`` resumes the job
(as *Fetch Results* after a restart does) and Blender's timer is modelled by calling
``session.tick()`` and sleeping the delay it returns (``bpy.app.timers`` calls it no sooner).
Measured from the first ``result.chunk`` reaching the add-on to the last one applied: preview
updated for every frame, the file written and renamed into the job's result folder.
Baseline (same run): the same two streams received by ``protocol.client.BlockingClient`` with
nothing applied (socket, decode, verify, credit) — the floor the add-on adds its work on top of.

The last line's ``ratio`` is baseline seconds / add-on seconds: the share of the add-on's receive
time that is the socket itself. Usage: ``python bench/addon_stream.py [--frames 81] [--points 262144]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.jobs import JobContext, register_job_kind  # noqa: E402
from backend.server import Server, ServerConfig  # noqa: E402
from protocol.client import BlockingClient, ThreadedClient  # noqa: E402

KIND = "bench.result"
PIECE_BYTES = 8 << 20


def run_result(ctx: JobContext) -> None:
    """Points per frame, then one file in pieces (the shape of a reshoot job's streams)."""
    frames, points, file_bytes = (int(ctx.params[k]) for k in ("frames", "points", "file_bytes"))
    rng = np.random.default_rng(0)
    xyz = rng.standard_normal((points, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (points, 3), dtype=np.uint8)
    ctx.declare_stream("points", {"frames": frames, "chunks": frames})
    for index in range(frames):
        ctx.emit("points", {"xyz": xyz + np.float32(index), "rgb": rgb}, {"frame": index})
    blob = rng.integers(0, 256, file_bytes, dtype=np.uint8)
    pieces = max(1, -(-file_bytes // PIECE_BYTES))
    ctx.declare_stream("file.scene.usdc", {"filename": "scene.usdc", "bytes": file_bytes, "chunks": pieces})
    for start in range(0, max(1, file_bytes), PIECE_BYTES):
        ctx.emit("file.scene.usdc", {"data": blob[start:start + PIECE_BYTES]}, {"filename": "scene.usdc"})


def _server(jobs_dir: Path, conn_file: Path, stop: multiprocessing.Event) -> None:
    server = Server(ServerConfig(jobs_dir=jobs_dir, connection_file=conn_file))
    server.start()
    stop.wait()
    server.stop()


def fetch_into_blender(conn_file: Path, job_id: str, token: str, frames: int, result_dir: Path) -> dict[str, float]:
    """Resume ``job_id`` with the add-on's client and session; seconds and per-chunk apply costs."""
    import bpy

    from addon import session

    scene = bpy.context.scene
    scene.recast4d.jobs.clear()
    job = scene.recast4d.jobs.add()
    job.name, job.job_id, job.state, job.token = "bench", job_id, "RUNNING", token  # as saved in the .blend
    job.result_dir = str(result_dir)
    first: list[float] = []
    session.state().on_event = lambda e: first or getattr(e, "type", "") != "result.chunk" or first.append(
        time.perf_counter())
    client = ThreadedClient(connection_file=conn_file, client_name="recast4d-blender", resume_jobs=[job_id],
                            job_tokens={job_id: token})
    session.attach_client(client, start_timer=False)
    client.start()
    target = result_dir / "scene.usdc"
    apply_s: list[float] = []
    deadline = time.monotonic() + 300
    try:
        while not (job.frames_received >= frames and target.exists() and not session.state().pending_chunks):
            if time.monotonic() > deadline:
                raise TimeoutError(f"add-on fetch did not finish: {job.frames_received}/{frames} frames")
            begun = time.perf_counter()
            delay = session.tick()
            apply_s.append(time.perf_counter() - begun)
            time.sleep(delay or 0.0)
        done = time.perf_counter()
    finally:
        session.detach_client()
        session.state().on_event = None
    return {"seconds": done - first[0], "ticks": len(apply_s),
            "max_tick_ms": max(apply_s) * 1e3, "median_tick_ms": statistics.median(apply_s) * 1e3}


def fetch_socket_only(conn_file: Path, job_id: str, token: str, streams: list[str]) -> float:
    """The same streams through ``BlockingClient`` (consumed and dropped): first chunk to last."""
    client = BlockingClient.from_file(conn_file, timeout_s=120)
    first: list[float] = []
    try:
        client.connect()
        client.conn.tokens[job_id] = token  # another session reads the results with the job's token
        for stream in streams:
            client.resend(job_id, stream, from_chunk=0)
        client.wait_job(job_id, on_chunk=lambda e: first or first.append(time.perf_counter()),
                        need_terminal=False, streams=streams, timeout_s=120, keep_arrays=False)
        return time.perf_counter() - first[0]
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--points", type=int, default=262_144)
    parser.add_argument("--file-mb", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import bpy

    import addon

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon.register()
    register_job_kind(KIND, run_result)
    mp = multiprocessing.get_context("fork")
    ours, base = [], []
    with tempfile.TemporaryDirectory(prefix="recast4d-bench-") as tmp:
        conn_file, stop = Path(tmp) / "server.json", mp.Event()
        proc = mp.Process(target=_server, args=(Path(tmp) / "jobs", conn_file, stop))
        proc.start()
        try:
            deadline = time.monotonic() + 60
            while not conn_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            maker = BlockingClient.from_file(conn_file, timeout_s=300)
            maker.connect()
            maker.submit("res", KIND, {"frames": args.frames, "points": args.points,
                                       "file_bytes": args.file_mb << 20})
            assert maker.wait_job("res", timeout_s=300, keep_arrays=False).state == "done"
            token = maker.conn.tokens["res"]
            maker.close()
            for repeat in range(args.repeats):  # interleaved
                ours.append(fetch_into_blender(conn_file, "res", token, args.frames, Path(tmp) / f"blend{repeat}"))
                base.append(fetch_socket_only(conn_file, "res", token, ["points", "file.scene.usdc"]))
        finally:
            stop.set()
            proc.join(30)
            addon.unregister()
    best = min(ours, key=lambda r: r["seconds"])
    best_base = min(base)
    print(f"add-on fetch (tick loop, preview + file): best {best['seconds']:.3f} s over {best['ticks']} ticks, "
          f"median tick {best['median_tick_ms']:.1f} ms, slowest {best['max_tick_ms']:.1f} ms")
    print(f"socket only (BlockingClient, same streams): best {best_base:.3f} s")
    print(json.dumps({
        "bench": "addon_stream", "unit": "s", "value": round(best["seconds"], 3), "baseline": round(best_base, 3),
        "ratio": round(best_base / best["seconds"], 3), "device": "cpu",
        "goal": "socket share of the add-on's fetch time (higher = less add-on overhead)",
        "frames": args.frames, "points": args.points, "file_mb": args.file_mb,
        "ticks": best["ticks"], "median_tick_ms": round(best["median_tick_ms"], 2),
        "max_tick_ms": round(best["max_tick_ms"], 2), "runs_s": [round(r["seconds"], 3) for r in ours],
        "baseline_runs_s": [round(b, 3) for b in base],
    }))


if __name__ == "__main__":
    main()
