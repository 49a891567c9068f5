"""numpy / pure-Python reference of the native quantisers and entropy coder.

Written for clarity; it defines the results the native module must reproduce
exactly (same symbols, same packed bytes, same rANS streams of both formats,
same symbol histograms). Definitions: ``cpp/include/quantonium/quant.hpp``,
``entropy.hpp`` and ``rd.hpp``.
"""

from __future__ import annotations

import heapq

import numpy as np

RANS_SCALE_BITS = 16
RANS_SCALE = 1 << RANS_SCALE_BITS
RANS_L = 1 << 23
RANS2_MAGIC = b"\x80\x00\x02"  # format 2: a format-1 stream never starts 0x80 0x00
RANS2_L = 1 << 16
RANS2_CHUNK_LOG2 = 20

__all__ = [
    "dequantize_fixed",
    "dequantize_uniform",
    "entropy_order0",
    "normalize_frequencies",
    "normalize_frequencies_v2",
    "quantize_histograms",
    "pack_bits",
    "quantize_fixed",
    "quantize_uniform",
    "rans_decode",
    "rans_encode",
    "rans_encode_v1",
    "rans_encode_v2",
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


def rans_encode(symbols, format: int = 2, **options) -> bytes:
    """The native stream of either format, byte for byte (slow: for tests on small inputs)."""
    return rans_encode_v2(symbols, **options) if format == 2 else rans_encode_v1(symbols)


def rans_encode_v1(symbols) -> bytes:
    """Format 1: one state, byte renormalisation, 16-bit frequencies."""
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
    """Decodes a stream of either format made by :func:`rans_encode` (no hostile-input checks)."""
    data = bytes(data)
    if data[:2] == RANS2_MAGIC[:2]:
        return _rans_decode_v2(data, count)
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


# --- format 2 --------------------------------------------------------------------


def _ceil_log2(v: int) -> int:
    return max(0, (v - 1).bit_length())


def rans2_scale_bits(nsym: int) -> int:
    """The scale the encoder picks for ``nsym`` distinct symbols."""
    return min(16, max(12, _ceil_log2(max(nsym, 1)) + 4))


def rans2_ways(count: int) -> int:
    return 1 if count < 1 << 13 else 8 if count < 1 << 16 else 32


def normalize_frequencies_v2(counts, scale_bits: int) -> list[int]:
    """Counts -> frequencies summing to 2**scale_bits, every present symbol >= 1.

    floor(c * M / total) (1 if that is 0); a deficit goes +1 at a time to the
    largest remainders c * M mod total (lower index first; symbols raised from
    0 excluded); an excess is taken 1 at a time from the largest frequency
    (lower index first).
    """
    counts = [int(c) for c in counts]
    total, m = sum(counts), 1 << scale_bits
    if total == 0:
        return [0] * len(counts)
    f, rem, grow = [0] * len(counts), [0] * len(counts), []
    for i, c in enumerate(counts):
        if c:
            f[i], rem[i] = divmod(c * m, total)
            if f[i] == 0:
                f[i] = 1
            else:
                grow.append(i)
    diff = m - sum(f)
    if diff > 0:
        grow.sort(key=lambda i: (-rem[i], i))
        for i in grow[:diff]:
            f[i] += 1
    elif diff < 0:
        heap = [(-f[i], i) for i, c in enumerate(counts) if c]
        heapq.heapify(heap)
        for _ in range(-diff):
            _, i = heapq.heappop(heap)
            f[i] -= 1
            heapq.heappush(heap, (-f[i], i))
    return f


def _length_bytes(v: int) -> int:
    n = 1
    while n < 8 and v >> (8 * n):
        n += 1
    return n


def rans_encode_v2(symbols, *, ways: int = 0, chunk_log2: int = 0, scale_bits: int = 0, nthreads: int = 1) -> bytes:
    """Format 2 (see ``entropy.hpp``): interleaved 32-bit states, 16-bit words, chunks."""
    del nthreads  # the bytes never depend on it
    s = [int(v) for v in np.asarray(symbols).reshape(-1)]
    n = len(s)
    out = bytearray(RANS2_MAGIC + _varint(n))
    if n == 0:
        return bytes(out)
    lo = min(s)
    counts = [0] * (max(s) - lo + 1)
    for v in s:
        counts[v - lo] += 1
    nsym = sum(1 for c in counts if c)
    sb = scale_bits or rans2_scale_bits(nsym)
    w = ways or rans2_ways(n)
    cl = chunk_log2 or RANS2_CHUNK_LOG2
    out += _varint((lo << 1) ^ (lo >> 63)) + bytes([(sb - 10) | (w.bit_length() - 1) << 3, cl])
    runs = []  # (start, length) of present indexes
    for i, c in enumerate(counts):
        if c and runs and sum(runs[-1]) == i:
            runs[-1][1] += 1
        elif c:
            runs.append([i, 1])
    out += _varint(len(runs))
    for r, (start, length) in enumerate(runs):
        if r:
            out += _varint(start - sum(runs[r - 1]) - 1)
        out += _varint(length - 1)
    if nsym == 1:
        return bytes(out)
    freq = normalize_frequencies_v2(counts, sb)
    for f in freq:
        if f:
            out += _varint(f)
    cum = [0]
    for f in freq:
        cum.append(cum[-1] + f)
    size = 1 << cl
    lb = _length_bytes(4 * w + 2 * min(size, n))
    bodies = []
    for i0 in range(0, n, size):
        chunk = [v - lo for v in s[i0 : i0 + size]]
        x = [RANS2_L] * w
        words = []  # in the order the encoder emits them (the reverse of reading)
        g, tail = divmod(len(chunk), w)
        order = [(g * w + j, j) for j in reversed(range(tail))]
        order += [(k * w + j, j) for k in reversed(range(g)) for j in reversed(range(w))]
        for i, j in order:
            f, c = freq[chunk[i]], cum[chunk[i]]
            if x[j] >= f << (32 - sb):
                words.append(x[j] & 0xFFFF)
                x[j] >>= 16
            x[j] = ((x[j] // f) << sb) + x[j] % f + c
        bodies.append(b"".join(v.to_bytes(4, "little") for v in x) + b"".join(v.to_bytes(2, "little") for v in reversed(words)))
    for b in bodies[:-1]:  # the last body's length is implied
        out += len(b).to_bytes(lb, "little")
    for b in bodies:
        out += b
    return bytes(out)


def _rans_decode_v2(data: bytes, count: int) -> list[int]:
    pos = 3

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
    sb, w, cl = 10 + (data[pos] & 7), 1 << (data[pos] >> 3), data[pos + 1]
    pos += 2
    present, at = [], 0
    for r in range(varint()):
        if r:
            at += varint() + 1
        length = varint() + 1
        present += range(at, at + length)
        at += length
    if len(present) == 1:
        return [lo] * n
    freq = [varint() for _ in present]
    cum = np.concatenate([[0], np.cumsum(freq)]).tolist()
    size = 1 << cl
    lb = _length_bytes(4 * w + 2 * min(size, n))
    nchunks = -(-n // size)
    lens = [int.from_bytes(data[pos + k * lb : pos + (k + 1) * lb], "little") for k in range(nchunks - 1)]
    pos += (nchunks - 1) * lb
    lens.append(len(data) - pos - sum(lens))
    out = []
    for k in range(nchunks):
        body, pos = data[pos : pos + lens[k]], pos + lens[k]
        x = [int.from_bytes(body[4 * j : 4 * j + 4], "little") for j in range(w)]
        p = 4 * w
        for i in range(min(size, n - k * size)):
            j = i % w
            slot = x[j] & ((1 << sb) - 1)
            s = int(np.searchsorted(cum, slot, side="right")) - 1
            out.append(lo + present[s])
            x[j] = freq[s] * (x[j] >> sb) + slot - cum[s]
            if x[j] < RANS2_L:
                x[j] = (x[j] << 16) | int.from_bytes(body[p : p + 2], "little")
                p += 2
        assert p == len(body) and all(v == RANS2_L for v in x)
    return out


def quantize_histograms(c, steps):
    """(min symbols, counts, squared errors) of rint(c / s) for each step s.

    Exactly ``quantize_uniform(c, [s], dead_zone=0)`` and
    ``dequantize_uniform``: float32 division and product; the error sum in
    float64 (numpy's summation order, so it matches the native one to rounding).
    """
    c = np.asarray(c, np.float32).reshape(-1)
    mins, counts, sse = [], [], []
    for s in np.asarray(steps, np.float32):
        q = np.rint(c / s)
        if q.size and (q.min() < -32768 or q.max() > 32767):
            raise ValueError("symbols outside int16")
        e = (c - q * s).astype(np.float64)
        qi = q.astype(np.int64)
        lo = int(qi.min()) if qi.size else 0
        mins.append(lo)
        counts.append(np.bincount(qi - lo) if qi.size else np.zeros(0, np.int64))
        sse.append(float(np.dot(e, e)))
    return np.array(mins, np.int64), counts, np.array(sse)
