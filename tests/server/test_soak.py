"""A bounded soak test on loopback (issue 15): valid jobs, malformed requests, cancels and unsigned
noise, interleaved from two clients and a raw peer, limited by count and by time.

Invariants: every malformed request gets a typed error (never ``internal``); every accepted job ends
with exactly one terminal message; the server never crashes. The counts are printed (``-s``).
"""

from __future__ import annotations

import random
import time

import numpy as np
from jobkinds_for_tests import KIND
from serverkit import connect, raw_peer, running_server

from protocol.client import JobRejectedError
from protocol.messages import ErrorMessage, JobAccepted, JobRejected, JobSubmit, parse
from protocol.schema import ArraySpec

MAX_OPERATIONS = 120
MAX_SECONDS = 12.0

MALFORMED_SUBMITS = [
    ({"frames": "many"}, {}),
    ({"frames": -1}, {}),
    ({"camera": {"K": [[float("nan"), 0, 1], [0, 1, 1], [0, 0, 1]], "world_to_camera": np.eye(4).tolist(),
                 "width": 4, "height": 4}}, {}),
    ({"models_dir": "/etc"}, {}),
    ({}, {"x": ArraySpec("<f4", (0, 2**62), 0)}),
    ({}, {"x": ArraySpec("<f4", (3, 0, 2**61), 0)}),
    ({}, {"offsets": ArraySpec("<f4", (4, 5), 80)}),  # validate(): offsets must be (N, 3)
]


def test_bounded_soak_every_request_typed_every_job_one_terminal(tmp_path):
    rng = random.Random(15)
    counts = {"valid": 0, "malformed": 0, "typed": 0, "cancelled_jobs": 0, "noise": 0, "terminal_ok": 0}
    with running_server(tmp_path, max_jobs_per_client=64) as server:
        a, b = connect(server.connection_path, timeout_s=15), connect(server.connection_path, timeout_s=15)
        accepted: dict[str, object] = {}
        deadline = time.monotonic() + MAX_SECONDS
        try:
            with raw_peer(server) as noise:
                for op in range(MAX_OPERATIONS):
                    if time.monotonic() > deadline:
                        break
                    client = a if op % 2 else b
                    choice = rng.random()
                    job_id = f"soak-{op}"
                    if choice < 0.35:
                        offsets = np.ones((rng.randint(1, 40), 3), np.float32)
                        client.submit(job_id, KIND, {"frames": rng.randint(0, 3), "points": 64}, {"offsets": offsets})
                        accepted[job_id] = client
                        counts["valid"] += 1
                    elif choice < 0.7:
                        params, specs = rng.choice(MALFORMED_SUBMITS)
                        msg_id = client.conn.send(JobSubmit(job_id=job_id, kind=KIND, params=params, inputs=specs))
                        event = client._await(lambda e, j=job_id: isinstance(e.message, JobAccepted | JobRejected)
                                              and e.job_id == j, msg_id, 10, "reply")
                        counts["malformed"] += 1
                        if isinstance(event.message, JobAccepted):  # validated after upload: must fail typed
                            accepted[job_id] = client
                        else:
                            assert event.message.code != "internal", event.message.detail
                            assert server.store.get(job_id) is None
                            counts["typed"] += 1
                    elif choice < 0.85:
                        client.submit(job_id, KIND, {"frames": 50, "delay_s": 0.02})
                        client.cancel(job_id)
                        accepted[job_id] = client
                        counts["cancelled_jobs"] += 1
                    else:
                        frames = noise.forge("ping", {}, key=b"not the key" * 3)
                        reply = parse(noise.reply(frames))
                        assert isinstance(reply, ErrorMessage) and reply.code == "bad_signature"
                        counts["noise"] += 1
            for job_id, client in accepted.items():
                result = client.wait_job(job_id)
                terminals = [e for e in result.events if e.job_id == job_id and e.terminal]
                assert len(terminals) == 1, (job_id, [e.type for e in terminals])
                if isinstance(terminals[0].message, ErrorMessage):
                    assert terminals[0].message.code != "internal", terminals[0].message.msg
                counts["terminal_ok"] += 1
            assert a.ping(timeout_s=5).server_session == server.session
        except JobRejectedError as exc:
            raise AssertionError(f"a valid job was refused: {exc.code}: {exc}") from None
        finally:
            a.close()
            b.close()
        assert server.wait(0.01) is False, "the I/O loop crashed"
    print(f"soak: {counts}")
    assert counts["terminal_ok"] == len(accepted)
    assert counts["typed"] == counts["malformed"]  # every one refused at submit, none validated late
