"""Sensitivity scales in direct / rft-dense, RD curves and the Lagrangian allocation (GPTQ: test_gptq.py)."""

from __future__ import annotations

import numpy as np
import pytest

from quantonium.codecs import CodecError, decode_tensor, encode_tensor
from quantonium.codecs.allocate import Point, _hull, allocate, Curve, encode_allocated, measure_curve
from quantonium.codecs.base import pack_payload
from quantonium.codecs.rate import encode_set
from quantonium.codecs.scalar import Direct, RftDense
import quantonium_native as qn


def weights(rng, rows=64, cols=256, scale=1.0):
    return (scale * rng.standard_normal((rows, cols))).astype(np.float32)


@pytest.mark.parametrize("cls", [Direct, RftDense])
def test_scales_put_the_error_where_the_weight_is_large(rng, cls):
    w = weights(rng)
    row = np.ones(64)
    row[:8] = 100.0  # rows 0-7 are 100x more sensitive: step 10x finer there
    enc = cls(row_scale=row).encode_step(w, 0.05)
    assert enc.params["scales"] == "row" and enc.version >= 2  # scales since version 2
    back = decode_tensor(enc.payload, cls.name, w.shape, "float32")
    err = np.mean((back - w) ** 2, axis=1)
    assert err[:8].mean() < err[8:].mean() / 30
    plain = cls().encode_step(w, 0.05)
    assert "scales" not in plain.params


def test_column_scales_and_both(rng):
    w = weights(rng)
    col = np.linspace(0.5, 50, 256)
    row = np.linspace(1, 3, 64)
    enc = Direct(row_scale=row, col_scale=col).encode_step(w, 0.05)
    assert enc.params["scales"] == "rowcol"
    back = decode_tensor(enc.payload, "direct", w.shape, "float32")
    e2 = (back - w) ** 2
    assert e2[:, -32:].mean() < e2[:, :32].mean() / 10  # sensitive columns get the fine steps
    # the scales cost 16 bits per row and column, counted in the payload
    plain = Direct().encode_step(w, 0.05)
    assert len(enc.payload) > len(plain.payload) - 2000 + 2 * (64 + 256) - 2000


def test_scale_streams_are_validated(rng):
    w = weights(rng, 16, 64)
    enc = Direct(row_scale=np.arange(1, 17)).encode_step(w, 0.1)
    p = bytes(enc.payload)
    with pytest.raises(CodecError):
        decode_tensor(p[:-2], "direct", w.shape, "float32")  # truncated scale stream
    bad = p[:-2] + np.float16(-1).tobytes()
    with pytest.raises(CodecError, match="positive|stream|bytes"):
        decode_tensor(bad, "direct", w.shape, "float32")
    with pytest.raises(ValueError, match="positive"):
        Direct(row_scale=np.zeros(16)).encode_step(w, 0.1)
    with pytest.raises(ValueError, match="16 finite"):
        Direct(row_scale=np.ones(3)).encode_step(w, 0.1)


def test_version_1_payloads_still_decode(rng):
    w = weights(rng, 8, 64)
    step = np.float32(0.1)
    q = qn.quantize_uniform(w.reshape(-1), np.array([step], np.float32), group_size=w.size, symbol_dtype="int8")
    p = pack_payload("direct", 1, {"step": float(step), "symbols": "int8"}, [qn.rans_encode(q)])
    back = decode_tensor(p, "direct", w.shape, "float32")
    assert np.max(np.abs(back - w)) <= step / 2 + 1e-6


def test_curve_is_measured_and_matches_real_payloads(rng):
    w = weights(rng, 128, 256)
    pts = measure_curve(w, ("direct", "rft-dense"), subdivide=1)
    assert {p.codec for p in pts} == {"direct", "rft-dense"}
    fine = measure_curve(w, ("direct", "rft-dense"))
    assert len(fine) > 3 * len(pts) and all(any(q == p for q in fine) for p in pts)  # measured points kept
    for p in pts[::3]:
        enc = (Direct() if p.codec == "direct" else RftDense()).encode_step(w, p.step)
        back = decode_tensor(enc.payload, p.codec, w.shape, "float32")
        d = float(np.sum((back.astype(np.float64) - w) ** 2))
        assert d == pytest.approx(p.dist, rel=2e-3, abs=1e-3)
        assert abs(enc.bits - p.bits) < 0.02 * w.size + 2000  # entropy estimate vs real rANS payload


def test_hull_is_convex_and_decreasing():
    pts = [Point("direct", 1, b, d) for b, d in [(0, 10), (1, 6), (2, 5.5), (3, 2), (4, 1.9), (5, 0.5), (6, 0.6)]]
    h = _hull(pts)
    assert [p.bits for p in h] == [0, 1, 3, 5]
    slopes = [(h[i + 1].dist - h[i].dist) / (h[i + 1].bits - h[i].bits) for i in range(len(h) - 1)]
    assert all(a <= b for a, b in zip(slopes, slopes[1:]))


def test_reverse_water_filling_starves_the_cheap_tensor():
    # tensor A: error costs 100x more than tensor B's at every rate
    mk = lambda scale: [Point("direct", 2.0**-k, 1000.0 * k, scale * 4.0**-k) for k in range(0, 9)]
    a, b = Curve("a", 1000, mk(100.0)), Curve("b", 1000, mk(1.0))
    pick = allocate([a, b], 6000.0)
    assert pick[0].bits > pick[1].bits
    assert sum(p.bits for p in pick) <= 6000.0
    assert allocate([a, b], 0.0)[1].bits == 0  # no budget: all-zero symbols


def test_allocation_meets_the_budget_and_beats_one_setting(rng):
    # two tensors of very different scale: one common step is optimal for plain MSE,
    # a per-tensor bpw is not
    t = {"big": weights(rng, 64, 256, 1.0), "small": weights(rng, 64, 256, 0.01), "bias": rng.standard_normal(64).astype(np.float32)}
    for bpw in (2.0, 3.5):
        enc = encode_allocated(t, bpw)
        total = sum(e.bits for e in enc.values()) / sum(a.size for a in t.values())
        assert bpw - 0.05 <= total <= bpw
        assert enc["bias"].codec == "lossless"
        sse = lambda e: sum(float(np.sum((decode_tensor(e[n].payload, e[n].codec, t[n].shape, "float32") - t[n]) ** 2)) for n in ("big", "small"))
        uniform = {n: encode_tensor(a, "direct" if a.ndim > 1 else "lossless", bpw=bpw) for n, a in t.items()}
        assert sse(enc) < 0.8 * sse(uniform)
        assert sse(enc) <= 1.05 * sse(encode_set(t, bpw))
    with pytest.raises(ValueError, match="budget|below"):
        encode_allocated(t, 0.01)


def test_weighted_allocation_lowers_the_weighted_error(rng):
    t = {"a": weights(rng, 64, 256), "b": weights(rng, 64, 256)}
    col = np.ones(256)
    col[:16] = 400.0  # a few hot input channels
    sens = {"a": (np.ones(64), col), "b": (np.ones(64) * 0.01, np.ones(256))}

    def werr(enc):
        tot = 0.0
        for n, (r, c) in sens.items():
            e = decode_tensor(enc[n].payload, "direct", t[n].shape, "float32") - t[n]
            tot += float(np.sum(r[:, None] * c[None, :] * e.astype(np.float64) ** 2))
        return tot

    plain, weighted = encode_allocated(t, 3.0), encode_allocated(t, 3.0, sensitivity=sens)
    assert werr(weighted) < 0.5 * werr(plain)
    assert weighted["a"].bits > weighted["b"].bits  # the sensitive tensor gets the bits
