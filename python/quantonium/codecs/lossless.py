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

from .base import CodecError, Encoded, Target, dtype_name, numpy_dtype, pack_payload, unpack_payload

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


def decode(payload, shape: tuple[int, ...], dtype: str, *, nthreads: int = 1) -> np.ndarray:
    params, streams = unpack_payload(payload, NAME, VERSION)
    if params.get("dtype") != dtype or dtype not in _LAYOUT:
        raise CodecError(f"lossless payload holds {params.get('dtype')!r}, the index says {dtype!r}")
    modes = params.get("modes")
    n = int(np.prod(shape, dtype=np.int64))
    expected = len(_planes(np.zeros(1, numpy_dtype(dtype)), dtype))
    if not isinstance(modes, list) or len(modes) != expected or len(streams) != expected:
        raise CodecError(f"lossless payload must have {expected} planes")

    def plane(i: int) -> np.ndarray:
        if modes[i] == "raw":
            if len(streams[i]) != n:
                raise CodecError(f"raw plane {i} has {len(streams[i])} bytes, expected {n}")
            return np.frombuffer(streams[i], np.uint8)
        if modes[i] == "rans":
            return qn.rans_decode(streams[i], n, "uint8")
        raise CodecError(f"unknown plane mode {modes[i]!r}")

    with ThreadPoolExecutor(max(1, nthreads)) as pool:
        planes = list(pool.map(plane, range(expected)))
    return _join(planes, dtype).reshape(shape)
