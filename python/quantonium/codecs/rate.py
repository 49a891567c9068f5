"""Set-level rate control: one average bits-per-weight target for many tensors.

For entropy-coded uniform quantisation, the slope of distortion against rate
is the same for every tensor when every tensor uses the same step (at high
rate D = step^2 / 12 whatever the tensor), so a common step is the allocation
that minimises the total squared error at a given total rate. The common step
is found by bisection on the measured total payload size, small tensors
(norms, biases) stored lossless and counted in the total. Weighting by
sensitivity (issue 5) changes the per-tensor slopes; this is the unweighted
base it builds on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from . import SMALL_TENSOR, Encoded, lossless
from .scalar import Direct, RftDense

TOLERANCE_BPW = 0.05
_ITERATIONS = 40


def split_set(tensors: Mapping[str, np.ndarray], bpw: float, *, nthreads: int = 1,
              lossless_names=frozenset()) -> tuple[dict[str, Encoded], dict[str, np.ndarray], int, float]:
    """(small tensors coded lossless, the large ones, total weights, bits left for the large ones).

    Small = one dimension or fewer than SMALL_TENSOR values, or named in ``lossless_names``.
    """
    small = {n: a for n, a in tensors.items() if a.ndim <= 1 or a.size < SMALL_TENSOR or n in lossless_names}
    large = {n: a for n, a in tensors.items() if n not in small}
    out: dict[str, Encoded] = {n: lossless.encode(a, nthreads=nthreads) for n, a in small.items()}
    total_w = sum(a.size for a in tensors.values())
    return out, large, total_w, bpw * total_w - sum(e.bits for e in out.values())


def encode_set(
    tensors: Mapping[str, np.ndarray], bpw: float, *, codec: str = "direct", nthreads: int = 1
) -> dict[str, Encoded]:
    """Encodes every tensor so that the average bpw over the set is within 0.05 of ``bpw`` (never above)."""
    coder = {"direct": Direct, "rft-dense": RftDense}.get(codec)
    if coder is None:
        raise ValueError(f"set-level rate control supports direct and rft-dense, not {codec!r}")
    c = coder()
    out, large, total_w, budget = split_set(tensors, bpw, nthreads=nthreads)
    if not large:
        return out
    rms = math.sqrt(sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in large.values()) / sum(a.size for a in large.values()))
    rms = rms or 1.0

    def run(log_step: float) -> dict[str, Encoded]:
        return {n: c.encode_step(a, math.exp(log_step), nthreads=nthreads) for n, a in large.items()}

    lo, hi = math.log(rms * 1e-4), math.log(rms * 64)
    best = run(hi)
    if sum(e.bits for e in best.values()) > budget:
        raise ValueError(f"{bpw:g} bpw is below what these tensors can be coded in")
    for _ in range(_ITERATIONS):
        mid = 0.5 * (lo + hi)
        trial = run(mid)
        bits = sum(e.bits for e in trial.values())
        if bits <= budget:
            hi, best = mid, trial
            if budget - bits < TOLERANCE_BPW * 0.5 * total_w:
                break
        else:
            lo = mid
    for e in best.values():
        e.report = {"rate_control": "set", "target_bpw": bpw, "common_step": e.params["step"]}
    out.update(best)
    return {n: out[n] for n in tensors}
