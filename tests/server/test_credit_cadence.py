"""Result credit is sent once per half window (cumulative acks), and streams never stall on it."""

from __future__ import annotations

import jobkinds_for_tests
import pytest
from serverkit import running_server

from protocol.client import BlockingClient
from protocol.messages import Credit


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5])
def test_every_chunk_arrives_with_one_credit_per_half_window(tmp_path, window):
    frames = 11
    with running_server(tmp_path):
        client = BlockingClient.from_file(tmp_path / "server.json", timeout_s=30, window=window)
        sent: list[Credit] = []
        send = client.conn.send

        def spy(message):
            if isinstance(message, Credit):
                sent.append(message)
            return send(message)

        client.conn.send = spy
        try:
            client.connect()
            client.submit("cad", jobkinds_for_tests.KIND, {"frames": frames, "points": 64})
            result = client.wait_job("cad", timeout_s=30)
            assert result.state == "done"
            assert result.streams["points"].received == frames
            step = max(1, window // 2)
            assert len(sent) == frames // step  # one cumulative ack per half window, none per chunk
            assert [c.ack for c in sent] == [step * (i + 1) for i in range(frames // step)]
            assert all(c.window == window for c in sent)
        finally:
            client.close()

