"""Fidelity and rate measures (shared/docs/MEASURE.md)."""

from __future__ import annotations

import math

import numpy as np

import quantonium_native as qn

__all__ = ["bits_per_weight", "differential_entropy", "fidelity", "shannon_gap", "snr_db", "snr_from_sums", "sums"]


#: the differential entropy is estimated from at most this many values (an even
#: stride through the tensor): its histogram is an estimate anyway, and this keeps
#: it a small part of coding a large tensor
ENTROPY_SAMPLE = 1 << 20


def _real(a: np.ndarray) -> np.ndarray:
    """float32 and float64 as they are (no copy when contiguous); other dtypes as float32."""
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float32)


def sums(w: np.ndarray, w_hat: np.ndarray | None = None, nthreads: int = 1) -> tuple[float, float]:
    """(sum w^2, sum (w - w_hat)^2), accumulated in float64 by the native kernel (no float64 copies).

    The second is 0.0 when ``w_hat`` is None. Mixed precisions are compared in the wider one.
    """
    w = _real(w)
    if w_hat is None:
        return qn.energy_sums(w, nthreads=nthreads)
    w_hat = _real(w_hat)
    if w.dtype != w_hat.dtype:
        w, w_hat = w.astype(np.float64), w_hat.astype(np.float64)
    return qn.energy_sums(w, w_hat, nthreads=nthreads)


def snr_from_sums(sig: float, err: float) -> float:
    """10*log10(sig / err); inf for no error, -inf for a zero signal with an error."""
    if err == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / err)


def snr_db(w: np.ndarray, w_hat: np.ndarray) -> float:
    """10*log10(sum w^2 / sum (w - w_hat)^2) in float64; inf for an exact copy."""
    return snr_from_sums(*sums(w, w_hat))


def fidelity(w: np.ndarray, w_hat: np.ndarray) -> dict:
    """SNR (dB), relative L2 error, max absolute error and MSE."""
    w64 = np.asarray(w, np.float64)
    d = w64 - np.asarray(w_hat, np.float64)
    norm = float(np.linalg.norm(w64))
    return {
        "snr_db": snr_db(w64, w_hat),
        "rel_err": float(np.linalg.norm(d) / norm) if norm > 0 else float(np.linalg.norm(d)),
        "max_abs_err": float(np.max(np.abs(d))) if d.size else 0.0,
        "mse": float(np.mean(d * d)) if d.size else 0.0,
    }


def differential_entropy(w: np.ndarray, bins: int | None = None) -> float:
    """h(W) in bits, estimated from a histogram of the values.

    Tensors of more than ``ENTROPY_SAMPLE`` values are estimated from an even
    stride through them (deterministic).
    """
    w = np.asarray(w).reshape(-1)
    if w.size > ENTROPY_SAMPLE:
        w = w[:: -(-w.size // ENTROPY_SAMPLE)]
    if w.dtype not in (np.float32, np.float64):
        w = w.astype(np.float32)
    if w.size < 2:
        return -math.inf
    lo, hi = float(np.min(w)), float(np.max(w))
    if not hi > lo:
        return -math.inf
    nb = bins or int(min(4096, max(64, math.sqrt(w.size))))
    counts = np.histogram(w, bins=nb, range=(lo, hi))[0]
    width = (hi - lo) / nb
    p = counts[counts > 0] / w.size
    return float(-(p * np.log2(p)).sum() + math.log2(width))


def shannon_gap(w: np.ndarray, w_hat: np.ndarray | None, rate_bpw: float, *, sse: float | None = None) -> float:
    """rate - (h(W) - 0.5*log2(2*pi*e*D)), the distance to the Shannon lower bound (bits/weight).

    ``sse`` (sum of squared errors), when the caller has it, replaces ``w_hat``.
    """
    n = np.asarray(w).size
    if sse is None:
        sse = sums(w, w_hat)[1]
    d = sse / n if n else 0.0
    if d == 0.0:
        return math.nan
    bound = differential_entropy(w) - 0.5 * math.log2(2 * math.pi * math.e * d)
    return rate_bpw - max(0.0, bound)


def bits_per_weight(nbytes: int, nweights: int) -> float:
    return 8.0 * nbytes / nweights if nweights else 0.0
