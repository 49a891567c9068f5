"""``rft-spectral``: the original idea, measured. Keep the largest Phi-RFT coefficients.

The tensor is transformed with the fast Phi-RFT along one axis; the largest
coefficients by magnitude (the "quantum states") are kept, their positions
stored as a bitmap (rANS coded), their real and imaginary parts quantised
with one uniform step (rANS coded); the rest are dropped.

Because |Phi-RFT(x)| = |FFT(x)|, this keeps exactly the coefficients an FFT
truncation would keep, with the same error. For a real row, the Phi-RFT
coefficients k and n-k carry the same information (y[n-k] is fixed by y[k]),
so only k = 0..n//2 are candidates and the other half is rebuilt.

Trained weight matrices are close to white noise along both axes, so this
codec destroys them at any useful ratio; it works where a tensor has real
structure along an axis (position embeddings along the position axis). Its
reports show both.
"""

from __future__ import annotations

import math

import numpy as np

import quantonium_native as qn

from .base import (CodecError, Encoded, Target, as_float32, dtype_name, from_float32, itemsize, numpy_dtype, pack_payload, param,
                   rans_count, require_memory, unpack_payload)
from ..metrics import snr_db
from ..reference import phi_rft_phases

NAME = "rft-spectral"
VERSION = 2  # 2: rANS stream format 2 (version 1 still decodes)
_VALUE_SNR_MARGIN_DB = 10.0  # quantisation noise kept 10 dB below the truncation error


def _half(n: int) -> int:
    return n // 2 + 1


def _weights(n: int) -> np.ndarray:
    """How many full-spectrum coefficients each half-spectrum index stands for."""
    m = np.full(_half(n), 2.0)
    m[0] = 1.0
    if n % 2 == 0:
        m[-1] = 1.0
    return m


class Spectral:
    name = NAME
    version = VERSION

    def __init__(self, axis: int = -1, beta: float = 1.0, sigma: float = 1.0, value_margin_db: float = _VALUE_SNR_MARGIN_DB) -> None:
        """``value_margin_db``: how far below the truncation error the quantisation noise of
        the kept values is placed (the values' precision: each 6 dB costs about 1 bit per
        kept real and imaginary part)."""
        if not 0.0 <= value_margin_db <= 60.0:
            raise ValueError("value_margin_db must be in [0, 60]")
        self.axis, self.beta, self.sigma, self.margin = axis, beta, sigma, value_margin_db

    # rows: (rows, n) with the transform axis last
    def _rows(self, w: np.ndarray, axis: int) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(w, axis, -1)).reshape(-1, w.shape[axis])

    def _rebuild(self, y_half: np.ndarray, n: int, beta: float, sigma: float, ph: np.ndarray | None = None) -> np.ndarray:
        """Full Phi-RFT spectrum of real rows from their half spectrum (``ph``: the phases, if computed)."""
        ph = phi_rft_phases(n, beta, sigma) if ph is None else ph
        x_half = y_half * np.conj(ph[: _half(n)])  # DFT coefficients
        full = np.zeros((y_half.shape[0], n), np.complex128)
        full[:, : _half(n)] = x_half
        k = np.arange(1, (n + 1) // 2)
        full[:, n - k] = np.conj(x_half[:, k])
        full *= ph
        return full

    def encode(self, a: np.ndarray, target: Target, *, nthreads: int = 1) -> Encoded:
        name = dtype_name(a)
        w = as_float32(a)
        if w.ndim == 0:
            w = w.reshape(1)
        axis = self.axis % w.ndim
        n = w.shape[axis]
        rows = self._rows(w, axis)
        y = qn.rft_forward(rows.astype(np.float64), beta=self.beta, sigma=self.sigma, nthreads=nthreads)[:, : _half(n)]
        energy = (np.abs(y) ** 2) * _weights(n)
        order = np.argsort(energy, axis=None)[::-1]
        total = float(energy.sum())
        cum = np.cumsum(energy.reshape(-1)[order])

        def truncation_snr(k: int) -> float:
            dropped = total - (cum[k - 1] if k > 0 else 0.0)
            return math.inf if dropped <= total * 1e-15 else 10 * math.log10(total / max(dropped, 1e-300))

        def build(k: int) -> tuple[bytes, dict]:
            keep = np.zeros(y.size, bool)
            keep[order[:k]] = True
            vals = y.reshape(-1)[keep]
            dropped = max(total - (cum[k - 1] if k > 0 else 0.0), total * 1e-12)
            # step so that the value noise (2 parts * step^2/12 per kept value, times
            # multiplicity) sits _VALUE_SNR_MARGIN_DB below the truncation error
            mult = np.mean(_weights(n)[np.nonzero(keep.reshape(y.shape))[1]]) if k else 1.0
            noise = dropped / 10 ** (self.margin / 10)
            step = math.sqrt(max(noise, 1e-30) * 12 / (2 * max(k, 1) * mult))
            amax = float(np.max(np.abs(np.concatenate([vals.real, vals.imag])))) if k else 0.0
            step = max(step, amax / 32000.0, 1e-30)
            parts = np.empty(2 * k, np.float32)
            parts[0::2], parts[1::2] = vals.real, vals.imag
            sym = "int8" if amax / step < 127 else "int16"
            q = qn.quantize_uniform(parts, np.array([step], np.float32), group_size=max(1, parts.size), symbol_dtype=sym)
            bitmap = np.packbits(keep, bitorder="little")
            params = {
                "axis": axis, "beta": self.beta, "sigma": self.sigma, "transform": "phi-rft",
                "kept": int(k), "step": float(np.float32(step)), "symbols": sym, "values": "re-im",
                "value_margin_db": self.margin,
            }
            return pack_payload(NAME, VERSION, params, [qn.rans_encode(bitmap), qn.rans_encode(q)]), params

        size = y.size
        if target.keep is not None:
            k = max(1, min(size, int(round(target.keep * size))))
        elif target.snr_db is not None:
            k = self._k_for_snr(cum, total, target.snr_db, self.margin)
        else:
            lo, hi = 1, size
            if 8 * len(build(1)[0]) > target.bpw * a.size:
                raise ValueError(f"rft-spectral: {target.bpw:g} bpw is below the cost of one coefficient")
            while lo < hi:  # largest k within budget
                mid = (lo + hi + 1) // 2
                if 8 * len(build(mid)[0]) <= target.bpw * a.size:
                    lo = mid
                else:
                    hi = mid - 1
            k = lo
        payload, params = build(k)
        w_hat = self.decode(payload, a.shape, name, nthreads=nthreads)
        enc = Encoded(NAME, VERSION, payload, a.size, snr_db(w, w_hat.astype(np.float32).reshape(w.shape)), params, stored_values=k)
        enc.report = {"quantum_states": k, "kept_fraction": k / size, "truncation_snr_db": truncation_snr(k)}
        return enc

    @staticmethod
    def _k_for_snr(cum: np.ndarray, total: float, goal: float, margin_db: float) -> int:
        # truncation error must sit a little under the budget: the value noise adds to it
        need = total - total / 10 ** (goal / 10) / (1 + 10 ** (-margin_db / 10))
        return int(min(cum.size, np.searchsorted(cum, need) + 1))

    def decode(self, payload, shape: tuple[int, ...], dtype: str, *, nthreads: int = 1, max_memory: int | None = None) -> np.ndarray:
        """Rebuilds the tensor a block of rows at a time.

        Before anything is allocated: both rANS streams' counts against the
        shape and the kept count, and the working memory against the limit:
        the output (twice when the axis is not the last: rows are rebuilt
        along the axis, then laid out C-contiguous), the position bitmap, the
        value symbols, and one block of rows' complex spectra
        (:data:`BLOCK_BYTES` at most, or one row)."""
        params, streams = unpack_payload(payload, NAME, VERSION)
        shp = tuple(shape) if len(shape) else (1,)
        if len(streams) != 2 or params.get("transform") != "phi-rft" or params.get("values") != "re-im":
            raise CodecError("rft-spectral: bad streams or transform")
        axis = param(params, "axis", int, lo=0, hi=len(shp) - 1)
        beta = param(params, "beta", float, lo=-1e6, hi=1e6)
        sigma = param(params, "sigma", float, lo=-1e6, hi=1e6)
        step = param(params, "step", float, lo=1e-38, hi=3e38)
        n = shp[axis]
        nrows = int(np.prod(shp, dtype=np.int64)) // n if n else 0
        h = _half(n)
        size = nrows * h
        k = param(params, "kept", int, lo=0, hi=size)
        sym = params.get("symbols")
        if sym not in ("int8", "int16"):
            raise CodecError("rft-spectral: bad symbol type")
        nbitmap = (size + 7) // 8
        rans_count(streams[0], nbitmap, "rft-spectral position bitmap")
        rans_count(streams[1], 2 * k, "rft-spectral values")
        block = max(1, BLOCK_BYTES // max(1, n * _BYTES_PER_VALUE))
        out_bytes = int(np.prod(shp, dtype=np.int64)) * itemsize(dtype)
        require_memory(out_bytes * (1 if axis == len(shp) - 1 else 2) + 2 * nbitmap + 2 * k * (1 if sym == "int8" else 2)
                       + (min(block, nrows) + 1) * n * _BYTES_PER_VALUE, max_memory, f"rft-spectral {dtype} of shape {shp}")
        try:
            bitmap = qn.rans_decode(streams[0], nbitmap, "uint8")
            kept = _popcount(bitmap, size)
            if kept != k:
                raise CodecError(f"rft-spectral: the position bitmap holds {kept} positions, the header {k}")
            q = qn.rans_decode(streams[1], 2 * k, sym)
        except CodecError:
            raise
        except ValueError as e:
            raise CodecError(f"rft-spectral: {e}") from None
        moved = [s for i, s in enumerate(shp) if i != axis] + [n]
        out = np.empty(moved, numpy_dtype(dtype))
        if out.size:
            rows_out = out.reshape(nrows, n)
            ph = phi_rft_phases(n, beta, sigma)
            steps = np.array([step], np.float32)
            pos = 0
            for r0 in range(0, nrows, block):
                r1 = min(nrows, r0 + block)
                keep = _bits(bitmap, r0 * h, r1 * h).reshape(r1 - r0, h)
                kb = int(np.count_nonzero(keep))
                y_half = np.zeros((r1 - r0, h), np.complex128)
                if kb:
                    parts = qn.dequantize_uniform(q[2 * pos : 2 * (pos + kb)], steps, group_size=2 * kb, dtype="float64")
                    y_half[keep] = parts[0::2] + 1j * parts[1::2]
                    pos += kb
                full = self._rebuild(y_half, n, beta, sigma, ph)
                rows = qn.rft_inverse(full, beta=beta, sigma=sigma, nthreads=nthreads, out=full).real
                rows_out[r0:r1] = from_float32(rows, dtype)
        w = np.moveaxis(out, -1, axis)
        return np.ascontiguousarray(w).reshape(shape)


#: Temporaries of one block of rows, per value of the block (complex spectra, bitmap, values).
_BYTES_PER_VALUE = 80
#: Bytes of temporaries per block when decoding (at least one row).
BLOCK_BYTES = 32 << 20


def _popcount(bitmap: np.ndarray, size: int) -> int:
    """Set bits among the first ``size`` bits of a little-endian bitmap (padding bits ignored)."""
    whole, rest = divmod(size, 8)
    total = 0
    for s in range(0, whole, 1 << 24):
        total += int(np.bitwise_count(bitmap[s : min(whole, s + (1 << 24))]).sum(dtype=np.int64))
    if rest:
        total += int(np.bitwise_count(bitmap[whole] & np.uint8((1 << rest) - 1)))
    return total


def _bits(bitmap: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Bits start..stop of a little-endian bitmap, as booleans."""
    b0 = start // 8
    bits = np.unpackbits(bitmap[b0 : (stop + 7) // 8], bitorder="little")
    off = start - 8 * b0
    return bits[off : off + stop - start].view(bool)
