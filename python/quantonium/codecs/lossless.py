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


def _planes(a: np.ndarray, name: str) -> list[np.ndarray]:
    ut, eshift, emask, mbits, sshift = _LAYOUT[name]
    u = a.reshape(-1).view(ut).astype(np.uint32)
    exp = ((u >> eshift) & emask).astype(np.uint8)
    sm = ((u >> sshift) << mbits) | (u & ((1 << mbits) - 1))
    nplanes = (mbits + 1 + 7) // 8
    return [exp] + [((sm >> (8 * i)) & 0xFF).astype(np.uint8) for i in range(nplanes)]


def _join(planes: list[np.ndarray], name: str) -> np.ndarray:
    ut, eshift, _, mbits, sshift = _LAYOUT[name]
    sm = np.zeros(planes[0].size, np.uint32)
    for i, p in enumerate(planes[1:]):
        sm |= p.astype(np.uint32) << (8 * i)
    u = (planes[0].astype(np.uint32) << eshift) | ((sm >> mbits) << sshift) | (sm & ((1 << mbits) - 1))
    return u.astype(ut).view(numpy_dtype(name))


def encode(a: np.ndarray, target: Target | None = None, *, nthreads: int = 1) -> Encoded:
    del target  # lossless: every target is met exactly
    name = dtype_name(a)
    planes = _planes(np.ascontiguousarray(a), name)
    with ThreadPoolExecutor(max(1, nthreads)) as pool:
        coded = list(pool.map(qn.rans_encode, planes))
    streams, modes = [], []
    for p, c in zip(planes, coded):
        if len(c) < p.size:
            streams.append(c)
            modes.append("rans")
        else:
            streams.append(p.tobytes())
            modes.append("raw")
    params = {"dtype": name, "modes": modes}
    payload = pack_payload(NAME, VERSION, params, streams)
    return Encoded(NAME, VERSION, payload, a.size, float("inf"), params, stored_values=a.size)


#: Values joined at a time: the temporaries of the join stay about 16 bytes x this.
JOIN_CHUNK = 1 << 20


def _accumulate(out: np.ndarray, plane: np.ndarray, index: int, name: str) -> None:
    """ORs one decoded byte plane into the output's integer view, in chunks (the bits of :func:`_join`)."""
    _, eshift, _, mbits, sshift = _LAYOUT[name]
    shift = eshift if index == 0 else 8 * (index - 1)
    sign = index > 0 and shift + 8 > mbits  # the plane that holds the sign bit
    u = np.empty(min(plane.size, JOIN_CHUNK), np.uint32)
    for s in range(0, plane.size, JOIN_CHUNK):
        p = plane[s : s + JOIN_CHUNK]
        v = u[: p.size]
        np.left_shift(p, shift, out=v, dtype=np.uint32)
        if sign:
            top = (v >> mbits) << sshift
            v &= (1 << mbits) - 1
            v |= top
        np.bitwise_or(out[s : s + p.size], v, out=out[s : s + p.size], casting="unsafe")


def decode(payload, shape: tuple[int, ...], dtype: str, *, nthreads: int = 1, max_memory: int | None = None) -> np.ndarray:
    """Decodes plane by plane into the output: working memory is the output, the planes being decoded
    (``nthreads`` at a time, one byte per value each) and the join's chunk; checked before allocating."""
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
    workers = max(1, min(nthreads, expected))
    coded = sum(m == "rans" for m in modes)
    require_memory(n * np.dtype(ut).itemsize + min(workers, coded) * n + 16 * min(n, JOIN_CHUNK) * workers,
                   max_memory, f"lossless {dtype} of {n} values")

    def plane(i: int) -> np.ndarray:
        if modes[i] == "raw":
            return np.frombuffer(streams[i], np.uint8)
        return qn.rans_decode(streams[i], n, "uint8")

    out = np.zeros(n, ut)
    order = list(range(expected))
    with ThreadPoolExecutor(workers) as pool:
        for first in range(0, expected, workers):  # at most `workers` decoded planes alive at once
            batch = order[first : first + workers]
            for i, p in zip(batch, pool.map(plane, batch)):
                _accumulate(out, p, i, dtype)
                del p
    return out.view(numpy_dtype(dtype)).reshape(shape)
