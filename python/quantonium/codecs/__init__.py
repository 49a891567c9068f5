"""The tensor codecs: a named, versioned registry.

=================  ==========================================================
name               what it does
=================  ==========================================================
``lossless``       bit-exact: exponent / mantissa byte planes + rANS
``direct``         one uniform step in the weight domain + rANS
``rft-dense``      real-orthogonal Phi-RFT along rows, then as ``direct``
``fixed``          RTN int2-8 with an fp16 scale per group of 32/64/128, packed
``rft-fixed``      seeded random signs + real-orthogonal Phi-RFT along rows, then as ``fixed``
``wht-fixed``      seeded random signs + Walsh-Hadamard along rows, then as ``fixed``
``rft-spectral``   keep the largest Phi-RFT coefficients along one axis
``auto``           tries the others on the tensor, keeps the best, records why
                   (only the fixed-rate ones when asked for a fixed-rate format)
=================  ==========================================================

Each payload carries its codec's name, version and parameters; a decoder
refuses a newer version of its codec. ``encode_tensor`` / ``decode_tensor``
are the entry points; small tensors (fewer than ``SMALL_TENSOR`` values, or
one dimension: norms, biases) are stored ``lossless`` under ``auto``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import quantonium_native as qn

from . import auto, lossless
from .base import DTYPES, CodecError, Encoded, MemoryLimitError, Target, dtype_name, itemsize, numpy_dtype
from .fixed import Fixed
from .rotated import RftFixed, WhtFixed
from .scalar import Direct, RftDense
from .spectral import Spectral

__all__ = [
    "CODECS",
    "DTYPES",
    "SMALL_TENSOR",
    "CodecError",
    "Encoded",
    "MemoryLimitError",
    "Target",
    "decode_tensor",
    "encode_tensor",
    "itemsize",
    "numpy_dtype",
]

#: Tensors with fewer values than this (or with one dimension) are lossless under auto.
SMALL_TENSOR = 4096


class _Lossless:
    name, version = lossless.NAME, lossless.VERSION
    encode = staticmethod(lossless.encode)
    decode = staticmethod(lossless.decode)


#: name -> (version, factory taking the codec's options)
CODECS: dict[str, tuple[int, Any]] = {
    "lossless": (lossless.VERSION, lambda **o: _Lossless()),
    "direct": (Direct.version, lambda **o: Direct(**o)),
    "rft-dense": (RftDense.version, lambda **o: RftDense(**o)),
    "fixed": (Fixed.version, lambda **o: Fixed(**o)),
    "rft-fixed": (RftFixed.version, lambda **o: RftFixed(**o)),
    "wht-fixed": (WhtFixed.version, lambda **o: WhtFixed(**o)),
    "rft-spectral": (Spectral.version, lambda **o: Spectral(**o)),
}


def _finite(a: np.ndarray) -> bool:
    """Whether every value is finite: the float64 sum of squares of finite float32/16 values cannot overflow."""
    x = np.asarray(a)
    x = x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)
    if x.dtype == np.float64:
        return bool(np.all(np.isfinite(x)))
    return math.isfinite(qn.energy_sums(x)[0])


def encode_tensor(
    a: np.ndarray,
    codec: str = "auto",
    *,
    snr_db: float | None = None,
    bpw: float | None = None,
    keep: float | None = None,
    nthreads: int = 1,
    options: dict[str, Any] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Encoded:
    """Encodes one float32/float16/bfloat16 tensor; the result's SNR and bits are measured.

    ``options`` are the codec's constructor options; for ``auto``:
    ``{"fixed_rate": True}`` limits the candidates to the fixed-rate codecs
    (``fixed``, ``rft-fixed``, ``wht-fixed``). ``progress(fraction, what)``,
    when given, is called as the encode advances (``auto``: before each
    candidate, and 1.0 when done); it changes nothing in the result.
    """
    dtype_name(a)  # TypeError for other dtypes
    if codec != "lossless" and not _finite(a):
        raise ValueError("tensor holds NaN or inf: only the lossless codec stores those")
    if codec == "auto":
        opts = dict(options or {})
        fixed_rate = opts.pop("fixed_rate", False)
        if opts or not isinstance(fixed_rate, bool):
            raise ValueError(f"auto takes only the option fixed_rate (a bool), not {options!r}")
        if a.ndim <= 1 or a.size < SMALL_TENSOR:
            enc = lossless.encode(a, nthreads=nthreads)
            enc.report = {"selected_by": "auto", "reason": f"small tensor (ndim {a.ndim}, {a.size} values): lossless"}
            return enc
        return auto.encode(a, Target(snr_db, bpw, keep), nthreads=nthreads, fixed_rate=fixed_rate, progress=progress)
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of auto, {', '.join(CODECS)}")
    if codec == "lossless":
        return lossless.encode(a, nthreads=nthreads)
    if progress is not None:
        progress(0.0, codec)
    enc = CODECS[codec][1](**(options or {})).encode(a, Target(snr_db, bpw, keep), nthreads=nthreads)
    if progress is not None:
        progress(1.0, codec)
    return enc


def decode_tensor(payload, codec: str, shape: tuple[int, ...], dtype: str, *, nthreads: int = 1,
                  max_memory: int | None = None) -> np.ndarray:
    """Decodes a payload; raises CodecError on anything inconsistent.

    Streams are checked against ``shape`` and the working memory against
    ``max_memory`` (bytes; None: ``quantonium.limits.max_memory()``) before
    anything is allocated (:class:`MemoryLimitError` above it).
    """
    if not isinstance(codec, str) or codec not in CODECS:
        raise CodecError(f"unknown codec {codec!r}")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise CodecError(f"unknown dtype {dtype!r}")
    try:
        out = CODECS[codec][1]().decode(payload, tuple(shape), dtype, nthreads=nthreads, max_memory=max_memory)
    except CodecError:
        raise
    except ValueError as e:  # a native decoder's bounds check
        raise CodecError(f"{codec}: {e}") from None
    if out.shape != tuple(shape):
        raise CodecError(f"{codec} decoded shape {out.shape}, expected {tuple(shape)}")
    return out
