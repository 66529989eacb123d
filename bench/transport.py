"""Transport benchmark: 81 frames x 262,144 points (float32 xyz + uint8 rgb) server -> client.

Ours: a real ``backend.server.Server`` streams a finished job's persisted result chunks (read from
the job folder, signed envelope, typed ``result.chunk``, credit window from ``Limits``) to a
``protocol.client.BlockingClient`` that decodes, verifies and acknowledges every chunk.
Both servers run in their own process (as in production: Blender and the backend are two processes).
Baseline (same run, same process layout): a raw pyzmq ROUTER process sends the same bytes as
zero-copy multipart ``[header, xyz, rgb]`` to a DEALER under the same credit window and ack cadence;
the DEALER receives ``copy=False`` and wraps the frames with ``np.frombuffer``. Besides wall time,
each side's CPU time per stream is recorded (``/proc``): on a 2-core machine both I/O threads
saturate the cores, so CPU spent outside the copies is what costs throughput.

Both pairs are measured: CurveZMQ-encrypted (our server's default: keys per start in the connection
file; the raw baseline's ROUTER/DEALER get their own CURVE keys, the same encryption) — the headline —
and plain TCP for reference (``ServerConfig(curve=False)`` against a plain raw pair).
Prints MB/s (1 MB = 1e6 bytes of array payload) and the ratio ours / baseline as the last line.
Usage: ``python bench/transport.py [--frames 81] [--points 262144] [--repeats 15] [--security both]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.jobs import JobContext, register_job_kind  # noqa: E402
from backend.server import Server, ServerConfig  # noqa: E402
from protocol.client import BlockingClient  # noqa: E402
from protocol.connection import curve_keypair, secure_server_socket  # noqa: E402
from protocol.wire import Limits  # noqa: E402

KIND = "bench.points"


def make_frames(frames: int, points: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    xyz = rng.standard_normal((points, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (points, 3), dtype=np.uint8)
    return [{"xyz": xyz + np.float32(i), "rgb": rgb} for i in range(frames)]


def run_points(ctx: JobContext) -> None:
    frames = make_frames(int(ctx.params["frames"]), int(ctx.params["points"]))
    ctx.declare_stream("points", {"frames": len(frames), "chunks": len(frames)})
    for index, arrays in enumerate(frames):
        ctx.emit("points", arrays, {"frame": index})


def bench_ours(client: BlockingClient, job_id: str, frames: int) -> tuple[float, int]:
    """Seconds to stream the whole persisted result once, and the payload bytes received.

    Like the baseline (and like Blender applying a frame), each chunk is consumed and dropped,
    then acknowledged; nothing accumulates on the client.
    """
    nbytes = 0

    def consume(event) -> None:
        nonlocal nbytes
        nbytes += sum(a.nbytes for a in event.arrays.values())

    start = time.perf_counter()
    client.resend(job_id, "points", from_chunk=0)
    result = client.wait_job(job_id, on_chunk=consume, need_terminal=False, streams=["points"], timeout_s=120,
                             keep_arrays=False)
    elapsed = time.perf_counter() - start
    stream = result.streams["points"]
    assert stream.end is not None and stream.received == frames
    return elapsed, nbytes


def _raw_server(port_queue: multiprocessing.Queue, frames_count: int, points: int, window: int, repeats: int,
                curve: tuple[str, str] | None) -> None:
    """Raw pyzmq ROUTER in its own process: on each ``start`` sends every frame under credit.

    ``curve``: the server's CurveZMQ key pair (Z85), so the baseline pays the same encryption as ours.
    """
    frames = make_frames(frames_count, points)
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if curve is not None:
        secure_server_socket(router, *curve)
    port_queue.put(router.bind_to_random_port("tcp://127.0.0.1"))
    for _ in range(repeats):
        identity, _ = router.recv_multipart()  # "start"
        sent, acked = 0, 0
        while acked < len(frames):
            while sent < len(frames) and sent < acked + window:
                arrays = frames[sent]
                header = msgpack.packb({"chunk": sent, "xyz": [arrays["xyz"].shape, "<f4"],
                                        "rgb": [arrays["rgb"].shape, "|u1"]})
                router.send_multipart([identity, header, arrays["xyz"], arrays["rgb"]], copy=False)
                sent += 1
            _, ack = router.recv_multipart()
            acked = max(acked, int(ack))
    router.close(linger=1000)
    ctx.term()


def bench_raw(dealer: zmq.Socket, frames: int, window: int) -> tuple[float, int]:
    """Receive one full stream from the raw server (``copy=False`` + ``np.frombuffer``).

    Acks are cumulative and sent at the cadence our client uses (every half window, and after the
    last chunk), so both sides run the same credit protocol.
    """
    start = time.perf_counter()
    dealer.send(b"start")
    nbytes = 0
    step = max(1, window // 2)
    for index in range(frames):
        header, xyz_frame, rgb_frame = dealer.recv_multipart(copy=False)
        meta = msgpack.unpackb(header.bytes)
        xyz = np.frombuffer(xyz_frame.buffer, dtype=np.float32).reshape(meta["xyz"][0])
        rgb = np.frombuffer(rgb_frame.buffer, dtype=np.uint8).reshape(meta["rgb"][0])
        nbytes += xyz.nbytes + rgb.nbytes
        if (index + 1) % step == 0 or index + 1 == frames:
            dealer.send(str(index + 1).encode())
    return time.perf_counter() - start, nbytes


def _our_server(jobs_dir: Path, conn_file: Path, stop: multiprocessing.Event, curve: bool) -> None:
    """Our server in its own process (as in production: Blender and the backend are two processes)."""
    server = Server(ServerConfig(jobs_dir=jobs_dir, connection_file=conn_file, curve=curve))
    server.start()
    stop.wait()
    server.stop()


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(run, server_pid: int) -> tuple[float, int, float, float]:
    """``run()`` -> (seconds, bytes); adds the server's and this process's CPU seconds for that run."""
    server0, client0 = process_cpu_s(server_pid), time.process_time()
    elapsed, nbytes = run()
    return elapsed, nbytes, process_cpu_s(server_pid) - server0, time.process_time() - client0


def summary(runs: list[tuple[float, int, float, float]]) -> dict[str, float]:
    """Best and median wall time (ms) and the median CPU per stream of server and client (ms)."""
    return {"best_ms": round(min(r[0] for r in runs) * 1e3, 1),
            "median_ms": round(statistics.median(r[0] for r in runs) * 1e3, 1),
            "server_cpu_ms": round(statistics.median(r[2] for r in runs) * 1e3, 1),
            "client_cpu_ms": round(statistics.median(r[3] for r in runs) * 1e3, 1)}


def measure_pair(args: argparse.Namespace, window: int, curve: bool, tmp: Path) -> dict:
    """Ours and the raw baseline, interleaved, both with CURVE or both plain; figures of the pair."""
    mp = multiprocessing.get_context("fork")  # children inherit the registered job kind
    conn_file = tmp / f"server-{'curve' if curve else 'plain'}.json"
    stop = mp.Event()
    ours_proc = mp.Process(target=_our_server, args=(tmp / f"jobs-{curve}", conn_file, stop, curve))
    ours_proc.start()
    raw_keys = curve_keypair() if curve else None
    port_queue: multiprocessing.Queue = mp.Queue()
    raw_proc = mp.Process(target=_raw_server, args=(port_queue, args.frames, args.points, window, args.repeats,
                                                    raw_keys))
    raw_proc.start()
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    raw_port = port_queue.get(timeout=60)
    if raw_keys is not None:  # a CURVE client with its own key pair, as protocol.connection.secure_client_socket
        public, secret = curve_keypair()
        dealer.curve_serverkey, dealer.curve_publickey = raw_keys[0].encode(), public.encode()
        dealer.curve_secretkey = secret.encode()
    dealer.connect(f"tcp://127.0.0.1:{raw_port}")
    deadline = time.monotonic() + 60
    while not conn_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    client = BlockingClient.from_file(conn_file, timeout_s=120)
    try:
        client.connect()
        start = time.perf_counter()
        client.submit("bench", KIND, {"frames": args.frames, "points": args.points})
        first = client.wait_job("bench", timeout_s=300, keep_arrays=False)  # produce + persist + stream
        produce_and_stream_s = time.perf_counter() - start
        assert first.state == "done"
        ours, raw = [], []
        for _ in range(args.repeats):  # interleaved, best of N each
            ours.append(timed(lambda: bench_ours(client, "bench", args.frames), ours_proc.pid))
            raw.append(timed(lambda: bench_raw(dealer, args.frames, window), raw_proc.pid))
    finally:
        client.close()
        dealer.close(0)
        ctx.term()
        stop.set()
        ours_proc.join(30)
        raw_proc.join(30)
    payload = ours[0][1]
    assert payload == raw[0][1]
    mb_ours, mb_raw = payload / min(r[0] for r in ours) / 1e6, payload / min(r[0] for r in raw) / 1e6
    return {"ours_mb_s": round(mb_ours, 1), "raw_mb_s": round(mb_raw, 1), "ratio": round(mb_ours / mb_raw, 3),
            "ours": summary(ours), "raw": summary(raw), "payload_mb": round(payload / 1e6, 1),
            "first_run_with_persist_s": round(produce_and_stream_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--points", type=int, default=262_144)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--security", choices=("both", "curve", "plain"), default="both",
                        help="CURVE-encrypted pair (the product's transport; the headline), plain pair, or both")
    args = parser.parse_args()
    register_job_kind(KIND, run_points)
    window = Limits().window
    pairs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="recast4d-bench-") as tmp:
        for name in (("curve", "plain") if args.security == "both" else (args.security,)):
            pairs[name] = measure_pair(args, window, name == "curve", Path(tmp))
    for name, pair in pairs.items():
        label = "CURVE-encrypted" if name == "curve" else "plain (reference)"
        print(f"{label}: ours {pair['ours_mb_s']:.0f} MB/s (best {pair['ours']['best_ms']} ms), raw pyzmq "
              f"{pair['raw_mb_s']:.0f} MB/s (best {pair['raw']['best_ms']} ms), ratio {pair['ratio']}; CPU per "
              f"stream ours {pair['ours']['server_cpu_ms']} + {pair['ours']['client_cpu_ms']} ms, raw "
              f"{pair['raw']['server_cpu_ms']} + {pair['raw']['client_cpu_ms']} ms (server + client)")
    head = pairs.get("curve") or pairs["plain"]
    print(json.dumps({
        "bench": "transport", "unit": "MB/s", "value": head["ours_mb_s"], "baseline": head["raw_mb_s"],
        "ratio": head["ratio"], "device": "cpu", "goal": ">= 0.8",
        "security": "curve" if "curve" in pairs else "plain", "frames": args.frames, "points": args.points,
        "payload_mb": head["payload_mb"], "window": window, **{name: pair for name, pair in pairs.items()},
    }))


if __name__ == "__main__":
    main()
