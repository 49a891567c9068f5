"""numpy / pure-Python reference of the native quantisers and entropy coder.

Written for clarity; it defines the results the native module must reproduce
exactly (same symbols, same packed bytes, same rANS streams). Definitions:
``cpp/include/quantonium/quant.hpp`` and ``entropy.hpp``.
"""

from __future__ import annotations

import numpy as np

RANS_SCALE_BITS = 16
RANS_SCALE = 1 << RANS_SCALE_BITS
RANS_L = 1 << 23

__all__ = [
    "dequantize_fixed",
    "dequantize_uniform",
    "entropy_order0",
    "normalize_frequencies",
    "pack_bits",
    "quantize_fixed",
    "quantize_uniform",
    "rans_decode",
    "rans_encode",
    "unpack_bits",
]


def _groups(n: int, group_size: int) -> int:
    return 0 if n == 0 else -(-n // group_size)


def _per_value(values: np.ndarray, n: int, group_size: int) -> np.ndarray:
    """Repeats one value per group to one value per element."""
    return np.repeat(values, group_size)[:n]


def quantize_uniform(x, steps, group_size: int, dead_zone: float = 0.0, symbol_dtype="int8") -> np.ndarray:
    x = np.asarray(x)
    flat = x.reshape(-1)
    s = _per_value(np.asarray(steps, np.float32).astype(x.dtype), flat.size, group_size)
    t = flat / s
    q = np.rint(t)
    q[np.abs(t) < x.dtype.type(0.5 + dead_zone)] = 0
    info = np.iinfo(symbol_dtype)
    if np.any(~np.isfinite(q)) or q.min(initial=0) < info.min or q.max(initial=0) > info.max:
        raise ValueError("values do not fit in the symbol type")
    return q.astype(symbol_dtype).reshape(x.shape)


def dequantize_uniform(q, steps, group_size: int, dtype=np.float32) -> np.ndarray:
    q = np.asarray(q)
    s = _per_value(np.asarray(steps, np.float32).astype(dtype), q.size, group_size)
    return (q.reshape(-1).astype(dtype) * s).reshape(q.shape)


def pack_bits(values, bits: int) -> np.ndarray:
    """LSB-first packing of unsigned values of ``bits`` bits."""
    v = np.asarray(values).reshape(-1).astype(np.uint64)
    bit_matrix = ((v[:, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8)
    return np.packbits(bit_matrix.reshape(-1), bitorder="little")


def unpack_bits(data, bits: int, count: int) -> np.ndarray:
    b = np.unpackbits(np.frombuffer(bytes(data), np.uint8), bitorder="little")[: count * bits]
    weights = (1 << np.arange(bits, dtype=np.uint64))
    return (b.reshape(count, bits).astype(np.uint64) * weights).sum(axis=1)


def quantize_fixed(x, bits: int, group_size: int, asymmetric: bool = False):
    """Returns (packed uint8, scales float16, mins float16 or None)."""
    flat = np.asarray(x).reshape(-1).astype(np.float32)
    n = flat.size
    ng = _groups(n, group_size)
    pad = np.full(ng * group_size - n, np.nan, np.float32)
    g = np.concatenate([flat, pad]).reshape(ng, group_size)
    qmax, levels = (1 << (bits - 1)) - 1, (1 << bits) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        if asymmetric:
            mins = np.nanmin(g, axis=1).astype(np.float16)
            m = mins.astype(np.float32)
            scales = ((np.nanmax(g, axis=1) - m) / np.float32(levels)).astype(np.float16)
            s = scales.astype(np.float32)
            q = np.where(s[:, None] == 0, 0, np.clip(np.rint((g - m[:, None]) / s[:, None]), 0, levels))
        else:
            mins = None
            scales = (np.nanmax(np.abs(g), axis=1) / np.float32(qmax)).astype(np.float16)
            s = scales.astype(np.float32)
            q = np.where(s[:, None] == 0, qmax, np.clip(np.rint(g / s[:, None]), -qmax, qmax) + qmax)
    q = np.nan_to_num(q.reshape(-1)[:n]).astype(np.uint8)
    return pack_bits(q, bits), scales, mins


def dequantize_fixed(packed, scales, mins, bits: int, group_size: int, count: int) -> np.ndarray:
    q = unpack_bits(packed, bits, count).astype(np.float32)
    s = _per_value(np.asarray(scales).astype(np.float32), count, group_size)
    if mins is not None:
        return _per_value(np.asarray(mins).astype(np.float32), count, group_size) + q * s
    return (q - np.float32((1 << (bits - 1)) - 1)) * s


def entropy_order0(symbols) -> float:
    """Empirical order-0 entropy in bits per symbol."""
    _, counts = np.unique(np.asarray(symbols).reshape(-1), return_counts=True)
    if counts.size <= 1:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def normalize_frequencies(counts) -> list[int]:
    """Counts -> frequencies summing to 2**16 (the native rule, exactly)."""
    counts = [int(c) for c in counts]
    total = sum(counts)
    f = [0 if c == 0 else max(1, c * RANS_SCALE // total) for c in counts]
    diff = RANS_SCALE - sum(f)
    while diff != 0:
        best = max(range(len(f)), key=lambda i: (f[i], -i))
        if diff > 0:
            f[best] += diff
            diff = 0
        else:
            take = min(-diff, f[best] - 1)
            f[best] -= take
            diff += take
    return f


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def rans_encode(symbols) -> bytes:
    """The native stream, byte for byte (slow: for tests on small inputs)."""
    s = [int(v) for v in np.asarray(symbols).reshape(-1)]
    out = bytearray(_varint(len(s)))
    if not s:
        return bytes(out)
    lo, hi = min(s), max(s)
    counts = [0] * (hi - lo + 1)
    for v in s:
        counts[v - lo] += 1
    freq = normalize_frequencies(counts)
    out += _varint((lo << 1) ^ (lo >> 63))
    out += _varint(len(freq))
    for f in freq:
        out += _varint(f)
    if freq.count(RANS_SCALE) == 1:
        return bytes(out)
    cum = np.concatenate([[0], np.cumsum(freq)]).tolist()
    x = RANS_L
    rev = bytearray()
    for v in reversed(s):
        f, c = freq[v - lo], cum[v - lo]
        x_max = ((RANS_L >> RANS_SCALE_BITS) << 8) * f
        while x >= x_max:
            rev.append(x & 0xFF)
            x >>= 8
        x = ((x // f) << RANS_SCALE_BITS) + (x % f) + c
    out += x.to_bytes(4, "little")
    out += bytes(reversed(rev))
    return bytes(out)


def rans_decode(data: bytes, count: int) -> list[int]:
    """Decodes a stream made by :func:`rans_encode` (no hostile-input checks)."""
    data = bytes(data)
    pos = 0

    def varint() -> int:
        nonlocal pos
        v, shift = 0, 0
        while True:
            b = data[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    n = varint()
    assert n == count
    if n == 0:
        return []
    z = varint()
    lo = (z >> 1) ^ -(z & 1)
    span = varint()
    freq = [varint() for _ in range(span)]
    if freq.count(RANS_SCALE) == 1:
        return [lo + freq.index(RANS_SCALE)] * n
    cum = np.concatenate([[0], np.cumsum(freq)]).tolist()
    x = int.from_bytes(data[pos : pos + 4], "little")
    pos += 4
    out = []
    for _ in range(n):
        slot = x & (RANS_SCALE - 1)
        sym = int(np.searchsorted(cum, slot, side="right")) - 1
        out.append(lo + sym)
        x = freq[sym] * (x >> RANS_SCALE_BITS) + slot - cum[sym]
        while x < RANS_L:
            x = (x << 8) | data[pos]
            pos += 1
    return out
