"""quantonium_native.energy_sums: the fidelity sums behind every SNR the pipeline prints."""

import numpy as np
import pytest

import quantonium_native as qn


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 65535, 65536, 65537, 300_001])
def test_matches_numpy_float64(dtype, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    y = (x + rng.standard_normal(n) * 0.01).astype(dtype)
    s, e = qn.energy_sums(x, y)
    x64, d64 = x.astype(np.float64), x.astype(np.float64) - y.astype(np.float64)
    assert s == pytest.approx(float(x64 @ x64), rel=1e-12, abs=0)
    assert e == pytest.approx(float(d64 @ d64), rel=1e-12, abs=0)
    s_only, zero = qn.energy_sums(x)
    assert s_only == s and zero == 0.0


def test_thread_count_does_not_change_the_result():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(1_000_003).astype(np.float32)
    y = np.round(x * 8).astype(np.float32) / 8
    ref = qn.energy_sums(x, y, nthreads=1)
    for t in (2, 3, 8):
        assert qn.energy_sums(x, y, nthreads=t) == ref  # bit-identical, not approximately


def test_shapes_and_layouts():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 70)).astype(np.float32)
    y = x * np.float32(0.5)
    ref = qn.energy_sums(x.ravel().copy(), y.ravel().copy())
    assert qn.energy_sums(x, y) == ref
    xt = np.asfortranarray(x)  # non-C-contiguous input is read in C order
    assert qn.energy_sums(xt, y) == pytest.approx(ref, rel=1e-12)
    assert qn.energy_sums(x, y.reshape(70, 300)) == ref  # sizes must match, shapes need not


def test_bad_input_is_refused():
    x = np.ones(10, np.float32)
    with pytest.raises(TypeError, match="unsupported dtype"):
        qn.energy_sums(np.ones(10, np.int32))
    with pytest.raises(TypeError, match="dtype"):
        qn.energy_sums(x, np.ones(10, np.float64))
    with pytest.raises(ValueError, match="10 and 9"):
        qn.energy_sums(x, np.ones(9, np.float32))
    with pytest.raises(ValueError):
        qn.energy_sums(x, nthreads=0)


def test_non_finite_values_propagate():
    x = np.array([1.0, np.inf, 2.0], np.float32)
    s, e = qn.energy_sums(x, np.array([1.0, 1.0, 2.0], np.float32))
    assert s == np.inf and e == np.inf
    s, _ = qn.energy_sums(np.array([np.nan, 1.0], np.float64))
    assert np.isnan(s)
