"""The entropy stage: rANS stream format 2 against its Python reference (bit-exact), old
format-1 streams, hostile streams (issue 11), the symbol histograms and the size estimate."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import quantonium_native as qn
from quantonium import quant_reference as R
from quantonium.codecs import decode_tensor

DATA = pathlib.Path(__file__).parent / "data"


def symbols(rng, n, dtype, scale):
    info = np.iinfo(dtype)
    v = np.rint(rng.standard_normal(n) * scale)
    if dtype == "uint8":
        v = np.abs(v)
    return np.clip(v, info.min, info.max).astype(dtype)


def entropy_bits(v) -> float:
    return R.entropy_order0(v) * v.size


def split_v2(stream: bytes, count: int) -> tuple[int, list[int]]:
    """(bytes before the chunk bodies, chunk body lengths) of a format-2 stream."""
    pos = 3

    def varint():
        nonlocal pos
        v, shift = 0, 0
        while True:
            b = stream[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    assert varint() == count
    varint()
    w, cl = 1 << (stream[pos] >> 3), stream[pos + 1]
    pos += 2
    nsym = 0
    for r in range(varint()):
        if r:
            varint()
        nsym += varint() + 1
    if nsym == 1:
        return pos, []
    for _ in range(nsym):
        varint()
    lb = R._length_bytes(4 * w + 2 * min(1 << cl, count))
    n = -(-count // (1 << cl))
    lens = [int.from_bytes(stream[pos + k * lb : pos + (k + 1) * lb], "little") for k in range(n - 1)]
    pos += (n - 1) * lb
    return pos, lens + [len(stream) - pos - sum(lens)]


# --- bit-exact against the reference -----------------------------------------


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 2500), scale=st.sampled_from([0.2, 1.0, 3.0, 20.0, 300.0]), dtype=st.sampled_from(["int8", "int16", "uint8"]),
       ways=st.sampled_from([0, 1, 2, 8, 32]), seed=st.integers(0, 2**31))
def test_format2_matches_reference(n, scale, dtype, ways, seed):
    v = symbols(np.random.default_rng(seed), n, dtype, scale)
    opts = {"ways": ways, "chunk_log2": 10} if ways else {}
    enc = qn.rans_encode(v, **opts)
    assert enc[:3] == R.RANS2_MAGIC
    assert enc == R.rans_encode(v, **opts)
    np.testing.assert_array_equal(qn.rans_decode(enc, n, dtype), v)
    assert R.rans_decode(enc, n) == v.tolist()


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint8"])
@pytest.mark.parametrize("values", [[], [7], [3, 4], [5, 5, 5, 5], [0, 100, 0, 100, 0], [1, 2] * 40])
def test_small_streams(dtype, values):
    v = np.array(values, dtype)
    for fmt in (1, 2):
        enc = qn.rans_encode(v, format=fmt)
        assert enc == R.rans_encode(v, format=fmt)
        np.testing.assert_array_equal(qn.rans_decode(enc, v.size, dtype), v)
    assert qn.rans_stream_info(qn.rans_encode(v)) == {"format": 2, "count": v.size}


def test_full_int16_span(rng):
    v = rng.integers(-32768, 32768, 3000).astype(np.int16)
    v[:2] = [-32768, 32767]
    enc = qn.rans_encode(v)
    assert enc == R.rans_encode(v)
    np.testing.assert_array_equal(qn.rans_decode(enc, v.size, "int16"), v)
    assert qn.rans_encode(v, scale_bits=16) == enc  # 3000 distinct symbols: the default is 16


def test_span_errors():
    with pytest.raises(TypeError, match="int8, int16, uint8"):
        qn.rans_encode(np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="too small for"):
        qn.rans_encode(np.arange(2000, dtype=np.int16), scale_bits=10)
    with pytest.raises(ValueError, match="ways"):
        qn.rans_encode(np.arange(20, dtype=np.int8), ways=3)
    with pytest.raises(ValueError, match="chunk_log2"):
        qn.rans_encode(np.arange(20, dtype=np.int8), chunk_log2=9)
    with pytest.raises(ValueError, match="format"):
        qn.rans_encode(np.arange(20, dtype=np.int8), format=3)


@pytest.mark.parametrize("n", [1023, 1024, 1025, 2047, 2048, 2049, 4100])
def test_chunk_boundaries_and_threads(rng, n):
    v = symbols(rng, n, "int8", 4.0)
    enc = qn.rans_encode(v, ways=32, chunk_log2=10)
    assert enc == R.rans_encode(v, ways=32, chunk_log2=10)
    head, lens = split_v2(enc, n)
    assert len(lens) == -(-n // 1024) and head + sum(lens) == len(enc)
    for t in (2, 3, 4):
        assert qn.rans_encode(v, ways=32, chunk_log2=10, nthreads=t) == enc
        np.testing.assert_array_equal(qn.rans_decode(enc, n, "int8", nthreads=t), v)


@pytest.mark.parametrize("dtype,scale", [("int8", 1.0), ("int8", 3.0), ("int8", 12.0), ("uint8", 40.0), ("int16", 50.0), ("int16", 3000.0)])
def test_threads_identical_on_large_streams(rng, dtype, scale):
    v = symbols(rng, 3_000_000, dtype, scale)
    enc = qn.rans_encode(v)
    for t in (2, 3, 4):
        assert qn.rans_encode(v, nthreads=t) == enc
        np.testing.assert_array_equal(qn.rans_decode(enc, v.size, dtype, nthreads=t), v)


def test_scalar_and_simd_paths_write_the_same_bytes(tmp_path, rng):
    """The AVX-512 and AVX2 kernels (where the CPU has them) against the scalar ones, one process each
    (an unknown or unsupported QUANTONIUM_SIMD keeps the widest path)."""
    compiled = qn.build_info()["simd_compiled"]
    if len(compiled) == 1:
        pytest.skip(f"one SIMD path ({compiled[0]}) and the scalar rANS kernels only: no SIMD kernel to compare")
    arrays = {
        "a": symbols(rng, 200_003, "int8", 2.0),  # span <= 32: register table
        "b": symbols(rng, 200_003, "int8", 9.0),  # <= 128
        "c": rng.integers(0, 256, 200_003).astype(np.uint8),  # 256
        "d": symbols(rng, 200_003, "int16", 30.0),  # > 256: gathers, wide decode table
        "e": symbols(rng, 200_003, "int16", 5000.0),  # scale 16
    }
    np.savez(tmp_path / "in.npz", **arrays)
    code = (
        "import sys, numpy as np, quantonium_native as qn\n"
        "d = np.load(sys.argv[1])\n"
        "np.savez(sys.argv[2], **{k: np.frombuffer(qn.rans_encode(d[k]), np.uint8) for k in d.files})\n"
        "for k in d.files:\n"
        "    e = qn.rans_encode(d[k])\n"
        "    assert np.array_equal(qn.rans_decode(e, d[k].size, d[k].dtype.name), d[k])\n"
        "print(qn.build_info()['simd_selected'])\n"
    )
    outs = {}
    for path in ("sse2", "avx2", "avx512f", "neon", "scalar"):
        env = dict(os.environ, QUANTONIUM_SIMD=path)
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "in.npz"), str(tmp_path / f"{path}.npz")],
                           env=env, capture_output=True, text=True, check=True)
        outs[r.stdout.strip()] = np.load(tmp_path / f"{path}.npz")
    ref = next(iter(outs.values()))
    for got in outs.values():
        for k in arrays:
            np.testing.assert_array_equal(got[k], ref[k])
            assert bytes(got[k]) == qn.rans_encode(arrays[k])


def test_build_info_names_the_rans_kernels():
    info = qn.build_info()
    assert info["rans_kernels"] in ("scalar", "avx2", "avx512f")
    assert info["rans_kernels"] == {"sse2": "scalar", "neon": "scalar", "scalar": "scalar"}.get(info["simd_selected"], info["simd_selected"])


# --- compression -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gauss1", "gauss3", "gauss8", "mantissa", "exponent"])
def test_within_half_a_percent_of_the_entropy(rng, kind):
    n = 1 << 21
    if kind.startswith("gauss"):
        v = symbols(rng, n, "int8", float(kind[5:]))
    elif kind == "mantissa":
        v = rng.integers(0, 256, n).astype(np.uint8)
    else:  # float32 exponents of Gaussian weights
        v = ((rng.standard_normal(n).astype(np.float32) * 0.02).view(np.uint32) >> 23 & 0xFF).astype(np.uint8)
    h = entropy_bits(v)
    bits = 8 * len(qn.rans_encode(v))
    assert h <= bits <= h * 1.005, (bits / h - 1)


def test_format2_not_larger_than_format1_on_small_tensors(rng):
    v = symbols(rng, 4096, "int8", 3.0)
    assert len(qn.rans_encode(v)) <= len(qn.rans_encode(v, format=1))


# --- format 1 stays readable -----------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint8"])
def test_format1_streams_decode(rng, dtype):
    v = symbols(rng, 5000, dtype, 5.0)
    old = R.rans_encode_v1(v)
    assert qn.rans_encode(v, format=1) == old
    np.testing.assert_array_equal(qn.rans_decode(old, v.size, dtype), v)
    assert qn.rans_stream_info(old) == {"format": 1, "count": 5000}


def test_payloads_written_before_format2_still_decode():
    cases = json.loads((DATA / "legacy_payloads_e377c62.json").read_text())
    assert len(cases) == 8
    for name, c in cases.items():
        payload = base64.b64decode(c["payload"])
        assert c["version"] == (2 if c["codec"] in ("direct", "rft-dense") else 1), name
        out = decode_tensor(payload, c["codec"], tuple(c["shape"]), c["dtype"])
        if c["codec"].startswith("rft-"):
            # an inverse transform in float32: equal to rounding, not bit for bit
            # (the x86-64 SSE2 and AVX2 paths differ by 6e-8, aarch64 by 8e-8); a
            # misread coefficient would be orders of magnitude above this
            want = np.frombuffer(base64.b64decode(c["decoded"]), np.float32).reshape(c["shape"])
            assert hashlib.sha256(want.tobytes()).hexdigest() == c["decoded_sha256"], name
            assert out.dtype == np.float32 and out.shape == want.shape, name
            err = np.linalg.norm(out.astype(np.float64) - want) / np.linalg.norm(want.astype(np.float64))
            assert err < 1e-6, (name, err)
        else:
            assert hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest() == c["decoded_sha256"], name


# --- hostile streams (issue 11) -------------------------------------------------


def vint(v: int) -> bytes:
    return R._varint(v)


def zz(v: int) -> bytes:
    return vint((v << 1) ^ (v >> 63) if v >= 0 else ((-v - 1) << 1) | 1)


def v2(count, *, lo=0, sb=12, lw=0, cl=20, runs=(2,), gaps=(), freqs=None, lb=2, lens=(), body=b"", raw_tail=None):
    """A format-2 stream from its fields (defaults: two symbols 0, 1; lens: all chunks but the last)."""
    out = R.RANS2_MAGIC + vint(count) + zz(lo) + bytes([(sb - 10) | lw << 3, cl]) + vint(len(runs))
    for r, length in enumerate(runs):
        if r:
            out += vint(gaps[r - 1] - 1)
        out += vint(length - 1)
    if raw_tail is not None:
        return out + raw_tail
    freqs = freqs if freqs is not None else [1 << (sb - 1)] * 2
    out += b"".join(vint(f) for f in freqs)
    return out + b"".join(n.to_bytes(lb, "little") for n in lens) + body


def raises(data, count, dtype="int8", match=None):
    with pytest.raises(ValueError, match=match):
        qn.rans_decode(data, count, dtype)


def test_truncation_at_every_position(rng):
    for v in (symbols(rng, 300, "int8", 3.0), symbols(rng, 1500, "int16", 40.0)):
        for opts in ({}, {"ways": 32, "chunk_log2": 10}):
            enc = qn.rans_encode(v, **opts)
            for cut in range(len(enc)):
                raises(enc[:cut], v.size, v.dtype.name)
            raises(enc + b"\0", v.size, v.dtype.name, "trailing bytes")


def test_flipped_bytes_never_crash_and_are_nearly_always_caught(rng):
    v = symbols(rng, 3000, "int8", 3.0)
    enc = qn.rans_encode(v, ways=8, chunk_log2=10)
    caught = total = 0
    for pos in range(len(enc)):
        for mask in (0x01, 0x10, 0x80, 0xFF):
            bad = bytearray(enc)
            bad[pos] ^= mask
            total += 1
            try:
                out = qn.rans_decode(bytes(bad), v.size, "int8")
            except ValueError:
                caught += 1
            else:
                assert out.shape == v.shape
    assert caught >= 0.97 * total, (caught, total)


def test_bad_tables():
    ok = v2(5, body=(1 << 16).to_bytes(4, "little"))  # 5 symbols, 1 way: parses up to the body
    raises(ok[:-1], 5, match="truncated|chunk")
    raises(v2(5, sb=17), 5, match="scale bits")
    raises(v2(5, lw=6), 5, match="ways")
    raises(v2(5, cl=9), 5, match="chunk size")
    raises(v2(5, cl=41), 5, match="chunk size")
    raises(v2(5, runs=(), raw_tail=b""), 5, match="number of runs")
    raises(v2(5, runs=(65536, 1), gaps=(1,), raw_tail=b""), 5, "int16", match="span exceeds")
    raises(v2(5, runs=(30000, 30000), gaps=(10000,), raw_tail=b""), 5, "int16", match="span exceeds")
    raises(v2(5, runs=(1, 1), gaps=(2**63,), raw_tail=b""), 5, "int16", match="gap")
    raises(v2(5, sb=10, runs=(1025,), raw_tail=b""), 5, "int16", match="frequency slots")
    raises(v2(5, freqs=[0, 4096]), 5, match="frequency")
    raises(v2(5, freqs=[4096, 0]), 5, match="frequency")
    raises(v2(5, freqs=[2048, 2047]), 5, match="sum")
    raises(v2(5, freqs=[2048, 2049]), 5, match="sum")
    raises(v2(5, body=b"\0\0\0"), 5, match="truncated")
    raises(v2(5, body=(1 << 16).to_bytes(4, "little") + b"\0"), 5, match="odd")
    raises(v2(5, body=(5).to_bytes(4, "little")), 5, match="below 2")
    raises(v2(5, body=(1 << 20).to_bytes(4, "little") + b"\0\0"), 5, match="truncated|mismatch")
    # chunks of 1024 symbols, 1 way: lb = 2 bytes for every length but the last
    raises(v2(3000, cl=10, lens=[3, 4], body=b"\0" * 16), 3000, match="chunk length out of range")
    raises(v2(3000, cl=10, lens=[8, 8], body=b"\0" * 16), 3000, match="truncated payload")
    # checked before the caller's (huge) output is allocated
    raises(v2(2**40 + 1, cl=20, lb=3, lens=[2**24 - 1] * 2, body=b"\0" * 8), 2**40 + 1, match="truncated chunk table")
    # 2^16 chunks of 2^40 symbols: 6-byte lengths of 2^48 - 1 add up past 2^63
    n = 2**56
    raises(v2(n, cl=40, lb=6, lens=[2**48 - 1] * (2**16 - 1), body=b"\0" * (4 * 2**16 + 64)), n, match="chunk lengths overflow")
    raises(R.RANS2_MAGIC[:2] + b"\x03" + vint(5), 5, match="unknown format")
    raises(R.RANS2_MAGIC[:2], 5, match="truncated")


def test_symbol_range_and_signed_overflow_in_lo():
    # lo near the int64 limits: checked on both sides before lo + span - 1 is formed
    for lo in (-(2**63), 2**63 - 1, -129, 128, 32767):
        raises(v2(5, lo=lo), 5, "int8", match="output type")
        raises(vint(5) + zz(lo) + vint(2) + vint(32768) * 2, 5, "int8", match="output type")  # format 1
    raises(v2(5, lo=32767), 5, "int16", match="output type")  # 32767 + 1 > int16 max
    raises(v2(5, lo=-1), 5, "uint8", match="output type")
    raises(qn.rans_encode(np.array([1000, -1000], np.int16)), 2, "int8", match="output type")


def test_counts_and_varints():
    enc = qn.rans_encode(np.arange(10, dtype=np.int8))
    raises(enc, 9, match="holds 10 symbols, expected 9")
    raises(enc, 2**62, match="holds 10 symbols")  # checked before the output is allocated
    huge = R.RANS2_MAGIC + vint(2**63 - 1)
    raises(huge, 5, match="holds 9223372036854775807")
    raises(vint(2**63) + b"\0", 5, match="count too large")  # format 1, count > int64 max
    overflowing = b"\xff" * 9 + b"\x02"  # a 10th byte above 1: more than 64 bits
    raises(R.RANS2_MAGIC + overflowing, 5, match="overflows 64 bits")
    raises(overflowing, 5, match="overflows 64 bits")
    raises(b"\x80" * 10 + b"\x00", 5, match="varint too long")
    raises(R.RANS2_MAGIC + vint(5) + b"\xff" * 9 + b"\x02", 5, match="overflows")
    with pytest.raises(ValueError, match="count must be >= 0"):
        qn.rans_decode(enc, -1, "int8")
    with pytest.raises(ValueError, match="nthreads"):
        qn.rans_decode(enc, 10, "int8", nthreads=0)
    with pytest.raises(ValueError, match="dtype"):
        qn.rans_decode(enc, 10, "int32")


def test_format1_bad_tables():
    raises(vint(5) + zz(0) + vint(0), 5, match="span")
    raises(vint(5) + zz(0) + vint(65537), 5, "int16", match="span")
    raises(vint(5) + zz(0) + vint(2) + vint(65537) + vint(0), 5, match="frequency too large")
    raises(vint(5) + zz(0) + vint(2) + vint(1) + vint(2), 5, match="sum to 2")


# --- histograms for rate-distortion curves --------------------------------------


def histogram_reference(c, s):
    q = qn.quantize_uniform(c, np.array([s], np.float32), group_size=max(1, c.size), symbol_dtype="int16")
    d = qn.dequantize_uniform(q, np.array([s], np.float32), group_size=max(1, c.size))
    e = (c.reshape(-1) - d.reshape(-1)).astype(np.float64)
    q = q.reshape(-1).astype(np.int64)
    return int(q.min()), np.bincount(q - q.min()), float(np.dot(e, e))


@pytest.mark.parametrize("n", [1, 7, 4095, 4097, 70_001, 300_000])
def test_histograms_match_quantize_uniform(rng, n):
    c = (rng.standard_normal(n) * 0.05).astype(np.float32)
    steps = (0.05 * 2.0 ** (np.arange(-40, 16) / 8.0)).astype(np.float32)
    c[: min(n, 8)] = steps[20] * np.float32(2.5)  # exact ties: rint rounds half to even
    mins, counts, sse = qn.quantize_histograms(c, steps)
    rm, rc, rs = R.quantize_histograms(c, steps)
    np.testing.assert_array_equal(mins, rm)
    for k, s in enumerate(steps):
        lo, cnt, e = histogram_reference(c, s)
        assert mins[k] == lo and counts[k].dtype == np.int64
        np.testing.assert_array_equal(counts[k], cnt)
        np.testing.assert_array_equal(counts[k], rc[k])
        assert sse[k] == pytest.approx(e, rel=1e-12, abs=1e-30)
    for t in (2, 3):
        m2, c2, s2 = qn.quantize_histograms(c, steps, nthreads=t)
        np.testing.assert_array_equal(m2, mins)
        np.testing.assert_array_equal(s2, sse)  # the same bits: fixed summation order
        for a, b in zip(c2, counts):
            np.testing.assert_array_equal(a, b)


def test_histogram_errors():
    c = np.ones(100, np.float32)
    with pytest.raises(ValueError, match=r"step 1 .* outside int16"):
        qn.quantize_histograms(c * 1000, np.array([1.0, 0.01], np.float32))
    with pytest.raises(ValueError, match="not all finite"):
        qn.quantize_histograms(np.array([1.0, np.nan], np.float32), np.ones(1, np.float32))
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="finite and > 0"):
            qn.quantize_histograms(c, np.array([1.0, bad], np.float32))
    with pytest.raises(TypeError, match="float32"):
        qn.quantize_histograms(c.astype(np.float64), np.ones(1, np.float32))
    with pytest.raises(TypeError, match="float32"):
        qn.quantize_histograms(c, np.ones(1))
    mins, counts, sse = qn.quantize_histograms(np.zeros(0, np.float32), np.ones(2, np.float32))
    assert list(mins) == [0, 0] and [x.size for x in counts] == [0, 0] and list(sse) == [0, 0]


@pytest.mark.parametrize("n,scale,dtype", [(4096, 3.0, "int8"), (4096, 0.7, "int8"), (65_536, 5.0, "int8"), (1 << 20, 3.0, "int8"),
                                           (1 << 20, 1.0, "int8"), (1 << 20, 100.0, "int16"), (300_000, 4000.0, "int16"), (10, 2.0, "int8")])
def test_stream_size_prediction(rng, n, scale, dtype):
    v = symbols(rng, n, dtype, scale)
    enc = qn.rans_encode(v)
    lo = int(v.min())
    counts = np.bincount(v.astype(np.int64) - lo)
    header, payload = qn.rans_stream_size(counts, min_symbol=lo)
    head, lens = split_v2(enc, n)
    assert header == head  # exact
    assert abs(payload - sum(lens)) <= 0.003 * sum(lens) + 4, (payload, sum(lens))
    # zeros around the counts are trimmed
    assert qn.rans_stream_size(np.concatenate([[0, 0], counts, [0]]), min_symbol=lo - 2) == (header, payload)


def test_stream_size_rejects_impossible_counts():
    with pytest.raises(ValueError, match="2\\^47"):
        qn.rans_stream_size(np.array([2**47, 1], np.int64))
    with pytest.raises(ValueError, match="overflow"):
        qn.rans_stream_size(np.array([2**63 - 1] * 3, np.int64))
    with pytest.raises(ValueError, match=">= 0"):
        qn.rans_stream_size(np.array([3, -1], np.int64))
    with pytest.raises(ValueError, match="span exceeds"):
        qn.rans_stream_size(np.ones(65537, np.int64), min_symbol=-32768)
    with pytest.raises(TypeError, match="int64"):
        qn.rans_stream_size(np.ones(3, np.int32))
    assert qn.rans_stream_size(np.zeros(4, np.int64)) == (4, 0.0)  # an empty stream: magic, format, count
    assert qn.rans_stream_size(np.array([0, 9, 0], np.int64), min_symbol=5)[1] == 0.0  # one symbol: no payload
