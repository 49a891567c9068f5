"""Running one tensor job: read the tensor, encode it, measure what the payload gives back.

``run_job`` is a plain function of a picklable job, so any executor can run
it. The fidelity it reports is measured on the real payload: the tensor is
decoded (or the encoder's own decoded copy is reused) and compared with the
source values: SNR, and the distance to the Shannon lower bound.

With a Gram matrix and an exact step (the calibrated path), the weights are
first moved by GPTQ (``codecs.gptq``) to the grid points that minimise the
layer's output error, on the codec's own grid (its step and its float16 row
and column scales), and then coded at that step; the payload format and the
decoder do not change.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..codecs import CODECS, DTYPES, decode_tensor, encode_tensor, lossless
from ..codecs.gptq import compensate
from ..metrics import shannon_gap, snr_from_sums, sums
from .plan import TensorJob, TensorResult

__all__ = ["gptq_weights", "run_job"]


def gptq_weights(coder, a32: np.ndarray, gram, transposed: bool, step: float, nthreads: int = 1) -> np.ndarray:
    """The weights GPTQ puts on ``coder``'s grid at ``step`` (float32, same layout as ``a32``)."""
    ra, cb = coder._scales(a32.shape)
    ra = None if ra is None else ra.astype(np.float64)
    cb = None if cb is None else cb.astype(np.float64)
    if transposed:  # stored (in, out): the inputs run along the rows
        return np.ascontiguousarray(compensate(a32.T, gram, step, cb, ra, nthreads=nthreads).T)
    return np.ascontiguousarray(compensate(a32, gram, step, ra, cb, nthreads=nthreads))


#: the share of a tensor's progress given to its encode (the rest: measuring the payload's fidelity)
ENCODE_SHARE = 0.9


def run_job(job: TensorJob, nthreads: int = 1, progress=None) -> TensorResult:
    """Encodes one tensor as the job says; the result carries the payload and its measured fidelity.

    ``progress`` (optional, not part of the job, so jobs stay plain data):
    ``progress(name, nbytes, fraction, what)`` is called as the work on the
    tensor advances (``auto``: before each candidate; then the measurement),
    from the thread that runs the job (``progress.TensorMeter.partial``).
    """
    t0 = time.perf_counter()
    a = job.ref.read()
    tick = None
    if progress is not None:
        def tick(fraction: float, what: str) -> None:
            progress(job.name, a.nbytes, ENCODE_SHARE * fraction, what)
    if a.dtype.name not in DTYPES:
        raise ValueError(f"tensor {job.name!r} has dtype {a.dtype}, which is not a buffer and not float32/float16/bfloat16")
    dtype = a.dtype.name
    if job.codec == "lossless":
        enc = lossless.encode(a, nthreads=nthreads)
    elif "step" in job.target:
        if job.codec not in ("direct", "rft-dense"):
            raise ValueError(f"an exact step is for the direct and rft-dense codecs, not {job.codec!r}")
        coder = CODECS[job.codec][1](**job.options)
        step = float(job.target["step"])
        if job.gram is not None and a.ndim == 2 and job.codec == "direct":
            a32 = np.asarray(a, np.float32)
            enc = coder.encode_step(gptq_weights(coder, a32, job.gram, job.gram_transposed, step, nthreads), step, nthreads=nthreads)
        else:
            enc = coder.encode_step(a, step, nthreads=nthreads)
    else:
        enc = encode_tensor(a, job.codec, nthreads=nthreads, options=job.options or None, progress=tick, **job.target)
    gap = None
    if enc.codec != "lossless":
        if progress is not None:
            progress(job.name, a.nbytes, ENCODE_SHARE, f"{enc.codec}: measuring")
        w_hat = enc.recon if enc.recon is not None else decode_tensor(enc.payload, enc.codec, a.shape, "float32",
                                                                      nthreads=nthreads)
        # against the source values (GPTQ moved the coded ones): one pass gives the SNR and the gap's distortion
        sig, sse = sums(a, w_hat, nthreads=nthreads)
        enc.snr_db = snr_from_sums(sig, sse)
        g = shannon_gap(a, None, enc.bpw, sse=sse)
        gap = g if math.isfinite(g) else None
        del w_hat
    enc.recon = None
    if job.report:
        enc.report = {**(enc.report or {}), **job.report}
    return TensorResult(job.name, tuple(a.shape), dtype, enc, gap, a.nbytes, job.source_dtype,
                        time.perf_counter() - t0)
