"""``fixed``: round-to-nearest integers with an fp16 scale per group, bit-packed.

The classic baseline (RTN int-k, g32/g64/g128; optional fp16 minimum per group
for the asymmetric form) and the format for fast loads: no entropy coding, so
its rate is fixed at ``bits + 16/group`` (``+ 16/group`` more when asymmetric)
bits per weight, plus the payload header. Rate control picks the number of
bits: the fewest that reach a target SNR, or the most that fit a target bpw.
"""

from __future__ import annotations

import numpy as np

import quantonium_native as qn

from .base import (CodecError, Encoded, Target, as_float32, dtype_name, from_float32, itemsize, pack_payload, param, require_memory,
                   unpack_payload)
from ..metrics import snr_db

NAME = "fixed"
VERSION = 1


class Fixed:
    name = NAME
    version = VERSION

    def __init__(self, group_size: int = 128, asymmetric: bool = False) -> None:
        if group_size < 8 or group_size % 8:
            raise ValueError("group_size must be a positive multiple of 8")
        self.group_size, self.asymmetric = group_size, asymmetric

    def _encode_bits(self, w: np.ndarray, bits: int, nthreads: int) -> bytes:
        packed, scales, mins = qn.quantize_fixed(w, bits, group_size=self.group_size, asymmetric=self.asymmetric, nthreads=nthreads)
        streams = [packed.tobytes(), scales.tobytes()] + ([mins.tobytes()] if mins is not None else [])
        params = {"bits": bits, "group_size": self.group_size, "asymmetric": self.asymmetric}
        return pack_payload(NAME, VERSION, params, streams)

    def encode(self, a: np.ndarray, target: Target, *, nthreads: int = 1) -> Encoded:
        if target.keep is not None:
            raise ValueError("fixed takes a target SNR or bits per weight, not a kept fraction")
        name = dtype_name(a)
        w = as_float32(a).reshape(-1)
        tried = []
        for bits in range(2, 9):
            payload = self._encode_bits(w, bits, nthreads)
            w_hat = self.decode(payload, a.shape, name, nthreads=nthreads)
            s = snr_db(w, w_hat.astype(np.float32).reshape(-1))
            tried.append((bits, payload, s))
        if target.snr_db is not None:
            ok = [t for t in tried if t[2] >= target.snr_db]
            bits, payload, s = ok[0] if ok else tried[-1]
        else:
            fits = [t for t in tried if 8 * len(t[1]) <= target.bpw * a.size]
            if not fits:
                raise ValueError(f"fixed: {target.bpw:g} bpw is below its smallest rate ({8 * len(tried[0][1]) / a.size:.3f} bpw at 2 bits)")
            bits, payload, s = fits[-1]
        params = {"bits": bits, "group_size": self.group_size, "asymmetric": self.asymmetric}
        return Encoded(NAME, VERSION, payload, a.size, s, params, stored_values=a.size)

    def decode(self, payload, shape: tuple[int, ...], dtype: str, *, nthreads: int = 1, max_memory: int | None = None) -> np.ndarray:
        """Checks the packed and scale streams' exact sizes and the working memory (float32 values, then
        the output when it is not float32) before allocating; then dequantises."""
        params, streams = unpack_payload(payload, NAME, VERSION)
        n = int(np.prod(shape, dtype=np.int64))
        bits = param(params, "bits", int, lo=2, hi=8)
        g = param(params, "group_size", int, lo=8, hi=1 << 30)
        asym = param(params, "asymmetric", bool)
        if g % 8 or len(streams) != (3 if asym else 2):
            raise CodecError("fixed: bad group size or stream count")
        ng = -(-n // g) if n else 0
        if len(streams[1]) != 2 * ng or (asym and len(streams[2]) != 2 * ng):
            raise CodecError(f"fixed: scale streams do not hold {ng} float16 values")
        packed = (n * bits + 7) // 8
        if len(streams[0]) != packed:
            raise CodecError(f"fixed: packed stream has {len(streams[0])} bytes, {n} values of {bits} bits need {packed}")
        require_memory(4 * n + (0 if dtype == "float32" else n * itemsize(dtype)), max_memory, f"fixed {dtype} of {n} values")
        scales = np.frombuffer(streams[1], np.float16)
        mins = np.frombuffer(streams[2], np.float16) if asym else None
        try:
            w = qn.dequantize_fixed(streams[0], scales, mins, bits=bits, group_size=g, count=n, nthreads=nthreads)
        except ValueError as e:
            raise CodecError(f"fixed: {e}") from None
        w = w.reshape(shape)
        return w if dtype == "float32" else from_float32(w, dtype)
