"""Every documented error: wrong dtypes (TypeError), shapes, axes and parameters (ValueError)."""

from __future__ import annotations

import numpy as np
import pytest

import quantonium_native as qn

COMPLEX_OUT = [qn.rft_forward, qn.rft_inverse, qn.canonical_rft_forward, qn.canonical_rft_inverse]
REAL_OUT = [qn.rft_real_forward, qn.rft_real_inverse]
ALL = COMPLEX_OUT + REAL_OUT


@pytest.mark.parametrize("fn", COMPLEX_OUT)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.bool_, np.longdouble, np.clongdouble, object, ">f8", ">c16"])
def test_unsupported_dtypes_name_the_allowed_ones(fn, dtype):
    x = np.ones(8, dtype=dtype)
    with pytest.raises(TypeError, match="expected one of float32, float64, complex64, complex128"):
        fn(x)


@pytest.mark.parametrize("fn", REAL_OUT)
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, np.int16, np.float16, ">f4"])
def test_real_transforms_take_real_dtypes_only(fn, dtype):
    with pytest.raises(TypeError, match="expected one of float32, float64"):
        fn(np.ones(8, dtype=dtype))


@pytest.mark.parametrize("fn", ALL)
def test_zero_dimensional_input(fn):
    with pytest.raises(ValueError, match="at least one dimension"):
        fn(np.float64(1.0))


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("axis", [2, -3, 100])
def test_axis_out_of_bounds(fn, axis):
    with pytest.raises(ValueError, match="out of bounds"):
        fn(np.ones((3, 4)), axis=axis)


@pytest.mark.parametrize("fn", ALL)
def test_empty_transform_axis(fn):
    with pytest.raises(ValueError, match="length 0"):
        fn(np.ones((3, 0)))


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("nthreads", [0, -2])
def test_bad_nthreads(fn, nthreads):
    with pytest.raises(ValueError, match="nthreads"):
        fn(np.ones(4), nthreads=nthreads)


@pytest.mark.parametrize("fn", [qn.rft_forward, qn.rft_inverse, qn.rft_real_forward, qn.rft_real_inverse])
@pytest.mark.parametrize("param", ["beta", "sigma"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_parameters(fn, param, value):
    with pytest.raises(ValueError, match=f"{param} must be finite"):
        fn(np.ones(4), **{param: value})


@pytest.mark.parametrize("fn", COMPLEX_OUT)
def test_out_wrong_dtype(fn):
    with pytest.raises(TypeError, match="out has dtype complex128, expected complex64"):
        fn(np.ones(4, np.float32), out=np.empty(4, np.complex128))
    with pytest.raises(TypeError, match="out has dtype float64"):
        fn(np.ones(4), out=np.empty(4))


@pytest.mark.parametrize("fn", REAL_OUT)
def test_real_out_wrong_dtype(fn):
    with pytest.raises(TypeError, match="out has dtype float32, expected float64"):
        fn(np.ones(4), out=np.empty(4, np.float32))


@pytest.mark.parametrize("fn", ALL)
def test_out_wrong_shape_read_only_or_not_an_array(fn):
    x = np.ones((2, 4))
    dt = np.float64 if fn in REAL_OUT else np.complex128
    with pytest.raises(ValueError, match=r"out has shape \(4, 2\), expected \(2, 4\)"):
        fn(x, out=np.empty((4, 2), dt))
    ro = np.empty((2, 4), dt)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fn(x, out=ro)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        fn(x, out=[[0.0] * 4] * 2)


def test_overlapping_out_is_refused():
    buf = np.zeros(20, np.complex128)
    with pytest.raises(ValueError, match="overlaps"):
        qn.rft_forward(buf[:16], out=buf[4:20])
    x = np.zeros(16, np.float64)
    with pytest.raises(ValueError, match="overlaps"):
        qn.rft_real_forward(x[:8], out=x[4:12])


def test_out_layout_that_does_not_collapse():
    x = np.ones((4, 5, 6), np.complex128)
    out = np.empty((5, 4, 6), np.complex128).transpose(1, 0, 2)  # outer dims do not merge
    with pytest.raises(ValueError, match="out's memory layout"):
        qn.rft_forward(x, axis=2, out=out)
    qn.rft_forward(x, axis=1, out=out)  # along axis 1 the same array is addressable


def test_keyword_only_parameters():
    with pytest.raises(TypeError):
        qn.rft_forward(np.ones(4), 1.0)  # type: ignore[misc]


def test_planner_effort():
    with pytest.raises(ValueError, match="planner effort must be one of"):
        qn.set_planner_effort("fast")
    qn.set_planner_effort("estimate")
    try:
        assert qn.build_info()["planner_effort"] == "estimate"
        x = np.arange(12.0)
        np.testing.assert_allclose(qn.rft_inverse(qn.rft_forward(x)).real, x, atol=1e-12)
    finally:
        qn.set_planner_effort("measure")
    assert qn.build_info()["planner_effort"] == "measure"
