"""GPTQ error compensation (``codecs.gptq``) against a float64 numpy reference, on the codec's grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from quantonium.codecs import decode_tensor
from quantonium.codecs.allocate import encode_allocated
from quantonium.codecs.gptq import BLOCK, MAX_SYMBOL, compensate, factorise, quantise
from quantonium.codecs.scalar import Direct


def reference_compensate(w, h, step, row, col, *, damp=0.01, act_order=True, block=128):
    """GPTQ as first written here: float64 numpy, explicit H^-1 and its Cholesky factor, column loops.

    The oracle for ``compensate`` (and the "old" side of ``bench/gptq_bench.py``).
    """
    w = np.asarray(w, np.float64)
    out_dim, in_dim = w.shape
    a = np.ones(out_dim) if row is None else np.asarray(row, np.float64)
    b = np.ones(in_dim) if col is None else np.asarray(col, np.float64)
    ws = w * a[:, None] * b[None, :]
    hs = np.asarray(h, np.float64) / b[:, None] / b[None, :]
    hs = 0.5 * (hs + hs.T)
    dead = np.diag(hs) <= 0
    hs[dead, dead] = 1.0
    perm = np.argsort(-np.diag(hs), kind="stable") if act_order else np.arange(in_dim)
    ws, hs = ws[:, perm], hs[np.ix_(perm, perm)]
    hs[np.diag_indices(in_dim)] += damp * float(np.mean(np.diag(hs)))
    try:
        u = np.linalg.cholesky(np.linalg.inv(hs)).T  # upper: H^-1 = U^T U
    except np.linalg.LinAlgError:
        hs[np.diag_indices(in_dim)] += 0.1 * float(np.mean(np.diag(hs)))
        u = np.linalg.cholesky(np.linalg.inv(hs)).T
    q = np.empty_like(ws)
    for s in range(0, in_dim, block):
        e = min(s + block, in_dim)
        blk = ws[:, s:e].copy()
        err = np.empty_like(blk)
        ub = u[s:e, s:e]
        for j in range(e - s):
            qj = np.rint(blk[:, j] / step) * step
            q[:, s + j] = qj
            err[:, j] = (blk[:, j] - qj) / ub[j, j]
            blk[:, j + 1:] -= np.outer(err[:, j], ub[j, j + 1:])
        if e < in_dim:
            ws[:, e:] -= err @ u[s:e, e:]
    out = np.empty_like(q)
    out[:, perm] = q
    return (out / a[:, None] / b[None, :]).astype(np.float32)


def gram(rng, n, samples=None, mix=0.3):
    """E[x x^T] of correlated inputs with unequal energies (float32)."""
    samples = samples or 4 * n
    m = rng.standard_normal((n, n)) * mix / math.sqrt(max(n, 1) / 64) + np.diag(rng.uniform(0.3, 3.0, n))
    x = rng.standard_normal((samples, n)) @ m
    return (x.T @ x / samples).astype(np.float32)


def codec_scales(rng, shape, which):
    """The codec's own normalised float16 scales (as the allocation passes them), as float64."""
    out_dim, in_dim = shape
    r = rng.uniform(0.2, 5.0, out_dim) if "row" in which else None
    c = rng.uniform(0.2, 5.0, in_dim) if "col" in which else None
    a, b = Direct(row_scale=r, col_scale=c)._scales(shape)
    return (None if a is None else a.astype(np.float64)), (None if b is None else b.astype(np.float64)), r, c


def out_err(v, w, h):
    e = np.asarray(v, np.float64) - np.asarray(w, np.float64)
    return float(np.einsum("ij,jk,ik->", e, np.asarray(h, np.float64), e))


def rtn(w, step, a, b):
    """Round to nearest on the same grid, through the codec itself."""
    return Direct(row_scale=a, col_scale=b).decode(
        Direct(row_scale=a, col_scale=b).encode_step(w, step).payload, w.shape, "float32")


def roundtrip(wq, step, r, c):
    coder = Direct(row_scale=r, col_scale=c)
    enc = coder.encode_step(wq, step)
    assert enc.params["step"] == float(np.float32(step))  # the codec kept the step
    return coder.decode(enc.payload, wq.shape, "float32")


@pytest.mark.parametrize("which", ["", "row", "col", "rowcol"])
@pytest.mark.parametrize("seed", range(4))
def test_the_codec_finds_exactly_the_chosen_symbols(which, seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 40)), int(rng.integers(1, 300)))
    w = (rng.standard_normal(shape) * rng.uniform(0.01, 3.0)).astype(np.float32)
    h = gram(rng, shape[1])
    a, b, r, c = codec_scales(rng, shape, which)
    for step in (float(rng.uniform(0.001, 0.5)) * float(np.std(w) + 1e-3), 0.37):
        wq = compensate(w, h, step, a, b)
        assert wq.dtype == np.float32 and wq.shape == shape
        # re-encoding through the codec's own float32 scaling gives the same symbols: the
        # decoded weights are bitwise the returned ones (-0.0 included)
        back = roundtrip(wq, step, r, c)
        assert np.array_equal(back.view(np.int32), wq.view(np.int32))


def test_int16_symbols_and_the_symbol_limit(rng):
    w = rng.standard_normal((8, 64)).astype(np.float32)
    h = gram(rng, 64)
    wq = compensate(w, h, 1e-3, None, None)  # symbols in the thousands: int16
    enc = Direct().encode_step(wq, 1e-3)
    assert enc.params["symbols"] == "int16"
    assert np.array_equal(roundtrip(wq, 1e-3, None, None), wq)
    # a step so fine that the weights need more than 32000 steps: symbols stop at MAX_SYMBOL,
    # so the codec keeps the step (it widens it from 32000 steps on) and the grid still holds
    w[0, 0] = 50.0
    step = 1e-3
    wq = compensate(w, h, step, None, None)
    assert np.max(np.abs(wq)) <= MAX_SYMBOL * np.float32(step) * (1 + 1e-6)
    assert np.array_equal(roundtrip(wq, step, None, None), wq)


def test_lower_output_error_than_round_to_nearest(rng):
    w = (0.1 * rng.standard_normal((48, 200))).astype(np.float32)
    h = gram(rng, 200)
    a, b, r, c = codec_scales(rng, w.shape, "rowcol")
    step = 0.05
    wq, plain = compensate(w, h, step, a, b), rtn(w, step, r, c)
    assert out_err(wq, w, h) < 0.5 * out_err(plain, w, h)
    # ... while the squared error of the weights themselves grows (the price of the compensation)
    assert np.sum((wq - w) ** 2.0) > np.sum((plain - w) ** 2.0)


@pytest.mark.parametrize("act_order", [True, False])
@pytest.mark.parametrize("which", ["", "rowcol"])
@pytest.mark.parametrize("shape", [(64, 300), (1, 1), (1, 50), (50, 1), (7, BLOCK - 1), (9, BLOCK), (5, BLOCK + 1),
                                   (3, 2 * BLOCK + 35)])
def test_within_one_percent_of_the_float64_reference(rng, act_order, which, shape):
    w = (0.2 * rng.standard_normal(shape)).astype(np.float32)
    h = gram(rng, shape[1])
    a, b, _, _ = codec_scales(rng, shape, which)
    step = 0.08
    new = compensate(w, h, step, a, b, act_order=act_order)
    ref = reference_compensate(w, h, step, a, b, act_order=act_order)
    e_new, e_ref = out_err(new, w, h), out_err(ref, w, h)
    assert abs(e_new - e_ref) <= 0.01 * e_ref + 1e-12
    m = (np.ones(shape[0]) if a is None else a)[:, None] * (np.ones(shape[1]) if b is None else b)[None, :]
    same = np.rint(new * m / step) == np.rint(ref * m / step)
    assert same.mean() > 0.99  # the same symbols, up to float32 ties


def test_act_order_changes_the_result_and_helps(rng):
    n = 256
    w = (0.2 * rng.standard_normal((64, n))).astype(np.float32)
    h = gram(rng, n)
    h[:16] *= 30.0  # a few inputs with far more energy, late in the natural order ...
    h[:, :16] *= 30.0
    h = np.roll(np.roll(h, 200, 0), 200, 1)  # ... at positions 200-215
    on, off = compensate(w, h, 0.1, None, None), compensate(w, h, 0.1, None, None, act_order=False)
    assert not np.array_equal(on, off)
    assert out_err(on, w, h) < out_err(off, w, h)


def test_dead_inputs_are_rounded_to_nearest_and_take_no_error(rng):
    n = 150
    w = (0.3 * rng.standard_normal((20, n))).astype(np.float32)
    h = gram(rng, n)
    dead = np.zeros(n, bool)
    dead[[0, 7, 77, 149]] = True
    h[dead, :] = 0.0
    h[:, dead] = 0.0
    a, b, r, c = codec_scales(rng, w.shape, "rowcol")
    step = 0.1
    wq = compensate(w, h, step, a, b)
    plain = rtn(w, step, r, c)
    assert np.array_equal(wq[:, dead], plain[:, dead])  # bitwise the codec's own rounding
    ref = reference_compensate(w, h, step, a, b)
    assert np.allclose(ref[:, dead], plain[:, dead], rtol=1e-6, atol=0)  # as the reference does
    assert abs(out_err(wq, w, h) - out_err(ref, w, h)) <= 0.01 * out_err(ref, w, h)
    # no live input at all: everything is rounded to nearest
    assert np.array_equal(compensate(w, np.zeros((n, n), np.float32), step, a, b), plain)


def test_fallback_damping_on_a_failed_cholesky(rng):
    n = 60
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    ev = rng.uniform(0.5, 2.0, n)
    ev[0] = -0.05 * ev.mean()  # indefinite: 1% damping is not enough, 11% is
    h = (q * ev) @ q.T
    w = rng.standard_normal((10, n)).astype(np.float32)
    f = factorise(h)
    assert f.damp == pytest.approx(0.01 + 0.1 * 1.01)
    new, ref = compensate(w, h, 0.2, None, None), reference_compensate(w, h, 0.2, None, None)
    assert abs(out_err(new, w, h) - out_err(ref, w, h)) <= 0.01 * abs(out_err(ref, w, h))
    ev[0] = -2.0 * ev.mean()
    with pytest.raises(ValueError, match="not positive definite"):
        compensate(w, (q * ev) @ q.T, 0.2, None, None)


def test_float32_factor_is_as_good_as_float64(rng):
    w = (0.2 * rng.standard_normal((64, 400))).astype(np.float32)
    h = gram(rng, 400, samples=200)  # rank-deficient: the damping sets the small eigenvalues
    f32, f64 = factorise(h), factorise(h, factor_dtype="float64")
    assert (f32.factor_dtype, f64.factor_dtype) == ("float32", "float64")
    e32, e64 = out_err(quantise(w, f32, 0.05), w, h), out_err(quantise(w, f64, 0.05), w, h)
    assert abs(e32 - e64) <= 0.01 * e64


def test_gram_as_numpy_or_torch_float32_or_float64(rng):
    w = rng.standard_normal((16, 96)).astype(np.float32)
    h32 = gram(rng, 96)
    a, b, _, _ = codec_scales(rng, w.shape, "rowcol")
    want = compensate(w, h32, 0.1, a, b)
    ro = h32.copy()
    ro.flags.writeable = False
    wro = w.copy()
    wro.flags.writeable = False
    for h in (torch.from_numpy(h32.copy()), h32.astype(np.float64), torch.from_numpy(h32.astype(np.float64)), ro):
        hc = h.clone() if isinstance(h, torch.Tensor) else h.copy()
        got = compensate(wro, h, 0.1, a, b)
        assert np.array_equal(got, want)
        assert (torch.equal(h, hc) if isinstance(h, torch.Tensor) else np.array_equal(h, hc))  # h is not modified
    assert np.array_equal(compensate(torch.from_numpy(w), h32, 0.1, a, b), want)
    assert np.array_equal(compensate(np.asfortranarray(w), h32, 0.1, a, b), want)
    assert np.array_equal(compensate(np.ascontiguousarray(w.T).T, h32, 0.1, a, b), want)  # a transposed view


def test_deterministic_and_threads_restored(rng):
    w = rng.standard_normal((200, 2 * BLOCK + 40)).astype(np.float32)  # 200 rows: 3 groups at 3 threads
    h = gram(rng, w.shape[1])
    a, b, _, _ = codec_scales(rng, w.shape, "rowcol")
    ref = reference_compensate(w, h, 0.05, a, b)
    before = torch.get_num_threads()
    for nthreads in (1, 2, 3):
        runs = [compensate(w, h, 0.05, a, b, nthreads=nthreads) for _ in range(3)]
        assert all(np.array_equal(r.view(np.int32), runs[0].view(np.int32)) for r in runs)
        assert torch.get_num_threads() == before
        assert abs(out_err(runs[0], w, h) - out_err(ref, w, h)) <= 0.01 * out_err(ref, w, h)
    with pytest.raises(ValueError, match="Gram"):
        compensate(w, h[:10, :10], 0.05, a, b, nthreads=2)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="nthreads"):
        compensate(w, h, 0.05, a, b, nthreads=0)


def test_one_factor_serves_every_step(rng):
    w = rng.standard_normal((32, 200)).astype(np.float32)
    h = gram(rng, 200)
    a, b, _, _ = codec_scales(rng, w.shape, "rowcol")
    f = factorise(h, b)
    for step in (0.02, 0.3):
        assert np.array_equal(quantise(w, f, step, a), compensate(w, h, step, a, b))


def test_bad_input_is_refused(rng):
    w = rng.standard_normal((4, 10)).astype(np.float32)
    h = gram(rng, 10)
    with pytest.raises(ValueError, match="Gram"):
        compensate(w, h[:9, :9], 0.1, None, None)
    with pytest.raises(ValueError, match="square"):
        factorise(h[:9])
    bad = h.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        compensate(w, bad, 0.1, None, None)
    bad = h.copy()
    bad[2, 5] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        compensate(w, bad, 0.1, None, None)
    with pytest.raises(ValueError, match="row scale"):
        compensate(w, h, 0.1, np.ones(3), None)
    with pytest.raises(ValueError, match="column scale"):
        compensate(w, h, 0.1, None, -np.ones(10))
    for step in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="step"):
            compensate(w, h, step, None, None)
    with pytest.raises(ValueError, match="2-D"):
        compensate(w.astype(np.int32), h, 0.1, None, None)
    assert compensate(np.zeros((0, 10), np.float32), h, 0.1, None, None).shape == (0, 10)
    assert compensate(np.zeros((3, 0), np.float32), np.zeros((0, 0)), 0.1, None, None).shape == (3, 0)


def test_gptq_inside_the_allocation(rng):
    n_in = 128
    x = rng.standard_normal((3000, n_in)) @ (rng.standard_normal((n_in, n_in)) * 0.4 + np.eye(n_in))
    h = x.T @ x / len(x)
    t = {"w": (rng.standard_normal((64, n_in))).astype(np.float32)}
    plain = encode_allocated(t, 3.0)
    comp = encode_allocated(t, 3.0, grams={"w": (h, False)})
    assert comp["w"].report["gptq"] and not plain["w"].report["gptq"]
    assert comp["w"].bits <= 3.0 * t["w"].size
    err = lambda e: (decode_tensor(e["w"].payload, "direct", t["w"].shape, "float32") - t["w"]).astype(np.float64)
    out = lambda e: float(np.einsum("ij,jk,ik->", err(e), h, err(e)))
    assert out(comp) < 0.8 * out(plain)
    assert math.isfinite(comp["w"].snr_db) and comp["w"].snr_db < plain["w"].snr_db + 0.5
