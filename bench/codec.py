"""Codec throughput: encode + decode of one result chunk vs a raw copy of the same bytes.

Payload: one point-cloud frame, 262,144 points, positions float32 (N, 3) + colours uint8 (N, 3),
3.9 MB, signed with a 32-byte key. The codec sends arrays as zero-copy buffer frames and signs
only header and content, so its cost should not grow with the payload; the baseline is the
cheapest copying serialiser (``tobytes`` of both arrays + ``np.frombuffer`` back). Extra figures:
the same message with arrays inline in msgpack, per-message overhead for a tiny message, and the
round trip through a real inproc PAIR socket against raw pyzmq zero-copy ``send_multipart``.

Prints one JSON object as the last line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import zmq

from protocol.wire import Codec, Limits, Message

POINTS = 262_144
REPEATS = 30


def best_seconds(run: Callable[[], object], repeats: int = REPEATS) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.random((POINTS, 3), dtype=np.float32)
    rgb = rng.integers(0, 255, (POINTS, 3), dtype=np.uint8)
    payload_mb = (xyz.nbytes + rgb.nbytes) / 1e6
    key = b"k" * 32
    content = {"frame_idx": 0, "arrays": {"xyz": xyz, "rgb": rgb}}

    def codec_roundtrip(sender: Codec, receiver: Codec) -> Callable[[], object]:
        def run() -> object:
            frames = sender.encode(Message("result.chunk", content, job_id="job", stream="points", chunk=0))
            msg = receiver.decode(frames)
            return msg.content["arrays"]["xyz"][-1, -1]
        return run

    def raw_copy() -> object:
        blobs = [xyz.tobytes(), rgb.tobytes()]
        back = np.frombuffer(blobs[0], np.float32).reshape(POINTS, 3)
        return back[-1, -1], np.frombuffer(blobs[1], np.uint8)

    codec_s = best_seconds(codec_roundtrip(Codec(key), Codec(key)))
    raw_s = best_seconds(raw_copy)
    inline_limits = Limits(inline_threshold=1 << 30, max_content_bytes=64 << 20)
    inline_s = best_seconds(codec_roundtrip(Codec(key, limits=inline_limits), Codec(key, limits=inline_limits)))

    tiny_sender, tiny_receiver = Codec(key), Codec(key)
    tiny_s = best_seconds(lambda: tiny_receiver.decode(tiny_sender.encode(Message("ping"))), repeats=2000)

    ctx = zmq.Context.instance()
    tx, rx = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    tx.bind("inproc://bench-codec")
    rx.connect("inproc://bench-codec")
    zsend, zrecv = Codec(key), Codec(key)

    def zmq_codec() -> object:
        tx.send_multipart(zsend.encode(Message("result.chunk", content, chunk=0)), copy=False)
        return zrecv.decode(rx.recv_multipart(copy=False)).content["arrays"]["xyz"][-1, -1]

    def zmq_raw() -> object:
        tx.send_multipart([b"hdr", xyz, rgb], copy=False)
        frames = rx.recv_multipart(copy=False)
        return np.frombuffer(frames[1].buffer, np.float32)[-1], np.frombuffer(frames[2].buffer, np.uint8)

    zmq_codec_s = best_seconds(zmq_codec)
    zmq_raw_s = best_seconds(zmq_raw)
    tx.close(linger=0)
    rx.close(linger=0)

    value = payload_mb / codec_s
    baseline = payload_mb / raw_s
    print(f"payload {payload_mb:.2f} MB: codec {codec_s * 1e3:.3f} ms, raw copy {raw_s * 1e3:.3f} ms, "
          f"inline codec {inline_s * 1e3:.3f} ms, ping {tiny_s * 1e6:.1f} us, "
          f"inproc codec {zmq_codec_s * 1e3:.3f} ms vs raw pyzmq {zmq_raw_s * 1e3:.3f} ms")
    print(json.dumps({
        "bench": "codec", "unit": "MB/s", "value": round(value, 1), "baseline": round(baseline, 1),
        "ratio": round(value / baseline, 2), "device": "cpu", "goal": ">= 1.0",
        "inline_mb_s": round(payload_mb / inline_s, 1),
        "small_message_us": round(tiny_s * 1e6, 1),
        "inproc_codec_mb_s": round(payload_mb / zmq_codec_s, 1),
        "inproc_raw_mb_s": round(payload_mb / zmq_raw_s, 1),
        "inproc_ratio": round(zmq_raw_s / zmq_codec_s, 2),
    }))


if __name__ == "__main__":
    main()
