"""``rft-fixed`` and ``wht-fixed``: a seeded random rotation of each row, then the ``fixed`` quantiser.

Incoherence processing (QuIP#, QuaRot) for fixed-rate codes. Each row ``w``
(the last axis; a tensor of shape (..., n) has size / n rows) is turned into
coefficients ``c = T (D w)``, where D is a diagonal of random signs and T an
orthogonal transform of length n; ``c`` is quantised exactly as ``fixed`` does
(round to nearest int-k, symmetric, one float16 scale ``absmax / (2^(k-1) -
1)`` per group of ``group_size`` consecutive coefficients of the flattened
tensor, bit-packed), and decoding is one dequantisation and ``w = D T^T c`` per
row. T is orthogonal, so the squared error of the coefficients is the squared
error of the weights; what changes is the distribution inside each group: a
few outliers in a row of weights become a near-Gaussian spread of
coefficients, so the group scale fits the bulk instead of the outliers.

=============  ================================================================
codec          T
=============  ================================================================
``rft-fixed``  the real-orthogonal Phi-RFT (``quantonium_native.rft_real_forward``,
               interleaved layout, odd n: the last element passes through) with
               its ``beta`` and ``sigma``; ``beta = sigma = 0`` is the plain DFT
``wht-fixed``  the orthonormal Walsh-Hadamard transform ``(H_m kron H_(2^k)) /
               sqrt(n)`` for n = m 2^k (Sylvester and Paley matrices, see
               :func:`quantonium.reference.hadamard_matrix`): the randomised
               Hadamard transform of QuIP# / QuaRot, the peer the RFT is judged by
=============  ================================================================

**The signs** are a function of the seed stored in the payload and of the
position j = 0..n-1 along the row (the same for every row):
``z = splitmix64(seed + (j + 1) * 0x9E3779B97F4A7C15)``, sign ``-1`` when the
top bit of z is set, else ``+1``, with ``splitmix64(z) = m3(m2(m1(z)))``,
``m1(z) = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9``, ``m2(z) = (z ^ (z >> 27)) *
0x94D049BB133111EB``, ``m3(z) = z ^ (z >> 31)`` (64-bit wrapping arithmetic).
It is written down here because it is part of the format: a decoder
elsewhere must produce the same signs.

Payload (``base.pack_payload``): params ``bits`` (2-8), ``group_size``,
``seed``, ``transform``, ``axis`` (-1) and, for ``rft-fixed``, ``beta`` and
``sigma``; streams: the packed symbols and the float16 scales, exactly as
``fixed`` (symmetric) writes them. Rate control is ``fixed``'s: the fewest bits
that reach a target SNR, or the most that fit a target bits per weight.
``encode_levels`` writes a payload from levels and scales chosen elsewhere
(GPTQ on the rotated grid, :mod:`quantonium.codecs.gptq_fixed`).
"""

from __future__ import annotations

import math

import numpy as np

import quantonium_native as qn

from .base import (CodecError, Encoded, Target, as_float32, dtype_name, from_float32, itemsize, pack_payload, param,
                   unpack_payload)
from .fixed import dequantize_streams, level_streams
from ..metrics import snr_db

__all__ = ["RftFixed", "RotatedFixed", "WhtFixed", "random_signs"]

VERSION = 1
MAX_SEED = (1 << 63) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def random_signs(seed: int, n: int) -> np.ndarray:
    """The codec's sign vector (float32, +-1) for ``seed`` and row length ``n`` (see the module docstring)."""
    if not (isinstance(seed, int) and 0 <= seed <= MAX_SEED):
        raise ValueError(f"seed must be an integer in [0, 2^63), not {seed!r}")
    z = np.full(n, seed, np.uint64) + np.arange(1, n + 1, dtype=np.uint64) * np.full(n, _GOLDEN, np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.full(n, 0xBF58476D1CE4E5B9, np.uint64)
    z = (z ^ (z >> np.uint64(27))) * np.full(n, 0x94D049BB133111EB, np.uint64)
    z = z ^ (z >> np.uint64(31))
    return np.where((z >> np.uint64(63)) == 1, np.float32(-1.0), np.float32(1.0))


def _rows(shape: tuple[int, ...]) -> tuple[int, int]:
    n = int(shape[-1]) if len(shape) else 1
    total = int(np.prod(shape, dtype=np.int64))
    return (total // n if n else 0), n


class RotatedFixed:
    """Random signs, an orthogonal transform along the rows, then the ``fixed`` quantiser."""

    name = ""
    version = VERSION
    transform = ""

    def __init__(self, group_size: int = 128, seed: int = 0) -> None:
        if group_size < 8 or group_size % 8:
            raise ValueError("group_size must be a positive multiple of 8")
        if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED):
            raise ValueError(f"seed must be an integer in [0, 2^63), not {seed!r}")
        self.group_size, self.seed = group_size, seed

    # --- the transform ------------------------------------------------------------
    def transform_params(self) -> dict:
        return {"transform": self.transform, "axis": -1, "seed": self.seed}

    def _forward(self, x: np.ndarray, params: dict, nthreads: int) -> np.ndarray:
        raise NotImplementedError

    def _inverse(self, c: np.ndarray, params: dict, nthreads: int) -> np.ndarray:
        raise NotImplementedError

    def check_length(self, n: int) -> None:
        """Raises ValueError when rows of length n cannot be transformed."""

    def rotate(self, w: np.ndarray, nthreads: int = 1) -> np.ndarray:
        """Coefficients ``T (D w)`` of each row of ``w`` (float32, same shape)."""
        w = as_float32(w)
        rows, n = _rows(w.shape)
        if w.size == 0:
            return w.copy()
        self.check_length(n)
        x = w.reshape(rows, n) * random_signs(self.seed, n)[None, :]
        return np.ascontiguousarray(self._forward(x, self.transform_params() | self._extra(), nthreads),
                                    np.float32).reshape(w.shape)

    def unrotate(self, c: np.ndarray, nthreads: int = 1) -> np.ndarray:
        """Inverse of :meth:`rotate` (float32)."""
        return self._unrotate(as_float32(c), self.transform_params() | self._extra(), nthreads)

    def _unrotate(self, c: np.ndarray, params: dict, nthreads: int) -> np.ndarray:
        rows, n = _rows(c.shape)
        if c.size == 0:
            return c.copy()
        x = self._inverse(np.ascontiguousarray(c.reshape(rows, n), np.float32), params, nthreads)
        return (np.asarray(x, np.float32) * random_signs(params["seed"], n)[None, :]).reshape(c.shape)

    def _extra(self) -> dict:
        return {}

    def rotate_gram(self, h: np.ndarray, nthreads: int = 1) -> np.ndarray:
        """``T D H D T^T`` (float64) for a symmetric Gram matrix H of the inputs along the rows."""
        h = np.asarray(h, np.float64)
        n = h.shape[0]
        self.check_length(n)
        s = random_signs(self.seed, n).astype(np.float64)
        params = self.transform_params() | self._extra()
        a = np.asarray(self._forward(np.ascontiguousarray(h * s[None, :] * s[:, None]), params, nthreads), np.float64)
        b = np.asarray(self._forward(np.ascontiguousarray(a.T), params, nthreads), np.float64)
        return 0.5 * (b + b.T)

    # --- encoding -------------------------------------------------------------------
    def _params(self, bits: int) -> dict:
        return {"bits": bits, "group_size": self.group_size, **self.transform_params(), **self._extra()}

    def encode(self, a: np.ndarray, target: Target, *, nthreads: int = 1) -> Encoded:
        if target.keep is not None:
            raise ValueError(f"{self.name} takes a target SNR or bits per weight, not a kept fraction")
        name = dtype_name(a)
        w = as_float32(a)
        c = self.rotate(w, nthreads).reshape(-1)
        energy = float(np.dot(c.astype(np.float64), c.astype(np.float64)))
        tried = []
        for bits in range(2, 9):
            packed, scales, _ = qn.quantize_fixed(c, bits, group_size=self.group_size, nthreads=nthreads)
            c_hat = qn.dequantize_fixed(packed, scales, None, bits=bits, group_size=self.group_size, count=c.size,
                                        nthreads=nthreads)
            err = float(np.sum((c.astype(np.float64) - c_hat) ** 2))
            s = math.inf if err == 0 else (10 * math.log10(energy / err) if energy > 0 else -math.inf)
            payload = pack_payload(self.name, VERSION, self._params(bits), [packed.tobytes(), scales.tobytes()])
            tried.append((bits, payload, s))
        if target.snr_db is not None:
            ok = [t for t in tried if t[2] >= target.snr_db]
            bits, payload, _ = ok[0] if ok else tried[-1]
        else:
            fits = [t for t in tried if 8 * len(t[1]) <= target.bpw * a.size]
            if not fits:
                raise ValueError(f"{self.name}: {target.bpw:g} bpw is below its smallest rate "
                                 f"({8 * len(tried[0][1]) / a.size:.3f} bpw at 2 bits)")
            bits, payload, _ = fits[-1]
        return self._finish(a, w, payload, bits, name, nthreads)

    def encode_bits(self, a: np.ndarray, bits: int, *, nthreads: int = 1) -> Encoded:
        """Round to nearest at ``bits`` (no rate control): what the comparison of fixed-rate methods uses."""
        name = dtype_name(a)
        w = as_float32(a)
        c = self.rotate(w, nthreads).reshape(-1)
        packed, scales, _ = qn.quantize_fixed(c, bits, group_size=self.group_size, nthreads=nthreads)
        payload = pack_payload(self.name, VERSION, self._params(bits), [packed.tobytes(), scales.tobytes()])
        return self._finish(a, w, payload, bits, name, nthreads)

    def encode_levels(self, a: np.ndarray, levels: np.ndarray, scales: np.ndarray, bits: int, *,
                      nthreads: int = 1) -> Encoded:
        """A payload from integer levels in [-(2^(bits-1) - 1), 2^(bits-1) - 1] of the coefficients of ``a`` and
        one float16 scale per group (chosen elsewhere, e.g. by GPTQ on the rotated grid); measured against ``a``."""
        name = dtype_name(a)
        streams = level_streams(levels, scales, bits, self.group_size)
        payload = pack_payload(self.name, VERSION, self._params(bits), streams)
        return self._finish(a, as_float32(a), payload, bits, name, nthreads)

    def _finish(self, a, w, payload, bits, name, nthreads) -> Encoded:
        w_hat = np.asarray(self.decode(payload, a.shape, name, nthreads=nthreads), np.float32)
        return Encoded(self.name, VERSION, payload, a.size, snr_db(w, w_hat), self._params(bits),
                       stored_values=a.size, recon=w_hat)

    # --- decoding -------------------------------------------------------------------
    def _check_transform(self, params: dict) -> dict:
        if params.get("transform") != self.transform or params.get("axis") != -1:
            raise CodecError(f"{self.name}: unknown transform parameters")
        return {"transform": self.transform, "axis": -1, "seed": param(params, "seed", int, lo=0, hi=MAX_SEED)}

    def decode(self, payload, shape: tuple[int, ...], dtype: str, *, nthreads: int = 1,
               max_memory: int | None = None) -> np.ndarray:
        """Checks the parameters, the row length and the streams' exact sizes, then the working memory
        (float32 coefficients, the inverse transform's output and its signed copy, then the output when it
        is not float32: ``max_memory`` bytes, None: ``quantonium.limits.max_memory()``) before allocating."""
        params, streams = unpack_payload(payload, self.name, VERSION)
        shape = tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        bits = param(params, "bits", int, lo=2, hi=8)
        g = param(params, "group_size", int, lo=8, hi=1 << 30)
        tp = self._check_transform(params)
        if g % 8 or len(streams) != 2:
            raise CodecError(f"{self.name}: bad group size or stream count")
        _, row = _rows(shape)
        if n:
            try:
                self.check_length(row)
            except ValueError as e:
                raise CodecError(f"{self.name}: {e}") from None
        memory = (12 * n + (0 if dtype == "float32" else n * itemsize(dtype)), max_memory,
                  f"{self.name} {dtype} of {n} values")
        c = dequantize_streams(streams[0], streams[1], None, n, bits, g, self.name, nthreads, finite=True,
                               memory=memory)
        w = self._unrotate(c.reshape(shape), tp, nthreads)
        return from_float32(w, dtype)


class RftFixed(RotatedFixed):
    """Random signs and the real-orthogonal Phi-RFT along rows (``beta = sigma = 0``: the plain DFT)."""

    name = "rft-fixed"
    transform = "real-orthogonal-phi-rft"

    def __init__(self, group_size: int = 128, seed: int = 0, beta: float = 1.0, sigma: float = 1.0) -> None:
        super().__init__(group_size, seed)
        for k, v in (("beta", beta), ("sigma", sigma)):
            if not (math.isfinite(v) and -1e6 <= v <= 1e6):
                raise ValueError(f"{k} must be finite and within [-1e6, 1e6], not {v!r}")
        self.beta, self.sigma = float(beta), float(sigma)

    def _extra(self) -> dict:
        return {"beta": self.beta, "sigma": self.sigma}

    def _check_transform(self, params: dict) -> dict:
        tp = super()._check_transform(params)
        return tp | {"beta": param(params, "beta", float, lo=-1e6, hi=1e6),
                     "sigma": param(params, "sigma", float, lo=-1e6, hi=1e6)}

    def _forward(self, x, params, nthreads):
        return qn.rft_real_forward(x, beta=params["beta"], sigma=params["sigma"], nthreads=nthreads)

    def _inverse(self, c, params, nthreads):
        return qn.rft_real_inverse(c, beta=params["beta"], sigma=params["sigma"], nthreads=nthreads)


class WhtFixed(RotatedFixed):
    """Random signs and the orthonormal Walsh-Hadamard transform along rows (randomised Hadamard)."""

    name = "wht-fixed"
    transform = "randomised-hadamard"

    def check_length(self, n: int) -> None:
        qn.hadamard_factor(n)  # ValueError naming the lengths it supports

    def _forward(self, x, params, nthreads):
        return qn.wht_forward(x, nthreads=nthreads)

    def _inverse(self, c, params, nthreads):
        return qn.wht_inverse(c, nthreads=nthreads)
