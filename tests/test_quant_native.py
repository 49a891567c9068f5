"""Native quantisers, bit packing and rANS against the numpy/Python reference (bit-exact)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quantonium_native as qn
from quantonium import quant_reference as R


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 3000), g=st.integers(1, 700), dz=st.sampled_from([0.0, 0.1, 0.3]), dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**31), scale=st.floats(0.01, 10))
def test_uniform_matches_reference(n, g, dz, dtype, seed, scale):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * scale).astype(dtype)
    ng = -(-n // g) if n else 0
    steps = (rng.uniform(0.05, 1.0, ng) * scale).astype(np.float32)
    sym = "int16"
    q = qn.quantize_uniform(x, steps, group_size=g, dead_zone=dz, symbol_dtype=sym)
    np.testing.assert_array_equal(q, R.quantize_uniform(x, steps, g, dz, sym))
    d = qn.dequantize_uniform(q, steps, group_size=g, dtype=dtype)
    np.testing.assert_array_equal(d, R.dequantize_uniform(q, steps, g, np.dtype(dtype)))
    if n:
        # error bounded by half a step outside the dead zone, (0.5 + dz) steps inside it
        bound = np.repeat(steps, g)[:n].astype(np.float64) * (0.5 + dz) * (1 + 1e-6)
        assert np.all(np.abs(d.astype(np.float64) - x) <= bound)


def test_uniform_threads_and_shapes_agree(rng):
    x = rng.standard_normal((37, 129)).astype(np.float32)
    steps = np.full(37, 0.1, np.float32)
    a = qn.quantize_uniform(x, steps, group_size=129)
    b = qn.quantize_uniform(x, steps, group_size=129, nthreads=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == np.int8


def test_uniform_errors():
    x = np.ones(10, np.float32)
    with pytest.raises(TypeError, match="float32, float64"):
        qn.quantize_uniform(np.ones(10, np.int32), np.ones(1, np.float32), group_size=10)
    with pytest.raises(TypeError, match="steps must be float32"):
        qn.quantize_uniform(x, np.ones(1), group_size=10)
    with pytest.raises(ValueError, match="one step per group"):
        qn.quantize_uniform(x, np.ones(2, np.float32), group_size=4)
    with pytest.raises(ValueError, match="finite and > 0"):
        qn.quantize_uniform(x, np.zeros(1, np.float32), group_size=10)
    with pytest.raises(ValueError, match="do not fit in int8"):
        qn.quantize_uniform(x * 1000, np.ones(1, np.float32), group_size=10)
    with pytest.raises(ValueError, match="not finite"):
        qn.quantize_uniform(np.array([np.nan], np.float32), np.ones(1, np.float32), group_size=1)
    with pytest.raises(ValueError, match="dead_zone"):
        qn.quantize_uniform(x, np.ones(1, np.float32), group_size=10, dead_zone=0.5)
    with pytest.raises(TypeError, match="int8, int16"):
        qn.dequantize_uniform(np.ones(4, np.int32), np.ones(1, np.float32), group_size=4)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 2000), bits=st.integers(2, 8), g=st.sampled_from([8, 32, 64, 128]), asym=st.booleans(), seed=st.integers(0, 2**31))
def test_fixed_matches_reference(n, bits, g, asym, seed):
    x = (np.random.default_rng(seed).standard_normal(n) * 0.05).astype(np.float32)
    p, s, m = qn.quantize_fixed(x, bits, group_size=g, asymmetric=asym)
    pr, sr, mr = R.quantize_fixed(x, bits, g, asym)
    np.testing.assert_array_equal(p, pr)
    np.testing.assert_array_equal(s.view(np.uint16), sr.view(np.uint16))
    if asym:
        np.testing.assert_array_equal(m.view(np.uint16), mr.view(np.uint16))
    else:
        assert m is None
    d = qn.dequantize_fixed(p, s, m, bits=bits, group_size=g, count=n)
    np.testing.assert_array_equal(d, R.dequantize_fixed(pr, sr, mr, bits, g, n))
    assert p.size == -(-n * bits // 8)


def test_fixed_more_bits_less_error(rng):
    x = rng.standard_normal(4096).astype(np.float32)
    errs = []
    for b in range(2, 9):
        p, s, m = qn.quantize_fixed(x, b, group_size=32)
        errs.append(np.mean((qn.dequantize_fixed(p, s, m, bits=b, group_size=32, count=x.size) - x) ** 2))
    assert all(a > b for a, b in zip(errs, errs[1:]))


def test_fixed_errors():
    x = np.ones(64, np.float32)
    with pytest.raises(ValueError, match="bits must be in 2..8"):
        qn.quantize_fixed(x, 9, group_size=32)
    with pytest.raises(ValueError, match="multiple of 8"):
        qn.quantize_fixed(x, 4, group_size=30)
    with pytest.raises(ValueError, match="not finite in float16"):
        qn.quantize_fixed(x * 1e6, 4, group_size=32)
    p, s, m = qn.quantize_fixed(x, 4, group_size=32)
    with pytest.raises(ValueError, match="packed data has"):
        qn.dequantize_fixed(p[:-1], s, m, bits=4, group_size=32, count=64)
    with pytest.raises(ValueError, match="2 entries"):
        qn.dequantize_fixed(p, s[:1], m, bits=4, group_size=32, count=64)
    with pytest.raises(TypeError, match="float16"):
        qn.dequantize_fixed(p, s.astype(np.float32), m, bits=4, group_size=32, count=64)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 1000), bits=st.integers(1, 16), seed=st.integers(0, 2**31))
def test_pack_bits_matches_reference(n, bits, seed):
    v = np.random.default_rng(seed).integers(0, 1 << bits, n).astype(np.uint16 if bits > 8 else np.uint8)
    p = qn.pack_bits(v, bits)
    np.testing.assert_array_equal(p, R.pack_bits(v, bits))
    np.testing.assert_array_equal(qn.unpack_bits(p, bits, n, "uint16" if bits > 8 else "uint8"), v)
    np.testing.assert_array_equal(R.unpack_bits(p, bits, n), v)


def test_pack_bits_errors():
    with pytest.raises(ValueError, match="does not fit in 3 bits"):
        qn.pack_bits(np.array([8], np.uint8), 3)
    with pytest.raises(ValueError, match="expected 1"):
        qn.unpack_bits(b"\x00\x00", 3, 2)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 3000), width=st.sampled_from([1, 2, 5, 40, 300, 3000]), dtype=st.sampled_from(["int8", "int16", "uint8"]), seed=st.integers(0, 2**31))
def test_rans_matches_reference_stream(n, width, dtype, seed):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    v = np.clip(np.round(rng.laplace(0, width / 8, n)), info.min, info.max)
    if dtype == "uint8":
        v = np.abs(v)
    v = v.astype(dtype)
    enc = qn.rans_encode(v)
    assert enc == R.rans_encode(v)
    np.testing.assert_array_equal(qn.rans_decode(enc, n, dtype), v)
    assert R.rans_decode(enc, n) == v.tolist()


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0, 20.0, 300.0])
def test_rans_within_three_percent_of_order0_entropy(rng, scale):
    v = np.clip(np.round(rng.laplace(0, scale, 200_000)), -32768, 32767).astype(np.int16)
    h = R.entropy_order0(v)
    rate = 8 * len(qn.rans_encode(v)) / v.size
    assert rate <= h * 1.03 + 1e-9, (rate, h)
    assert rate >= h * 0.999  # cannot beat the entropy: the measurement is real


def test_rans_rejects_malformed_streams(rng):
    v = np.round(rng.normal(0, 3, 5000)).astype(np.int8)
    enc = bytearray(qn.rans_encode(v))
    with pytest.raises(ValueError, match="expected 4999"):
        qn.rans_decode(bytes(enc), 4999, "int8")
    with pytest.raises(ValueError, match="malformed rANS stream"):
        qn.rans_decode(bytes(enc[:-3]), 5000, "int8")
    with pytest.raises(ValueError, match="trailing bytes"):
        qn.rans_decode(bytes(enc) + b"\0", 5000, "int8")
    detected = 0
    for pos in range(len(enc) - 200, len(enc)):  # flipped payload bytes
        bad = bytearray(enc)
        bad[pos] ^= 0x5A
        try:
            qn.rans_decode(bytes(bad), 5000, "int8")
        except ValueError:
            detected += 1
    assert detected >= 190  # the final-state check catches nearly every flip
    with pytest.raises(ValueError, match="output type"):
        qn.rans_decode(qn.rans_encode(np.array([1000, -1000], np.int16)), 2, "int8")
    for garbage in (b"", b"\xff" * 12, b"\x05\x00\xff\xff\xff\xff\x0f"):
        with pytest.raises(ValueError):
            qn.rans_decode(garbage, 5, "int16")
