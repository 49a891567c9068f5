"""Issue 14: the Walsh-Hadamard transform, the rotated fixed-rate codecs (rft-fixed, wht-fixed), GPTQ on the
fixed grid, auto's fixed-rate candidates and compress --fixed-rate."""

from __future__ import annotations

import json
import struct
import threading

import ml_dtypes
import numpy as np
import pytest

import quantonium_native as qn
from quantonium import reference as ref
from quantonium.codecs import CODECS, CodecError, decode_tensor, encode_tensor
from quantonium.codecs.fixed import Fixed, level_streams
from quantonium.codecs.gptq_fixed import compensate_fixed, output_error, rtn_fixed
from quantonium.codecs.rotated import RftFixed, WhtFixed, random_signs
from quantonium.metrics import snr_db

from conftest import RTOL, rel_err


def outlier_weights(rng, shape, dtype=np.float32):
    w = rng.standard_normal(shape) * 0.02
    idx = rng.choice(w.size, max(1, w.size // 500), replace=False)
    w.reshape(-1)[idx] *= 50
    return w.astype(dtype)


# --- the Walsh-Hadamard transform ------------------------------------------------------------------

@pytest.mark.parametrize("m", [1, 2, 12, 20, 28, 36, 44, 60, 68, 108, 252])
def test_hadamard_matrices_are_hadamard_and_match_the_reference(m):
    h = qn.hadamard_matrix(m)
    assert h.dtype == np.int8 and h.shape == (m, m)
    np.testing.assert_array_equal(h.astype(np.int64) @ h.T.astype(np.int64), m * np.eye(m, dtype=np.int64))
    np.testing.assert_array_equal(h, ref.hadamard_matrix(m))


@pytest.mark.parametrize("n", [3, 6, 10, 11008, 0, -4])
def test_unsupported_lengths_are_refused(n):
    with pytest.raises(ValueError):
        qn.hadamard_factor(n)
    with pytest.raises(ValueError):
        ref.hadamard_factor(n)
    if n > 0:
        with pytest.raises(ValueError, match="no Hadamard matrix of order"):
            qn.wht_forward(np.ones((2, n), np.float32))
    with pytest.raises(ValueError):
        qn.hadamard_matrix(max(n, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 4, 12, 24, 36, 96, 384, 576, 1536, 5632, 1 << 16])
def test_wht_matches_reference_round_trips_and_is_orthonormal(rng, dtype, n):
    rows = 3 if n > 4096 else 7
    x = rng.standard_normal((rows, n)).astype(dtype)
    assert qn.hadamard_factor(n) == ref.hadamard_factor(n)
    y = qn.wht_forward(x)
    tol = RTOL[np.dtype(dtype)] * (4 if dtype == np.float32 else 1)
    assert y.dtype == np.dtype(dtype) and y.shape == x.shape
    assert rel_err(y, ref.wht_forward(x)) < tol
    np.testing.assert_allclose(np.linalg.norm(y.astype(np.float64), axis=-1), np.linalg.norm(x.astype(np.float64), axis=-1), rtol=tol)
    assert rel_err(qn.wht_inverse(y), x) < tol
    assert rel_err(qn.wht_inverse(x), ref.wht_inverse(x)) < tol


@pytest.mark.parametrize("n", [12, 24, 16])
def test_wht_matrix_is_the_kronecker_product(n):
    m, p = qn.hadamard_factor(n)
    sylv = np.array([[1.0]])
    while sylv.shape[0] < p:
        sylv = np.block([[sylv, sylv], [sylv, -sylv]])
    want = np.kron(qn.hadamard_matrix(m).astype(np.float64), sylv) / np.sqrt(n)
    got = qn.wht_forward(np.eye(n)).T  # column j = H e_j
    np.testing.assert_allclose(got, want, atol=1e-14)
    np.testing.assert_allclose(qn.wht_inverse(np.eye(n)).T, want.T, atol=1e-14)


def test_wht_axes_layouts_in_place_and_threads(rng):
    x = rng.standard_normal((5, 24, 3))
    y = qn.wht_forward(x, axis=1)
    np.testing.assert_allclose(y, ref.wht_forward(x, axis=1), atol=1e-13)
    xt = np.asfortranarray(x)
    np.testing.assert_allclose(qn.wht_forward(xt, axis=1), y, atol=1e-13)
    z = rng.standard_normal((300, 384)).astype(np.float32)
    one = qn.wht_forward(z, nthreads=1)
    np.testing.assert_array_equal(qn.wht_forward(z, nthreads=3), one)  # results do not depend on nthreads
    w = z.copy()
    qn.wht_forward(w, out=w)
    np.testing.assert_array_equal(w, one)
    res = [None] * 4

    def run(i):
        res[i] = qn.wht_forward(z)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in res:
        np.testing.assert_array_equal(r, one)
    with pytest.raises(TypeError, match="unsupported dtype"):
        qn.wht_forward(np.ones((2, 8), np.complex64))
    with pytest.raises(TypeError):
        qn.wht_forward(np.ones((2, 8), np.int32))
    with pytest.raises(ValueError, match="nthreads"):
        qn.wht_forward(np.ones((2, 8)), nthreads=0)
    with pytest.raises(ValueError, match="axis"):
        qn.wht_forward(np.ones((2, 8)), axis=2)


# --- the signs ----------------------------------------------------------------------------------------

def test_random_signs_are_pinned_by_the_format():
    # the signs are part of the payload format: these values must never change
    np.testing.assert_array_equal(random_signs(0, 8), [-1, 1, 1, -1, 1, 1, 1, -1])
    np.testing.assert_array_equal(random_signs(1, 8), [-1, -1, -1, 1, 1, -1, -1, -1])
    s = random_signs(12345, 100_000)
    assert s.dtype == np.float32 and set(np.unique(s)) == {-1.0, 1.0} and abs(float(s.mean())) < 0.02
    np.testing.assert_array_equal(random_signs(7, 10), random_signs(7, 20)[:10])  # a function of (seed, position)
    assert random_signs((1 << 63) - 1, 4).shape == (4,)
    for bad in (-1, 1 << 63, 1.0, True):
        with pytest.raises(ValueError):
            (random_signs(bad, 4) if not isinstance(bad, bool) else RftFixed(seed=bad))


# --- the codecs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["rft-fixed", "wht-fixed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_round_trip_and_rate_control(rng, codec, dtype):
    a = outlier_weights(rng, (48, 384), dtype)
    name = {np.float32: "float32", np.float16: "float16"}.get(dtype, "bfloat16")
    for g in (32, 64, 128):
        enc = encode_tensor(a, codec, bpw=4 + 16 / g + 0.1, options={"group_size": g, "seed": 3})
        assert enc.codec == codec and enc.params["bits"] == 4 and enc.params["group_size"] == g and enc.params["seed"] == 3
        back = decode_tensor(enc.payload, codec, a.shape, name)
        assert back.dtype == a.dtype and back.shape == a.shape
        assert enc.snr_db == pytest.approx(snr_db(a.astype(np.float32), back.astype(np.float32)), abs=1e-6)
        # the rate is the fixed codec's: bits + 16/g per weight, plus the header
        fixed = encode_tensor(a, "fixed", bpw=4 + 16 / g + 0.1, options={"group_size": g})
        assert 0 < len(enc.payload) - len(fixed.payload) < 150
        assert enc.bits <= (4 + 16 / g + 0.1) * a.size
    low = encode_tensor(a, codec, snr_db=10, options={"group_size": 64})
    high = encode_tensor(a, codec, snr_db=25, options={"group_size": 64})
    assert low.params["bits"] < high.params["bits"] and high.snr_db >= 25 and low.snr_db >= 10
    with pytest.raises(ValueError, match="below its smallest rate"):
        encode_tensor(a, codec, bpw=1.0)
    with pytest.raises(ValueError, match="kept fraction"):
        encode_tensor(a, codec, keep=0.1)


def test_rotation_helps_rtn_on_heavy_tails_and_beta_sigma_zero_is_the_dft(rng):
    # heavy-tailed rows (Student t, 3 degrees of freedom): the rotation makes each group near-Gaussian.
    # (A few isolated huge outliers are different: spreading one over the row raises the error of every group
    # of that row, and the weight SNR can drop; the end-to-end measurements decide, bench/results/.)
    a = (rng.standard_t(3, (64, 384)) * 0.02).astype(np.float32)
    for bits in (3, 4):
        plain = snr_db(a, decode_tensor(Fixed(group_size=64)._encode_bits(a, bits, 1), "fixed", a.shape, "float32"))
        for coder in (RftFixed(group_size=64), WhtFixed(group_size=64), RftFixed(group_size=64, beta=0.0, sigma=0.0)):
            assert coder.encode_bits(a, bits).snr_db > plain + 1.0
    dft = RftFixed(group_size=64, seed=5, beta=0.0, sigma=0.0)
    x = a * random_signs(5, 384)[None, :]
    z = x[:, 0::2].astype(np.float64) + 1j * x[:, 1::2]
    y = np.fft.fft(z, norm="ortho")
    want = np.stack([y.real, y.imag], axis=-1).reshape(a.shape)
    np.testing.assert_allclose(dft.rotate(a), want, atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 33), (3, 1), (4, 7, 2), (2, 0), (1,)])
def test_odd_and_degenerate_shapes(rng, shape):
    a = rng.standard_normal(shape).astype(np.float32)
    enc = RftFixed(group_size=8).encode_bits(a, 8)
    back = decode_tensor(enc.payload, "rft-fixed", shape, "float32")
    assert back.shape == shape
    if a.size:
        assert snr_db(a, back) > 35
    np.testing.assert_allclose(RftFixed().unrotate(RftFixed().rotate(a)), a, atol=1e-5)


def test_wht_fixed_refuses_lengths_without_a_hadamard_matrix(rng):
    a = rng.standard_normal((8, 100)).astype(np.float32)  # 100 = 25 * 4: no matrix of order 25
    with pytest.raises(ValueError, match="no Hadamard matrix"):
        encode_tensor(a, "wht-fixed", bpw=5)
    good = encode_tensor(rng.standard_normal((8, 96)).astype(np.float32), "wht-fixed", bpw=5, options={"group_size": 32})
    with pytest.raises(CodecError, match="no Hadamard matrix"):
        decode_tensor(good.payload, "wht-fixed", (8, 100), "float32")


def _with_params(payload: bytes, **changes) -> bytes:
    """The payload with header parameters replaced (None: removed)."""
    hlen = struct.unpack_from("<I", payload)[0]
    head = json.loads(payload[4:4 + hlen])
    for k, v in changes.items():
        if v is None:
            head["params"].pop(k, None)
        else:
            head["params"][k] = v
    h = json.dumps(head, separators=(",", ":")).encode()
    return struct.pack("<I", len(h)) + h + payload[4 + hlen:]


def test_seed_is_stored_and_used(rng):
    a = outlier_weights(rng, (16, 256))
    e0 = RftFixed(group_size=64, seed=0).encode_bits(a, 4)
    e1 = RftFixed(group_size=64, seed=1).encode_bits(a, 4)
    assert e0.params["seed"] == 0 and e1.params["seed"] == 1 and e0.payload != e1.payload
    # decoding with another seed than the one the payload was made with gives another (wrong) tensor
    wrong = decode_tensor(_with_params(e1.payload, seed=0), "rft-fixed", a.shape, "float32")
    right = decode_tensor(e1.payload, "rft-fixed", a.shape, "float32")
    assert snr_db(a, right) > 15 and snr_db(a, wrong) < 1
    # the default coder's seed does not leak into decoding: the stored one is used
    np.testing.assert_array_equal(CODECS["rft-fixed"][1]().decode(e1.payload, a.shape, "float32"), right)
    ew = WhtFixed(group_size=64, seed=9).encode_bits(a, 4)
    assert snr_db(a, decode_tensor(_with_params(ew.payload, seed=8), "wht-fixed", a.shape, "float32")) < 1


@pytest.mark.parametrize("codec", ["rft-fixed", "wht-fixed"])
def test_tampered_payloads_are_refused(rng, codec):
    a = outlier_weights(rng, (16, 256))
    enc = encode_tensor(a, codec, bpw=5)
    p = enc.payload
    bad_params = [
        {"seed": -1}, {"seed": 1 << 63}, {"seed": 1.5}, {"seed": True}, {"seed": None}, {"seed": "0"},
        {"transform": "identity"}, {"transform": None}, {"axis": 0}, {"axis": None},
        {"bits": 1}, {"bits": 9}, {"bits": "4"}, {"group_size": 12}, {"group_size": 0}, {"group_size": 1 << 31},
    ]
    if codec == "rft-fixed":
        bad_params += [{"beta": None}, {"beta": "1"}, {"sigma": 1e7}, {"beta": -1e7}]
    for change in bad_params:
        with pytest.raises(CodecError):
            decode_tensor(_with_params(p, **change), codec, a.shape, "float32")
    hlen = struct.unpack_from("<I", p)[0]
    head = json.loads(p[4:4 + hlen])
    streams = p[4 + hlen:]
    n_packed = head["streams"][0]
    # a non-finite or negative scale (float16 inf, NaN, -1) is refused, not spread over a row
    for bits16 in (0x7C00, 0x7E00, 0xBC00):
        s = bytearray(streams)
        s[n_packed:n_packed + 2] = struct.pack("<H", bits16)
        with pytest.raises(CodecError, match="finite"):
            decode_tensor(p[:4 + hlen] + bytes(s), codec, a.shape, "float32")
    # one stream missing (lengths consistent), truncation, trailing bytes, another codec's payload, wrong shape
    head2 = dict(head, streams=head["streams"][:1])
    h2 = json.dumps(head2, separators=(",", ":")).encode()
    for bad in (struct.pack("<I", len(h2)) + h2 + streams[:n_packed], p[:-1], p + b"\0"):
        with pytest.raises(CodecError):
            decode_tensor(bad, codec, a.shape, "float32")
    other = "wht-fixed" if codec == "rft-fixed" else "rft-fixed"
    with pytest.raises(CodecError):
        decode_tensor(p, other, a.shape, "float32")
    with pytest.raises(CodecError):
        decode_tensor(p, codec, (16, 128), "float32")
    with pytest.raises(CodecError):
        decode_tensor(p, codec, (16, 256), "int8")


def test_level_streams_pack_as_the_native_quantiser(rng):
    x = rng.standard_normal(4096).astype(np.float32)
    for bits in (2, 3, 4, 8):
        packed, scales, _ = qn.quantize_fixed(x, bits, group_size=64)
        qmax = (1 << (bits - 1)) - 1
        sym = qn.unpack_bits(packed, bits, x.size).astype(np.int16) - qmax
        got = level_streams(sym, scales, bits, 64)
        assert got[0] == packed.tobytes() and got[1] == scales.tobytes()
    with pytest.raises(ValueError, match="levels must lie"):
        level_streams(np.full(64, 8), np.ones(1, np.float16), 4, 64)
    with pytest.raises(ValueError, match="scales"):
        level_streams(np.zeros(64), np.ones(2, np.float16), 4, 64)
    with pytest.raises(ValueError, match="scales"):
        level_streams(np.zeros(64), np.array([np.inf], np.float16), 4, 64)


# --- GPTQ on the fixed grid ----------------------------------------------------------------------------

def _layer(rng, out_dim=48, in_dim=128, tokens=2000):
    mix = rng.standard_normal((in_dim, in_dim)) / np.sqrt(in_dim)
    x = rng.standard_normal((tokens, in_dim)) @ mix * (1 + 4 * (rng.random(in_dim) < 0.05))  # correlated, a few loud
    h = x.T @ x / tokens
    return outlier_weights(rng, (out_dim, in_dim)), h


def test_rtn_fixed_is_the_native_rounding(rng):
    w = rng.standard_normal((16, 128)).astype(np.float32)
    for bits in (2, 4, 8):
        lv, sc = rtn_fixed(w, bits, 32)
        packed, scales, _ = qn.quantize_fixed(w, bits, group_size=32)
        np.testing.assert_array_equal(sc.reshape(-1), scales)
        deq = qn.dequantize_fixed(packed, scales, None, bits=bits, group_size=32, count=w.size).reshape(w.shape)
        mine = (lv.reshape(16, 4, 32) * sc.astype(np.float32)[..., None]).reshape(w.shape)
        assert np.mean(mine == deq) > 0.999  # ties may round apart between float32 and float64 division


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_fixed_beats_rtn_on_the_output_error_and_decodes(rng, act_order):
    w, h = _layer(rng)
    for bits, g in ((3, 32), (4, 64)):
        qmax = (1 << (bits - 1)) - 1
        lv, sc = compensate_fixed(w, h, bits, g, act_order=act_order)
        assert lv.shape == w.shape and sc.shape == (w.shape[0], w.shape[1] // g) and sc.dtype == np.float16
        assert np.abs(lv).max() <= qmax
        enc = Fixed(group_size=g).encode_levels(w, lv, sc, bits)
        back = decode_tensor(enc.payload, "fixed", w.shape, "float32")
        rl, rs = rtn_fixed(w, bits, g)
        rtn = (rl.reshape(48, -1, g) * rs.astype(np.float32)[..., None]).reshape(w.shape)
        assert output_error(w, back, h) < 0.7 * output_error(w, rtn, h)
        assert enc.bits == len(Fixed(group_size=g)._encode_bits(w, bits, 1)) * 8  # same payload size as RTN
    with pytest.raises(ValueError, match="groups"):
        compensate_fixed(w[:, :100], h[:100, :100], 4, 64)
    with pytest.raises(ValueError, match="Gram"):
        compensate_fixed(w, h[:64, :64], 4, 64)


@pytest.mark.parametrize("coder", [RftFixed(group_size=32, seed=4), WhtFixed(group_size=32, seed=4),
                                   RftFixed(group_size=32, seed=4, beta=0.0, sigma=0.0)])
def test_gptq_in_the_rotated_basis(rng, coder):
    w, h = _layer(rng)
    c, hr = coder.rotate(w), coder.rotate_gram(h)
    # the layer's output is the same in both bases: W x = (W D T^T)(T D x)
    x = rng.standard_normal((5, w.shape[1]))
    xr = coder.rotate(x.astype(np.float32)).astype(np.float64)
    np.testing.assert_allclose(c.astype(np.float64) @ xr.T, w.astype(np.float64) @ x.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(hr, hr.T, atol=1e-12)
    e = rng.standard_normal(w.shape) * 0.01
    assert output_error(c, c + coder.rotate(e.astype(np.float32)), hr) == pytest.approx(output_error(w, w + e, h), rel=1e-4)
    lv, sc = compensate_fixed(c, hr, 3, 32, act_order=True)
    enc = coder.encode_levels(w, lv, sc, 3)
    back = decode_tensor(enc.payload, coder.name, w.shape, "float32")
    rtn = decode_tensor(coder.encode_bits(w, 3).payload, coder.name, w.shape, "float32")
    assert output_error(w, back, h) < 0.7 * output_error(w, rtn, h)
    assert enc.params["seed"] == 4


# --- auto with a fixed-rate format, compress --fixed-rate --------------------------------------------------

def test_auto_fixed_rate_candidates_and_report(rng):
    a = outlier_weights(rng, (64, 384))
    enc = encode_tensor(a, "auto", bpw=4.3, options={"fixed_rate": True})
    tried = {(c["codec"], c["options"]["group_size"]) for c in enc.report["candidates"]}
    assert tried == {(c, g) for c in ("fixed", "rft-fixed", "wht-fixed") for g in (32, 64, 128)}
    assert enc.codec in ("fixed", "rft-fixed", "wht-fixed") and enc.report["fixed_rate"] is True
    assert enc.bpw <= 4.35 and "fixed-rate format" in enc.report["reason"]
    assert ("best unrotated candidate" in enc.report["reason"]) == (enc.codec != "fixed")
    best = max((c for c in enc.report["candidates"] if c["bpw"] <= 4.35), key=lambda c: c["snr_db"])
    assert best.get("chosen") and enc.snr_db == pytest.approx(best["snr_db"])
    by_snr = encode_tensor(a, "auto", snr_db=15, options={"fixed_rate": True})
    assert by_snr.snr_db >= 14.5 and "cheapest" in by_snr.report["reason"] or by_snr.codec == "fixed"
    # without the option, auto never tries the rotated fixed-rate codecs
    plain = encode_tensor(a, "auto", bpw=4.3)
    assert not {c["codec"] for c in plain.report["candidates"]} & {"rft-fixed", "wht-fixed"}
    # 100 columns: no Hadamard matrix: wht-fixed is recorded as failed, the others still compete
    odd = encode_tensor(outlier_weights(rng, (64, 100)), "auto", bpw=8.7, options={"fixed_rate": True})
    assert any(c["codec"] == "wht-fixed" and "Hadamard" in c.get("error", "") for c in odd.report["candidates"])
    with pytest.raises(ValueError, match="kept fraction"):
        encode_tensor(a, "auto", keep=0.1, options={"fixed_rate": True})
    with pytest.raises(ValueError, match="fixed_rate"):
        encode_tensor(a, "auto", bpw=4, options={"fixed_rate": 1})
    with pytest.raises(ValueError, match="fixed_rate"):
        encode_tensor(a, "auto", bpw=4, options={"speed": True})
    assert encode_tensor(np.ones(64, np.float32), "auto", bpw=4, options={"fixed_rate": True}).codec == "lossless"


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
def test_compress_fixed_rate_per_tensor(gpt2_folder, tmp_path):
    from quantonium.compress import compress
    from quantonium.container import QntFile

    src, _ = gpt2_folder
    out = tmp_path / "m.qnt"
    res = compress(str(src), out, codec="auto", bpw=4.6, fixed_rate=True, progress=False)
    assert set(res.codec_mix) <= {"fixed", "rft-fixed", "wht-fixed", "lossless"}
    with QntFile(out) as f:
        assert f.model["codec_request"]["fixed_rate"] is True
        lossy = [f.info(n) for n in f if f.info(n)["codec"] != "lossless"]
        assert lossy
        for info in lossy:
            rep = info["report"]
            assert rep["fixed_rate"] and "fixed-rate format" in rep["reason"] and len(rep["candidates"]) == 9
            w = f.read(info["name"])
            assert w.shape == tuple(info["shape"])
        if any(i["codec"] == "rft-fixed" for i in lossy):
            rft = next(i for i in lossy if i["codec"] == "rft-fixed")
            assert rft["rft"]["beta"] == 1.0 and rft["rft"]["transform"] == "real-orthogonal-phi-rft"
    for kw, msg in (({"codec": "direct"}, "goes with --codec auto"), ({"keep": 0.1, "bpw": None}, "not --keep"),
                    ({"allocate": True}, "does not combine")):
        args = {"codec": "auto", "bpw": 4.0, **kw}
        with pytest.raises(ValueError, match=msg):
            compress(str(src), tmp_path / "x.qnt", fixed_rate=True, progress=False, **args)
    assert not (tmp_path / "x.qnt").exists()


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
def test_compare_fixed_rate_methods_with_seeds(gpt2_folder):
    from quantonium import compare as cmp

    src, text = gpt2_folder
    wl = cmp.Workload.load(str(src), text=text, text_name="words", calibration=text[:6000], max_tokens=512)
    methods = ["rtn-g32", "rft-fixed-g32", "wht-fixed-g32", "dft-fixed-g32", "gptq-rft-fixed-g32"]
    res = cmp.compare(wl, [4], methods, seeds=[0, 1])
    rows = res["rows"]
    assert [(r["method"], r.get("seed")) for r in rows] == [
        ("rtn-g32", None), ("rft-fixed-g32", 0), ("rft-fixed-g32", 1), ("wht-fixed-g32", 0), ("wht-fixed-g32", 1),
        ("dft-fixed-g32", 0), ("dft-fixed-g32", 1)]
    # GPT-2's Conv1D weights are stored (in, out): GPTQ on the fixed grid says so instead of running
    assert {(n["method"], n["seed"]) for n in res["not_run"]} == {("gptq-rft-fixed-g32", 0), ("gptq-rft-fixed-g32", 1)}
    assert all("stored (in, out)" in n["reason"] for n in res["not_run"])
    by = {(r["method"], r.get("seed")): r for r in rows}
    assert by[("rft-fixed-g32", 0)]["info"] == {"int_bits": 4, "group": 32, "transform": "rft-fixed", "seed": 0}
    assert by[("rft-fixed-g32", 0)]["weight_snr_db"] != by[("rft-fixed-g32", 1)]["weight_snr_db"]  # the seed is used
    # the same grid: the same bits up to the payload headers
    extra = by[("rft-fixed-g32", 0)]["file_bytes"] - by[("rtn-g32", None)]["file_bytes"]
    assert 0 < extra < 150 * len(wl.large)
    summ = {(s["transform"], s["gptq"]): s for s in cmp.fixed_rate_summary(res)}
    assert summ[("rft-fixed", False)]["seeds"] == 2 and summ[("fixed", False)]["seeds"] == 1
    kl = [by[("rft-fixed-g32", s)]["mean_kl_nats"] for s in (0, 1)]
    assert summ[("rft-fixed", False)]["mean_kl_nats"] == pytest.approx(np.mean(kl))
    assert summ[("rft-fixed", False)]["mean_kl_nats_std"] == pytest.approx(np.std(kl, ddof=1))
    (v,) = cmp.fixed_rate_verdicts(res)
    assert v["rft_gain_vs_fixed"] == pytest.approx(by[("rtn-g32", None)]["mean_kl_nats"] - np.mean(kl))
    text_table = cmp.table(res)
    assert "gain vs wht-fixed" in text_table and "rft-fixed-g32 s1" in text_table
    with pytest.raises(ValueError, match="seed"):
        cmp.compare(wl, [4], ["rft-fixed-g32"], seeds=[])


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
def test_cli_fixed_rate_flags(gpt2_folder, tmp_path):
    import subprocess
    import sys

    src, _ = gpt2_folder

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "quantonium", *map(str, args)], capture_output=True, text=True,
                              timeout=900)

    r = cli("compress", src, "-o", tmp_path / "f.qnt", "--bits", "4.6", "--fixed-rate", "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    mix = json.loads(r.stdout)["codec_mix"]
    assert set(mix) <= {"fixed", "rft-fixed", "wht-fixed", "lossless"}
    r = cli("compress", src, "-o", tmp_path / "g.qnt", "--bits", "4", "--fixed-rate", "--codec", "direct")
    assert r.returncode != 0 and "goes with --codec auto" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("compare", src, "--methods", "fixed-rate", "--seeds", "x")
    assert r.returncode != 0 and "--seeds" in r.stderr
    r = cli("compare", src, "--methods", "rft-fixed-g7")
    assert r.returncode != 0 and "unknown method" in r.stderr
