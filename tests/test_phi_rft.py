"""Fast Phi-RFT: the properties of shared/docs/RFT.md section 4, against the numpy reference."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import quantonium_native as qn
from quantonium import reference as ref

from conftest import ALL_DTYPES, RTOL, make, rel_err

SIZES = [1, 2, 3, 4, 5, 7, 8, 16, 31, 64, 97, 100, 127, 255, 256, 509, 1000, 1024, 4097]


def expected_dtype(dtype) -> np.dtype:
    return np.dtype(np.complex64 if np.dtype(dtype) in (np.float32, np.complex64) else np.complex128)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_matches_reference_and_round_trips(rng, dtype, n):
    x = make(rng, (3, n), dtype)
    y = qn.rft_forward(x)
    assert y.dtype == expected_dtype(dtype) and y.shape == x.shape
    tol = RTOL[np.dtype(dtype)]
    assert rel_err(y, ref.rft_forward(x)) < tol
    back = qn.rft_inverse(y)
    assert back.dtype == expected_dtype(dtype)
    assert rel_err(back, x) < tol
    assert rel_err(qn.rft_inverse(ref.rft_forward(x).astype(y.dtype)), ref.rft_inverse(ref.rft_forward(x))) < tol


@pytest.mark.parametrize("beta,sigma", [(1.0, 1.0), (0.0, 0.0), (0.5, 2.0), (-1.3, 0.37), (7.0, -3.5)])
@pytest.mark.parametrize("n", [1, 6, 64, 333])
def test_parameters_beta_sigma(rng, beta, sigma, n):
    x = make(rng, (4, n), np.complex128)
    y = qn.rft_forward(x, beta=beta, sigma=sigma)
    assert rel_err(y, ref.rft_forward(x, beta, sigma)) < 1e-12
    assert rel_err(qn.rft_inverse(y, beta=beta, sigma=sigma), x) < 1e-12
    if (beta, sigma) != (0.0, 0.0) and n > 2:
        # the parameters are really used: another setting gives another result
        assert rel_err(qn.rft_forward(x, beta=beta + 0.25, sigma=sigma), y) > 1e-3


@pytest.mark.parametrize("n", [1, 2, 3, 8, 13, 64, 100])
def test_unitary(n):
    psi = qn.rft_forward(np.eye(n, dtype=np.complex128)).T  # column j = Psi e_j
    np.testing.assert_allclose(psi.conj().T @ psi, np.eye(n), atol=1e-12)
    psi32 = qn.rft_forward(np.eye(n, dtype=np.complex64)).T.astype(np.complex128)
    np.testing.assert_allclose(psi32.conj().T @ psi32, np.eye(n), atol=5e-6)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("n", [5, 128, 1025])
def test_magnitudes_equal_fft(rng, dtype, n):
    x = make(rng, (6, n), dtype)
    mag = np.abs(qn.rft_forward(x)).astype(np.float64)
    fft_mag = np.abs(np.fft.fft(x.astype(np.complex128), norm="ortho"))
    np.testing.assert_allclose(mag, fft_mag, rtol=RTOL[np.dtype(dtype)] * 20, atol=RTOL[np.dtype(dtype)] * 20 * fft_mag.max())
    # so top-k selection by magnitude picks the same coefficients as the FFT would
    if np.dtype(dtype) in (np.float64, np.complex128):
        k = n // 8 + 1
        ours = np.sort(np.argsort(-mag[0], kind="stable")[:k])
        theirs = np.sort(np.argsort(-fft_mag[0], kind="stable")[:k])
        gap = np.sort(fft_mag[0])[::-1]
        if k < n and gap[k - 1] - gap[k] > 1e-9:
            np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_parseval(rng, dtype):
    x = make(rng, (10, 777), dtype)
    y = qn.rft_forward(x)
    np.testing.assert_allclose(
        np.linalg.norm(y.astype(np.complex128), axis=-1),
        np.linalg.norm(x.astype(np.complex128), axis=-1),
        rtol=RTOL[np.dtype(dtype)],
    )


def test_linearity(rng):
    x, z = make(rng, (5, 300), np.complex128), make(rng, (5, 300), np.complex128)
    a, b = 0.3 - 1.2j, 2.5 + 0.5j
    lhs = qn.rft_forward(a * x + b * z)
    rhs = a * qn.rft_forward(x) + b * qn.rft_forward(z)
    assert rel_err(lhs, rhs) < 1e-13


@pytest.mark.parametrize("n", [1 << 16, 65537, (1 << 17) + 6])
def test_large_lengths(rng, n):
    x = make(rng, (2, n), np.complex128)
    y = qn.rft_forward(x)
    assert rel_err(y, ref.rft_forward(x)) < 1e-10
    assert rel_err(qn.rft_inverse(y), x) < 1e-12
    x32 = x.astype(np.complex64)
    assert rel_err(qn.rft_forward(x32), ref.rft_forward(x32)) < 2e-5


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("shape,axis", [((4, 5, 6), 0), ((4, 5, 6), 1), ((4, 5, 6), 2), ((4, 5, 6), -2), ((2, 3, 4, 33), -1), ((17,), 0), ((1, 1, 9), 2), ((0, 8), 1), ((8, 0), 0)])
def test_any_axis_and_batches(rng, dtype, shape, axis):
    x = make(rng, shape, dtype)
    y = qn.rft_forward(x, axis=axis)
    assert y.shape == x.shape
    assert rel_err(y, ref.rft_forward(x, axis=axis)) < RTOL[np.dtype(dtype)]
    assert rel_err(qn.rft_inverse(y, axis=axis), x) < RTOL[np.dtype(dtype)]


def test_batched_rows_are_independent(rng):
    x = make(rng, (9, 4, 50), np.complex128)
    y = qn.rft_forward(x)
    for i in range(9):
        for j in range(4):
            assert rel_err(y[i, j], qn.rft_forward(x[i, j])) < 1e-14


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_non_contiguous_inputs(rng, dtype):
    base = make(rng, (12, 40, 10), dtype)
    views = [
        base[::2],  # strided outer
        base[:, ::3],  # strided transform axis
        base[:, :, ::2],  # strided inner
        base.transpose(2, 0, 1),  # does not collapse: copied
        base[::-1, :, ::-1],  # negative strides
        np.asfortranarray(base),
    ]
    for v in views:
        for axis in range(3):
            y = qn.rft_forward(v, axis=axis)
            assert rel_err(y, ref.rft_forward(v, axis=axis)) < RTOL[np.dtype(dtype)]
            assert rel_err(qn.rft_inverse(y, axis=axis), v) < RTOL[np.dtype(dtype)]
    # an interleaved-real view: the real part of a complex array (stride 2 floats)
    c = make(rng, (5, 64), np.complex128)
    assert rel_err(qn.rft_forward(c.real), ref.rft_forward(c.real.copy())) < 1e-10


def test_out_argument_and_in_place(rng):
    x = make(rng, (6, 96), np.complex64)
    expect = qn.rft_forward(x)
    out = np.empty_like(x)
    res = qn.rft_forward(x, out=out)
    assert res is out
    np.testing.assert_array_equal(out, expect)
    # a strided out
    big = np.zeros((6, 192), np.complex64)
    qn.rft_forward(x, out=big[:, ::2])
    np.testing.assert_array_equal(big[:, ::2], expect)
    assert not big[:, 1::2].any()
    # in place
    y = x.copy()
    assert qn.rft_forward(y, out=y) is y
    np.testing.assert_array_equal(y, expect)
    assert qn.rft_inverse(y, out=y) is y
    assert rel_err(y, x) < 5e-6


def test_lists_are_accepted_with_their_numpy_dtype():
    y = qn.rft_forward([1.0, 2.0, 3.0])
    assert y.dtype == np.complex128
    assert rel_err(y, ref.rft_forward(np.array([1.0, 2.0, 3.0]))) < 1e-14


def test_non_finite_values_stay_in_their_row(rng):
    x = make(rng, (3, 16), np.float64)
    x[1, 5] = np.nan
    y = qn.rft_forward(x)
    assert np.isnan(y[1]).all()
    assert np.isfinite(y[[0, 2]]).all()


@pytest.mark.parametrize("n", [1024, 1000])
def test_large_outputs_equal_every_layout_bit_for_bit(rng, n):
    # Outputs above 8 MiB are written with streaming stores and contiguous
    # complex inputs are read chunk by chunk in one copy: neither may change a
    # value. Compare against strided input and output layouts, which take the
    # per-row paths, and check the result against the reference.
    rows = (9 << 20) // (8 * n) + 3  # > 8 MiB of complex64, a short last chunk
    x = make(rng, (rows, n), np.complex64)
    y = qn.rft_forward(x)
    assert rel_err(y[:64], ref.rft_forward(x[:64])) < RTOL[np.dtype(np.complex64)]
    wide = np.zeros((rows, 2 * n), np.complex64)
    wide[:, ::2] = x
    np.testing.assert_array_equal(qn.rft_forward(wide[:, ::2]), y)  # strided input
    out = np.zeros((rows, 2 * n), np.complex64)
    qn.rft_forward(x, out=out[:, ::2])  # strided output
    np.testing.assert_array_equal(out[:, ::2], y)
    assert not out[:, 1::2].any()
    z = x.copy()
    qn.rft_forward(z, out=z)  # in place
    np.testing.assert_array_equal(z, y)
    back = qn.rft_inverse(y)
    np.testing.assert_array_equal(qn.rft_inverse(y, out=out[:, ::2]), back)
    assert rel_err(back, x) < 1e-5
    # the same rows in a batch too small to stream (but of at least one full
    # chunk of 128 KiB, so that the same FFTW plan runs)
    np.testing.assert_array_equal(qn.rft_forward(x[:40]), y[:40])
    np.testing.assert_array_equal(qn.rft_inverse(y[-40:]), back[-40:])


STREAM_SCRIPT = """
import numpy as np, quantonium_native as qn
rng = np.random.default_rng(1)
rows, n = 1030, 1024 + 3  # > 8 MiB of complex64; odd n: rows start off the vector boundary
for dt in (np.complex64, np.complex128):
    x = (rng.standard_normal((rows, n)) + 1j * rng.standard_normal((rows, n))).astype(dt)
    y = qn.rft_forward(x)  # streamed
    out = np.zeros((rows, 2 * n), dt)
    qn.rft_forward(x, out=out[:, ::2])  # strided: ordinary stores
    assert np.array_equal(out[:, ::2], y), dt
    back = qn.rft_inverse(y)
    qn.rft_inverse(y, out=out[:, ::2])
    assert np.array_equal(out[:, ::2], back), dt
print(qn.build_info()["simd_selected"])
"""


def test_streamed_output_equals_ordinary_stores_on_every_simd_path():
    compiled = qn.build_info()["simd_compiled"]
    usable = compiled[: compiled.index(qn.build_info()["simd_selected"]) + 1]
    for path in usable:
        env = dict(os.environ, QUANTONIUM_SIMD=path)
        res = subprocess.run([sys.executable, "-c", STREAM_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, (path, res.stderr[-2000:])
        assert res.stdout.strip() == path
