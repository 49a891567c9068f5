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


def level_streams(levels: np.ndarray, scales: np.ndarray, bits: int, group_size: int) -> list[bytes]:
    """The symmetric payload streams (packed symbols, float16 scales) of integer levels and scales chosen elsewhere.

    ``levels`` are in [-(2^(bits-1) - 1), 2^(bits-1) - 1] (any shape, taken in
    C order); ``scales`` one float16 per group of ``group_size`` levels. The
    symbols are ``level + 2^(bits-1) - 1`` packed as ``quantize_fixed`` packs
    them, so that ``dequantize_fixed`` gives back ``level * scale``.
    """
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8], not {bits}")
    qmax = (1 << (bits - 1)) - 1
    lv = np.asarray(levels).reshape(-1)
    if lv.size and (int(lv.min()) < -qmax or int(lv.max()) > qmax):
        raise ValueError(f"levels must lie in [-{qmax}, {qmax}] for {bits} bits")
    sc = np.asarray(scales, np.float16).reshape(-1)
    if sc.size != -(-lv.size // group_size) or not np.all(np.isfinite(sc)) or np.any(sc < 0):
        raise ValueError(f"need {-(-lv.size // group_size)} finite non-negative float16 scales, got {sc.size}")
    sym = (lv.astype(np.int16) + qmax).astype(np.uint8)
    return [qn.pack_bits(sym, bits).tobytes(), sc.tobytes()]


def dequantize_streams(packed, scale_stream, min_stream, n: int, bits: int, group_size: int, codec: str,
                       nthreads: int = 1, *, finite: bool = False, memory: tuple[int, int | None, str] | None = None
                       ) -> np.ndarray:
    """The float32 values (flat, ``n`` of them) of validated fixed-rate streams; CodecError on any mismatch.

    ``finite``: also refuse scales (and minimums) that are not finite, or negative scales.
    ``memory``: ``(bytes, limit, what)`` checked by ``require_memory`` once the stream sizes are
    known to match ``n`` and before anything is allocated.
    """
    ng = -(-n // group_size) if n else 0
    if len(scale_stream) != 2 * ng or (min_stream is not None and len(min_stream) != 2 * ng):
        raise CodecError(f"{codec}: scale streams do not hold {ng} float16 values")
    need = (n * bits + 7) // 8
    if len(packed) != need:
        raise CodecError(f"{codec}: packed stream has {len(packed)} bytes, {n} values of {bits} bits need {need}")
    if memory is not None:
        require_memory(*memory)
    scales = np.frombuffer(scale_stream, np.float16)
    mins = np.frombuffer(min_stream, np.float16) if min_stream is not None else None
    if finite and (not np.all(np.isfinite(scales)) or np.any(scales < 0)
                   or (mins is not None and not np.all(np.isfinite(mins)))):
        raise CodecError(f"{codec}: scales must be finite and non-negative")
    try:
        return qn.dequantize_fixed(packed, scales, mins, bits=bits, group_size=group_size, count=n, nthreads=nthreads)
    except ValueError as e:
        raise CodecError(f"{codec}: {e}") from None


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
        memory = (4 * n + (0 if dtype == "float32" else n * itemsize(dtype)), max_memory, f"fixed {dtype} of {n} values")
        w = dequantize_streams(streams[0], streams[1], streams[2] if asym else None, n, bits, g, NAME, nthreads,
                               memory=memory)
        w = w.reshape(shape)
        return w if dtype == "float32" else from_float32(w, dtype)

    def encode_levels(self, a: np.ndarray, levels: np.ndarray, scales: np.ndarray, bits: int, *,
                      nthreads: int = 1) -> Encoded:
        """A symmetric payload from integer levels and float16 scales chosen elsewhere (GPTQ); measured against ``a``."""
        if self.asymmetric:
            raise ValueError("encode_levels writes the symmetric form")
        name = dtype_name(a)
        params = {"bits": bits, "group_size": self.group_size, "asymmetric": False}
        payload = pack_payload(NAME, VERSION, params, level_streams(levels, scales, bits, self.group_size))
        w_hat = self.decode(payload, a.shape, name, nthreads=nthreads)
        return Encoded(NAME, VERSION, payload, a.size, snr_db(as_float32(a), np.asarray(w_hat, np.float32)), params,
                       stored_values=a.size, recon=np.asarray(w_hat, np.float32))
