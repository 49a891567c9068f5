"""Real-orthogonal Phi-RFT (RFT.md section 2): orthogonality, layout, odd lengths."""

from __future__ import annotations

import numpy as np
import pytest

import quantonium_native as qn
from quantonium import reference as ref

from conftest import REAL_DTYPES, RTOL, make, rel_err


@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9, 64, 127, 384, 1536, 4097])
def test_matches_reference_round_trip_and_norm(rng, dtype, n):
    x = make(rng, (5, n), dtype)
    c = qn.rft_real_forward(x)
    assert c.dtype == np.dtype(dtype) and c.shape == x.shape
    tol = RTOL[np.dtype(dtype)]
    assert rel_err(c, ref.rft_real_forward(x)) < tol
    np.testing.assert_allclose(np.linalg.norm(c.astype(np.float64), axis=-1), np.linalg.norm(x.astype(np.float64), axis=-1), rtol=tol)
    back = qn.rft_real_inverse(c)
    assert back.dtype == np.dtype(dtype)
    assert rel_err(back, x) < tol


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 16])
def test_orthogonal_matrix(n):
    q = qn.rft_real_forward(np.eye(n)).T  # column j = R e_j
    np.testing.assert_allclose(q.T @ q, np.eye(n), atol=1e-12)


def test_interleaved_layout_is_the_complex_transform_of_pairs(rng):
    x = make(rng, (3, 10), np.float64)
    z = x[:, 0::2] + 1j * x[:, 1::2]
    y = qn.rft_forward(z, beta=0.9, sigma=1.5)
    c = qn.rft_real_forward(x, beta=0.9, sigma=1.5)
    np.testing.assert_allclose(c[:, 0::2], y.real, atol=1e-14)
    np.testing.assert_allclose(c[:, 1::2], y.imag, atol=1e-14)


def test_odd_length_passes_last_element_through(rng):
    x = make(rng, (4, 11), np.float32)
    c = qn.rft_real_forward(x)
    np.testing.assert_array_equal(c[:, -1], x[:, -1])
    np.testing.assert_allclose(c[:, :-1], qn.rft_real_forward(np.ascontiguousarray(x[:, :-1])), atol=1e-6)


def test_outlier_is_spread(rng):
    """Incoherence processing: one large entry is spread across the row."""
    x = np.zeros(256)
    x[17] = 100.0
    c = qn.rft_real_forward(x)
    assert np.abs(c).max() < 100.0 / 8
    assert np.isclose(np.linalg.norm(c), 100.0)


@pytest.mark.parametrize("dtype", REAL_DTYPES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_any_axis_and_strides(rng, dtype, axis):
    base = make(rng, (6, 9, 12), dtype)
    for v in (base, base[::2, :, ::-1], base.transpose(1, 2, 0)):
        c = qn.rft_real_forward(v, axis=axis, beta=0.3)
        assert rel_err(c, ref.rft_real_forward(v, 0.3, axis=axis)) < RTOL[np.dtype(dtype)]
        assert rel_err(qn.rft_real_inverse(c, axis=axis, beta=0.3), v) < RTOL[np.dtype(dtype)]


def test_in_place_and_out(rng):
    x = make(rng, (4, 33), np.float64)
    expect = qn.rft_real_forward(x)
    y = x.copy()
    assert qn.rft_real_forward(y, out=y) is y
    np.testing.assert_array_equal(y, expect)
    out = np.empty_like(x)
    assert qn.rft_real_inverse(y, out=out) is out
    assert rel_err(out, x) < 1e-14


def test_threads_agree(rng):
    x = make(rng, (64, 1000), np.float32)
    np.testing.assert_array_equal(qn.rft_real_forward(x, nthreads=2), qn.rft_real_forward(x, nthreads=2))
    assert rel_err(qn.rft_real_forward(x, nthreads=2), qn.rft_real_forward(x)) < 1e-6
