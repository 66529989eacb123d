"""Result streaming of the I/O loop (mixed into :class:`backend.server.app.Server`).

A stream is sent per client by a :class:`StreamSender`: ``result.begin`` (manifest fields, with
every other manifest key and ``from_chunk`` in ``meta``), then each persisted chunk while the
client's credit allows (read from the job folder as a memory map and sent zero-copy), then
``result.end`` once the job is done and every chunk went out. Cancelled jobs stop streaming.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from backend.jobs import CANCELLED, DONE
from protocol.messages import ErrorMessage, ResultBegin, ResultChunk, ResultEnd

from .flow import ClientState, StreamSender

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger("recast4d.server")

#: Manifest keys that map to ``result.begin`` fields; every other key goes into its ``meta``.
MANIFEST_FIELDS = frozenset({"chunks", "frames", "total_bytes", "layout", "meta"})


class ResultStreaming:
    """Pumps result chunks to subscribed clients under their credit."""

    def _pump_streams(self: Server) -> None:
        for client in list(self.clients.values()):
            for sender in list(client.senders.values()):
                if client.identity not in self.clients or client.outbox:
                    break
                if not sender.ended:
                    self._pump_guarded(client, sender)

    def _pump_guarded(self: Server, client: ClientState, sender: StreamSender) -> None:
        """:meth:`_pump_one`, but a stream that cannot be read or encoded (a damaged chunk file, meta a
        job emitted that the wire cannot carry) ends that stream with ``error{result_unreadable}``
        for its job instead of taking the I/O loop (and with it the whole server) down."""
        try:
            self._pump_one(client, sender)
        except Exception as exc:
            log.exception("result stream %s of job %s cannot be sent", sender.stream, sender.job_id)
            sender.ended = True
            self.send(client, ErrorMessage(
                code="result_unreadable", job_id=sender.job_id,
                msg=f"result stream {sender.stream!r} of job {sender.job_id!r} cannot be sent (chunk "
                    f"{sender.next_chunk}): {type(exc).__name__}: {str(exc)[:300]}; see the server log"))

    def _pump_one(self: Server, client: ClientState, sender: StreamSender) -> None:
        record = self.store.get(sender.job_id)
        if record is None or record.state == CANCELLED:
            sender.ended = True
            return
        info = record.streams.get(sender.stream)
        if info is None:
            return
        persisted = info.chunks
        finished = record.terminal
        if not sender.begun:
            manifest = info.manifest
            begin = ResultBegin(
                job_id=sender.job_id, stream=sender.stream,
                chunks=int(manifest.get("chunks", persisted if finished else 0)),
                frames=int(manifest.get("frames", 0)),
                total_bytes=int(info.bytes if record.state == DONE else manifest.get("total_bytes", 0)),
                layout=dict(manifest.get("layout", {})),
                meta={**{k: v for k, v in manifest.items() if k not in MANIFEST_FIELDS},
                      **dict(manifest.get("meta", {})), "from_chunk": sender.next_chunk},
            )
            sent = self.send(client, begin)
            if client.identity not in self.clients:
                return
            sender.begun = True  # sent, or queued in the outbox: either way it must go out only once
            if not sent:
                return  # chunks follow once the outbox (with the begin) has drained, never before it
        while sender.may_send(persisted):
            stored = self.store.read_chunk(sender.job_id, sender.stream, sender.next_chunk)
            frame_idx = stored.meta.get("frame", sender.next_chunk)
            msg = ResultChunk(job_id=sender.job_id, stream=sender.stream, chunk=sender.next_chunk,
                              frame_idx=frame_idx if isinstance(frame_idx, int) and frame_idx >= 0 else 0,
                              arrays=stored.arrays).to_message()
            msg.content["meta"] = stored.meta
            status = self._send_frames(client, self.codec.encode(msg))
            if status != "sent":
                return
            sender.next_chunk += 1
        if finished and sender.next_chunk >= persisted and not sender.ended:
            if record.state == DONE:
                self.send(client, ResultEnd(job_id=sender.job_id, stream=sender.stream, chunks=persisted,
                                            total_bytes=info.bytes))
            sender.ended = True

    def _begin_streams(self: Server, job_id: str) -> None:
        """Before ``done`` goes out, make sure every subscriber got ``result.begin`` of every stream."""
        record = self.store.get(job_id)
        if record is None:
            return
        for identity in list(self.subscribers.get(job_id, ())):
            client = self.clients.get(identity)
            if client is None:
                continue
            for stream in list(record.streams):
                sender = client.senders.get((job_id, stream))
                if sender is None:
                    sender = client.senders[(job_id, stream)] = StreamSender(job_id, stream, self.limits.window)
                if not client.outbox:
                    self._pump_guarded(client, sender)
