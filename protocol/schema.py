"""Field checkers for typed protocol messages (the schema half of ``protocol.messages``).

A checker validates one field value and converts between the Python value and its msgpack form:
``load(value)`` checks a value received from the wire (or given to a constructor) and returns the
Python value; ``dump(value)`` returns what goes into the content map. A failed check raises
:class:`FieldError` with a message that does not yet name the field; the message class adds the
type and field name and turns it into a ProtocolError (received) or ValidationError (sent).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocol.arrays import ALLOWED_DTYPES, expected_nbytes

#: Names used as job ids, stream names and input names: they become file and folder names on
#: the server, so only a safe character set, no leading dot, at most 64 characters.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


class FieldError(Exception):
    """A field value failed its check; ``str(exc)`` says what was expected and what came."""


def _kind(value: Any) -> str:
    return "nil" if value is None else type(value).__name__


class Check:
    """Base checker: accepts anything, dumps unchanged."""

    def load(self, value: Any) -> Any:
        return value

    def dump(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class Str(Check):
    """A str of at most ``max_len`` characters; ``pattern`` (full match) if given."""

    max_len: int = 256
    min_len: int = 0
    pattern: re.Pattern[str] | None = None

    def load(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError(f"must be a string, got {_kind(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise FieldError(f"must be {self.min_len}..{self.max_len} characters, got {len(value)}")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise FieldError(f"{value[:70]!r} is not a valid name (letters, digits, '.', '_', '-'; "
                             "at most 64; no leading '.' or '-')")
        return value


NAME = Str(max_len=64, min_len=1, pattern=NAME_PATTERN)


@dataclass(frozen=True)
class Int(Check):
    """An int (bool refused) within ``[minimum, maximum]``."""

    minimum: int | None = 0
    maximum: int | None = (1 << 63) - 1

    def load(self, value: Any) -> int:
        if type(value) is not int:
            raise FieldError(f"must be an integer, got {_kind(value)}")
        if self.minimum is not None and value < self.minimum:
            raise FieldError(f"must be >= {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise FieldError(f"must be <= {self.maximum}, got {value}")
        return value


@dataclass(frozen=True)
class Float(Check):
    """A finite real number (int accepted) >= ``minimum``; returned as float."""

    minimum: float | None = None

    def load(self, value: Any) -> float:
        if type(value) not in (int, float):
            raise FieldError(f"must be a number, got {_kind(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise FieldError(f"must be finite, got {value}")
        if self.minimum is not None and value < self.minimum:
            raise FieldError(f"must be >= {self.minimum}, got {value}")
        return value


class Bool(Check):
    """True or False."""

    def load(self, value: Any) -> bool:
        if type(value) is not bool:
            raise FieldError(f"must be true or false, got {_kind(value)}")
        return value


@dataclass(frozen=True)
class OneOf(Check):
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def load(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise FieldError(f"must be one of {list(self.values)}, got {str(value)[:40]!r}")
        return value


@dataclass(frozen=True)
class Optional(Check):
    """``None`` or a value accepted by ``inner``."""

    inner: Check

    def load(self, value: Any) -> Any:
        return None if value is None else self.inner.load(value)

    def dump(self, value: Any) -> Any:
        return None if value is None else self.inner.dump(value)


@dataclass(frozen=True)
class ListOf(Check):
    """A list (tuples accepted when sending) of at most ``max_len`` items, each checked."""

    inner: Check
    max_len: int = 1024

    def load(self, value: Any) -> list:
        if not isinstance(value, list | tuple):
            raise FieldError(f"must be a list, got {_kind(value)}")
        if len(value) > self.max_len:
            raise FieldError(f"must have at most {self.max_len} items, got {len(value)}")
        out = []
        for index, item in enumerate(value):
            try:
                out.append(self.inner.load(item))
            except FieldError as exc:
                raise FieldError(f"item {index} {exc}") from None
        return out

    def dump(self, value: Any) -> list:
        return [self.inner.dump(item) for item in value]


@dataclass(frozen=True)
class MapOf(Check):
    """A map with str keys (checked by ``key``) and checked values; at most ``max_len`` entries."""

    inner: Check
    key: Check = field(default_factory=lambda: Str(max_len=64, min_len=1))
    max_len: int = 1024

    def load(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise FieldError(f"must be a map, got {_kind(value)}")
        if len(value) > self.max_len:
            raise FieldError(f"must have at most {self.max_len} entries, got {len(value)}")
        out = {}
        for name, item in value.items():
            try:
                out[self.key.load(name)] = self.inner.load(item)
            except FieldError as exc:
                raise FieldError(f"entry {str(name)[:40]!r} {exc}") from None
        return out

    def dump(self, value: Any) -> dict:
        return {name: self.inner.dump(item) for name, item in value.items()}


class AnyMap(Check):
    """A free-form map with str keys (kind-specific parameters, metadata); may hold arrays."""

    def load(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise FieldError(f"must be a map, got {_kind(value)}")
        if any(not isinstance(key, str) for key in value):
            raise FieldError("must have only string keys")
        return value


@dataclass(frozen=True)
class Array(Check):
    """A numpy array (decoded from a descriptor) with optional dtype and ndim constraints."""

    dtypes: tuple[str, ...] | None = None
    ndims: tuple[int, ...] | None = None

    def load(self, value: Any) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise FieldError(f"must be an array, got {_kind(value)}")
        if self.dtypes is not None and value.dtype.str not in self.dtypes:
            raise FieldError(f"must have dtype in {list(self.dtypes)}, got {value.dtype.str}")
        if self.ndims is not None and value.ndim not in self.ndims:
            raise FieldError(f"must have {' or '.join(map(str, self.ndims))} dimensions, got {value.ndim}")
        return value


@dataclass(frozen=True)
class Record(Check):
    """A nested typed record: ``build(dict) -> obj`` and ``to_dict(obj) -> dict``."""

    kind: type
    build: Callable[[dict], Any]
    to_dict: Callable[[Any], dict]

    def load(self, value: Any) -> Any:
        if isinstance(value, self.kind):
            return value
        if not isinstance(value, dict):
            raise FieldError(f"must be a map, got {_kind(value)}")
        try:
            return self.build(value)
        except FieldError:
            raise
        except Exception as exc:  # Recast4DError from the record's own validation
            raise FieldError(str(exc)) from None

    def dump(self, value: Any) -> dict:
        return self.to_dict(value)


class FrameRange(Check):
    """``[start, stop)`` frame indices, ``0 <= start <= stop``."""

    def load(self, value: Any) -> tuple[int, int]:
        if not isinstance(value, list | tuple) or len(value) != 2 or any(type(v) is not int for v in value):
            raise FieldError(f"must be [start, stop] integers, got {str(value)[:40]}")
        start, stop = value
        if not 0 <= start <= stop:
            raise FieldError(f"must satisfy 0 <= start <= stop, got [{start}, {stop}]")
        return (start, stop)

    def dump(self, value: Any) -> list[int]:
        return list(value)


@dataclass(frozen=True)
class ArraySpec:
    """Declared layout of an input the client will upload: dtype string, shape, total bytes."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @classmethod
    def from_dict(cls, data: dict) -> ArraySpec:
        """Check dtype (allow-list), shape (non-negative ints) and ``nbytes == prod(shape) * itemsize``."""
        dtype = data.get("dtype")
        if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
            raise FieldError(f"dtype {str(dtype)[:40]!r} is not allowed; allowed: {sorted(ALLOWED_DTYPES)}")
        shape = ListOf(Int(), max_len=8).load(data.get("shape"))
        nbytes = Int().load(data.get("nbytes"))
        if expected_nbytes(shape, np.dtype(dtype).itemsize) != nbytes:
            raise FieldError(f"nbytes {nbytes} does not match shape {shape} of {dtype}")
        return cls(dtype=dtype, shape=tuple(shape), nbytes=nbytes)

    @classmethod
    def of(cls, array: np.ndarray) -> ArraySpec:
        """The spec of an array as it will be sent (little-endian dtype string)."""
        dtype = array.dtype.newbyteorder("<") if array.dtype.str.startswith(">") else array.dtype
        return cls.from_dict({"dtype": dtype.str, "shape": list(array.shape), "nbytes": int(array.nbytes)})

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape), "nbytes": self.nbytes}


@dataclass(frozen=True)
class GpuInfo:
    """The server's GPU: device name and total memory in bytes."""

    name: str
    mem: int

    @classmethod
    def from_dict(cls, data: dict) -> GpuInfo:
        return cls(name=Str().load(data.get("name")), mem=Int().load(data.get("mem")))

    def to_dict(self) -> dict:
        return {"name": self.name, "mem": self.mem}
