"""Typed errors shared by the protocol, the backend and the add-on.

Every error a user can cause carries a stable ``code`` (sent on the wire in ``error`` messages),
a message written for a person, and whether retrying the same request can succeed.
"""

from __future__ import annotations


class Recast4DError(Exception):
    """Base class: ``code`` is machine-readable, ``str(err)`` is for people."""

    code: str = "internal"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ProtocolError(Recast4DError):
    """A message broke the wire format (framing, signature, limits, schema)."""

    code = "bad_message"


class ValidationError(Recast4DError):
    """A request is well-formed on the wire but its values are unusable (shapes, NaN cameras...)."""

    code = "invalid_input"


class CameraError(ValidationError):
    """A camera is not a valid pinhole camera (non-finite values, fx <= 0, non-orthonormal R...)."""

    code = "invalid_camera"


class MissingWeightsError(Recast4DError):
    """An engine needs a local weights folder that is not there."""

    code = "missing_weights"


class DiskFull(Recast4DError):
    """The server's disk (or quota) is full: the job that needed the space fails, the server keeps serving.

    Retryable: submit the same job again once space was freed.
    """

    code = "disk_full"
    retryable = True


class Cancelled(Recast4DError):
    """The job was cancelled by its owner; raised at the next cancel check."""

    code = "cancelled"
