"""Model-level rate allocation: a Lagrangian over each tensor's measured rate-distortion curve.

Given a target average bits per weight for a whole set of tensors, every
large tensor gets its own step (and, with ``codec="auto"``, its own codec) so
that the total *weighted* squared error is the smallest the budget allows:

1. **Curves** (``measure_curve``). For each tensor and candidate codec
   (``direct``, ``rft-dense``) the coefficients to quantise are computed
   (weights times the sensitivity scales, then the transform) on a sample of
   at most ``SAMPLE`` values (whole rows, evenly spread: the row transform
   needs whole rows), and a ladder of steps 1/8 octave apart is measured:
   rate = the order-0 entropy of the symbols, scaled to the whole tensor,
   plus the payload's header, table and scale bytes; distortion = the
   squared error of the scaled coefficients (the sensitivity-weighted error
   of the weights), scaled likewise. Only the curves are kept (a few numbers
   per step), never the tensors.
2. **Allocation** (``Allocator``). For a multiplier lambda each tensor takes
   the point of its lower convex hull minimising D + lambda * R; lambda is
   bisected until the total rate meets the budget. Tensors whose error costs
   little give up bits first, down to all-zero symbols (reverse
   water-filling). The hull steps are discrete, so what is left is then spent
   greedily, one hull point at a time, best distortion saved per bit first.
   Vectorised over all tensors: one solve takes milliseconds.
3. **Streaming with correction.** Tensors are encoded for real one at a time,
   in plan order. Before each, the allocation is solved again over the
   tensors not yet coded, with the budget left after the real sizes of those
   already coded, and with each curve's estimate corrected by the ratio of
   real to estimated bits measured so far on tensors of the same kind (GPTQ
   moves symbols, so GPTQ tensors are their own kind). A tensor that would
   leave the rest less than their smallest sizes is re-coded one hull point
   coarser. The total never exceeds the budget and ends close to it: the
   last tensors absorb what the estimates missed. The decisions are a pure
   function of the curves and the real sizes, so a resumed run makes them
   again identically.

Small tensors (norms, biases) are stored lossless and their bits counted
before the allocation (its budget is what they leave). Without
sensitivities, and at high rate, the result is close to one common step
(``rate.encode_set``); the curve matters at low rates, where tensors differ
in how fast their error falls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

import quantonium_native as qn

from . import Encoded
from .rate import split_set
from .scalar import Direct, RftDense

__all__ = ["Allocator", "Curve", "Point", "allocate", "curve_for", "encode_allocated", "measure_curve"]

#: log2(step / rms of the coefficients) on the ladder
LADDER = np.arange(-80, 25) / 8.0
MAX_RATE = 10.0  # bits per weight: finer steps are not measured
SAMPLE = 1 << 20  # values measured per tensor and codec for its curve
SUBDIVIDE = 4  # interpolated points per measured 1/8-octave interval
#: the estimated rate of the remaining tensors is corrected by at most this factor either way
_MAX_CORRECTION = 1.5


@dataclass
class Point:
    codec: str
    step: float
    bits: float  # estimated payload bits (whole tensor)
    dist: float  # weighted squared error (whole tensor)


@dataclass
class Curve:
    name: str
    numel: int
    points: list[Point] = field(default_factory=list)
    hull: list[Point] = field(default_factory=list)
    kind: str = "plain"  # estimates are corrected per kind ("plain", "gptq")


def _coder(codec: str, row, col):
    return {"direct": Direct, "rft-dense": RftDense}[codec](row_scale=row, col_scale=col)


def _header_bytes(codec: str, step: float, sym: str, extra: dict, streams: list[int]) -> int:
    """Bytes of a direct / rft-dense payload's framing (length field + JSON header), as written."""
    from .base import framing_bytes
    from .scalar import VERSION

    return framing_bytes(codec, VERSION, {"step": float(np.float32(step)), "symbols": sym, **extra}, streams)


def _sample_rows(rows: int, cols: int, limit: int) -> np.ndarray:
    """Evenly spread row indices holding at most ``limit`` values (all rows when they fit)."""
    if rows * cols <= limit:
        return np.arange(rows)
    k = max(1, limit // max(cols, 1))
    return np.unique(np.linspace(0, rows - 1, k).round().astype(np.int64))


def measure_curve(a: np.ndarray, codecs=("direct",), row=None, col=None, *, nthreads: int = 1,
                  sample: int = SAMPLE, subdivide: int = 0) -> list[Point]:
    """The ladder of (rate, distortion) points of one tensor for each codec, estimated on a row sample.

    ``subdivide`` (default ``SUBDIVIDE``): interpolated points per measured interval (1 = measured only).
    """
    shape = tuple(a.shape)
    rows = int(shape[0]) if len(shape) else 1
    cols = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    numel = rows * cols
    idx = _sample_rows(rows, cols, sample)
    w = np.ascontiguousarray(np.asarray(a).reshape(rows, cols)[idx], np.float32)
    scale_up = numel / max(w.size, 1)
    pts: list[Point] = []
    scale_bits = 16 * ((0 if row is None else rows) + (0 if col is None else cols))
    for codec in codecs:
        coder = _coder(codec, row, col)
        ra, cb = coder._scales((rows, cols))  # normalised over the whole tensor, as the codec stores them
        ws = w
        if ra is not None or cb is not None:
            m = np.ones((len(idx), 1), np.float32) if ra is None else ra.astype(np.float32)[idx][:, None]
            ws = w * (m * (np.ones((1, cols), np.float32) if cb is None else cb.astype(np.float32)[None, :]))
        extra = coder.transform_params()
        if ra is not None or cb is not None:
            extra["scales"] = ("row" if ra is not None else "") + ("col" if cb is not None else "")
        c = np.ascontiguousarray(coder.forward(np.ascontiguousarray(ws, np.float32), coder.transform_params(), nthreads),
                                 np.float32).reshape(-1)
        energy = float(np.dot(c.astype(np.float64), c.astype(np.float64)))
        rms = math.sqrt(energy / max(c.size, 1)) or 1.0
        amax = float(np.max(np.abs(c), initial=0.0))
        steps = [float(np.float32(rms * 2.0**l2)) for l2 in LADDER[::-1]]  # coarse to fine
        steps = [st for st in steps if amax / st < 32000]
        if not steps:
            continue
        # one pass over the sample for every step: symbol histograms and squared errors, exactly
        # the rounding the codec does (native, quantize_histograms)
        mins, hists, sse = qn.quantize_histograms(c, np.array(steps, np.float32), nthreads=nthreads)
        for k, step in enumerate(steps):
            counts = hists[k][hists[k] > 0]
            h = float(-(counts * np.log2(counts / c.size)).sum()) * scale_up
            head, payload = qn.rans_stream_size(hists[k], min_symbol=int(mins[k]))
            stream = head + payload * scale_up
            sym = "int8" if amax / step < 127.0 else "int16"
            streams = [int(stream)] + [2 * rows] * (ra is not None) + [2 * cols] * (cb is not None)
            bits = 8 * stream + 8 * _header_bytes(codec, step, sym, extra, streams) + scale_bits
            pts.append(Point(codec, step, bits, float(sse[k]) * scale_up))
            if h / numel > MAX_RATE:
                break
    return _subdivide(pts, subdivide or SUBDIVIDE)


def _subdivide(pts: list[Point], k: int) -> list[Point]:
    """Points between the measured ones (per codec): bits and log distortion interpolated linearly
    in log step. The allocation's resolution is then 1/(8k) octave; the real encodes correct the rest."""
    if k <= 1:
        return pts
    out: list[Point] = []
    for a, b in zip(pts, pts[1:]):
        out.append(a)
        if a.codec != b.codec or a.dist <= 0 or b.dist <= 0:
            continue
        la, lb = math.log(a.step), math.log(b.step)
        da, db = math.log(a.dist), math.log(b.dist)
        for j in range(1, k):
            t = j / k
            out.append(Point(a.codec, float(np.float32(math.exp(la + t * (lb - la)))), a.bits + t * (b.bits - a.bits),
                             math.exp(da + t * (db - da))))
    if pts:
        out.append(pts[-1])
    return out


def curve_for(name: str, a: np.ndarray, codecs, row=None, col=None, *, weight: float = 1.0, kind: str = "plain",
              nthreads: int = 1) -> Curve:
    """A tensor's curve; ``weight`` multiplies its distortion (the factor the scales' normalisation removed)."""
    pts = measure_curve(a, codecs, row, col, nthreads=nthreads)
    for p in pts:
        p.dist *= weight
    c = Curve(name, int(np.asarray(a).size), pts, kind=kind)
    c.hull = _hull(pts)
    return c


def _hull(points: list[Point]) -> list[Point]:
    """Lower convex hull in (rate, distortion), rate increasing."""
    pts = sorted(points, key=lambda p: (p.bits, p.dist))
    out: list[Point] = []
    for p in pts:
        if out and p.dist >= out[-1].dist:
            continue  # more bits, no less distortion
        while len(out) >= 2:
            a, b = out[-2], out[-1]
            # b is above the segment a-p: drop it
            if (b.dist - a.dist) * (p.bits - a.bits) >= (p.dist - a.dist) * (b.bits - a.bits):
                out.pop()
            else:
                break
        out.append(p)
    return out


def _solve(B: np.ndarray, D: np.ndarray, budget: float) -> np.ndarray:
    """Hull index per row minimising sum D subject to sum B <= budget (rows padded with inf)."""
    n = B.shape[0]
    rows = np.arange(n)
    if n == 0:
        return np.zeros(0, np.int64)
    if float(B[:, 0].sum()) > budget:
        return np.zeros(n, np.int64)  # not even the coarsest points fit: the caller deals with it
    bscale = max(float(np.nanmax(np.where(np.isfinite(B), B, np.nan))), 1.0)
    dscale = max(float(np.nanmax(np.where(np.isfinite(D), D, np.nan))), 1e-300)
    Bn, Dn = B / bscale, D / dscale
    lo, hi = -80.0, 80.0
    best = np.zeros(n, np.int64)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        pick = np.argmin(Dn + 2.0**mid * Bn, axis=1)
        if float(B[rows, pick].sum()) <= budget:
            hi, best = mid, pick
        else:
            lo = mid
        if hi - lo < 1e-4:
            break
    # spend the rest greedily, one hull point at a time, best distortion saved per bit first
    left = budget - float(B[rows, best].sum())
    pick = best.copy()
    width = B.shape[1]
    while True:
        nxt = np.minimum(pick + 1, width - 1)
        cost = B[rows, nxt] - B[rows, pick]
        gain = D[rows, pick] - D[rows, nxt]
        ok = (nxt > pick) & (cost > 0) & (cost <= left) & np.isfinite(cost)
        if not ok.any():
            return pick
        ratio = np.where(ok, gain / np.where(ok, cost, 1.0), -np.inf)
        i = int(np.argmax(ratio))
        left -= float(cost[i])
        pick[i] = nxt[i]


class Allocator:
    """Streaming Lagrangian allocation: ``choose`` a tensor's point, encode it, ``record`` its real size."""

    def __init__(self, curves: list[Curve], budget_bits: float) -> None:
        self.curves = {c.name: c for c in curves}
        self.order = [c.name for c in curves]
        self.budget = float(budget_bits)
        width = max((len(c.hull) for c in curves), default=1)
        self.B = np.full((len(curves), width), np.inf)
        self.D = np.full((len(curves), width), np.inf)
        for i, c in enumerate(curves):
            if not c.hull:
                c.hull = _hull(c.points)
            self.B[i, : len(c.hull)] = [p.bits for p in c.hull]
            self.D[i, : len(c.hull)] = [p.dist for p in c.hull]
        self.row = {n: i for i, n in enumerate(self.order)}
        self.done: dict[str, tuple[float, float, str]] = {}  # name -> (estimated, real bits, kind)

    @property
    def spent(self) -> float:
        return sum(r for _, r, _ in self.done.values())

    def correction(self, kind: str) -> float:
        est = sum(e for e, _, k in self.done.values() if k == kind)
        real = sum(r for _, r, k in self.done.values() if k == kind)
        if est <= 0:
            return 1.0
        return min(_MAX_CORRECTION, max(1.0 / _MAX_CORRECTION, real / est))

    def _remaining(self) -> list[str]:
        return [n for n in self.order if n not in self.done]

    def _corrected(self, names: list[str]) -> np.ndarray:
        idx = [self.row[n] for n in names]
        f = np.array([self.correction(self.curves[n].kind) for n in names])[:, None]
        return self.B[idx] * f

    def solve(self) -> dict[str, Point]:
        """The points the tensors not yet coded would get now."""
        names = self._remaining()
        pick = _solve(self._corrected(names), self.D[[self.row[n] for n in names]], self.budget - self.spent)
        return {n: self.curves[n].hull[int(k)] for n, k in zip(names, pick)}

    def choose(self, name: str) -> Point:
        if name in self.done:
            raise ValueError(f"{name!r} is already coded")
        return self.solve()[name]

    def fits(self, name: str, real_bits: float) -> bool:
        """Whether coding ``name`` in ``real_bits`` leaves the other tensors at least their smallest sizes."""
        others = [n for n in self._remaining() if n != name]
        floor = float(self._corrected(others)[:, 0].sum()) if others else 0.0
        return self.spent + real_bits + floor <= self.budget

    def coarser(self, name: str, p: Point) -> Point | None:
        """The next hull point below ``p`` (fewer bits), or None at the coarsest."""
        hull = self.curves[name].hull
        i = hull.index(p)
        return hull[i - 1] if i > 0 else None

    def finer(self, name: str, p: Point) -> Point | None:
        """The next hull point above ``p`` (more bits), or None at the finest."""
        hull = self.curves[name].hull
        i = hull.index(p)
        return hull[i + 1] if i + 1 < len(hull) else None

    def is_last(self, name: str) -> bool:
        return self._remaining() == [name]

    def left(self) -> float:
        return self.budget - self.spent

    def record(self, name: str, estimated_bits: float, real_bits: float) -> None:
        self.done[name] = (float(estimated_bits), float(real_bits), self.curves[name].kind)


def refine_last(encode, p: Point, finer: Point | None, budget: float, *, iterations: int = 12):
    """The last tensor takes what is left: the finest step between ``p`` and ``finer`` whose real
    payload fits ``budget`` (bisection on log step, real encodes). ``encode(step)`` returns the
    result and its bits; returns (result, step) of the best fit, or None when ``p`` itself does not fit."""
    best = None
    res, bits = encode(p.step)
    if bits <= budget:
        best = (res, p.step)
    if finer is None or best is None:
        return best
    lo, hi = math.log(finer.step), math.log(p.step)  # fine (more bits) .. coarse (fits)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        res, bits = encode(math.exp(mid))
        if bits <= budget:
            hi, best = mid, (res, math.exp(mid))
            if budget - bits < 64:
                break
        else:
            lo = mid
    return best


def allocate(curves: list[Curve], budget_bits: float) -> list[Point]:
    """The points minimising total distortion with total estimated bits <= budget (one solve)."""
    for c in curves:
        c.hull = _hull(c.points)
    if sum(c.hull[0].bits for c in curves) > budget_bits:
        raise ValueError("the budget is below what these tensors can be coded in (all-zero symbols)")
    sol = Allocator(curves, budget_bits).solve()
    return [sol[c.name] for c in curves]


def encode_allocated(
    tensors: Mapping[str, np.ndarray],
    bpw: float,
    *,
    codec: str = "direct",
    sensitivity: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    lossless_names: set[str] | frozenset[str] = frozenset(),
    grams: Mapping[str, tuple[np.ndarray, bool]] | None = None,
    nthreads: int = 1,
) -> dict[str, Encoded]:
    """Encodes an in-memory set at an average of ``bpw`` (never above; close to it).

    The same algorithm as a calibrated ``compress`` (module docstring), for
    tensors already in memory (``quantonium compare``, tests). ``sensitivity``
    maps a name to its (row, column) factors (``Sensitivity.factors()``);
    tensors without an entry are weighted at the median sensitivity per
    weight of the others. ``grams`` maps a name to (input Gram matrix,
    transposed): those tensors get GPTQ on their chosen grid (``direct``).
    """
    from ..compress.jobs import gptq_weights
    from ..metrics import snr_db

    codecs = {"direct": ("direct",), "rft-dense": ("rft-dense",), "auto": ("direct", "rft-dense")}.get(codec)
    if codecs is None:
        raise ValueError(f"allocation supports direct, rft-dense and auto, not {codec!r}")
    out, large, total_w, budget = split_set(tensors, bpw, nthreads=nthreads, lossless_names=lossless_names)
    if not large:
        return out
    grams = dict(grams or {})
    scales = allocation_scales(large, sensitivity)
    curves = []
    for n, a in large.items():
        row, col, gm = scales[n]
        gptq = n in grams and a.ndim == 2
        curves.append(curve_for(n, a, ("direct",) if gptq else codecs, row, col, weight=gm * gm,
                                kind="gptq" if gptq else "plain", nthreads=nthreads))
    if sum(c.hull[0].bits for c in curves) > budget:
        raise ValueError(f"{bpw:g} bpw is below what these tensors can be coded in (all-zero symbols)")
    alloc = Allocator(curves, budget)
    order = [n for n in large if n in grams] + [n for n in large if n not in grams]
    for n in order:
        row, col, _ = scales[n]
        p = alloc.choose(n)
        a = large[n]

        def encode(step: float, _n=n, _a=a, _p=p, _row=row, _col=col):
            coder = _coder(_p.codec, _row, _col)
            if _p.codec == "direct" and _n in grams and _a.ndim == 2:
                h, transposed = grams[_n]
                e = coder.encode_step(gptq_weights(coder, np.asarray(_a, np.float32), h, transposed, step, nthreads), step,
                                      nthreads=nthreads)
                e.snr_db = snr_db(np.asarray(_a, np.float32), e.recon)
            else:
                e = coder.encode_step(_a, step, nthreads=nthreads)
            e.recon = None
            return e, e.bits

        if alloc.is_last(n):
            got = None
            while got is None and p is not None:
                got = refine_last(encode, p, alloc.finer(n, p), alloc.left())
                if got is None:
                    p = alloc.coarser(n, p)
            if got is None:
                raise ValueError(f"allocation could not meet {bpw:g} bpw")
            enc = got[0]
        else:
            while True:
                enc, _ = encode(p.step)
                q = alloc.coarser(n, p)
                if alloc.fits(n, enc.bits) or q is None:
                    break
                p = q
        enc.report = {"rate_control": "lagrangian", "target_bpw": bpw, "weighted": n in (sensitivity or {}),
                      "gptq": p.codec == "direct" and n in grams, "estimated_bits": round(p.bits),
                      "weighted_distortion": p.dist}
        alloc.record(n, p.bits, enc.bits)
        out[n] = enc
    if sum(e.bits for e in out.values()) > bpw * total_w:
        raise ValueError(f"allocation could not meet {bpw:g} bpw")
    return {n: out[n] for n in tensors}


def allocation_scales(large: Mapping[str, np.ndarray], sensitivity) -> dict[str, tuple]:
    """(row scale, column scale, distortion weight) per tensor from the sensitivity factors.

    The codec normalises its scales to a geometric mean of 1; the distortion must keep the
    tensor's absolute weight, so the curve is weighted by the factor the normalisation removes.
    Tensors without sensitivities (when others have them) get the median per-weight one.
    """
    sens = dict(sensitivity or {})
    fill = None
    if sens and any(n not in sens for n in large):
        per_w = [float(np.mean(r) * np.mean(c)) for n, (r, c) in sens.items() if n in large]
        fill = float(np.median(per_w)) if per_w else 1.0
    out = {}
    for n in large:
        if n in sens:
            r, c = sens[n]
            row, col = np.sqrt(r), np.sqrt(c)
            gm = math.exp(float(np.mean(np.log(row))) + float(np.mean(np.log(col))))
            out[n] = (row, col, gm)
        elif fill is not None:
            out[n] = (None, None, math.sqrt(fill))
        else:
            out[n] = (None, None, 1.0)
    return out
