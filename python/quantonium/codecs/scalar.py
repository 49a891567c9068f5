"""``direct`` and ``rft-dense``: one uniform step, entropy-coded symbols.

``direct`` quantises the weights themselves. ``rft-dense`` first applies the
real-orthogonal Phi-RFT along the last axis (it spreads outliers across each
row, "incoherence processing") and quantises the coefficients; the transform
is orthogonal, so the error in the coefficients is the error in the weights.

Both use one step for the whole tensor: with entropy coding, a single step is
what minimises the squared error at a given rate (high-rate theory), and the
entropy coder makes the rare large symbols of outliers cheap. The symbols
(int8, or int16 when they need it) are coded with order-0 rANS.

Rate control searches the step by bisection on measured values: the SNR for a
target SNR (to within 0.05 dB where the tensor allows), the payload size for a
target bits per weight (to within 0.05 bpw, never above the target).
"""

from __future__ import annotations

import math

import numpy as np

import quantonium_native as qn

from .base import CodecError, Encoded, Target, as_float32, dtype_name, from_float32, pack_payload, param, unpack_payload
from ..metrics import snr_db

VERSION = 1
_SEARCH_STEPS = 48


class _Scalar:
    name: str
    version = VERSION

    # --- the transform (identity for direct) --------------------------------
    def forward(self, w: np.ndarray, params: dict, nthreads: int) -> np.ndarray:
        return w.reshape(-1)

    def inverse(self, c: np.ndarray, shape: tuple[int, ...], params: dict, nthreads: int) -> np.ndarray:
        return c.reshape(shape)

    def transform_params(self) -> dict:
        return {}

    # --- quantisation ----------------------------------------------------------
    @staticmethod
    def _quantise(c: np.ndarray, step: float, nthreads: int) -> tuple[np.ndarray, str]:
        amax = float(np.max(np.abs(c))) if c.size else 0.0
        sym = "int8" if amax / step < 127.0 else "int16"
        if amax / step >= 32767.0:
            raise ValueError(f"step {step:.3g} too small for int16 symbols (max |value| {amax:.3g})")
        steps = np.array([step], np.float32)
        return qn.quantize_uniform(c, steps, group_size=max(1, c.size), symbol_dtype=sym, nthreads=nthreads), sym

    def _payload(self, q: np.ndarray, sym: str, step: float, extra: dict) -> tuple[bytes, dict]:
        params = {"step": float(np.float32(step)), "symbols": sym, **extra}
        return pack_payload(self.name, VERSION, params, [qn.rans_encode(q)]), params

    def encode(self, a: np.ndarray, target: Target, *, nthreads: int = 1) -> Encoded:
        if target.keep is not None:
            raise ValueError(f"{self.name} takes a target SNR or bits per weight, not a kept fraction")
        name = dtype_name(a)
        w = as_float32(a)
        extra = self.transform_params()
        c = np.ascontiguousarray(self.forward(w, extra, nthreads), np.float32).reshape(-1)
        power = float(np.mean(c.astype(np.float64) ** 2)) if c.size else 0.0
        if power == 0.0:  # all zeros: any step gives an exact result
            q, sym = self._quantise(c, 1.0, nthreads)
            payload, params = self._payload(q, sym, 1.0, extra)
            return Encoded(self.name, VERSION, payload, a.size, math.inf, params, stored_values=a.size)

        def coeff_snr(step: float) -> float:
            q, _ = self._quantise(c, step, nthreads)
            chat = qn.dequantize_uniform(q, np.array([step], np.float32), group_size=max(1, c.size), nthreads=nthreads)
            return snr_db(c, chat)

        def payload_bits(step: float) -> int:
            q, sym = self._quantise(c, step, nthreads)
            return 8 * len(self._payload(q, sym, step, extra)[0])

        rms = math.sqrt(power)
        lo, hi = math.log(rms * 1e-4), math.log(rms * 64.0)  # step range searched
        lo = max(lo, math.log(float(np.max(np.abs(c))) / 32000.0))
        if target.snr_db is not None:
            goal = target.snr_db
            for _ in range(_SEARCH_STEPS):  # larger step -> lower SNR
                mid = 0.5 * (lo + hi)
                s = coeff_snr(math.exp(mid))
                if abs(s - goal) < 0.02:
                    lo = hi = mid
                    break
                if s > goal:
                    lo = mid
                else:
                    hi = mid
            step = math.exp(lo)  # the larger SNR side of the bracket
        else:
            budget = target.bpw * a.size
            if payload_bits(math.exp(hi)) > budget:
                raise ValueError(
                    f"{self.name}: {target.bpw:g} bpw is below what this tensor can be coded in "
                    f"({payload_bits(math.exp(hi)) / a.size:.3f} bpw at the coarsest step)"
                )
            for _ in range(_SEARCH_STEPS):  # larger step -> fewer bits
                mid = 0.5 * (lo + hi)
                b = payload_bits(math.exp(mid))
                if b <= budget and budget - b < 0.02 * a.size:
                    hi = mid
                    break
                if b > budget:
                    lo = mid
                else:
                    hi = mid
            step = math.exp(hi)  # within budget
        step = float(np.float32(step))
        q, sym = self._quantise(c, step, nthreads)
        payload, params = self._payload(q, sym, step, extra)
        w_hat = self.decode(payload, a.shape, name, nthreads=nthreads)
        return Encoded(
            self.name, VERSION, payload, a.size, snr_db(w, w_hat.astype(np.float32)), params,
            stored_values=a.size,
        )

    def encode_step(self, a: np.ndarray, step: float, *, nthreads: int = 1) -> Encoded:
        """Encodes with a given step (no search): what set-level rate control uses."""
        name = dtype_name(a)
        w = as_float32(a)
        extra = self.transform_params()
        c = np.ascontiguousarray(self.forward(w, extra, nthreads), np.float32).reshape(-1)
        step = float(np.float32(max(step, float(np.max(np.abs(c), initial=0.0)) / 32000.0, 1e-30)))
        q, sym = self._quantise(c, step, nthreads)
        payload, params = self._payload(q, sym, step, extra)
        w_hat = self.decode(payload, a.shape, name, nthreads=nthreads)
        return Encoded(self.name, VERSION, payload, a.size, snr_db(w, w_hat.astype(np.float32)), params, stored_values=a.size)

    def decode(self, payload, shape: tuple[int, ...], dtype: str, *, nthreads: int = 1) -> np.ndarray:
        params, streams = unpack_payload(payload, self.name, VERSION)
        n = int(np.prod(shape, dtype=np.int64))
        step = param(params, "step", float, lo=1e-38, hi=3e38)
        sym = params.get("symbols")
        if sym not in ("int8", "int16") or len(streams) != 1:
            raise CodecError(f"{self.name}: bad symbol type or stream count")
        try:
            q = qn.rans_decode(streams[0], n, sym)
        except ValueError as e:
            raise CodecError(f"{self.name}: {e}") from None
        c = qn.dequantize_uniform(q, np.array([step], np.float32), group_size=max(1, n), nthreads=nthreads)
        w = self.inverse(c, tuple(shape), params, nthreads)
        return from_float32(w, dtype)


class Direct(_Scalar):
    name = "direct"


class RftDense(_Scalar):
    """Real-orthogonal Phi-RFT along the last axis, then uniform quantisation."""

    name = "rft-dense"

    def __init__(self, beta: float = 1.0, sigma: float = 1.0) -> None:
        self.beta, self.sigma = beta, sigma

    def transform_params(self) -> dict:
        return {"transform": "real-orthogonal-phi-rft", "axis": -1, "beta": self.beta, "sigma": self.sigma}

    @staticmethod
    def _rows(shape: tuple[int, ...]) -> tuple[int, int]:
        n = shape[-1] if len(shape) else 1
        return (int(np.prod(shape, dtype=np.int64)) // n if n else 0), n

    def forward(self, w: np.ndarray, params: dict, nthreads: int) -> np.ndarray:
        rows, n = self._rows(w.shape)
        if w.size == 0:
            return w.reshape(-1)
        return qn.rft_real_forward(w.reshape(rows, n), beta=params["beta"], sigma=params["sigma"], nthreads=nthreads)

    def inverse(self, c: np.ndarray, shape: tuple[int, ...], params: dict, nthreads: int) -> np.ndarray:
        if params.get("transform") != "real-orthogonal-phi-rft" or params.get("axis") != -1:
            raise CodecError("rft-dense: unknown transform parameters")
        beta = param(params, "beta", float, lo=-1e6, hi=1e6)
        sigma = param(params, "sigma", float, lo=-1e6, hi=1e6)
        rows, n = self._rows(shape)
        if c.size == 0:
            return c.reshape(shape)
        return qn.rft_real_inverse(c.reshape(rows, n), beta=beta, sigma=sigma, nthreads=nthreads).reshape(shape)
