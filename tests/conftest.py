"""Shared helpers of the test suite: seeded data and the per-dtype tolerance table."""

from __future__ import annotations

import numpy as np
import pytest

# Relative L2 error allowed between the native module and the numpy reference
# (and for round trips). float64 references accumulate ~1e-13 of phase error
# per unit of k**2/n; 1e-10 covers n up to 2**17.
RTOL = {
    np.dtype(np.float32): 5e-6,
    np.dtype(np.complex64): 5e-6,
    np.dtype(np.float64): 1e-10,
    np.dtype(np.complex128): 1e-10,
}

REAL_DTYPES = [np.float32, np.float64]
ALL_DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b|| in float64 (0 when both are empty or zero)."""
    a = np.asarray(a, dtype=np.complex128)
    b = np.asarray(b, dtype=np.complex128)
    denom = np.linalg.norm(b)
    num = np.linalg.norm(a - b)
    return float(num / denom) if denom > 0 else float(num)


def make(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Standard normal data of a real or complex dtype."""
    dtype = np.dtype(dtype)
    x = rng.standard_normal(shape)
    if dtype.kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261126)
