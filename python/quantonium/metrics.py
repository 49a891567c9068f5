"""Fidelity and rate measures (shared/docs/MEASURE.md)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bits_per_weight", "differential_entropy", "fidelity", "shannon_gap", "snr_db"]


#: values per chunk: the measures work through large tensors in float64 pieces of this size,
#: so that they never hold a float64 copy of a whole tensor
CHUNK = 1 << 20


def _chunks(*arrays: np.ndarray):
    flat = [np.asarray(a).reshape(-1) for a in arrays]
    n = flat[0].size
    for i in range(0, n, CHUNK):
        yield [f[i:i + CHUNK].astype(np.float64) for f in flat]


def sums(w: np.ndarray, w_hat: np.ndarray) -> tuple[float, float]:
    """(sum w^2, sum (w - w_hat)^2) in float64, by chunks."""
    sig = err = 0.0
    for a, b in _chunks(w, w_hat):
        sig += float(np.dot(a, a))
        d = a - b
        err += float(np.dot(d, d))
    return sig, err


def snr_db(w: np.ndarray, w_hat: np.ndarray) -> float:
    """10*log10(sum w^2 / sum (w - w_hat)^2) in float64; inf for an exact copy."""
    sig, err = sums(w, w_hat)
    if err == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / err)


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
    """h(W) in bits, estimated from a histogram of the values."""
    w = np.asarray(w).reshape(-1)
    if w.size < 2:
        return -math.inf
    lo, hi = float(np.min(w)), float(np.max(w))
    if not hi > lo:
        return -math.inf
    nb = bins or int(min(4096, max(64, math.sqrt(w.size))))
    counts = np.zeros(nb, np.int64)
    for (a,) in _chunks(w):
        counts += np.histogram(a, bins=nb, range=(lo, hi))[0]
    width = (hi - lo) / nb
    p = counts[counts > 0] / w.size
    return float(-(p * np.log2(p)).sum() + math.log2(width))


def shannon_gap(w: np.ndarray, w_hat: np.ndarray, rate_bpw: float) -> float:
    """rate - (h(W) - 0.5*log2(2*pi*e*D)), the distance to the Shannon lower bound (bits/weight)."""
    n = np.asarray(w).size
    d = sums(w, w_hat)[1] / n if n else 0.0
    if d == 0.0:
        return math.nan
    bound = differential_entropy(w) - 0.5 * math.log2(2 * math.pi * math.e * d)
    return rate_bpw - max(0.0, bound)


def bits_per_weight(nbytes: int, nweights: int) -> float:
    return 8.0 * nbytes / nweights if nweights else 0.0
