"""B4D v1 wire codec: multipart envelope, HMAC signing, replay protection, limits, zero-copy arrays.

A message on the wire is a list of frames (``docs/protocol.md`` is the full spec)::

    [routing-id]         ROUTER side only, added/removed by the socket owner, not by this codec
    b"B4D1"              PROTOCOL_TAG: protocol name + major version
    signature            32 raw bytes HMAC-SHA256(key, header || content); b"" when the key is empty
    header               msgpack map: v, type, msg_id, session, seq, ts, parent_id, job_id, stream,
                         chunk, buf_lens (signed, so buffer count and sizes are authenticated)
    content              msgpack map: the typed fields; numpy arrays appear as descriptors
    buffer_0 ... n       raw little-endian C-order array bytes (unsigned; lengths are in the header)

:class:`Codec.decode` checks in this order and allocates nothing proportional to declared sizes
before all checks pass: frame count, tag, frame sizes, signature (``hmac.compare_digest``), header
decode (msgpack limits, depth, str keys), header fields and version, replay (``seq`` must increase
per sender ``session``), ``buf_lens`` against actual frame sizes, content decode, array descriptors.
Every failure is a :class:`~protocol.errors.ProtocolError` whose ``code`` is one of
:data:`ERROR_CODES`. No pickle, no msgpack ext types.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import msgpack
import numpy as np

from protocol.arrays import ND_MARKER, decode_array, encode_array
from protocol.errors import ProtocolError, ValidationError

PROTOCOL_TAG = b"B4D1"
PROTOCOL_VERSION = "1.0"
PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
SIGNATURE_SCHEME = "hmac-sha256"
SIGNATURE_BYTES = 32

#: Error codes raised by :meth:`Codec.decode` / :meth:`Codec.encode` (``ProtocolError.code``).
ERROR_CODES: dict[str, str] = {
    "bad_envelope": "fewer than 4 frames, or a frame that is not bytes-like",
    "too_many_frames": "more frames or buffers than the limits allow",
    "bad_tag": "first frame is not a B4D protocol tag (not a peer of this protocol)",
    "version_unsupported": "a B4D peer with a different major version (tag or header 'v')",
    "too_large": "header, content or a buffer frame exceeds its size limit",
    "bad_signature": "signature missing, truncated, or not matching header||content under our key",
    "bad_message": "header or content is not valid msgpack within limits (truncated, trailing bytes, "
    "non-str keys, nesting too deep, ext types) or a header field has the wrong type",
    "replayed": "seq not greater than the last accepted seq of that sender session",
    "bad_buffers": "header buf_lens disagree with the buffer frames actually received",
    "bad_dtype": "array dtype not in the allow-list",
    "bad_array": "array descriptor malformed: shape, buffer index, byte count, unused buffer",
}

_SCALAR_TYPES = (type(None), bool, int, float, str, bytes)
_MAX_SESSIONS = 4096


def generate_key() -> bytes:
    """A fresh random 256-bit signing key (one per server start)."""
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class Limits:
    """Receive limits, advertised by the server in ``welcome`` (protocol.md §1.6). Sizes in bytes.

    ``window`` is the credit window in chunks; arrays smaller than ``inline_threshold`` bytes travel
    inline in the content instead of as their own frame.
    """

    max_frame_bytes: int = 64 << 20
    max_frames_per_message: int = 40
    max_header_bytes: int = 16 << 10
    max_content_bytes: int = 1 << 20
    max_nesting: int = 32
    max_buffers: int = 32
    max_array_ndim: int = 8
    max_job_bytes: int = 4 << 30
    window: int = 4
    inline_threshold: int = 65536

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if type(value) is not int or value < 0:
                raise ValidationError(f"limit {item.name} must be a non-negative int, got {value!r}")

    def to_dict(self) -> dict[str, int]:
        """Plain dict for the ``welcome`` message."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Limits:
        """Build from a dict; unknown keys are ignored (newer peers), missing keys take defaults."""
        if not isinstance(data, dict):
            raise ProtocolError(f"limits must be a map, got {type(data).__name__}")
        known = {item.name for item in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})


@dataclass
class Message:
    """One protocol message. ``content`` may hold numpy arrays anywhere (nested dicts/lists).

    ``session``, ``seq``, ``ts`` and ``version`` are filled in by :meth:`Codec.encode` and read back
    by :meth:`Codec.decode`; ``job_id``, ``stream``, ``chunk`` and ``parent_id`` travel in the
    (signed) header.
    """

    type: str
    content: dict = field(default_factory=dict)
    job_id: str | None = None
    stream: str | None = None
    chunk: int | None = None
    parent_id: str | None = None
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    session: str = ""
    seq: int = 0
    ts: float = 0.0
    version: str = PROTOCOL_VERSION


def _as_view(frame: Any) -> memoryview:
    """A flat byte view of one received frame (bytes, bytearray, memoryview or ``zmq.Frame``)."""
    try:
        if hasattr(frame, "buffer") and not isinstance(frame, memoryview | bytes | bytearray):
            frame = frame.buffer  # zmq.Frame
        view = memoryview(frame)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        return view
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"frame of type {type(frame).__name__} is not bytes-like", code="bad_envelope") from exc


def _unpack(data: memoryview, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True, timestamp=0)
    except msgpack.exceptions.ExtraData as exc:
        raise ProtocolError(f"{what} has trailing bytes after the msgpack map", code="bad_message") from exc
    except (msgpack.exceptions.StackError, RecursionError) as exc:  # RecursionError: pure-Python msgpack
        raise ProtocolError(f"{what} is nested too deeply to decode", code="bad_message") from exc
    except (ValueError, TypeError, OverflowError) as exc:  # FormatError, UnicodeDecodeError, int keys...
        raise ProtocolError(f"{what} is not valid msgpack: {exc}", code="bad_message") from exc


def _walk(
    root: Any,
    what: str,
    max_nesting: int,
    buffers: Sequence[memoryview] | None = None,
    used: list[bool] | None = None,
    max_ndim: int = 8,
) -> None:
    """Check depth, key types and value types; replace array descriptors in place (content only).

    Iterative, so hostile nesting cannot exhaust the Python stack.
    """
    if not isinstance(root, dict):
        raise ProtocolError(f"{what} must be a msgpack map, got {type(root).__name__}", code="bad_message")
    if ND_MARKER in root:
        raise ProtocolError(f"{what} itself cannot be an array descriptor", code="bad_message")
    stack: list[tuple[dict | list, int]] = [(root, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > max_nesting:
            raise ProtocolError(f"{what} is nested deeper than {max_nesting} levels", code="bad_message")
        if isinstance(container, dict):
            for key in container:
                if type(key) is not str:
                    raise ProtocolError(f"{what} has a map key of type {type(key).__name__}; only str keys "
                                        "are allowed", code="bad_message")
            slots: Any = container.items()
        else:
            slots = enumerate(container)
        replacements = []
        for slot, value in slots:
            if isinstance(value, dict):
                if ND_MARKER in value and buffers is not None and used is not None:
                    if depth + 1 > max_nesting:
                        raise ProtocolError(f"{what} is nested deeper than {max_nesting} levels",
                                            code="bad_message")
                    replacements.append((slot, decode_array(value, buffers, used, max_ndim)))
                else:
                    stack.append((value, depth + 1))
            elif isinstance(value, list):
                stack.append((value, depth + 1))
            elif not isinstance(value, _SCALAR_TYPES):
                raise ProtocolError(f"{what} holds a value of type {type(value).__name__} (msgpack ext types "
                                    "are not allowed)", code="bad_message")
        for slot, array in replacements:
            container[slot] = array


def _opt(header: dict[str, Any], name: str, kind: type) -> Any:
    value = header.get(name)
    if value is not None and type(value) is not kind:
        raise ProtocolError(f"header field {name!r} must be {kind.__name__} or nil, got {type(value).__name__}",
                            code="bad_message")
    return value


def _parse_version(value: Any) -> tuple[int, int]:
    if not isinstance(value, str):
        raise ProtocolError("header field 'v' must be a 'major.minor' string", code="bad_message")
    major, _, minor = value.partition(".")
    if not (major.isdigit() and minor.isdigit()) or len(value) > 16:
        raise ProtocolError(f"header field 'v' must look like '1.0', got {value[:16]!r}", code="bad_message")
    return int(major), int(minor)


class Codec:
    """Encodes and decodes B4D messages for one socket owner.

    Signs with HMAC-SHA256(key, header || content); an empty ``key`` disables signing (then the
    signature frame must be empty). Keeps per-peer-session replay state: ``seq`` must strictly
    increase per sender session (ZeroMQ delivers one peer's messages in order); our own ``seq``
    starts at ``first_seq`` (default: the wall clock in microseconds) and grows by one. ``limits`` bound
    what this side accepts and, on encode, what it sends (set it to the peer's advertised limits
    after ``welcome``). Not thread-safe for decode; encode may be called from one thread at a time.
    """

    def __init__(self, key: bytes, session: str | None = None, limits: Limits | None = None,
                 first_seq: int | None = None) -> None:
        if not isinstance(key, bytes):
            raise ValidationError("signing key must be bytes (use bytes.fromhex on the connection file key)")
        self.key = key
        self.session = session if session is not None else uuid.uuid4().hex
        self.limits = limits if limits is not None else Limits()
        # Default first seq = wall clock in microseconds: a codec re-created later with the same
        # session id (add-on reloaded, same client instance id) still sends increasing seqs.
        self._seq = itertools.count(first_seq if first_seq is not None else time.time_ns() // 1000)
        self._last_seq: OrderedDict[str, int] = OrderedDict()

    # ------------------------------------------------------------------ encode
    def _sign(self, header: bytes | memoryview, content: bytes | memoryview) -> bytes:
        if not self.key:
            return b""
        mac = hmac.new(self.key, header, hashlib.sha256)
        mac.update(content)
        return mac.digest()

    def encode(self, msg: Message) -> list:
        """Frames ``[tag, sig, header, content, *buffers]`` for ``msg`` (sets its session, seq, ts).

        Arrays of at least ``limits.inline_threshold`` bytes become zero-copy ``memoryview`` buffer
        frames over (a C-contiguous little-endian version of) the array: do not modify the array
        until the send has completed. Raises ValidationError for unsendable values and
        ProtocolError ``too_large``/``too_many_frames`` when the message breaks ``limits``.
        """
        limits = self.limits
        if not isinstance(msg.type, str) or not 0 < len(msg.type) <= 64:
            raise ValidationError(f"message type must be a non-empty string of <= 64 chars, got {msg.type!r:.70}")
        if not isinstance(msg.content, dict):
            raise ValidationError(f"message content must be a dict, got {type(msg.content).__name__}")
        buffers: list[memoryview] = []

        def default(value: Any) -> Any:
            if isinstance(value, np.ndarray):
                return encode_array(value, buffers, limits.inline_threshold)
            if isinstance(value, np.generic):
                return value.item()
            raise ValidationError(f"cannot send a value of type {type(value).__name__} in message "
                                  f"{msg.type!r}; use dicts, lists, str, bytes, numbers, bool, None, arrays")

        try:
            content = msgpack.packb(msg.content, default=default, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"cannot encode content of {msg.type!r}: {exc}") from exc
        if len(content) > limits.max_content_bytes:
            raise ProtocolError(f"{msg.type} content is {len(content)} bytes; limit {limits.max_content_bytes} "
                                "(send big arrays as buffers)", code="too_large")
        if len(buffers) > limits.max_buffers or 4 + len(buffers) > limits.max_frames_per_message:
            raise ProtocolError(f"{msg.type} has {len(buffers)} buffers; limit {limits.max_buffers}",
                                code="too_many_frames")
        for index, buf in enumerate(buffers):
            if buf.nbytes > limits.max_frame_bytes:
                raise ProtocolError(f"{msg.type} buffer {index} is {buf.nbytes} bytes; limit "
                                    f"{limits.max_frame_bytes} per frame (split into chunks)", code="too_large")
        msg.session = self.session
        msg.seq = next(self._seq)
        msg.ts = time.time()
        msg.version = PROTOCOL_VERSION
        header_map: dict[str, Any] = {
            "v": PROTOCOL_VERSION, "type": msg.type, "msg_id": msg.msg_id, "session": msg.session,
            "seq": msg.seq, "ts": msg.ts, "buf_lens": [buf.nbytes for buf in buffers],
        }
        for name in ("parent_id", "job_id", "stream", "chunk"):
            value = getattr(msg, name)
            if value is not None:
                header_map[name] = value
        try:
            header = msgpack.packb(header_map, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValidationError(f"cannot encode header of {msg.type!r}: {exc}") from exc
        if len(header) > limits.max_header_bytes:
            raise ProtocolError(f"{msg.type} header is {len(header)} bytes; limit {limits.max_header_bytes}",
                                code="too_large")
        return [PROTOCOL_TAG, self._sign(header, content), header, content, *buffers]

    # ------------------------------------------------------------------ decode
    def decode(self, frames: Sequence[Any]) -> Message:
        """Verify and decode frames (without routing id) into a :class:`Message`.

        Arrays in the content come back as read-only ``np.frombuffer`` views over the received
        frames (keep the frames alive as long as the arrays). Raises ProtocolError with a code
        from :data:`ERROR_CODES`; nothing is allocated in proportion to declared sizes first.
        """
        limits = self.limits
        count = len(frames)
        if count < 4:
            raise ProtocolError(f"a B4D message has at least 4 frames, got {count}", code="bad_envelope")
        if count > limits.max_frames_per_message or count - 4 > limits.max_buffers:
            raise ProtocolError(f"message has {count} frames; limit {limits.max_frames_per_message} frames "
                                f"and {limits.max_buffers} buffers", code="too_many_frames")
        views = [_as_view(frame) for frame in frames]
        tag = bytes(views[0][:8])
        if tag != PROTOCOL_TAG:
            if len(tag) == 4 and tag[:3] == PROTOCOL_TAG[:3]:
                raise ProtocolError(f"peer speaks {tag!r}; this side speaks {PROTOCOL_TAG!r} "
                                    f"(protocol {PROTOCOL_VERSION})", code="version_unsupported")
            raise ProtocolError("first frame is not the B4D protocol tag", code="bad_tag")
        signature, header_view, content_view, buffers = views[1], views[2], views[3], views[4:]
        if header_view.nbytes > limits.max_header_bytes:
            raise ProtocolError(f"header is {header_view.nbytes} bytes; limit {limits.max_header_bytes}",
                                code="too_large")
        if content_view.nbytes > limits.max_content_bytes:
            raise ProtocolError(f"content is {content_view.nbytes} bytes; limit {limits.max_content_bytes}",
                                code="too_large")
        for index, buf in enumerate(buffers):
            if buf.nbytes > limits.max_frame_bytes:
                raise ProtocolError(f"buffer {index} is {buf.nbytes} bytes; limit {limits.max_frame_bytes}",
                                    code="too_large")
        self._check_signature(signature, header_view, content_view)

        header = _unpack(header_view, "header")
        _walk(header, "header", limits.max_nesting)
        msg = self._header_message(header)
        last = self._last_seq.get(msg.session)
        if last is not None and msg.seq <= last:
            raise ProtocolError(f"message seq {msg.seq} from session {msg.session[:12]} is not after {last} "
                                "(replayed or reordered)", code="replayed")
        buf_lens = header.get("buf_lens", [])
        if not isinstance(buf_lens, list) or any(type(n) is not int or n < 0 for n in buf_lens):
            raise ProtocolError("header field 'buf_lens' must be a list of non-negative ints", code="bad_message")
        if len(buf_lens) != len(buffers):
            raise ProtocolError(f"header declares {len(buf_lens)} buffers, message carries {len(buffers)}",
                                code="bad_buffers")
        for index, (declared, buf) in enumerate(zip(buf_lens, buffers)):
            if declared != buf.nbytes:
                raise ProtocolError(f"buffer {index} is {buf.nbytes} bytes, header declares {declared}",
                                    code="bad_buffers")

        content = _unpack(content_view, "content")
        used = [False] * len(buffers)
        _walk(content, "content", limits.max_nesting, buffers, used, limits.max_array_ndim)
        if not all(used):
            raise ProtocolError(f"buffer {used.index(False)} is not referenced by any array", code="bad_array")
        msg.content = content
        self._remember(msg.session, msg.seq)
        return msg

    def _check_signature(self, signature: memoryview, header: memoryview, content: memoryview) -> None:
        if not self.key:
            if signature.nbytes:
                raise ProtocolError("message is signed but this side has no key", code="bad_signature")
            return
        if signature.nbytes != SIGNATURE_BYTES:
            raise ProtocolError(f"signature is {signature.nbytes} bytes, expected {SIGNATURE_BYTES} "
                                "(unsigned or truncated)", code="bad_signature")
        if not hmac.compare_digest(bytes(signature), self._sign(header, content)):
            raise ProtocolError("signature does not match (wrong key or altered message)", code="bad_signature")

    @staticmethod
    def _header_message(header: dict[str, Any]) -> Message:
        major, minor = _parse_version(header.get("v"))
        if major != PROTOCOL_MAJOR:
            raise ProtocolError(f"peer speaks protocol {major}.{minor}; this side speaks {PROTOCOL_VERSION}",
                                code="version_unsupported")
        msg_type, msg_id, session, seq = (header.get(k) for k in ("type", "msg_id", "session", "seq"))
        if type(msg_type) is not str or not 0 < len(msg_type) <= 64:
            raise ProtocolError("header field 'type' must be a non-empty string (<= 64 chars)", code="bad_message")
        if type(msg_id) is not str or not 0 < len(msg_id) <= 64:
            raise ProtocolError("header field 'msg_id' must be a non-empty string (<= 64 chars)",
                                code="bad_message")
        if type(session) is not str or not 0 < len(session) <= 64:
            raise ProtocolError("header field 'session' must be a non-empty string (<= 64 chars)",
                                code="bad_message")
        if type(seq) is not int or seq < 0:
            raise ProtocolError("header field 'seq' must be a non-negative int", code="bad_message")
        ts = header.get("ts", 0.0)
        if type(ts) not in (int, float):
            raise ProtocolError("header field 'ts' must be a number", code="bad_message")
        chunk = _opt(header, "chunk", int)
        if chunk is not None and chunk < 0:
            raise ProtocolError("header field 'chunk' must be >= 0", code="bad_message")
        return Message(
            type=msg_type, content={}, job_id=_opt(header, "job_id", str), stream=_opt(header, "stream", str),
            chunk=chunk, parent_id=_opt(header, "parent_id", str), msg_id=msg_id, session=session, seq=seq,
            ts=float(ts), version=f"{major}.{minor}",
        )

    def _remember(self, session: str, seq: int) -> None:
        self._last_seq[session] = seq
        self._last_seq.move_to_end(session)
        while len(self._last_seq) > _MAX_SESSIONS:
            self._last_seq.popitem(last=False)

    def forget_session(self, session: str) -> None:
        """Drop replay state for a peer session. Its earlier signed messages become replayable, so
        the server does not call this when a client leaves (the state is LRU-bounded anyway)."""
        self._last_seq.pop(session, None)
