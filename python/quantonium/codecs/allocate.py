"""Model-level rate allocation: a Lagrangian over each tensor's measured rate-distortion curve.

Given a target average bits per weight for a whole set of tensors, every
large tensor gets its own step (and, with ``codec="auto"``, its own codec) so
that the total *weighted* squared error is the smallest the budget allows:

1. For each tensor and candidate codec (``direct``, ``rft-dense``), the
   coefficients to quantise are computed once (weights times the sensitivity
   scales, then the transform), and a ladder of steps (1/8 octave apart) is
   measured: rate = the order-0 entropy of the symbols plus the payload's
   header, table and scale bytes; distortion = the squared error of the
   scaled coefficients, which is the sensitivity-weighted squared error of
   the weights (``quantonium.calibration``), or the plain squared error
   without calibration.
2. For a multiplier lambda, each tensor takes the point of its curve that
   minimises D + lambda * R; lambda is bisected until the total rate meets
   the budget. Tensors whose error costs little give up bits first, down to
   all-zero symbols (reverse water-filling: a tensor can get no bits at all).
   The hull steps are discrete (a 1/8-octave step of a large tensor is a
   visible share of the total), so what is left is then spent greedily, one
   hull point at a time, best distortion saved per bit first.
3. The chosen points are encoded for real. The entropy estimate misses the
   real payload by a little (rANS table, header; more for wide int16
   alphabets), so each curve is shifted by the difference measured at its
   chosen point and the choice is made again, until the real total is within
   the budget and close to it (or, after a few rounds, the budget given to
   step 2 shrinks by the excess).

Small tensors (norms, biases) are stored lossless and their bits counted.
Without sensitivities, and at high rate, the result is close to one common
step (``rate.encode_set``); the curve matters at low rates, where tensors
differ in how fast their error falls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..metrics import snr_db
from . import Encoded
from .gptq import compensate
from .rate import split_set
from .scalar import Direct, RftDense

__all__ = ["Point", "allocate", "encode_allocated", "measure_curve"]

#: log2(step / rms of the coefficients) on the ladder
LADDER = np.arange(-80, 25) / 8.0
TOLERANCE_BPW = 0.05
MAX_RATE = 10.0  # bits per weight: finer steps are not measured
_HEADER_BITS = 8 * 160  # JSON header of a direct / rft-dense payload, about


@dataclass
class Point:
    codec: str
    step: float
    bits: float  # estimated payload bits
    dist: float  # weighted squared error


@dataclass
class Curve:
    name: str
    numel: int
    points: list[Point] = field(default_factory=list)
    hull: list[Point] = field(default_factory=list)


def _coder(codec: str, row, col):
    return {"direct": Direct, "rft-dense": RftDense}[codec](row_scale=row, col_scale=col)


def _table_bits(span: np.ndarray, n: int) -> float:
    """Bits of the rANS frequency table: one varint per symbol of the span (16-bit frequencies)."""
    f = np.where(span > 0, np.maximum(1, np.rint(span * (65536.0 / n))), 0)
    return 8.0 * (float(np.sum(1 + (f >= 128) + (f >= 16384))) + 12)


def measure_curve(a: np.ndarray, codecs=("direct",), row=None, col=None, *, nthreads: int = 1) -> list[Point]:
    """The ladder of (rate, distortion) points of one tensor for each codec."""
    w = np.ascontiguousarray(a, np.float32)
    pts: list[Point] = []
    scale_bits = 16 * ((0 if row is None else w.shape[0]) + (0 if col is None else w.size // w.shape[0]))
    for codec in codecs:
        c, _, _ = _coder(codec, row, col).coefficients(w, nthreads)
        energy = float(np.dot(c.astype(np.float64), c.astype(np.float64)))
        rms = math.sqrt(energy / max(c.size, 1)) or 1.0
        amax = float(np.max(np.abs(c), initial=0.0))
        for l2 in LADDER[::-1]:  # coarse to fine
            step = float(np.float32(rms * 2.0**l2))
            if amax / step >= 32000:
                break
            q = np.rint(c * np.float32(1.0 / step))
            r = c - q * np.float32(step)
            dist = float(np.dot(r, r))
            qi = q.astype(np.int32)
            span = np.bincount((qi - qi.min()).ravel())
            counts = span[span > 0]
            h = float(-(counts * np.log2(counts / c.size)).sum())
            bits = h + _table_bits(span, c.size) + _HEADER_BITS + scale_bits
            pts.append(Point(codec, step, bits, dist))
            if h / c.size > MAX_RATE:
                break
    return pts


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


def _choose(curves: list[Curve], lam: float) -> list[Point]:
    return [min(c.hull, key=lambda p: p.dist + lam * p.bits) for c in curves]


def allocate(curves: list[Curve], budget_bits: float) -> list[Point]:
    """The points minimising total distortion with total estimated bits <= budget."""
    for c in curves:
        c.hull = _hull(c.points)
    if sum(c.hull[0].bits for c in curves) > budget_bits:
        raise ValueError("the budget is below what these tensors can be coded in (all-zero symbols)")
    lo, hi = -60.0, 60.0  # log2 lambda: small lambda = many bits
    best = _choose(curves, 2.0**hi)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        pick = _choose(curves, 2.0**mid)
        if sum(p.bits for p in pick) <= budget_bits:
            hi, best = mid, pick
        else:
            lo = mid
        if hi - lo < 1e-4:
            break
    return _fill(curves, best, budget_bits)


def _fill(curves: list[Curve], pick: list[Point], budget_bits: float) -> list[Point]:
    """Spends what the lambda search left over (its hull steps are discrete): greedily moves
    tensors one hull point up, best distortion saved per bit first, while the budget allows."""
    pick = list(pick)
    pos = [c.hull.index(p) for c, p in zip(curves, pick)]
    left = budget_bits - sum(p.bits for p in pick)
    while True:
        best, gain = None, 0.0
        for i, c in enumerate(curves):
            if pos[i] + 1 < len(c.hull):
                nxt = c.hull[pos[i] + 1]
                cost = nxt.bits - pick[i].bits
                if 0 < cost <= left:
                    g = (pick[i].dist - nxt.dist) / cost
                    if g > gain:
                        best, gain = i, g
        if best is None:
            return pick
        pos[best] += 1
        left -= curves[best].hull[pos[best]].bits - pick[best].bits
        pick[best] = curves[best].hull[pos[best]]


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
    """Encodes the set at an average of ``bpw`` (never above; within about 0.05).

    ``sensitivity`` maps a tensor name to its (row, column) sensitivity
    factors (``Sensitivity.factors()``); tensors without an entry are weighted
    uniformly at the median sensitivity per weight of the others.
    ``codec`` is ``direct``, ``rft-dense`` or ``auto`` (both curves; each tensor
    takes whichever codec the allocation prefers). ``lossless_names`` are
    stored lossless (and counted), like the small tensors. ``grams`` maps a
    tensor name to (input Gram matrix, transposed): those tensors, when coded
    ``direct``, get GPTQ error compensation on their chosen grid (``codecs.gptq``).
    """
    codecs = {"direct": ("direct",), "rft-dense": ("rft-dense",), "auto": ("direct", "rft-dense")}.get(codec)
    if codecs is None:
        raise ValueError(f"allocation supports direct, rft-dense and auto, not {codec!r}")
    out, large, total_w, budget = split_set(tensors, bpw, nthreads=nthreads, lossless_names=lossless_names)
    if not large:
        return out
    sens = dict(sensitivity or {})
    fill = None
    if sens and any(n not in sens for n in large):
        per_w = [float(np.mean(r) * np.mean(c)) for n, (r, c) in sens.items() if n in large]
        fill = float(np.median(per_w)) if per_w else 1.0
    scales: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
    curves: list[Curve] = []
    grams = dict(grams or {})
    for n, a in large.items():
        if n in sens:
            r, c = sens[n]
            row, col = np.sqrt(r), np.sqrt(c)
            # the codec normalises the scales to a geometric mean of 1; the distortion must keep
            # the tensor's absolute weight, so the curve is measured with the factor put back.
            gm = math.exp(float(np.mean(np.log(row))) + float(np.mean(np.log(col))))
        elif fill is not None:
            row, col, gm = None, None, math.sqrt(fill)
        else:
            row, col, gm = None, None, 1.0
        scales[n] = (row, col)
        # with a Gram matrix the tensor is coded direct + GPTQ (the curves do not see GPTQ's
        # gain, so rft-dense would be compared unfairly; measured: it is never chosen anyway)
        pts = measure_curve(a, ("direct",) if n in grams and a.ndim == 2 else codecs, row, col, nthreads=nthreads)
        for p in pts:
            p.dist *= gm * gm
        curves.append(Curve(n, a.size, pts))
    names = list(large)
    best_enc, goal = None, budget
    compensated: dict[tuple[str, float], np.ndarray] = {}

    def encode_point(n: str, p: Point) -> Encoded:
        row, col = scales[n]
        coder = _coder(p.codec, row, col)
        if p.codec != "direct" or n not in grams or large[n].ndim != 2:
            return coder.encode_step(large[n], p.step, nthreads=nthreads)
        key = (n, p.step)
        if key not in compensated:
            a32 = np.asarray(large[n], np.float32)
            h, transposed = grams[n]
            ra, cb = coder._scales(a32.shape)
            if transposed:  # (in, out): inputs along rows
                wq = compensate(a32.T, h, p.step, None if cb is None else cb.astype(np.float64),
                                None if ra is None else ra.astype(np.float64)).T
            else:
                wq = compensate(a32, h, p.step, None if ra is None else ra.astype(np.float64),
                                None if cb is None else cb.astype(np.float64))
            compensated[key] = np.ascontiguousarray(wq)
        enc = coder.encode_step(compensated[key].astype(large[n].dtype), p.step, nthreads=nthreads)
        back = coder.decode(enc.payload, large[n].shape, "float32", nthreads=nthreads)
        enc.snr_db = snr_db(np.asarray(large[n], np.float32), back)  # against the original, not the compensated
        return enc

    for attempt in range(8):
        pick = allocate(curves, goal)
        enc = {}
        for n, p in zip(names, pick):
            enc[n] = encode_point(n, p)
            enc[n].report = {
                "rate_control": "lagrangian", "target_bpw": bpw, "weighted": n in sens,
                "gptq": p.codec == "direct" and n in grams,
                "estimated_bits": round(p.bits), "weighted_distortion": p.dist,
            }
        real = sum(e.bits for e in enc.values())
        if real <= budget and (best_enc is None or real > best_enc[0]):
            best_enc = (real, enc)
        if real <= budget and budget - real < 0.25 * TOLERANCE_BPW * total_w:
            break
        # the entropy estimate misses a tensor's real payload (coder table, header) by a few
        # bytes, more for wide int16 alphabets: correct each curve by what was measured at
        # its chosen point, then choose again
        for c, p in zip(curves, pick):
            off = enc[c.name].bits - p.bits
            if off:
                for q in c.points:
                    if q.codec == p.codec:
                        q.bits += off
        if attempt >= 3:
            goal -= max(real - budget, 0) * 1.05 + 64
    if best_enc is None:
        raise ValueError(f"allocation could not meet {bpw:g} bpw")
    enc = best_enc[1]
    out.update(enc)
    return {n: out[n] for n in tensors}
