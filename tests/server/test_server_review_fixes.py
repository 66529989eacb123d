"""Regression tests for server bugs found in review (each failed before its fix)."""

from __future__ import annotations

import numpy as np
import pytest
from serverkit import connect, running_server

from backend.jobs import JobContext, register_job_kind, unregister_job_kind

BAD_META_KIND = "test.review.bad_meta"


def _run_bad_meta(ctx: JobContext) -> None:
    # msgpack stores the int key on disk, but it cannot be read back under the wire's str-keys rule
    ctx.emit("points", {"xyz": np.zeros((4, 3), np.float32)}, {1: "int key"})


@pytest.fixture
def bad_meta_kind():
    register_job_kind(BAD_META_KIND, _run_bad_meta, replace=True)
    yield BAD_META_KIND
    unregister_job_kind(BAD_META_KIND)


def test_unreadable_result_chunk_fails_the_job_and_the_server_keeps_answering(tmp_path, bad_meta_kind):
    with running_server(tmp_path) as server:
        client = connect(server.connection_path, timeout_s=10.0)
        try:
            client.submit("bad-meta-1", bad_meta_kind)
            result = client.wait_job("bad-meta-1")
            assert result.state == "failed"
            assert result.error is not None and result.error.code == "result_unreadable"
            assert "points" in result.error.msg
            assert client.ping(timeout_s=5.0).server_session == server.session  # the I/O loop is alive
            assert server.wait(0.01) is False
        finally:
            client.close()
