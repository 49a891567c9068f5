"""What every codec shares: targets, the payload framing, dtype handling.

A codec turns one tensor into a *payload*: a self-contained byte string that
holds everything its decoder needs (its parameters as a small JSON header, and
its byte streams). The bits a tensor is said to cost are 8 * len(payload):
scales, positions, tables and the header are all counted.

Payload layout::

    u32 little-endian   header length H
    H bytes             JSON header: {"codec", "version", "params", "streams": [len, ...]}
    streams             concatenated, lengths as listed

Decoders validate everything they read and raise ``CodecError`` (a
``ValueError``) on any inconsistency. They check every stream against the
claimed shape (an rANS stream's own symbol count, a raw stream's length)
and compute their working memory (output and temporaries) *before*
allocating anything, refusing with :class:`MemoryLimitError` above the limit
(``quantonium.limits``: half the machine's memory unless set). A constant
tensor legitimately costs a few bytes whatever its size (its rANS stream is
one table entry), so the payload's size never bounds the output: the
memory limit does.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import limits

__all__ = [
    "DTYPES",
    "CodecError",
    "Encoded",
    "MemoryLimitError",
    "Target",
    "as_float32",
    "from_float32",
    "itemsize",
    "pack_payload",
    "rans_count",
    "require_memory",
    "unpack_payload",
]

MAX_HEADER = 1 << 20


class CodecError(ValueError):
    """A payload or parameter that a decoder cannot accept."""


class MemoryLimitError(CodecError):
    """Decoding would need more working memory than the limit allows."""


#: Working memory every decode is counted besides its arrays (parsed header, small arrays, Python objects).
BOOKKEEPING = 64 << 10


def require_memory(nbytes: int, limit: int | None, what: str) -> None:
    """Raises :class:`MemoryLimitError` when ``nbytes`` (+ :data:`BOOKKEEPING`) of working memory exceed
    ``limit`` (None: the default limit)."""
    limit = limits.max_memory() if limit is None else limit
    nbytes += BOOKKEEPING
    if nbytes > limit:
        raise MemoryLimitError(f"decoding needs {limits.format_size(nbytes)} of working memory ({what}), "
                               f"above the memory limit of {limits.format_size(limit)}")


def rans_count(stream, expected: int, what: str) -> None:
    """Checks that an rANS stream holds ``expected`` symbols before anything is allocated for it.

    Reads only the stream's header (``quantonium_native.rans_stream_info``,
    both stream formats); the native decoder checks the rest.
    """
    import quantonium_native as qn

    try:
        n = qn.rans_stream_info(stream)["count"]
    except ValueError as e:
        raise CodecError(f"{what}: rANS stream of {len(memoryview(stream))} bytes has no valid header ({e})") from None
    if n != expected:
        raise CodecError(f"{what}: rANS stream holds {n} symbols, the shape needs {expected}")


def _bfloat16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


#: Source dtypes the codecs accept, by the name stored in files.
DTYPES = ("float32", "float16", "bfloat16")


def dtype_name(a: np.ndarray) -> str:
    if a.dtype == np.float32:
        return "float32"
    if a.dtype == np.float16:
        return "float16"
    if a.dtype.name == "bfloat16":
        return "bfloat16"
    raise TypeError(f"unsupported tensor dtype {a.dtype}; expected one of {', '.join(DTYPES)}")


def numpy_dtype(name: str) -> np.dtype:
    if name == "float32":
        return np.dtype(np.float32)
    if name == "float16":
        return np.dtype(np.float16)
    if name == "bfloat16":
        return _bfloat16()
    raise CodecError(f"unknown dtype {name!r}")


def itemsize(name: str) -> int:
    return {"float32": 4, "float16": 2, "bfloat16": 2}[name]


def as_float32(a: np.ndarray) -> np.ndarray:
    """The tensor's values in float32 (exact for all supported dtypes)."""
    return np.ascontiguousarray(a, dtype=np.float32)


def from_float32(x: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(numpy_dtype(name))


@dataclass(frozen=True)
class Target:
    """What rate control aims at: exactly one of an SNR (dB), bits per weight, or a kept fraction."""

    snr_db: float | None = None
    bpw: float | None = None
    keep: float | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.snr_db, self.bpw, self.keep) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one target: snr_db, bpw or keep")
        if self.snr_db is not None and not (math.isfinite(self.snr_db) and 0 < self.snr_db <= 200):
            raise ValueError(f"target SNR must be in (0, 200] dB, got {self.snr_db}")
        if self.bpw is not None and not (0 < self.bpw <= 32):
            raise ValueError(f"target bits per weight must be in (0, 32], got {self.bpw}")
        if self.keep is not None and not (0 < self.keep <= 1):
            raise ValueError(f"kept fraction must be in (0, 1], got {self.keep}")

    def describe(self) -> str:
        if self.snr_db is not None:
            return f"snr={self.snr_db:g} dB"
        if self.bpw is not None:
            return f"bpw={self.bpw:g}"
        return f"keep={self.keep:g}"


@dataclass
class Encoded:
    """One encoded tensor: its payload and what was measured while making it."""

    codec: str
    version: int
    payload: bytes
    numel: int
    snr_db: float
    params: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)
    stored_values: int = 0  # retained coefficients ("quantum states") or quantised weights
    #: the decoded payload (float32), when the encoder already made it to measure the SNR;
    #: never stored; the pipeline uses it for the Shannon gap and then drops it
    recon: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def bits(self) -> int:
        return 8 * len(self.payload)

    @property
    def bpw(self) -> float:
        return self.bits / self.numel if self.numel else 0.0


def _header(codec: str, version: int, params: dict[str, Any], lengths: list[int]) -> bytes:
    return json.dumps(
        {"codec": codec, "version": version, "params": params, "streams": lengths},
        separators=(",", ":"),
        allow_nan=False,
    ).encode()


def pack_payload(codec: str, version: int, params: dict[str, Any], streams: list[bytes]) -> bytes:
    header = _header(codec, version, params, [len(s) for s in streams])
    return struct.pack("<I", len(header)) + header + b"".join(streams)


def framing_bytes(codec: str, version: int, params: dict[str, Any], lengths: list[int]) -> int:
    """Bytes a payload spends on its framing (length field + JSON header) for streams of these lengths."""
    return 4 + len(_header(codec, version, params, lengths))


def unpack_payload(payload, codec: str, max_version: int) -> tuple[dict[str, Any], list[memoryview]]:
    """Validates the framing; returns (params, streams)."""
    mv = memoryview(payload).cast("B")
    if len(mv) < 4:
        raise CodecError("payload shorter than its header length field")
    (hlen,) = struct.unpack_from("<I", mv, 0)
    if hlen > MAX_HEADER or 4 + hlen > len(mv):
        raise CodecError(f"payload header length {hlen} exceeds the payload ({len(mv)} bytes)")
    try:
        header = limits.load_json(mv[4 : 4 + hlen], "payload header")
    except limits.JsonError as e:
        raise CodecError(str(e)) from None
    if not isinstance(header, dict) or header.get("codec") != codec:
        raise CodecError(f"payload is not a {codec!r} payload")
    version = header.get("version")
    if not isinstance(version, int) or version < 1 or version > max_version:
        raise CodecError(f"{codec} payload version {version!r} is not supported (this reader: <= {max_version})")
    lens = header.get("streams")
    params = header.get("params")
    if not isinstance(params, dict) or not isinstance(lens, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lens):
        raise CodecError("payload header lacks params or stream lengths")
    if 4 + hlen + sum(lens) != len(mv):
        raise CodecError(f"stream lengths ({sum(lens)} bytes) do not match the payload ({len(mv) - 4 - hlen} bytes)")
    streams, pos = [], 4 + hlen
    for n in lens:
        streams.append(mv[pos : pos + n])
        pos += n
    return params, streams


def param(params: dict, key: str, kind, *, lo=None, hi=None):
    """A validated parameter: present, of the right type, within [lo, hi]."""
    v = params.get(key)
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise CodecError(f"parameter {key!r} missing or not {kind.__name__}")
    if kind is float and not math.isfinite(v):
        raise CodecError(f"parameter {key!r} is not finite")
    if lo is not None and v < lo or hi is not None and v > hi:
        raise CodecError(f"parameter {key!r}={v} outside [{lo}, {hi}]")
    return v
