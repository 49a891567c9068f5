"""Property tests (hypothesis): random shapes, axes, dtypes and parameters against the reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import quantonium_native as qn
from quantonium import reference as ref

from conftest import RTOL, rel_err

shapes = st.lists(st.integers(1, 40), min_size=1, max_size=3)
params = st.floats(-4.0, 4.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, data=st.data(), dtype=st.sampled_from(["float32", "float64", "complex64", "complex128"]), beta=params, sigma=params)
def test_phi_rft_round_trip_and_reference(shape, data, dtype, beta, sigma):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if dtype.startswith("complex") else 0)
    x = x.astype(dtype)
    y = qn.rft_forward(x, beta=beta, sigma=sigma, axis=axis)
    tol = RTOL[np.dtype(dtype)]
    assert rel_err(y, ref.rft_forward(x, beta, sigma, axis=axis)) < tol
    assert rel_err(qn.rft_inverse(y, beta=beta, sigma=sigma, axis=axis), x) < tol


@settings(max_examples=60, deadline=None)
@given(shape=shapes, data=st.data(), dtype=st.sampled_from(["float32", "float64"]), beta=params, sigma=params)
def test_real_rft_is_orthogonal_and_matches_reference(shape, data, dtype, beta, sigma):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal(shape).astype(dtype)
    c = qn.rft_real_forward(x, beta=beta, sigma=sigma, axis=axis)
    tol = RTOL[np.dtype(dtype)]
    assert abs(np.linalg.norm(c.astype(np.float64)) - np.linalg.norm(x.astype(np.float64))) <= tol * np.linalg.norm(x.astype(np.float64))
    assert rel_err(c, ref.rft_real_forward(x, beta, sigma, axis=axis)) < tol
    assert rel_err(qn.rft_real_inverse(c, beta=beta, sigma=sigma, axis=axis), x) < tol
