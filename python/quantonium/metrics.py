"""Fidelity and rate measures (shared/docs/MEASURE.md)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bits_per_weight", "differential_entropy", "fidelity", "shannon_gap", "snr_db"]


def snr_db(w: np.ndarray, w_hat: np.ndarray) -> float:
    """10*log10(sum w^2 / sum (w - w_hat)^2) in float64; inf for an exact copy."""
    w = np.asarray(w, np.float64)
    err = float(np.sum((w - np.asarray(w_hat, np.float64)) ** 2))
    sig = float(np.sum(w * w))
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
    w = np.asarray(w, np.float64).reshape(-1)
    if w.size < 2 or np.ptp(w) == 0:
        return -math.inf
    nb = bins or int(min(4096, max(64, math.sqrt(w.size))))
    counts, edges = np.histogram(w, bins=nb)
    width = edges[1] - edges[0]
    p = counts[counts > 0] / w.size
    return float(-(p * np.log2(p)).sum() + math.log2(width))


def shannon_gap(w: np.ndarray, w_hat: np.ndarray, rate_bpw: float) -> float:
    """rate - (h(W) - 0.5*log2(2*pi*e*D)), the distance to the Shannon lower bound (bits/weight)."""
    d = float(np.mean((np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)) ** 2))
    if d == 0.0:
        return math.nan
    bound = differential_entropy(w) - 0.5 * math.log2(2 * math.pi * math.e * d)
    return rate_bpw - max(0.0, bound)


def bits_per_weight(nbytes: int, nweights: int) -> float:
    return 8.0 * nbytes / nweights if nweights else 0.0
