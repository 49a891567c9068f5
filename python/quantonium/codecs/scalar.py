"""``direct`` and ``rft-dense``: one uniform step, entropy-coded symbols.

``direct`` quantises the weights themselves. ``rft-dense`` first applies the
real-orthogonal Phi-RFT along the last axis (it spreads outliers across each
row, "incoherence processing") and quantises the coefficients; the transform
is orthogonal, so the error in the coefficients is the error in the weights.

Both use one step for the whole tensor: with entropy coding, a single step is
what minimises the squared error at a given rate (high-rate theory), and the
entropy coder makes the rare large symbols of outliers cheap. The symbols
(int8, or int16 when they need it) are coded with order-0 rANS (stream
format 2 since payload version 3; the decoder reads either stream format,
so versions 1 and 2 still decode).

Rate control searches the step by bisection on measured values: the SNR for a
target SNR (to within 0.05 dB where the tensor allows), the payload size for a
target bits per weight (to within 0.05 bpw, never above the target).

Sensitivity scales (version 2): with a row scale a and a column scale b (from
calibration, ``quantonium.calibration``), the codec quantises ``W * a b^T``
(then, for ``rft-dense``, its transform) with one step, and divides again on
decoding. The error in weight (i, j) is then about step / (a_i b_j), so the
weighted error sum a_i^2 b_j^2 e_ij^2 is what one step minimises: finer steps
where the output is sensitive. Scaling before the transform keeps this exact
for ``rft-dense`` too (the transform is orthogonal). The scales are stored as
float16 in two extra streams and counted in the payload.
"""

from __future__ import annotations

import math

import numpy as np

import quantonium_native as qn

from .base import (CodecError, Encoded, Target, as_float32, dtype_name, framing_bytes, from_float32, itemsize, pack_payload,
                   param, rans_count, require_memory, unpack_payload)
from ..metrics import snr_db

VERSION = 3  # 2: optional row/column sensitivity scales; 3: rANS stream format 2 (1 and 2 still decode)
SCALE_BLOCK = 1 << 20  # values rescaled at a time when decoding
_SAMPLE = 1 << 20  # coefficients whose histograms predict rate and SNR
_COARSE = 1 << 18  # the subsample that places the target between two quarter-octave steps
_EXACT = 1 << 16  # below this many values, a target SNR is met by bisection on the exact SNR


def _as_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError("sensitivity scales need a tensor of two or more dimensions")
    rows = int(shape[0])
    return rows, (int(np.prod(shape, dtype=np.int64)) // rows if rows else 0)


def _norm_scale(v, n: int, what: str) -> np.ndarray:
    v = np.asarray(v, np.float64).reshape(-1)
    if v.size != n or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{what} scale must be {n} finite positive values")
    v = v / math.exp(float(np.mean(np.log(v))))  # geometric mean 1: safe in float16
    return np.clip(v, 2.0**-14, 2.0**15).astype(np.float16)


class _Scalar:
    name: str
    version = VERSION

    def __init__(self, row_scale=None, col_scale=None) -> None:
        self.row_scale, self.col_scale = row_scale, col_scale

    def _scales(self, shape: tuple[int, ...]) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self.row_scale is None and self.col_scale is None:
            return None, None
        rows, cols = _as_2d(shape)
        a = None if self.row_scale is None else _norm_scale(self.row_scale, rows, "row")
        b = None if self.col_scale is None else _norm_scale(self.col_scale, cols, "column")
        return a, b

    @staticmethod
    def _scale_block(a, b, r0: int, r1: int, cols: int) -> np.ndarray:
        """Rows r0..r1 of the float32 scale matrix a b^T (a missing side counts as ones)."""
        m = np.ones((r1 - r0, 1), np.float32) if a is None else a[r0:r1].astype(np.float32)[:, None]
        return m * (np.ones((1, cols), np.float32) if b is None else b.astype(np.float32)[None, :])

    @classmethod
    def _apply(cls, w: np.ndarray, a, b, inverse: bool) -> np.ndarray:
        if a is None and b is None:
            return w
        rows, cols = _as_2d(w.shape)
        m = cls._scale_block(a, b, 0, rows, cols)
        w2 = w.reshape(rows, cols)
        return (w2 / m if inverse else w2 * m).reshape(w.shape)

    def coefficients(self, w: np.ndarray, nthreads: int = 1) -> tuple[np.ndarray, dict, list[bytes]]:
        """(coefficients to quantise, parameters, scale streams) of a float32 tensor."""
        a, b = self._scales(w.shape)
        extra = self.transform_params()
        streams: list[bytes] = []
        if a is not None or b is not None:
            extra["scales"] = ("row" if a is not None else "") + ("col" if b is not None else "")
            streams = [s.tobytes() for s in (a, b) if s is not None]
        ws = np.ascontiguousarray(self._apply(w, a, b, inverse=False), np.float32)
        return np.ascontiguousarray(self.forward(ws, extra, nthreads), np.float32).reshape(-1), extra, streams

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

    def _payload(self, q: np.ndarray, sym: str, step: float, extra: dict, scale_streams: list[bytes] = (), nthreads: int = 1) -> tuple[bytes, dict]:
        params = {"step": float(np.float32(step)), "symbols": sym, **extra}
        return pack_payload(self.name, VERSION, params, [qn.rans_encode(q, nthreads=nthreads), *scale_streams]), params

    def encode(self, a: np.ndarray, target: Target, *, nthreads: int = 1) -> Encoded:
        if target.keep is not None:
            raise ValueError(f"{self.name} takes a target SNR or bits per weight, not a kept fraction")
        name = dtype_name(a)
        w = as_float32(a)
        c, extra, scl = self.coefficients(w, nthreads)
        power = qn.energy_sums(c, nthreads=nthreads)[0] / c.size if c.size else 0.0
        if power == 0.0:  # all zeros: any step gives an exact result
            q, sym = self._quantise(c, 1.0, nthreads)
            payload, params = self._payload(q, sym, 1.0, extra, scl, nthreads)
            return Encoded(self.name, VERSION, payload, a.size, math.inf, params, stored_values=a.size)

        energy = power * c.size
        amax = max(float(np.max(c)), -float(np.min(c)))
        rms = math.sqrt(power)
        fine = max(amax / 32000.0, rms * 2.0**-14)
        # coarse to fine, a quarter octave apart; refine() narrows to 1/128 octave between two of them
        ladder = [st for st in (rms * 2.0 ** (k / 4.0) for k in range(12, -60, -1)) if st >= fine]
        lens = [len(x) for x in scl]
        sample = c if c.size <= _SAMPLE else c[:: -(-c.size // _SAMPLE)]
        coarse = sample if sample.size <= _COARSE else sample[:: -(-sample.size // _COARSE)]

        def predict(steps: list[float], src: np.ndarray = sample) -> tuple[np.ndarray, np.ndarray, list[float]]:
            """(predicted payload bits, predicted SNR, steps as float32) from a sample's histograms."""
            st = [float(np.float32(x)) for x in steps]
            mins, hists, sse = qn.quantize_histograms(src, np.array(st, np.float32), nthreads=nthreads)
            up = c.size / src.size
            bits, snr = [], []
            for k, x in enumerate(st):
                head, pay = qn.rans_stream_size(hists[k], min_symbol=int(mins[k]))
                stream = int(head + pay * up)
                sym = "int8" if amax / x < 127.0 else "int16"
                params = {"step": x, "symbols": sym, **extra}
                bits.append(8 * (stream + sum(lens) + framing_bytes(self.name, VERSION, params, [stream, *lens])))
                e = float(sse[k]) * up
                snr.append(math.inf if e == 0 else 10.0 * math.log10(energy / e))
            return np.array(bits, np.float64), np.array(snr), st

        def refine(i: int, j: int, ok) -> float:
            """The acceptable step closest to ladder[j] (not acceptable) from ladder[i] (acceptable):
            8 sub-steps (1/32 octave), then 4 between the last acceptable one and the next (1/128 octave)."""
            if not 0 <= j < len(ladder):
                return ladder[i]
            lo, hi = ladder[i], ladder[j]
            for n in (8, 4):
                sub = [lo * (hi / lo) ** (k / n) for k in range(n)]
                bits, snr, st = predict(sub)
                good = [k for k in range(len(st)) if ok(bits[k], snr[k])]
                k = good[-1] if good else 0
                lo, hi = st[k], (sub[k + 1] if k + 1 < n else hi)
            return lo

        bits, snr, steps = predict(ladder, coarse)
        if target.snr_db is not None:
            goal = target.snr_db - 0.02

            def meets(_b, sn):
                return sn >= goal

            good = [i for i in range(len(steps)) if meets(bits[i], snr[i])]
            step = refine(good[0], good[0] - 1, meets) if good else steps[-1]
            if c.size <= _EXACT:
                # small tensors: their SNR moves in jumps and not monotonically; bisect on the exact SNR
                lo, hi = math.log(fine), math.log(rms * 64.0)
                for _ in range(48):  # larger step -> lower SNR
                    mid = 0.5 * (lo + hi)
                    _, _, e = qn.quantize_histograms(c, np.array([math.exp(mid)], np.float32), nthreads=nthreads)
                    sn = math.inf if float(e[0]) == 0 else 10.0 * math.log10(energy / float(e[0]))
                    if abs(sn - target.snr_db) < 0.02:
                        lo = hi = mid
                        break
                    if sn > target.snr_db:
                        lo = mid
                    else:
                        hi = mid
                return self._finish(a, w, c, math.exp(lo), extra, scl, name, nthreads)
            while True:  # check on the whole tensor (exact squared error), one sub-step finer if short
                _, _, sse = qn.quantize_histograms(c, np.array([step], np.float32), nthreads=nthreads)
                if float(sse[0]) == 0 or 10.0 * math.log10(energy / float(sse[0])) >= goal or step <= fine:
                    break
                step = max(fine, step * 2.0 ** (-1 / 128))
            return self._finish(a, w, c, step, extra, scl, name, nthreads)
        budget = target.bpw * a.size
        goal_bits = budget * (1 - 0.002)

        def fits(bi, _sn):
            return bi <= goal_bits

        good = [i for i in range(len(steps)) if fits(bits[i], snr[i])]
        step = refine(good[-1], good[-1] + 1, fits) if good else steps[0]
        while True:  # the real payload decides; one sub-step coarser while it is over the budget
            enc = self._finish(a, w, c, step, extra, scl, name, nthreads)
            if enc.bits <= budget:
                return enc
            if step >= steps[0] * 2.0:
                raise ValueError(
                    f"{self.name}: {target.bpw:g} bpw is below what this tensor can be coded in "
                    f"({enc.bpw:.3f} bpw at the coarsest step)"
                )
            step *= 2.0 ** (1 / 128)

    def _finish(self, a, w, c, step, extra, scl, name, nthreads) -> Encoded:
        step = float(np.float32(step))
        q, sym = self._quantise(c, step, nthreads)
        payload, params = self._payload(q, sym, step, extra, scl, nthreads)
        w_hat = np.asarray(self.decode(payload, a.shape, name, nthreads=nthreads), np.float32)
        return Encoded(
            self.name, VERSION, payload, a.size, snr_db(w, w_hat), params,
            stored_values=a.size, recon=w_hat,
        )

    def encode_step(self, a: np.ndarray, step: float, *, nthreads: int = 1) -> Encoded:
        """Encodes with a given step (no search): what set-level rate control uses."""
        name = dtype_name(a)
        w = as_float32(a)
        c, extra, scl = self.coefficients(w, nthreads)
        step = max(step, float(np.max(np.abs(c), initial=0.0)) / 32000.0, 1e-30)
        return self._finish(a, w, c, step, extra, scl, name, nthreads)

    def decode(self, payload, shape: tuple[int, ...], dtype: str, *, nthreads: int = 1, max_memory: int | None = None) -> np.ndarray:
        """Checks the streams against the shape and the working memory against the limit, then decodes.

        Working memory: the symbols (1 or 2 bytes per value) and their float32
        values together, then the float32 values and the output when its dtype
        is not float32. The transform, the scales and the dtype conversion work
        in place or in the output.
        """
        params, streams = unpack_payload(payload, self.name, VERSION)
        n = int(np.prod(shape, dtype=np.int64))
        step = param(params, "step", float, lo=1e-38, hi=3e38)
        sym = params.get("symbols")
        which = params.get("scales", "")
        if which not in ("", "row", "col", "rowcol"):
            raise CodecError(f"{self.name}: unknown scales {which!r}")
        if sym not in ("int8", "int16") or len(streams) != 1 + ("row" in which) + ("col" in which):
            raise CodecError(f"{self.name}: bad symbol type or stream count")
        self.check_params(params)
        rans_count(streams[0], n, self.name)
        a = b = None
        if which:
            if len(shape) < 2:
                raise CodecError(f"{self.name}: scales on a tensor of fewer than two dimensions")
            rows, cols = _as_2d(tuple(shape))
            k = 1
            for key, size in (("row", rows), ("col", cols)):
                if key in which:
                    if len(streams[k]) != 2 * size:
                        raise CodecError(f"{self.name}: {key} scale stream has {len(streams[k])} bytes, expected {2 * size}")
                    v = np.frombuffer(streams[k], np.float16)
                    if not np.all(np.isfinite(v)) or np.any(v <= 0):
                        raise CodecError(f"{self.name}: {key} scales must be finite and positive")
                    a, b = (v, b) if key == "row" else (a, v)
                    k += 1
        out_extra = 0 if dtype == "float32" else n * itemsize(dtype)
        scale_temp = 8 * min(n, SCALE_BLOCK) if which else 0
        require_memory(max(n * (1 if sym == "int8" else 2) + 4 * n, 4 * n + max(out_extra, scale_temp)), max_memory,
                       f"{self.name} {dtype} of {n} values")
        try:
            q = qn.rans_decode(streams[0], n, sym, nthreads=nthreads)
        except ValueError as e:
            raise CodecError(f"{self.name}: {e}") from None
        c = qn.dequantize_uniform(q, np.array([step], np.float32), group_size=max(1, n), nthreads=nthreads)
        del q
        w = self.inverse(c, tuple(shape), params, nthreads).reshape(shape)
        if a is not None or b is not None:  # in place, a block of rows at a time: no full-size temporary
            rows, cols = _as_2d(tuple(shape))
            w2 = w.reshape(rows, cols)
            block = max(1, SCALE_BLOCK // max(1, cols))
            for r in range(0, rows, block):
                w2[r : r + block] /= self._scale_block(a, b, r, min(rows, r + block), cols)
        return w if dtype == "float32" else from_float32(w, dtype)

    def check_params(self, params: dict) -> None:
        """The transform's parameters (none for direct), checked before anything is allocated."""


class Direct(_Scalar):
    name = "direct"


class RftDense(_Scalar):
    """Real-orthogonal Phi-RFT along the last axis, then uniform quantisation."""

    name = "rft-dense"

    def __init__(self, beta: float = 1.0, sigma: float = 1.0, row_scale=None, col_scale=None) -> None:
        super().__init__(row_scale, col_scale)
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

    def check_params(self, params: dict) -> None:
        if params.get("transform") != "real-orthogonal-phi-rft" or params.get("axis") != -1:
            raise CodecError("rft-dense: unknown transform parameters")
        param(params, "beta", float, lo=-1e6, hi=1e6)
        param(params, "sigma", float, lo=-1e6, hi=1e6)

    def inverse(self, c: np.ndarray, shape: tuple[int, ...], params: dict, nthreads: int) -> np.ndarray:
        self.check_params(params)
        beta = param(params, "beta", float, lo=-1e6, hi=1e6)
        sigma = param(params, "sigma", float, lo=-1e6, hi=1e6)
        rows, n = self._rows(shape)
        if c.size == 0:
            return c.reshape(shape)
        c2 = c.reshape(rows, n)
        return qn.rft_real_inverse(c2, beta=beta, sigma=sigma, nthreads=nthreads, out=c2).reshape(shape)
