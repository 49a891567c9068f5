"""``auto``: try the candidates on the tensor itself, keep the best, say why.

Candidates: ``direct``, ``rft-dense``, ``fixed`` with groups of 32, 64 and
128, and ``rft-spectral`` along every axis. With a target SNR the one with the
fewest bits among those within 0.5 dB of it wins (the best SNR if none
reaches it); with a target bpw the best SNR among those within 0.05 bpw of it
wins; with a kept fraction only ``rft-spectral`` applies. Every trial is a
real encode and decode, and the table of trials is returned as the report.

**Fixed-rate formats** (``fixed_rate=True``, ``compress --fixed-rate``): every
weight costs the same number of bits (random access, what inference kernels
read), so only the fixed-rate codecs are candidates: ``fixed``, ``rft-fixed``
(random signs + real-orthogonal Phi-RFT) and ``wht-fixed`` (random signs +
Walsh-Hadamard), each with groups of 32, 64 and 128 (seed 0). The same rules
choose; the report's ``reason`` also names the best candidate of the other
kind (rotated vs not rotated) and the margin, which says where a rotation was
chosen and why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .base import Encoded, Target
from .fixed import Fixed
from .rotated import RftFixed, WhtFixed
from .scalar import Direct, RftDense
from .spectral import Spectral

SNR_TOLERANCE_DB = 0.5
BPW_TOLERANCE = 0.05


GROUPS = (32, 64, 128)


def candidates(a: np.ndarray, target: Target, fixed_rate: bool = False) -> list[tuple[str, dict, Any]]:
    if fixed_rate:
        if target.keep is not None:
            raise ValueError("a fixed-rate format takes a target SNR or bits per weight, not a kept fraction")
        return ([("fixed", {"group_size": g}, Fixed(group_size=g)) for g in GROUPS]
                + [("rft-fixed", {"group_size": g}, RftFixed(group_size=g)) for g in GROUPS]
                + [("wht-fixed", {"group_size": g}, WhtFixed(group_size=g)) for g in GROUPS])
    spectral = [("rft-spectral", {"axis": ax}, Spectral(axis=ax)) for ax in range(max(1, a.ndim))]
    if target.keep is not None:
        return spectral
    out: list[tuple[str, dict, Any]] = [("direct", {}, Direct()), ("rft-dense", {}, RftDense())]
    out += [("fixed", {"group_size": g}, Fixed(group_size=g)) for g in (32, 64, 128)]
    return out + spectral


def _versus(best: Encoded, best_row: dict, pool: list, by_rate: bool) -> str:
    """What the winner beat: the best candidate of the other kind (rotated or not) in ``pool``,
    by rate (a target SNR: the cheapest) or by SNR (a target rate: the most accurate)."""
    rotated = best_row["codec"] != "fixed"
    other = [r for r in pool if (r[1]["codec"] != "fixed") != rotated]
    if not other:
        return ""
    kind = "unrotated" if rotated else "rotated"
    if by_rate:
        e, row = min(other, key=lambda r: (round(r[0].bpw, 2), -r[0].snr_db))
        return (f"; cheapest {kind} candidate reaching it: {row['codec']} g{row['options']['group_size']} at "
                f"{e.bpw:.3f} bpw, {e.snr_db:.2f} dB (the chosen one: {best.bpw:.3f} bpw, {best.snr_db:.2f} dB)")
    e, row = max(other, key=lambda r: r[0].snr_db)
    return (f"; best {kind} candidate: {row['codec']} g{row['options']['group_size']}, {e.snr_db:.2f} dB at "
            f"{e.bpw:.3f} bpw ({best.snr_db - e.snr_db:+.2f} dB for the chosen one)")


#: Relative time of one candidate's encode, for progress only (a bar that moves at an even pace): the
#: spectral candidates take most of the time. Measured on MiniLM's word embeddings (30522 x 384) and an
#: intermediate weight (1536 x 384), one thread: direct 0.22 / 0.07 s, rft-dense 0.49 / 0.25, fixed
#: 0.7 / 0.05, rft-spectral 6.4 and 3.3 / 0.6 and 0.35 (axis 0 and 1); fixed-rate: fixed 0.6-0.9,
#: rft-fixed 1.0-1.3, wht-fixed 1.1-1.6 s on the embeddings.
PROGRESS_COST = {"direct": 1, "rft-dense": 3, "fixed": 2, "rft-fixed": 3, "wht-fixed": 4, "rft-spectral": 15}


def _label(name: str, opts: dict) -> str:
    return name + "".join(f" {'g' if k == 'group_size' else k + '='}{v}" for k, v in opts.items())


def encode(a: np.ndarray, target: Target, *, nthreads: int = 1, fixed_rate: bool = False,
           progress: Callable[[float, str], None] | None = None) -> Encoded:
    """Every candidate on ``a``, the best kept (module docstring). ``progress(fraction, what)``, when
    given, is called before each candidate (the estimated fraction of the work done, by
    :data:`PROGRESS_COST`) and with 1.0 at the end."""
    trials: list[dict] = []
    best: Encoded | None = None
    results: list[tuple[Encoded, dict]] = []
    cands = candidates(a, target, fixed_rate)
    costs = [PROGRESS_COST.get(name, 1) for name, _, _ in cands]
    for i, (name, opts, codec) in enumerate(cands):
        if progress is not None:
            progress(sum(costs[:i]) / sum(costs), f"auto {i + 1}/{len(cands)}: {_label(name, opts)}")
        try:
            enc = codec.encode(a, target, nthreads=nthreads)
        except ValueError as e:  # this candidate cannot meet the target: recorded, not hidden
            trials.append({"codec": name, "options": opts, "error": str(e)})
            continue
        enc.recon = None  # several candidates are kept until the choice: not their decoded copies
        row = {"codec": name, "options": opts, "bpw": enc.bpw, "snr_db": enc.snr_db}
        trials.append(row)
        results.append((enc, row))
    if progress is not None:
        progress(1.0, "auto: choosing")
    if not results:
        raise ValueError(f"auto: no candidate could code this tensor at {target.describe()}")
    if target.snr_db is not None:
        ok = [r for r in results if r[0].snr_db >= target.snr_db - SNR_TOLERANCE_DB]
        if ok and fixed_rate:  # rates are discrete; headers differ by a few bytes: equal rates go to the higher SNR
            best, row = min(ok, key=lambda r: (round(r[0].bpw, 2), -r[0].snr_db))
            reason = f"fewest bits (to 0.01 bpw), then highest SNR, with SNR >= {target.snr_db - SNR_TOLERANCE_DB:g} dB"
        elif ok:
            best, row = min(ok, key=lambda r: r[0].bits)
            reason = f"fewest bits with SNR >= {target.snr_db - SNR_TOLERANCE_DB:g} dB"
        else:
            best, row = max(results, key=lambda r: r[0].snr_db)
            reason = "no candidate reached the target SNR: highest SNR"
    elif target.bpw is not None:
        ok = [r for r in results if r[0].bpw <= target.bpw + BPW_TOLERANCE]
        if not ok:
            raise ValueError(f"auto: no candidate fits {target.bpw:g} bpw")
        best, row = max(ok, key=lambda r: r[0].snr_db)
        reason = f"highest SNR within {target.bpw + BPW_TOLERANCE:g} bpw"
    else:
        best, row = max(results, key=lambda r: r[0].snr_db)
        reason = f"highest SNR keeping {target.keep:g} of the coefficients"
    row["chosen"] = True
    if fixed_rate:
        by_rate = target.snr_db is not None and bool(ok)
        reason = "fixed-rate format: " + reason + _versus(best, row, ok if ok else results, by_rate)
    best.report = {**best.report, "selected_by": "auto", "target": target.describe(), "reason": reason, "candidates": trials}
    if fixed_rate:
        best.report["fixed_rate"] = True
    return best
