"""``auto``: try the candidates on the tensor itself, keep the best, say why.

Candidates: ``direct``, ``rft-dense``, ``fixed`` with groups of 32, 64 and
128, and ``rft-spectral`` along every axis. With a target SNR the one with the
fewest bits among those within 0.5 dB of it wins (the best SNR if none
reaches it); with a target bpw the best SNR among those within 0.05 bpw of it
wins; with a kept fraction only ``rft-spectral`` applies. Every trial is a
real encode and decode, and the table of trials is returned as the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Encoded, Target
from .fixed import Fixed
from .scalar import Direct, RftDense
from .spectral import Spectral

SNR_TOLERANCE_DB = 0.5
BPW_TOLERANCE = 0.05


def candidates(a: np.ndarray, target: Target) -> list[tuple[str, dict, Any]]:
    spectral = [("rft-spectral", {"axis": ax}, Spectral(axis=ax)) for ax in range(max(1, a.ndim))]
    if target.keep is not None:
        return spectral
    out: list[tuple[str, dict, Any]] = [("direct", {}, Direct()), ("rft-dense", {}, RftDense())]
    out += [("fixed", {"group_size": g}, Fixed(group_size=g)) for g in (32, 64, 128)]
    return out + spectral


def encode(a: np.ndarray, target: Target, *, nthreads: int = 1) -> Encoded:
    trials: list[dict] = []
    best: Encoded | None = None
    results: list[tuple[Encoded, dict]] = []
    for name, opts, codec in candidates(a, target):
        try:
            enc = codec.encode(a, target, nthreads=nthreads)
        except ValueError as e:  # this candidate cannot meet the target: recorded, not hidden
            trials.append({"codec": name, "options": opts, "error": str(e)})
            continue
        enc.recon = None  # several candidates are kept until the choice: not their decoded copies
        row = {"codec": name, "options": opts, "bpw": enc.bpw, "snr_db": enc.snr_db}
        trials.append(row)
        results.append((enc, row))
    if not results:
        raise ValueError(f"auto: no candidate could code this tensor at {target.describe()}")
    if target.snr_db is not None:
        ok = [r for r in results if r[0].snr_db >= target.snr_db - SNR_TOLERANCE_DB]
        if ok:
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
    best.report = {**best.report, "selected_by": "auto", "target": target.describe(), "reason": reason, "candidates": trials}
    return best
