"""Canonical RFT (RFT.md section 3): unitarity, agreement with the reference, refused sizes."""

from __future__ import annotations

import numpy as np
import pytest

import quantonium_native as qn
from quantonium import reference as ref

from conftest import ALL_DTYPES, RTOL, make, rel_err


@pytest.mark.parametrize("n", [1, 2, 3, 8, 17, 64, 100, 256])
def test_basis_unitary_and_matches_reference(n):
    basis = qn.canonical_basis(n)
    assert basis.shape == (n, n) and basis.dtype == np.complex128
    np.testing.assert_allclose(basis.conj().T @ basis, np.eye(n), atol=1e-10)
    assert qn.canonical_unitarity_error(n) < 1e-10
    np.testing.assert_allclose(basis, ref.canonical_basis(n), atol=1e-9)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("n", [1, 5, 64, 129])
def test_transform_matches_reference(rng, dtype, n):
    x = make(rng, (7, n), dtype)
    X = qn.canonical_rft_forward(x)
    assert X.dtype == np.dtype(np.complex64 if np.dtype(dtype) in (np.float32, np.complex64) else np.complex128)
    tol = RTOL[np.dtype(dtype)] * 10 if np.dtype(dtype).itemsize <= 8 else 1e-10
    assert rel_err(X, ref.canonical_rft_forward(x)) < tol
    assert rel_err(qn.canonical_rft_inverse(X), x) < tol
    np.testing.assert_allclose(np.linalg.norm(X.astype(np.complex128), axis=-1), np.linalg.norm(x.astype(np.complex128), axis=-1), rtol=tol)


def test_axis_and_strides(rng):
    x = make(rng, (8, 32, 3), np.complex128)[::2]
    for axis in (0, 1, 2):
        X = qn.canonical_rft_forward(x, axis=axis, nthreads=2)
        assert rel_err(X, ref.canonical_rft_forward(x, axis=axis)) < 1e-10
        assert rel_err(qn.canonical_rft_inverse(X, axis=axis), x) < 1e-10


def test_magnitudes_differ_from_fft(rng):
    """Unlike the Phi-RFT, the canonical RFT does not share the DFT's magnitudes."""
    x = make(rng, (64,), np.float64)
    assert not np.allclose(np.abs(qn.canonical_rft_forward(x)), np.abs(np.fft.fft(x, norm="ortho")), atol=1e-3)


def test_sizes_above_the_limit_are_refused(rng):
    n = qn.CANONICAL_MAX_N + 1
    with pytest.raises(ValueError, match="exceeds the supported maximum"):
        qn.canonical_rft_forward(np.zeros(n))
    with pytest.raises(ValueError, match="exceeds the supported maximum"):
        qn.canonical_basis(n)


def test_the_largest_allowed_size_is_unitary():
    n = qn.CANONICAL_MAX_N
    assert qn.canonical_unitarity_error(n) < 1e-10
    x = np.random.default_rng(1).standard_normal((2, n))
    assert rel_err(qn.canonical_rft_inverse(qn.canonical_rft_forward(x)), x) < 1e-11
