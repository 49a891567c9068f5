"""``lossless``: bit-exact coding of float32 / float16 / bfloat16 tensors.

The approach of ZipNN and DFloat11: the exponent of trained weights has very
low entropy while sign and mantissa bits are close to random. Each value is
split into an exponent byte plane and sign+mantissa byte planes; every plane
is coded with the order-0 rANS coder, or stored raw when coding would not make
it smaller.

=========  ========  ========================================
dtype      exponent  sign+mantissa planes
=========  ========  ========================================
float32    8 bits    24 bits -> 3 planes (low, mid, high byte)
float16    5 bits    11 bits -> 2 planes (low byte, high 3 bits)
bfloat16   8 bits    8 bits  -> 1 plane
=========  ========  ========================================
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import quantonium_native as qn

from .base import CodecError, Encoded, Target, dtype_name, numpy_dtype, pack_payload, rans_count, require_memory, unpack_payload

NAME = "lossless"
VERSION = 2  # 2: rANS stream format 2

_LAYOUT = {  # dtype: (uint view, exponent shift, exponent mask, mantissa bits, sign shift)
    "float32": (np.uint32, 23, 0xFF, 23, 31),
    "float16": (np.uint16, 10, 0x1F, 10, 15),
    "bfloat16": (np.uint16, 7, 0xFF, 7, 15),
}


_UINT = {"float32": np.uint32, "float16": np.uint16, "bfloat16": np.uint16}

#: Values in the sample that decides whether a plane is worth coding (see ``_worth_coding``).
DECIDE_SAMPLE = 1 << 20
#: A plane whose sampled order-0 entropy leaves less than this fraction to gain is stored raw
#: without being coded: the near-random mantissa bytes, which would cost a coding and a decoding
#: pass for under 2% of a plane (GPT-Neo-1.3B-shaped: 1.4% on the low mantissa byte, 0.35% on the sign byte).
RAW_GAIN = 0.02


def _planes(a: np.ndarray, name: str, nthreads: int = 1) -> list[np.ndarray]:
    """[exponent, sign+mantissa low byte, ...] (``quantonium_native.byte_planes``: one pass, exact)."""
    return qn.byte_planes(np.ascontiguousarray(a).reshape(-1).view(_UINT[name]), name, nthreads=nthreads)


def _worth_coding(p: np.ndarray) -> bool:
    """False when a strided sample's order-0 entropy says rANS would save under RAW_GAIN of the plane."""
    if p.size <= DECIDE_SAMPLE:
        return True  # small planes: code them and compare, it is cheap
    sample = p[:: p.size // DECIDE_SAMPLE][:DECIDE_SAMPLE]
    counts = np.bincount(sample, minlength=256).astype(np.float64)
    q = counts[counts > 0] / sample.size
    bits = float(-(q * np.log2(q)).sum())
    return bits < 8.0 * (1.0 - RAW_GAIN)


def encode(a: np.ndarray, target: Target | None = None, *, nthreads: int = 1) -> Encoded:
    del target  # lossless: every target is met exactly
    name = dtype_name(a)
    planes = _planes(a, name, nthreads)
    todo = [i for i, p in enumerate(planes) if _worth_coding(p)]
    # the threads go to the planes being coded, and inside each plane to rANS's chunks (same bytes for any split)
    per = max(1, nthreads // max(1, len(todo)))
    if len(todo) > 1 and nthreads > 1:
        with ThreadPoolExecutor(min(nthreads, len(todo))) as pool:
            coded = dict(zip(todo, pool.map(lambda i: qn.rans_encode(planes[i], nthreads=per), todo)))
    else:
        coded = {i: qn.rans_encode(planes[i], nthreads=nthreads) for i in todo}
    coded_list = [coded.get(i) for i in range(len(planes))]
    streams, modes = [], []
    for p, c in zip(planes, coded_list):
        if c is not None and len(c) < p.size:
            streams.append(c)
            modes.append("rans")
        else:
            streams.append(memoryview(p))
            modes.append("raw")
    params = {"dtype": name, "modes": modes}
    payload = pack_payload(NAME, VERSION, params, streams)
    return Encoded(NAME, VERSION, payload, a.size, float("inf"), params, stored_values=a.size)


def decode(payload, shape: tuple[int, ...], dtype: str, *, nthreads: int = 1, max_memory: int | None = None) -> np.ndarray:
    """Decodes the coded planes (``nthreads`` at a time), then joins every plane into the output in one
    native pass: working memory is the output and one byte per value per coded plane, checked before
    allocating."""
    params, streams = unpack_payload(payload, NAME, VERSION)
    if params.get("dtype") != dtype or dtype not in _LAYOUT:
        raise CodecError(f"lossless payload holds {params.get('dtype')!r}, the index says {dtype!r}")
    modes = params.get("modes")
    n = int(np.prod(shape, dtype=np.int64))
    ut = _LAYOUT[dtype][0]
    expected = len(_planes(np.zeros(1, numpy_dtype(dtype)), dtype))
    if not isinstance(modes, list) or len(modes) != expected or len(streams) != expected:
        raise CodecError(f"lossless payload must have {expected} planes")
    for i, (mode, stream) in enumerate(zip(modes, streams)):  # every stream against the shape, before allocating
        if mode == "raw":
            if len(stream) != n:
                raise CodecError(f"raw plane {i} has {len(stream)} bytes, expected {n}")
        elif mode == "rans":
            rans_count(stream, n, f"lossless plane {i}")
        else:
            raise CodecError(f"unknown plane mode {mode!r}")
    coded = sum(m == "rans" for m in modes)
    # the output and every coded plane are alive at once (raw planes are read in place from the payload)
    require_memory(n * np.dtype(ut).itemsize + coded * n, max_memory, f"lossless {dtype} of {n} values")

    todo = [i for i in range(expected) if modes[i] == "rans"]
    per = max(1, nthreads // max(1, len(todo)))  # threads across the coded planes, then inside each

    def plane(i: int) -> np.ndarray:
        return qn.rans_decode(streams[i], n, "uint8", nthreads=per)

    planes = [np.frombuffer(s, np.uint8) if m == "raw" else None for s, m in zip(streams, modes)]
    if len(todo) > 1 and nthreads > 1:
        with ThreadPoolExecutor(min(nthreads, len(todo))) as pool:
            for i, p in zip(todo, pool.map(plane, todo)):
                planes[i] = p
    else:
        per = nthreads
        for i in todo:
            planes[i] = plane(i)
    out = qn.join_byte_planes(planes, dtype, nthreads=nthreads)  # one pass over the output
    del planes
    return out.view(numpy_dtype(dtype)).reshape(shape)
